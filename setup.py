"""Build of vyre: Cython extensions over the C core, and the megakernel when nvcc exists.

The megakernel is shipped as a fatbin: SASS for the GPUs vyre runs on (VYRE_CUDA_ARCHS,
default sm_80 and sm_90), so the driver loads machine code at once, plus PTX for a portable
virtual target (VYRE_PTX_ARCH, default compute_75: the oldest that CUDA 13's nvcc still
targets, with __nanosleep and independent thread scheduling, both of which the kernel needs)
that the driver JIT-compiles on any other GPU. Without nvcc the package still builds and the
CPU backend works; backend="cuda" then says what to install. The kernel's sources are copied
next to the fatbin (vyre/data/kernel/) for the fused build with user ops (vyre/ops/cuda_build.py).

Environment knobs (development):
  VYRE_BUILD_ONLY=wire,cpu   build only these extensions (names as in EXTENSIONS below)
  VYRE_TEST_HOOKS=1          also build the test-hooks CPU worker (never in a default build;
                             the tests build it on demand, tests/_testhooks.py)
  VYRE_NO_PTX=1              skip the megakernel build
  VYRE_NVCC=/path/to/nvcc    compiler for the kernel (default: nvcc on PATH or in CUDA_HOME)
  VYRE_CUDA_ARCHS=80,90      SASS targets of the fatbin (empty: PTX only)
  VYRE_PTX_ARCH=compute_80   PTX virtual architecture
  VYRE_REQUIRE_PTX=1         fail the build when the kernel cannot be built
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
HEADERS = ["vyre_abi.h", "vyre_interp.h", "vyre_call.h", "vyre_wait.h", "cpu_worker.h",
           "cpu_call.h", "uring.h", "uring_sys.h"]
# one Cython declaration file per C header, cimported by every extension
DECLARATIONS = [os.path.join("vyre", "includes", f)
                for f in ("abi.pxd", "interp.pxd", "cpu_worker.pxd", "uring.pxd")]
KERNEL_PACKAGE_PATH = os.path.join("vyre", "data", "megakernel.fatbin")
# what the fused build (vyre/ops/cuda_build.py) compiles again with the user's ops
KERNEL_SOURCES = [PTX_SOURCE, os.path.join("cuda", "assist.cuh"),
                  os.path.join("cuda", "user_ops.cuh"), os.path.join("cuda", "call_server.cuh"),
                  os.path.join(CSRC, "vyre_abi.h"), os.path.join(CSRC, "vyre_interp.h"),
                  os.path.join(CSRC, "vyre_op.h"), os.path.join(CSRC, "vyre_call.h")]
KERNEL_SOURCES_PACKAGE_DIR = os.path.join("vyre", "data", "kernel")
# shared by setup.py and the fused build: the same code generation for both
NVCC_FLAGS = ["-std=c++17", "-O3", "-lineinfo"]


def _ext(key: str, name: str, sources: list[str], macros=(), libs=()) -> tuple[str, Extension]:
    return key, Extension(
        name,
        sources=sources,
        include_dirs=[CSRC],
        define_macros=list(macros),
        extra_compile_args=C_FLAGS if not any(s.endswith(".pyx") for s in sources) else ["-O3"],
        extra_link_args=["-pthread"],
        libraries=list(libs),
        depends=[os.path.join(CSRC, h) for h in HEADERS] + DECLARATIONS,
    )


EXTENSIONS = dict(
    [
        _ext("wire", "vyre._wire", ["vyre/_wire.pyx"]),
        _ext("cpu", "vyre.backends._cpu",
             ["vyre/backends/_cpu.pyx", "csrc/cpu_worker.c", "csrc/cpu_call.c"]),
        # the same worker with test-only opcodes (a slot that never finishes) for the watchdog
        # tests: not part of a default build or wheel (TEST_ONLY)
        _ext(
            "cpu_testhooks",
            "vyre.backends._cpu_testhooks",
            ["vyre/backends/_cpu_testhooks.pyx", "csrc/cpu_worker.c", "csrc/cpu_call.c"],
            macros=[("VYRE_TEST_HOOKS", "1")],
        ),
        # the call path's host side (docs/call.md)
        _ext("call", "vyre._call", ["vyre/_call.pyx"]),
        _ext("uring", "vyre.ingest._uring",
             ["vyre/ingest/_uring.pyx", "csrc/uring.c", "csrc/uring_reads.c"]),
    ]
)


TEST_ONLY = {"cpu_testhooks"}


def _selected() -> list[Extension]:
    only = os.environ.get("VYRE_BUILD_ONLY")
    if only:
        keys = [k.strip() for k in only.split(",")]
    else:
        with_hooks = os.environ.get("VYRE_TEST_HOOKS") == "1"
        keys = [k for k in EXTENSIONS if with_hooks or k not in TEST_ONLY]
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
        include_path=[CSRC, HERE],
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


def kernel_gencodes() -> list[str]:
    """-gencode flags: SASS for VYRE_CUDA_ARCHS plus PTX for VYRE_PTX_ARCH."""
    archs = [a.strip() for a in os.environ.get("VYRE_CUDA_ARCHS", "80,90").split(",") if a.strip()]
    ptx = os.environ.get("VYRE_PTX_ARCH", "compute_75")
    flags = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    return flags + [f"-gencode=arch={ptx},code={ptx}"]


def build_kernel(out_path: str) -> bool:
    """Compile cuda/megakernel.cu to a fatbin at out_path. Returns False when nvcc is absent."""
    nvcc = find_nvcc()
    src = os.path.join(HERE, PTX_SOURCE)
    if nvcc is None or not os.path.exists(src):
        why = "nvcc not found" if nvcc is None else f"{PTX_SOURCE} missing"
        if os.environ.get("VYRE_REQUIRE_PTX") == "1":
            raise SystemExit(f"vyre setup: cannot build the megakernel ({why})")
        print(f"vyre setup: no megakernel ({why}); the CUDA backend will be unavailable",
              file=sys.stderr)
        return False
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    # --threads 0: the SASS targets are assembled in parallel (ptxas dominates the build)
    # -Xptxas -v: registers, stack and spills per function and target, kept next to the
    # fatbin (megakernel.ptxas.txt) for CI and docs/decisions.md
    cmd = [nvcc, "-fatbin", *NVCC_FLAGS, "--threads", "0", "-Xptxas", "-v", *kernel_gencodes(),
           "-I", os.path.join(HERE, CSRC), src, "-o", out_path]
    print("vyre setup:", " ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    with open(os.path.splitext(out_path)[0] + ".ptxas.txt", "w") as f:
        f.write(proc.stdout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-8000:])
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return True


# the C headers user ops compile against (docs/ops.md), shipped as vyre/include/*.h
OP_HEADERS = ("vyre_abi.h", "vyre_op.h", "vyre_interp.h")


def copy_op_headers(package_dir: str) -> None:
    """Copy the op headers into <package_dir>/include (a source checkout finds csrc/ itself)."""
    dest = os.path.join(package_dir, "include")
    os.makedirs(dest, exist_ok=True)
    for name in OP_HEADERS:
        shutil.copyfile(os.path.join(HERE, CSRC, name), os.path.join(dest, name))


def copy_kernel_sources(out_dir: str) -> None:
    """The kernel's sources as package data, for the fused build with user ops."""
    os.makedirs(out_dir, exist_ok=True)
    for rel in KERNEL_SOURCES:
        path = os.path.join(HERE, rel)
        if os.path.exists(path):
            shutil.copyfile(path, os.path.join(out_dir, os.path.basename(rel)))


class BuildExtWithPtx(build_ext):
    """build_ext that also produces vyre/data/megakernel.fatbin and vyre/data/kernel/ (in
    place for editable installs) and, for an installed package, vyre/include/ with the op
    headers."""

    def run(self) -> None:
        super().run()
        if os.environ.get("VYRE_NO_PTX") == "1":
            return
        root = HERE if self.inplace else self.build_lib
        copy_kernel_sources(os.path.join(root, KERNEL_SOURCES_PACKAGE_DIR))
        build_kernel(os.path.join(root, KERNEL_PACKAGE_PATH))
        if not self.inplace:
            copy_op_headers(os.path.join(self.build_lib, "vyre"))


setup(
    ext_modules=_selected(),
    cmdclass={"build_ext": BuildExtWithPtx},
)
