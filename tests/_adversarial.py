"""What the adversarial facade tests share: opcodes and a small started CPU megakernel."""
from __future__ import annotations

from vyre import Megakernel
from vyre.backends._cpu import TEST_OP_SPIN, TEST_OP_STALL
from vyre.protocol import OBSERVABLE_BASE, Opcode

OBS = OBSERVABLE_BASE
SPIN_OP = TEST_OP_SPIN  # the test-hooks build's op that spins until SHUTDOWN
STALL_OP = TEST_OP_STALL  # the test-hooks build's op that busy-waits a0 ms ignoring SHUTDOWN
ADD = int(Opcode.ATOMIC_ADD)
NOP = int(Opcode.NOP)


def cpu_mk(slot_count: int = 8) -> Megakernel:
    """A started CPU megakernel: ``slot_count`` slots, 4 observables, one tenant, 2 workers."""
    return Megakernel("cpu", slot_count=slot_count, observable_slots=4, tenants=1,
                      workers=2).start()
