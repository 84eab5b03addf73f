"""The fused GPU build: the megakernel compiled again with the registered ops' handlers.

One module holds the built-in interpreter and every user op, so dispatching a user opcode is a
branch in the kernel, not a launch. The compiler is nvcc (docs/decisions.md, "User ops on the
GPU: one fused module, built by nvcc"): the same compiler and flags as the shipped fatbin, run
as a subprocess for the exact architecture of the GPU present (``-cubin -arch=sm_XY``), so the
module the driver loads is machine code and no JIT runs. Builds go through the pipeline cache
(:mod:`vyre.ops.cache`): a warm start loads the cubin from disk.

User handlers are compiled out of line (``__noinline__``) under the kernel's
``__launch_bounds__``, so they cannot raise the registers per thread of the built-in path:
:func:`register_count` reads the figure back from a build, and a test compares it with the
shipped kernel's.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from typing import Any

from vyre.errors import BackendError

__all__ = ["NVCC_FLAGS", "BuildResult", "build_fused", "dispatch_source", "fatbin_entries",
           "find_nvcc", "fused_source", "kernel_source_dir", "nvcc_version", "ptxas_report"]

#: the flags setup.py builds the shipped fatbin with (kept equal: same code generation)
NVCC_FLAGS = ("-std=c++17", "-O3", "-lineinfo")
#: and for user ops: no fused multiply-add contraction, as the CPU build (-ffp-contract=off),
#: so float results are bit-identical across backends
FUSED_FLAGS = (*NVCC_FLAGS, "--fmad=false")
_NVCC_FIX = ("install the CUDA toolkit's compiler (nvcc, e.g. the cuda-nvcc package of the "
             "CUDA toolkit matching the driver) and put it on PATH, or point VYRE_NVCC (or "
             "CUDA_HOME) at it; without it only the built-in opcodes run on the GPU (user ops "
             "still run on backend=\"cpu\")")
_COMPILE_TIMEOUT = 600.0
#: every file the megakernel's translation unit includes (cuda/*.cu*, csrc/*.h): the fused build
#: compiles them and its cache key covers them
_KERNEL_FILES = ("megakernel.cu", "assist.cuh", "user_ops.cuh", "call_server.cuh", "vyre_abi.h",
                 "vyre_interp.h", "vyre_op.h", "vyre_call.h")
#: ``ptxas -v`` output of the latest compile in this process (registers, spills: ptxas_report)
last_ptxas = ""


def kernel_source_dir() -> str:
    """Directory holding megakernel.cu and the csrc headers: in a source checkout the
    repository's own files (cuda/ and csrc/ next to vyre/, never a stale copy), else the copy
    setup.py ships in vyre/data/kernel/."""
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkout = os.path.dirname(pkg)
    if os.path.exists(os.path.join(checkout, "cuda", "megakernel.cu")):
        return checkout
    return os.path.join(pkg, "data", "kernel")


def _kernel_paths() -> dict[str, str]:
    root = kernel_source_dir()
    if os.path.exists(os.path.join(root, "megakernel.cu")):
        return {name: os.path.join(root, name) for name in _KERNEL_FILES}
    return {name: os.path.join(root, "cuda" if name.endswith((".cu", ".cuh")) else "csrc", name)
            for name in _KERNEL_FILES}


def find_nvcc() -> str:
    """Path of nvcc (VYRE_NVCC, PATH, CUDA_HOME, CUDA_PATH, /usr/local/cuda).

    Raises :class:`BackendError` with the fix when there is none."""
    explicit = os.environ.get("VYRE_NVCC")
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise BackendError(f"VYRE_NVCC={explicit!r} is not an executable file",
                           "point VYRE_NVCC at the nvcc binary, or unset it to search PATH")
    found = shutil.which("nvcc")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.path.isfile(os.path.join(home, "bin", "nvcc")):
            return os.path.join(home, "bin", "nvcc")
    raise BackendError("user ops on the GPU need the CUDA compiler (nvcc), and none was found",
                       _NVCC_FIX)


@functools.lru_cache(maxsize=8)
def nvcc_version(nvcc: str) -> str:
    """``nvcc --version``'s last line (the build id): part of every cache key."""
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise BackendError(f"{nvcc} --version failed ({err})", _NVCC_FIX) from err
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else out.strip()


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def dispatch_source(ops: Sequence[Any]) -> str:
    """The generated ``vyre_user_dispatch``: a switch over the ops' opcodes, each running its
    op over the lanes ``op`` holds (vyre_op.h, vyre_op_run_lanes); 0 for any other opcode."""
    lines = ["static __device__ __noinline__ int "
             "vyre_user_dispatch(uint32_t opcode, vyre_op_t *op) {",
             "    switch (opcode) {"]
    for op in ops:
        lines.append(f"    case {int(op.opcode):#x}u: "
                     f"vyre_op_run_lanes(op, vyre_op_{op.name}); return 1;")
    lines += ["    default: return 0;", "    }", "}"]
    return "\n".join(lines)


