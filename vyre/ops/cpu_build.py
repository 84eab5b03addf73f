"""The CPU build of user ops: one C file, the system C compiler, a shared object.

The generated file is ``vyre_op.h``, each op's source (behind a ``#line`` that names the op,
so compiler messages point into it), and ``vyre_user_dispatch(opcode, op)``, a switch that
runs the op of an opcode over its lanes (``vyre_op_run_lanes``). It is compiled with
``$CC`` (default ``cc``) ``-O2 -shared -fPIC -ffp-contract=off`` through the pipeline cache
(vyre/ops/cache.py) and loaded with ctypes; the CPU workers call the dispatch through a
function pointer (``CpuWorkers.set_user_dispatch``).
"""
from __future__ import annotations

import ctypes
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vyre.ops.cache import PipelineCache, default_cache
from vyre.ops.errors import OpBuildError
from vyre.ops.headers import header_digests, include_dir
from vyre.ops.registry import Op

__all__ = [
    "CFLAGS",
    "CpuOps",
    "build_library",
    "compiler_command",
    "generate_source",
    "load_library",
]

#: flags of the shared object; -ffp-contract=off keeps a*b+c two roundings as on the GPU build
CFLAGS = ("-O2", "-shared", "-fPIC", "-std=gnu11", "-ffp-contract=off", "-fvisibility=hidden",
          "-Wall", "-Wno-unused-function", "-Werror=implicit-function-declaration")
_LIBS = ("-lm",)
_COMPILE_TIMEOUT_S = 300.0
_version_cache: dict[str, str] = {}


def generate_source(ops: Sequence[Op]) -> str:
    """The C file of ``ops`` (each with an opcode)."""
    parts = ['#include "vyre_op.h"', "#include <stdint.h>", "#include <stddef.h>", ""]
    for op in ops:
        parts.append(f'#line 1 "op:{op.name}"')
        parts.append(op.source.rstrip("\n"))
        parts.append("")
    parts.append('#line 1 "vyre_user_dispatch"')
    parts.append("__attribute__((visibility(\"default\"))) unsigned vyre_user_abi(void) "
                 "{ return VYRE_OP_ABI_VERSION; }")
    parts.append("__attribute__((visibility(\"default\"))) int vyre_user_dispatch(uint32_t opcode, "
                 "vyre_op_t *op) {")
    parts.append("    switch (opcode) {")
    for op in ops:
        parts.append(f"    case {op.opcode:#x}u: "
                     f"vyre_op_run_lanes(op, vyre_op_{op.name}); return 1;")
    parts.append("    default: return 0;")
    parts.append("    }")
    parts.append("}")
    return "\n".join(parts) + "\n"


def compiler_command() -> list[str]:
    """The C compiler: ``$CC`` split on spaces, else ``cc``."""
    raw = os.environ.get("CC", "").strip()
    return raw.split() if raw else ["cc"]


def _resolve(cc: list[str]) -> list[str]:
    exe = shutil.which(cc[0])
    if exe is None:
        raise OpBuildError(f"no C compiler: {cc[0]!r} was not found on PATH",
                           "install one (e.g. `apt install gcc`) or set CC to a C compiler; "
                           "the CPU backend compiles user ops with it")
    return [exe, *cc[1:]]


def _compiler_version(cc: list[str]) -> str:
    """The first line of ``cc --version`` (part of the cache key), once per process."""
    key = " ".join(cc)
    if key not in _version_cache:
        try:
            out = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=30,
                                 check=False)
        except (OSError, subprocess.SubprocessError) as err:
            raise OpBuildError(f"cannot run the C compiler {cc[0]!r} ({err})",
                               "install a working C compiler or set CC") from err
        lines = (out.stdout or out.stderr).strip().splitlines()
        _version_cache[key] = lines[0] if lines else f"exit status {out.returncode}"
    return _version_cache[key]


def key_parts(ops: Sequence[Op]) -> dict[str, Any]:
    """What the shared object of ``ops`` depends on (the pipeline cache key)."""
    import vyre

    cc = _resolve(compiler_command())
    return {
        "kind": "cpu-ops",
        "source": generate_source(ops),
        "headers": header_digests(),
        "compiler": cc,
        "compiler_version": _compiler_version(cc),
        "flags": list(CFLAGS) + list(_LIBS),
        "target": f"{sys.platform}-{platform.machine()}",
        "vyre": vyre.__version__,
    }


def _compile(source: str, workdir: str) -> bytes:
    cc = _resolve(compiler_command())
    src = os.path.join(workdir, "vyre_user_ops.c")
    out = os.path.join(workdir, "vyre_user_ops.so")
    with open(src, "w") as f:
        f.write(source)
    cmd = [*cc, *CFLAGS, "-I", include_dir(), "-o", out, src, *_LIBS]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_COMPILE_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        raise OpBuildError(f"the C compiler did not finish within {_COMPILE_TIMEOUT_S:.0f} s",
                           "simplify the op sources, or check the compiler") from None
    except OSError as err:
        raise OpBuildError(f"cannot run the C compiler {cc[0]!r} ({err})",
                           "install a working C compiler or set CC") from err
    if proc.returncode != 0:
        log = (proc.stderr or proc.stdout).strip()
        if len(log) > 6000:
            log = log[:6000] + "\n[... compiler output cut ...]"
        raise OpBuildError("the user ops did not compile (positions are op:<name>:<line>):"
                           f"\n{log}\n",
                           "fix the op's C source (docs/ops.md lists the C API)", log=log)
    with open(out, "rb") as f:
        return f.read()


def build_library(ops: Sequence[Op], cache: PipelineCache | None = None) -> bytes:
    """The shared object of ``ops`` (bytes), from the cache or compiled."""
    if not ops:
        raise OpBuildError("no ops to build", "register at least one op")
    cache = cache or default_cache()
    source = generate_source(ops)
    return cache.get_or_build(key_parts(ops), lambda workdir: _compile(source, workdir))


@dataclass
class CpuOps:
    """A loaded shared object of user ops: keep it alive while any worker may call into it."""

    library: ctypes.CDLL
    dispatch_address: int
    path: str
    opcodes: frozenset[int]


def load_library(blob: bytes, opcodes: frozenset[int]) -> CpuOps:
    """Load a shared object built by :func:`build_library` (written to a private temporary
    file: dlopen needs a path) and check its ABI."""
    from vyre.ops.headers import op_abi_version

    fd, path = tempfile.mkstemp(prefix="vyre-ops-", suffix=".so")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        lib = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
    except OSError as err:
        raise OpBuildError(f"cannot load the compiled user ops ({err})",
                           "clear the pipeline cache (VYRE_CACHE_DIR) and retry") from err
    finally:
        try:
            os.unlink(path)  # the mapping stays; nothing is left on disk
        except OSError:
            pass
    abi = lib.vyre_user_abi
    abi.restype = ctypes.c_uint
    if abi() != op_abi_version():
        raise OpBuildError(f"the compiled user ops have op ABI {abi()}, "
                           f"this vyre {op_abi_version()}",
                           "clear the pipeline cache (VYRE_CACHE_DIR) and retry")
    address = ctypes.cast(lib.vyre_user_dispatch, ctypes.c_void_p).value or 0
    return CpuOps(lib, int(address), path, opcodes)


def build_and_load(ops: Sequence[Op], cache: PipelineCache | None = None) -> CpuOps:
    """:func:`build_library` then :func:`load_library`."""
    blob = build_library(ops, cache)
    return load_library(blob, frozenset(op.opcode for op in ops if op.opcode is not None))
