"""Build of vyre: Cython extensions over the C core, and the megakernel PTX when nvcc exists.

The PTX is built for a portable virtual target (VYRE_PTX_ARCH, default compute_75: the oldest
that CUDA 13's nvcc still targets, with __nanosleep and independent thread scheduling, both of
which the kernel needs); the driver JIT-compiles it
for the GPU actually present and caches the result. Without nvcc the package still builds and
the CPU backend works; backend="cuda" then says what to install.

Environment knobs (development):
  VYRE_BUILD_ONLY=wire,cpu   build only these extensions (names as in EXTENSIONS below)
  VYRE_NVCC=/path/to/nvcc    compiler for the PTX (default: nvcc on PATH or in CUDA_HOME)
  VYRE_PTX_ARCH=compute_80   PTX virtual architecture
  VYRE_REQUIRE_PTX=1         fail the build when the PTX cannot be built
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = "csrc"
C_FLAGS = ["-O3", "-std=c11", "-Wall", "-Wno-unused-function"]
PTX_SOURCE = os.path.join("cuda", "megakernel.cu")
PTX_PACKAGE_PATH = os.path.join("vyre", "data", "megakernel.ptx")


def _ext(key: str, name: str, sources: list[str], macros=(), libs=()) -> tuple[str, Extension]:
    return key, Extension(
        name,
        sources=sources,
        include_dirs=[CSRC],
        define_macros=list(macros),
        extra_compile_args=C_FLAGS if not any(s.endswith(".pyx") for s in sources) else ["-O3"],
        extra_link_args=["-pthread"],
        libraries=list(libs),
        depends=[os.path.join(CSRC, h) for h in ("vyre_abi.h", "vyre_interp.h", "vyre_call.h",
                                                 "vyre_wait.h", "cpu_call.h")],
    )


EXTENSIONS = dict(
    [
        _ext("wire", "vyre._wire", ["vyre/_wire.pyx"]),
        _ext("cpu", "vyre.backends._cpu",
             ["vyre/backends/_cpu.pyx", "csrc/cpu_worker.c", "csrc/cpu_call.c"]),
        # the same worker with test-only opcodes (a slot that never finishes) for the watchdog tests
        _ext(
            "cpu_testhooks",
            "vyre.backends._cpu_testhooks",
            ["vyre/backends/_cpu_testhooks.pyx", "csrc/cpu_worker.c", "csrc/cpu_call.c"],
            macros=[("VYRE_TEST_HOOKS", "1")],
        ),
        # the call path's host side (docs/call.md)
        _ext("call", "vyre._call", ["vyre/_call.pyx"]),
        _ext("uring", "vyre.ingest._uring", ["vyre/ingest/_uring.pyx", "csrc/uring.c"]),
    ]
)


def _selected() -> list[Extension]:
    only = os.environ.get("VYRE_BUILD_ONLY")
    keys = [k.strip() for k in only.split(",")] if only else list(EXTENSIONS)
    exts = []
    for key in keys:
        ext = EXTENSIONS[key]
        if only is None and not all(os.path.exists(os.path.join(HERE, s)) for s in ext.sources):
            # a module still being written in this tree; a release tree has every source
            print(f"vyre setup: skipping {ext.name} (sources missing)", file=sys.stderr)
            continue
        exts.append(ext)
    from Cython.Build import cythonize

    return cythonize(
        exts,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
        include_path=[CSRC, "vyre"],
    )


def find_nvcc() -> str | None:
    explicit = os.environ.get("VYRE_NVCC")
    if explicit:
        return explicit
    found = shutil.which("nvcc")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
            return os.path.join(home, "bin", "nvcc")
    return None


def build_ptx(out_path: str) -> bool:
    """Compile cuda/megakernel.cu to PTX at out_path. Returns False when nvcc is absent."""
    nvcc = find_nvcc()
    src = os.path.join(HERE, PTX_SOURCE)
    if nvcc is None or not os.path.exists(src):
        why = "nvcc not found" if nvcc is None else f"{PTX_SOURCE} missing"
        if os.environ.get("VYRE_REQUIRE_PTX") == "1":
            raise SystemExit(f"vyre setup: cannot build the megakernel PTX ({why})")
        print(f"vyre setup: no megakernel PTX ({why}); the CUDA backend will be unavailable",
              file=sys.stderr)
        return False
    arch = os.environ.get("VYRE_PTX_ARCH", "compute_75")
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    cmd = [nvcc, "-ptx", f"-arch={arch}", "-std=c++17", "-O3", "-lineinfo",
           "-I", os.path.join(HERE, CSRC), src, "-o", out_path]
    print("vyre setup:", " ".join(cmd), file=sys.stderr)
    subprocess.check_call(cmd)
    return True


# the C headers user ops compile against (docs/ops.md), shipped as vyre/include/*.h
OP_HEADERS = ("vyre_abi.h", "vyre_op.h", "vyre_interp.h")


def copy_op_headers(package_dir: str) -> None:
    """Copy the op headers into <package_dir>/include (a source checkout finds csrc/ itself)."""
    dest = os.path.join(package_dir, "include")
    os.makedirs(dest, exist_ok=True)
    for name in OP_HEADERS:
        shutil.copyfile(os.path.join(HERE, CSRC, name), os.path.join(dest, name))


class BuildExtWithPtx(build_ext):
    """build_ext that also produces vyre/data/megakernel.ptx (in place for editable installs)
    and, for an installed package, vyre/include/ with the op headers."""

    def run(self) -> None:
        super().run()
        target = (os.path.join(HERE, PTX_PACKAGE_PATH) if self.inplace
                  else os.path.join(self.build_lib, PTX_PACKAGE_PATH))
        build_ptx(target)
        if not self.inplace:
            copy_op_headers(os.path.join(self.build_lib, "vyre"))


setup(
    ext_modules=_selected(),
    cmdclass={"build_ext": BuildExtWithPtx},
)