def fused_source(ops: Sequence[Any]) -> str:
    """The translation unit of a fused build: vyre_op.h with the ops out of line, each op's
    source, the generated dispatch, then the megakernel, which sees VYRE_USER_OPS and sends
    user opcodes to the dispatch on all 32 lanes of the warp (cuda/megakernel.cu, user_ops)."""
    parts = ["// generated by vyre.ops.cuda_build: user ops fused into the megakernel",
             "#define VYRE_USER_OPS 1",
             # out of line: an op's registers never count in the built-in path
             "#define VYRE_OP_FN static __device__ __noinline__",
             '#include "vyre_op.h"']
    for op in ops:
        if not _IDENT.match(op.name):
            raise BackendError(f"op name {op.name!r} is not a C identifier",
                               "name ops with letters, digits and underscores")
        parts.append(f'#line 1 "op:{op.name}"')
        parts.append(op.source)
    parts.append('#line 1 "vyre_user_dispatch"')
    parts.append(dispatch_source(ops))
    parts.append("#define VYRE_USER_DISPATCH(c, opcode, op) "
                 "((void)(c), vyre_user_dispatch((opcode), (op)))")
    parts.append('#include "megakernel.cu"')
    return "\n".join(parts) + "\n"


class BuildResult:
    """A fused module: ``image`` (cubin bytes), ``arch``, ``key``, ``source`` (where it came
    from: ``memory`` / ``disk`` cache or ``build``), ``seconds`` (compile or load time)."""

    __slots__ = ("arch", "image", "key", "seconds", "source")

    def __init__(self, image: bytes, arch: str, key: str, source: str, seconds: float) -> None:
        self.image, self.arch, self.key = image, arch, key
        self.source, self.seconds = source, seconds


def key_parts(source: str, arch: str, nvcc: str) -> dict[str, Any]:
    """Everything a fused module depends on, for the pipeline cache's key: the generated
    source (the ops' sources and opcodes), the kernel's files, nvcc's build id and flags, the
    architecture and vyre's version."""
    from vyre import __version__ as vyre_version

    files = {}
    for name, path in sorted(_kernel_paths().items()):
        with open(path, "rb") as f:
            files[name] = f.read()
    return {"kind": "cuda-fused-megakernel", "vyre": vyre_version, "arch": arch,
            "nvcc": nvcc_version(nvcc), "flags": list(FUSED_FLAGS), "source": source,
            "kernel": files}


