"""Where the C headers of the op API are, and what they hash to (part of every build key)."""
from __future__ import annotations

import functools
import hashlib
import os

from vyre.errors import BackendError

__all__ = ["HEADERS", "header_digests", "include_dir", "op_abi_version"]

#: the headers a user-op build compiles against (vyre_interp.h: the fused GPU build)
HEADERS = ("vyre_abi.h", "vyre_op.h", "vyre_interp.h")

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.lru_cache(maxsize=1)
def include_dir() -> str:
    """The directory holding ``vyre_op.h`` and the headers it needs: the package's
    ``vyre/include`` (an installed wheel), else the source tree's ``csrc`` (a checkout)."""
    for candidate in (os.path.join(_PACKAGE, "include"),
                      os.path.join(os.path.dirname(_PACKAGE), "csrc")):
        if all(os.path.exists(os.path.join(candidate, h)) for h in HEADERS):
            return candidate
    raise BackendError("the vyre C headers (vyre_op.h) are not installed",
                       "reinstall vyre (`pip install -e .` in a checkout), which ships them "
                       "in vyre/include")


def header_digests() -> dict[str, str]:
    """{header name: sha256 of its bytes}: a header edit is a new build key."""
    out = {}
    for name in HEADERS:
        with open(os.path.join(include_dir(), name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def op_abi_version() -> int:
    """VYRE_OP_ABI_VERSION of vyre_op.h, as this vyre's extension was compiled with it."""
    from vyre.backends import _cpu

    return int(_cpu.OP_ABI["OP_ABI_VERSION"])
