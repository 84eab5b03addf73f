"""User ops: C sources registered with a megakernel and run as opcodes (docs/ops.md).

- :class:`Op` (registry.py): name + opcode + C source; ``mk.register_op(...)`` returns one.
- :mod:`vyre.ops.cache`: the pipeline cache every build goes through.
- :mod:`vyre.ops.cpu_build`: the CPU build (system C compiler -> shared object).
- :func:`include_dir`: where ``vyre_op.h`` is, for tools that compile ops themselves.
- :class:`FaultReason`, :func:`fault_of`: what a FAULT slot's result words mean.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from vyre.ops.cache import PipelineCache, cache_key, default_cache
from vyre.ops.errors import OpBuildError
from vyre.ops.headers import include_dir
from vyre.ops.registry import FIRST_USER_OPCODE, Op, OpRegistry
from vyre.protocol import RESULT_WORDS, FaultReason

__all__ = [
    "FIRST_USER_OPCODE",
    "RESULT_WORDS",
    "Fault",
    "FaultReason",
    "Op",
    "OpBuildError",
    "OpRegistry",
    "PipelineCache",
    "cache_key",
    "default_cache",
    "fault_of",
    "include_dir",
]


class Fault(NamedTuple):
    """A FAULT slot's result words, named: the reason and its details (docs/ops.md)."""

    reason: FaultReason | int
    d0: int
    d1: int
    d2: int


def fault_of(words: Sequence[int]) -> Fault:
    """The result words of a FAULT slot as a :class:`Fault` (an unknown reason stays an int)."""
    r0, d0, d1, d2 = (int(w) for w in words[:4])
    reason: FaultReason | int = FaultReason(r0) if r0 in FaultReason._value2member_map_ else r0
    return Fault(reason, d0, d1, d2)