def _compile(source: str, arch: str, nvcc: str, tmp: str) -> bytes:
    paths = _kernel_paths()
    missing = [p for p in paths.values() if not os.path.exists(p)]
    if missing:
        raise BackendError(f"the megakernel's sources are not installed ({', '.join(missing)})",
                           "reinstall vyre (pip install vyre) so vyre/data/kernel/ is present")
    include_dirs = sorted({os.path.dirname(p) for p in paths.values()})
    src = os.path.join(tmp, "fused.cu")
    out = os.path.join(tmp, "fused.cubin")
    with open(src, "w") as f:
        f.write(source)
    cmd = [nvcc, "-cubin", f"-arch={arch}", *FUSED_FLAGS, "-Xptxas", "-v",
           *[f"-I{d}" for d in include_dirs], src, "-o", out]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True,
                              timeout=_COMPILE_TIMEOUT)
    except subprocess.TimeoutExpired as err:
        raise BackendError(f"nvcc did not finish the fused megakernel in {_COMPILE_TIMEOUT:.0f} s",
                           "check the machine's load; the build is cached once it "
                           "succeeds") from err
    except OSError as err:
        raise BackendError(f"could not run {nvcc} ({err})", _NVCC_FIX) from err
    if proc.returncode != 0:
        log = (proc.stderr or proc.stdout).strip()
        raise BackendError(f"nvcc could not compile the user ops for {arch}:\n{log[-4000:]}",
                           "fix the op's source at the position named above (op:<name>:<line>, "
                           "lines counted from 1 in each op's source; docs/ops.md lists the C API)")
    global last_ptxas
    last_ptxas = proc.stdout + proc.stderr
    with open(out, "rb") as f:
        return f.read()


def build_fused(ops: Iterable[Any], arch: str, *, cache: Any = None) -> BuildResult:
    """The fused megakernel for ``ops`` on ``arch`` (e.g. ``"sm_90"``), from the pipeline
    cache (memory, then disk) when it holds it, else compiled with nvcc and stored there."""
    from vyre.ops.cache import default_cache

    ops = sorted(ops, key=lambda op: int(op.opcode))
    source = fused_source(ops)
    nvcc = find_nvcc()
    store = cache if cache is not None else default_cache()
    parts = key_parts(source, arch, nvcc)
    start = time.perf_counter()
    image = store.get_or_build(parts, lambda tmp: _compile(source, arch, nvcc, tmp))
    seconds = time.perf_counter() - start
    last = getattr(store, "last", {}) or {}
    return BuildResult(image, arch, store.key(parts), str(last.get("source", "build")), seconds)


def ptxas_report(text: str) -> dict[tuple[str, str], dict[str, int]]:
    """Parse ``ptxas -v`` output: {(arch, function): {registers, stack, spill_stores,
    spill_loads}} (``registers`` only for entry functions, where ptxas reports it)."""
    report: dict[tuple[str, str], dict[str, int]] = {}
    arch, entry, props = "", "", ""
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '([^']+)' for '(sm_\d+)'", line)
        if m:
            entry, arch = m.group(1), m.group(2)
            continue
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            props = m.group(1)
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, "
                      r"(\d+) bytes spill loads", line)
        if m and props:
            report.setdefault((arch, props), {}).update(
                stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
            props = ""
            continue
        m = re.search(r"Used (\d+) registers", line)
        if m and entry:
            report.setdefault((arch, entry), {})["registers"] = int(m.group(1))
    return report


def fatbin_entries(image: bytes) -> list[tuple[str, str]]:
    """The images in a fatbin: [("elf" | "ptx", "sm_XY")], read from its container headers
    (the layout ``fatbinary`` writes: a 16-byte header, then per entry a header with its kind
    at byte 0, header size at 4, payload size at 8 and SM version at 28)."""
    import struct

    magic, _version, header, size = struct.unpack_from("<IHHQ", image, 0)
    if magic != 0xBA55ED50:
        raise BackendError("not a fatbin (bad magic)", "pass the megakernel.fatbin setup.py built")
    out = []
    pos, end = header, header + size
    while pos + 32 <= min(end, len(image)):
        kind, _u, entry_header, payload = struct.unpack_from("<HHIQ", image, pos)
        sm = struct.unpack_from("<I", image, pos + 28)[0]
        out.append(({1: "ptx", 2: "elf"}.get(kind, str(kind)), f"sm_{sm}"))
        pos += entry_header + payload
    return out
