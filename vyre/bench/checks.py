"""Cross-checks of baselines: is a baseline's median what the same call costs on its own?

A ratio is only as true as its baseline. One slow baseline (a lazy import inside the timed
region, an argument list rebuilt per sample, a persistent kernel still resident) turns
"as fast as a launch" into "100x faster". So every baseline carries a :class:`Check`: a
*reference* value for the same call, measured once per run with as little code around it as
possible -- in a fresh Python process for the GPU launch baselines, a bare ``perf_counter``
loop in this process for pure-host baselines -- or a known floor.

Verdict (docs/bench.md, "Cross-checks"): ``factor`` is the baseline's median divided by the
reference, as a cost (> 1: the baseline measured slower than its reference). The decision
uses the baseline's p10-p90 band rather than its median alone, so that a baseline whose own
samples spread widely (a thread wake-up on a loaded host) is not called suspect for a
reference that lands inside that spread: the *distance* is how many times the nearest band
edge is beyond the reference (1 when the reference is inside the band). A distance above
the tolerance (2 by default) makes the baseline ``suspect``, and every ratio against it is
excluded, with the reason. A ``floor`` check is one
sided: only a baseline *faster* than its floor by more than the tolerance is suspect. A
reference that cannot be measured leaves the baseline ``unchecked`` (kept in ratios, said in
the report).
"""
from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


def band_distance(summary: dict[str, Any], reference: float, better: str) -> float:
    """How far the baseline's p10-p90 band lies from the reference, as a cost factor:
    1 when the reference is inside the band, > 1 when the whole band is slower, < 1 when
    it is faster."""
    lo, hi = summary["p10"], summary["p90"]
    if lo <= reference <= hi:
        return 1.0
    if reference < lo:  # every value above the reference
        return cost_factor(lo, reference, better)
    return cost_factor(hi, reference, better)


def verdict(summary: dict[str, Any], reference: float, better: str,
            check: Check) -> dict[str, Any]:
    """The ``check`` record of a result with ``summary`` (schema in :mod:`vyre.bench.schema`)."""
    f = cost_factor(summary["median"], reference, better)
    d = band_distance(summary, reference, better)
    tol = check.tolerance
    if check.kind == "floor":
        bad = d < 1 / tol
    else:
        bad = d > tol or d < 1 / tol
    if not bad:
        return {"status": "ok", "kind": check.kind, "reference": reference, "factor": f,
                "tolerance": tol, "what": check.what, "reason": ""}
    side = "slower" if f > 1 else "faster"
    times = f if f > 1 else 1 / f
    reason = (f"measured {times:.3g}x {side} than its {check.kind} ({check.what}), its whole "
              f"p10-p90 band beyond the {tol:g}x tolerance, so ratios against it are excluded")
    return {"status": "suspect", "kind": check.kind, "reference": reference, "factor": f,
            "tolerance": tol, "what": check.what, "reason": reason}


def unchecked(check: Check, why: str) -> dict[str, Any]:
    """The ``check`` record when the reference could not be measured."""
    return {"status": "unchecked", "kind": check.kind, "reference": None, "factor": None,
            "tolerance": check.tolerance, "what": check.what,
            "reason": f"reference not measured: {why}"}


def loop_reference(fn: Callable[[], Any], per_call: int = 1, samples: int = 31,
                   unit: str = "ns/op", budget_s: float = 0.5,
                   setup: Callable[[], Any] | None = None) -> Callable[[], float]:
    """A reference measured here with a bare loop: ``fn()`` timed ``samples`` times (fewer
    when ``budget_s`` runs out, at least 3), median, divided by ``per_call`` ops (``ns/op``)
    or turned into a rate (``ops/s`` / ``B/s``, ``per_call`` ops or bytes). ``setup()`` runs
    untimed before each call."""
    def measure() -> float:
        now = time.perf_counter_ns
        if setup is not None:
            setup()
        fn()  # first call: caches, lazily built state
        times: list[int] = []
        t_end = time.perf_counter() + budget_s
        was_enabled = gc.isenabled()
        gc.disable()  # as the harness samples
        try:
            while len(times) < samples and (len(times) < 3 or time.perf_counter() < t_end):
                if setup is not None:
                    setup()
                t0 = now()
                fn()
                times.append(now() - t0)
        finally:
            if was_enabled:
                gc.enable()
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
