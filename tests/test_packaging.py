"""Where the build puts things is where the runtime looks for them."""
import importlib
import os
from pathlib import Path

import vyre


def test_probe_looks_for_the_kernel_where_setup_py_builds_it(monkeypatch):
    monkeypatch.delenv("VYRE_PTX", raising=False)
    from vyre.backends.cuda import probe

    probe = importlib.reload(probe)  # PTX_PATH is read at import
    try:
        # setup.py KERNEL_PACKAGE_PATH
        built = Path(vyre.__file__).parent / "data" / "megakernel.fatbin"
        assert Path(probe.KERNEL_PATH).resolve() == built.resolve()
    finally:
        importlib.reload(probe)


def test_the_test_hooks_worker_is_not_in_a_default_build():
    backends = Path(vyre.__file__).parent / "backends"
    assert not [p for p in os.listdir(backends) if p.startswith("_cpu_testhooks") and
                p.endswith((".so", ".pyd"))]
