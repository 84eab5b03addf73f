"""Cross-checks of baselines: is a baseline's median what the same call costs on its own?

A ratio is only as true as its baseline. One slow baseline (a lazy import inside the timed
region, an argument list rebuilt per sample, a persistent kernel still resident) turns
"as fast as a launch" into "100x faster". So every baseline carries a :class:`Check`: a
*reference* value for the same call, measured once per run with as little code around it as
possible -- in a fresh Python process for the GPU launch baselines, a bare ``perf_counter``
loop in this process for pure-host baselines -- or a known floor.

Verdict (docs/bench.md, "Cross-checks"): the baseline's median divided by the reference,
expressed as a cost factor (> 1: the baseline measured slower than its reference). Within
``[1/tolerance, tolerance]`` (tolerance 2 by default) the baseline is ``ok``; outside it is
``suspect`` and every ratio against it is excluded, with the reason. A ``floor`` check is one
sided: only a baseline *faster* than its floor by more than the tolerance is suspect. A
reference that cannot be measured leaves the baseline ``unchecked`` (kept in ratios, said in
the report).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

#: a baseline whose median differs from its reference by more than this factor is suspect
DEFAULT_TOLERANCE = 2.0
#: seconds a standalone reference process may take (it imports CuPy/PyCUDA and compiles)
STANDALONE_TIMEOUT_S = 180.0


@dataclass
class Check:
    """How to cross-check one baseline.

    ``reference()`` returns the reference value *in the baseline's unit* (per op for
    ``ns/op``, a rate for ``ops/s`` / ``B/s``). ``what`` says in words what it measured.
    ``kind`` is ``"reference"`` (two-sided) or ``"floor"`` (only faster-than-floor is
    suspect)."""

    what: str
    reference: Callable[[], float]
    tolerance: float = DEFAULT_TOLERANCE
    kind: str = "reference"
    #: results sharing a key share one reference measurement per run (default: result id)
    key: str | None = field(default=None)


def cost_factor(median: float, reference: float, better: str) -> float:
    """How many times the baseline's cost exceeds the reference's (> 1: slower)."""
    if reference <= 0 or median <= 0:
        raise ValueError(f"cannot relate median {median!r} to reference {reference!r}")
    return median / reference if better == "lower" else reference / median


def verdict(median: float, reference: float, better: str, check: Check) -> dict[str, Any]:
    """The ``check`` record of a result (schema in :mod:`vyre.bench.schema`)."""
    f = cost_factor(median, reference, better)
    tol = check.tolerance
    if check.kind == "floor":
        bad = f < 1 / tol
    else:
        bad = f > tol or f < 1 / tol
    if not bad:
        return {"status": "ok", "kind": check.kind, "reference": reference, "factor": f,
                "tolerance": tol, "what": check.what, "reason": ""}
    side = "slower" if f > 1 else "faster"
    times = f if f > 1 else 1 / f
    reason = (f"measured {times:.3g}x {side} than its {check.kind} ({check.what}); "
              f"more than the {tol:g}x tolerance, so ratios against it are excluded")
    return {"status": "suspect", "kind": check.kind, "reference": reference, "factor": f,
            "tolerance": tol, "what": check.what, "reason": reason}


def unchecked(check: Check, why: str) -> dict[str, Any]:
    """The ``check`` record when the reference could not be measured."""
    return {"status": "unchecked", "kind": check.kind, "reference": None, "factor": None,
            "tolerance": check.tolerance, "what": check.what,
            "reason": f"reference not measured: {why}"}


def loop_reference(fn: Callable[[], Any], per_call: int = 1, samples: int = 31,
                   unit: str = "ns/op", budget_s: float = 0.5) -> Callable[[], float]:
    """A reference measured here with a bare loop: ``fn()`` timed ``samples`` times (fewer
    when ``budget_s`` runs out, at least 3), median, divided by ``per_call`` ops (``ns/op``)
    or turned into a rate (``ops/s`` / ``B/s``, ``per_call`` ops or bytes)."""
    def measure() -> float:
        now = time.perf_counter_ns
        fn()  # first call: caches, lazily built state
        times = []
        t_end = time.perf_counter() + budget_s
        while len(times) < samples and (len(times) < 3 or time.perf_counter() < t_end):
            t0 = now()
            fn()
            times.append(now() - t0)
        times.sort()
        med = times[len(times) // 2]
        return med / per_call if unit in ("ns/op", "ns") else per_call / (med * 1e-9)
    return measure


def standalone_reference(module: str, name: str, args: dict[str, Any] | None = None,
                         timeout_s: float = STANDALONE_TIMEOUT_S) -> Callable[[], float]:
    """A reference measured in a fresh Python process: ``python -m <module> <name> <json>``
    must print one JSON object with ``"value"`` (in the baseline's unit) as its last line.
    Nothing of this process's state (contexts, resident kernels, imports) is shared."""
    def measure() -> float:
        cmd = [sys.executable, "-m", module, name, json.dumps(args or {})]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        lines = p.stdout.strip().splitlines()
        if p.returncode != 0 or not lines:
            tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"{module} {name} exited {p.returncode}: {tail[0]}")
        return float(json.loads(lines[-1])["value"])
    return measure
