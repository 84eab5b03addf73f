"""Summary statistics of benchmark samples.

Conventions (docs/bench.md, "Statistics"), chosen once so that numbers are comparable:

* Percentiles use linear interpolation between closest ranks, the method numpy calls
  ``'linear'`` (Hyndman & Fan type 7, also R's default): for sorted samples ``x[0..n-1]`` and
  quantile ``q`` in [0, 1], ``h = (n - 1) * q`` and the result is
  ``x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)])``. The median is ``q = 0.5``.
* ``stdev`` is the *sample* standard deviation (Bessel's correction, ``ddof=1``): the samples
  are a draw from the run-to-run distribution, not the whole population. It is ``None`` for a
  single sample, where it is undefined.

Pure Python on purpose: it runs once per benchmark, and keeping numpy out makes the method
readable and the tests independent of numpy's own implementation.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

#: quantiles reported in every summary, by key
QUANTILES = {"p10": 0.10, "p25": 0.25, "median": 0.50, "p75": 0.75, "p90": 0.90, "p99": 0.99}

#: every key of a summary, in the order reports print them
SUMMARY_KEYS = ("n", "median", "p10", "p25", "p75", "p90", "p99", "min", "max", "mean", "stdev")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Quantile ``q`` (0..1) of already *sorted* values, linear interpolation (numpy 'linear')."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} outside [0, 1]")
    h = (n - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    frac = h - lo
    return sorted_values[lo] + frac * (sorted_values[hi] - sorted_values[lo])


def mean_stdev(values: Sequence[float]) -> tuple[float, float | None]:
    """Arithmetic mean and sample standard deviation (``ddof=1``; ``None`` when n < 2)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean of no samples")
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var)


def summarize(values: Iterable[float]) -> dict:
    """The summary of one benchmark's samples: n, median, p10/p25/p75/p90/p99, min, max,
    mean, stdev (see the module docstring for the conventions)."""
    xs = sorted(float(v) for v in values)
    if not xs:
        raise ValueError("cannot summarize an empty sample")
    if any(math.isnan(v) for v in xs):
        raise ValueError("a sample is NaN")
    mean, stdev = mean_stdev(xs)
    out: dict = {"n": len(xs)}
    for key, q in QUANTILES.items():
        out[key] = percentile(xs, q)
    out["min"] = xs[0]
    out["max"] = xs[-1]
    out["mean"] = mean
    out["stdev"] = stdev
    return {k: out[k] for k in SUMMARY_KEYS}
