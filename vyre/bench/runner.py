"""Sampling: warm-up, the stopping rule, per-op normalisation, ratios, skips and errors.

A benchmark is a *sample function*: a zero-argument callable that performs one sample of
``batch`` operations and returns the elapsed time of its timed region in nanoseconds. The
sample function does its own timing so that each suite can time exactly the region that
matters (host ``time.perf_counter_ns`` around a synchronized region, or CUDA events for
device time) and keep setup, such as resetting a ring, outside it.

The runner (see docs/bench.md, "Method"):

1. runs warm-up samples (discarded) for at least ``warmup_s`` and ``warmup_samples``;
2. collects samples until *both* ``min_time_s`` seconds of sampling (wall clock, untimed
   per-sample setup included) and ``min_samples`` samples are reached; ``max_samples`` / ``max_time_s`` stop a runaway and are recorded as the stop
   reason;
3. divides each sample by ``batch`` (``unit`` ``ns/op``) or turns it into a rate
   (``ops/s``), and summarises with :func:`vyre.bench.stats.summarize`.

The cyclic garbage collector is paused while a benchmark samples (as ``timeit`` does), so a
collection triggered by someone else's garbage does not land in one method's numbers.
"""
from __future__ import annotations

import gc
import json
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from vyre.bench.stats import summarize

