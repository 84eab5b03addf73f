"""The test-hooks CPU worker (``vyre.backends._cpu_testhooks``), built on demand.

The module is the CPU worker compiled with ``-DVYRE_TEST_HOOKS=1`` (opcodes that never finish
or ignore SHUTDOWN, a short io wait bound). It is not part of a default build, so a wheel or
an editable install does not carry it. When a test first imports it and no installed copy
exists (``VYRE_TEST_HOOKS=1`` at install time makes one), this finder builds it with the
project's own setup.py into ``build/testhooks-<hash of its sources>/`` and loads it from
there; later runs reuse that build until a source changes.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

NAME = "vyre.backends._cpu_testhooks"
ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["setup.py", "vyre/backends/_cpu_testhooks.pyx", "vyre/backends/_cpu_impl.pxi",
           "csrc/cpu_worker.c", "csrc/cpu_worker.h", "csrc/vyre_interp.h", "csrc/vyre_abi.h",
           "csrc/cpu_call.c", "csrc/cpu_call.h", "csrc/vyre_call.h", "csrc/vyre_wait.h",
           "csrc/vyre_op.h"]


def _key() -> str:
    h = hashlib.sha256(sys.version.encode())
    files = [ROOT / s for s in SOURCES] + sorted((ROOT / "vyre" / "includes").glob("*.pxd"))
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _built(out: Path) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        so = out / "vyre" / "backends" / f"_cpu_testhooks{suffix}"
        if so.exists():
            return so
    return None


def build() -> Path:
    """Path of the compiled module, building it first if this source state has none."""
    out = ROOT / "build" / f"testhooks-{_key()}"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:  # one build at a time across test processes
        fcntl.flock(lock, fcntl.LOCK_EX)
        so = _built(out)
        if so is not None:
            return so
        env = dict(os.environ, VYRE_BUILD_ONLY="cpu_testhooks", VYRE_NO_PTX="1")
        proc = subprocess.run(
            [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(out),
             "--build-temp", str(out / "tmp")],
            cwd=ROOT, env=env, capture_output=True, text=True)
        so = _built(out)
        if proc.returncode != 0 or so is None:
            raise ImportError(
                f"cannot build {NAME} for the tests (setup.py exit {proc.returncode}): "
                f"{proc.stderr[-2000:]}. Fix: install the test extra (pip install -e "
                f"\".[test]\": Cython, setuptools) and a C compiler, or install with "
                f"VYRE_TEST_HOOKS=1", name=NAME)
        return so


class TestHooksFinder(importlib.abc.MetaPathFinder):
    """Last on ``sys.meta_path``: used only when no installed copy of the module exists."""

    def find_spec(self, fullname, path, target=None):
        if fullname != NAME:
            return None
        return importlib.util.spec_from_file_location(NAME, build())


def install() -> None:
    if not any(isinstance(f, TestHooksFinder) for f in sys.meta_path):
        sys.meta_path.append(TestHooksFinder())
