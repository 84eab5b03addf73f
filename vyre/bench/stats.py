"""Summary statistics of benchmark samples.

Conventions (docs/bench.md, "Statistics"), chosen once so that numbers are comparable:

* Percentiles use linear interpolation between closest ranks, the method numpy calls
  ``'linear'`` (Hyndman & Fan type 7, also R's default): for sorted samples ``x[0..n-1]`` and
  quantile ``q`` in [0, 1], ``h = (n - 1) * q`` and the result is
  ``x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)])``. The median is ``q = 0.5``.
* ``stdev`` is the *sample* standard deviation (Bessel's correction, ``ddof=1``): the samples
  are a draw from the run-to-run distribution, not the whole population. It is ``None`` for a
  single sample, where it is undefined.

The summary is pure Python on purpose: it runs once per benchmark, and keeping numpy out
makes the method readable and the tests independent of numpy's own implementation. The
bootstrap intervals (:func:`median_ci`, :func:`ratio_ci`) draw hundreds of resamples and use
numpy for that; they are percentile-bootstrap intervals at :data:`CI_LEVEL`, with a fixed seed
so that one result file always renders the same intervals.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

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


#: confidence level of every bootstrap interval the harness reports
CI_LEVEL = 0.95
#: resamples per bootstrap interval; fewer for large samples (each resample costs n)
BOOT_RESAMPLES = 1000
_BOOT_CELLS = 4_000_000  # numbers drawn per numpy chunk (bounds memory at ~32 MB)


def _boot_medians(strata: Sequence[Sequence[float]], resamples: int, rng) -> Any:
    """Medians of ``resamples`` bootstrap resamples of the pooled samples, each stratum
    (a round of a paired measurement, or the whole sample) resampled within itself so
    that every resample keeps the rounds' sizes."""
    import numpy as np

    arrays = [np.asarray(s, dtype=np.float64) for s in strata if len(s)]
    n = sum(a.size for a in arrays)
    out = np.empty(resamples)
    chunk = max(1, _BOOT_CELLS // max(1, n))
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        parts = [a[rng.integers(0, a.size, (b, a.size))] for a in arrays]
        out[start:start + b] = np.median(np.concatenate(parts, axis=1), axis=1)
    return out


def _resamples_for(n: int) -> int:
    return BOOT_RESAMPLES if n <= 20_000 else BOOT_RESAMPLES // 2


def median_ci(strata: Sequence[Sequence[float]], level: float = CI_LEVEL,
              seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median of the pooled samples."""
    import numpy as np

    n = sum(len(s) for s in strata)
    if n == 0:
        raise ValueError("median_ci of no samples")
    meds = _boot_medians(strata, _resamples_for(n), np.random.default_rng(seed))
    a = (1 - level) / 2
    return float(np.quantile(meds, a)), float(np.quantile(meds, 1 - a))


def ratio_ci(subject: Sequence[Sequence[float]], baseline: Sequence[Sequence[float]],
             better: str, level: float = CI_LEVEL, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the ratio of medians, oriented like
    :func:`vyre.bench.runner.ratio_of` (> 1: the subject is better). Subject and baseline
    are resampled independently, each within its strata (rounds)."""
    import numpy as np

    n = max(sum(len(s) for s in subject), sum(len(s) for s in baseline))
    rng = np.random.default_rng(seed)
    k = _resamples_for(n)
    s = _boot_medians(subject, k, rng)
    b = _boot_medians(baseline, k, rng)
    r = b / s if better == "lower" else s / b
    a = (1 - level) / 2
    return float(np.quantile(r, a)), float(np.quantile(r, 1 - a))


def block_medians(values_in_order: Sequence[float], blocks: int = 5) -> list[float]:
    """Medians of ``blocks`` consecutive, equal (+-1) blocks of the samples in the order
    they were taken: how far the median drifted within the run."""
    n = len(values_in_order)
    blocks = max(1, min(blocks, n))
    out = []
    for i in range(blocks):
        part = sorted(values_in_order[i * n // blocks:(i + 1) * n // blocks])
        out.append(percentile(part, 0.5))
    return out