SampleFn = Callable[[], float]


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (anything exotic, e.g. a device handle, as its str)."""
    return json.loads(json.dumps(value, default=str))

#: units whose samples are turned into rates (higher is better): ``batch`` ops or bytes per
#: sample divided by its time
RATE_UNITS = ("ops/s", "B/s")


@dataclass
class Options:
    """What to run and how long to sample. ``None`` fields take the defaults of the mode."""

    suites: list[str] | None = None
    backend: str = "auto"
    quick: bool = False
    min_time_s: float | None = None
    min_samples: int | None = None
    warmup_s: float | None = None
    warmup_samples: int = 2
    max_time_s: float | None = None
    max_samples: int = 200_000

    def __post_init__(self) -> None:
        if self.min_time_s is None:
            self.min_time_s = 0.1 if self.quick else 1.0
        if self.min_samples is None:
            self.min_samples = 5 if self.quick else 20
        if self.warmup_s is None:
            self.warmup_s = min(0.2, self.min_time_s / 4)
        if self.max_time_s is None:
            self.max_time_s = max(30.0, 20 * self.min_time_s)
        if self.min_time_s < 0 or self.min_samples < 1:
            raise ValueError("min_time_s must be >= 0 and min_samples >= 1")

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Result:
    """One measured benchmark (one method under one set of parameters)."""

    id: str
    suite: str
    name: str
    method: str
    params: dict[str, Any]
    unit: str
    better: str
    batch: int
    clock: str
    summary: dict[str, Any]
    stop_reason: str
    warmup_samples: int
    elapsed_s: float
    verified: bool | None = None
    notes: str = ""
    samples: list[float] | None = None

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        if d["samples"] is None:
            del d["samples"]
        return d


@dataclass
class Comparison:
    """How many times better ``subject`` is than ``baseline`` (same suite, same run)."""

    suite: str
    subject: str
    baseline: str
    ratio: float
    ratio_low: float
    ratio_high: float
    text: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def ratio_of(subject: dict, baseline: dict, better: str) -> tuple[float, float, float]:
    """Median ratio and its conservative p10-p90 bounds, oriented so that > 1 means the
    subject is better (faster for ``lower``, more ops/s for ``higher``)."""
    s, b = subject, baseline
    if better == "lower":
        return (b["median"] / s["median"], b["p10"] / s["p90"], b["p90"] / s["p10"])
    return (s["median"] / b["median"], s["p10"] / b["p90"], s["p90"] / b["p10"])


def fmt_ratio(r: float) -> str:
    """``350x``, ``12.5x``, ``1.03x``: three significant digits."""
    return f"{r:.3g}x" if r < 1000 else f"{r:,.0f}x"


class Progress:
    """A progress line on stderr, shown only once a run has lasted ``after_s`` seconds.

    On a terminal the line is rewritten in place; otherwise one line per benchmark."""

    def __init__(self, stream=None, after_s: float = 3.0, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.after_s = after_s
        self.enabled = enabled
        self.t0 = time.monotonic()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._shown = False

    def update(self, text: str) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.t0
        if elapsed < self.after_s:
            return
        line = f"[vyre-bench {elapsed:6.1f}s] {text}"
        if self._tty:
            self.stream.write("\r\x1b[2K" + line[:200])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._shown = True

    def done(self) -> None:
        if self._shown and self._tty:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


def measure(sample: SampleFn, options: Options, *, min_samples: int | None = None,
            min_time_s: float | None = None) -> tuple[list[float], dict[str, Any]]:
    """Warm up, then sample by the stopping rule. Returns raw sample times (ns) and metadata
    (``warmup_samples``, ``stop_reason``, ``elapsed_s`` of measured time)."""
    min_n = max(min_samples or 0, options.min_samples)
    min_t = max(min_time_s or 0.0, options.min_time_s)
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        clock = time.perf_counter
        t_end = clock() + options.warmup_s
        warm = 0
        while warm < options.warmup_samples or clock() < t_end:
            sample()
            warm += 1
        raw: list[float] = []
        start = clock()
        stop = "min_time_and_samples"
        while True:
            raw.append(float(sample()))
            spent = clock() - start
            if len(raw) >= min_n and spent >= min_t:
                break
            if len(raw) >= options.max_samples:
                stop = "max_samples"
                break
            if spent >= options.max_time_s and len(raw) >= 3:
                stop = "max_time"
                break
        elapsed = clock() - start
    finally:
        if was_enabled:
            gc.enable()
    return raw, {"warmup_samples": warm, "stop_reason": stop, "elapsed_s": elapsed}


def host_timed(fn: Callable[[], Any], setup: Callable[[], Any] | None = None) -> SampleFn:
    """Sample function timing ``fn()`` with ``perf_counter_ns``; ``setup()`` runs untimed
    before each sample (e.g. resetting a ring so every sample does the same work)."""
    now = time.perf_counter_ns

    def sample() -> float:
        if setup is not None:
            setup()
        t0 = now()
        fn()
        return now() - t0

    return sample


class Context:
    """What a suite sees: options, and calls to record results, ratios, skips and errors."""

    def __init__(self, options: Options, progress: Progress | None = None) -> None:
        self.options = options
        self.progress = progress or Progress(enabled=False)
        self.suite = ""
        self.results: list[Result] = []
        self.comparisons: list[Comparison] = []
        self.skipped: list[dict[str, str]] = []
        self.errors: list[dict[str, str]] = []
        self.info: dict[str, dict[str, Any]] = {}
        #: facts suites compute once per run and share (e.g. the resolved backend)
        self.cache: dict[str, Any] = {}

    # -- recording ---------------------------------------------------------------------
    def bench(self, name: str, sample: SampleFn, *, method: str | None = None,
              params: dict[str, Any] | None = None, batch: int = 1, unit: str = "ns/op",
              clock: str = "perf_counter_ns", keep_samples: bool = False,
              min_samples: int | None = None, min_time_s: float | None = None,
              verify: Callable[[], tuple[bool, str]] | None = None,
              notes: str = "") -> Result | None:
        """Measure ``sample`` and record it as ``<suite>/<name>``.

        ``batch`` ops per sample: each sample is divided by it (``ns/op``) or turned into a
        rate (``ops/s``, or ``B/s`` when ``batch`` counts bytes). ``verify()`` runs after
        sampling and checks that the measured path did its work (e.g. the observable holds
        the expected sum); a failed check records an error instead of a number. Any exception
        is recorded as an error of this benchmark and ``None`` is returned, so the suite's
        other methods still run.
        """
        rid = f"{self.suite}/{name}"
        self.progress.update(f"{rid}")
        try:
            raw, meta = measure(sample, self.options, min_samples=min_samples,
                                min_time_s=min_time_s)
            verified = None
            if verify is not None:
                ok, detail = verify()
                if not ok:
                    raise AssertionError(f"verification failed: {detail}")
                verified = True
        except Exception as exc:  # a failing method must not take the run down
            self.error(name, exc)
            return None
        if unit in RATE_UNITS:
            values = [batch / (ns * 1e-9) for ns in raw]
            better = "higher"
        else:
            values = [ns / batch for ns in raw]
            better = "lower"
        result = Result(
            id=rid, suite=self.suite, name=name, method=method or name,
            params=jsonable(params or {}),
            unit=unit, better=better, batch=batch, clock=clock, summary=summarize(values),
            verified=verified, notes=notes, samples=values if keep_samples else None, **meta)
        self.results.append(result)
        return result

    def compare(self, subject: Result | None, baseline: Result | None) -> Comparison | None:
        """Record the ratio subject vs baseline (both measured in this run). A missing side
        (skipped or failed) records nothing."""
        if subject is None or baseline is None:
            return None
        if subject.unit != baseline.unit:
            raise ValueError(f"cannot compare {subject.unit} with {baseline.unit}")
        r, lo, hi = ratio_of(subject.summary, baseline.summary, subject.better)
        lower = subject.better == "lower"
        if r >= 1:
            head = f"{fmt_ratio(r)} {'faster' if lower else 'higher throughput'}"
        else:  # say it the readable way round, and keep the ratio itself
            head = (f"{fmt_ratio(1 / r)} {'slower' if lower else 'lower throughput'} "
                    f"(ratio {fmt_ratio(r)})")
        text = (f"{subject.name} vs {baseline.name}: {head}; "
                f"p10-p90 bounds {fmt_ratio(lo)}-{fmt_ratio(hi)}")
        c = Comparison(self.suite, subject.id, baseline.id, r, lo, hi, text)
        self.comparisons.append(c)
        return c

    def note(self, key: str, value: Any) -> None:
        """Record a fact about the current suite's setup (backend geometry, sizes...); it
        lands in the suite's ``info`` in the result file."""
        self.info.setdefault(self.suite, {})[key] = jsonable(value)

    def skip(self, name: str, reason: str) -> None:
        """Record that benchmark ``name`` (``"*"``: the whole suite) could not run, and why."""
        self.skipped.append({"suite": self.suite, "name": name, "reason": reason})

    def error(self, name: str, exc: BaseException) -> None:
        """Record an unexpected failure of benchmark ``name`` (the run goes on)."""
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        self.errors.append({"suite": self.suite, "name": name, "error": tb})
