"""Whether the CPU backend can start here (its extension built and its threads allowed)."""
from __future__ import annotations


def cpu_backend_works() -> bool:
    """True when a small CPU-backend megakernel starts and shuts down cleanly."""
    try:
        from vyre import Megakernel

        with Megakernel(backend="cpu", slot_count=16, observable_slots=4):
            pass
    except Exception:
        return False
    return True
