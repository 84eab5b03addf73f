"""The benchmark suites, one module each, in the order a full run executes them.

A suite module defines ``NAME``, ``DESCRIPTION`` and ``run(ctx)``. ``run`` records results
through the :class:`vyre.bench.runner.Context`; it raises :class:`Unavailable` when the whole
suite cannot run here (the run records it as skipped with the reason), and records per-method
skips with ``ctx.skip(name, reason)`` when only a baseline is missing.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from vyre.bench.suites._common import Unavailable  # noqa: F401  (part of the suite API)

#: suite names in execution order
SUITES = ("publish", "latency", "dispatch", "throughput", "cpu", "ingest", "userops", "op")
#: suites that run only when asked for (``op`` measures the op ``--op`` names)
ON_REQUEST = ("op",)
#: what a run without ``--suite`` runs
DEFAULT = tuple(s for s in SUITES if s not in ON_REQUEST)


def phrases(names) -> dict[str, str]:
    """Methods in words, by result id, from the suites' ``PHRASES`` (where they have one)."""
    out: dict[str, str] = {}
    for name in names:
        out.update({f"{name}/{k}": v for k, v in getattr(load(name), "PHRASES", {}).items()})
    return out


def load(name: str) -> ModuleType:
    """The suite module called ``name``."""
    if name not in SUITES:
        raise KeyError(f"unknown suite {name!r} (known: {', '.join(SUITES)})")
    return importlib.import_module(f"vyre.bench.suites.{name}")
