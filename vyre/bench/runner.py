"""Sampling: warm-up, the stopping rule, per-op normalisation, ratios, skips and errors.

A benchmark is a *sample function*: a zero-argument callable that performs one sample of
``batch`` operations and returns the elapsed time of its timed region in nanoseconds. The
sample function does its own timing so that each suite can time exactly the region that
matters (host ``time.perf_counter_ns`` around a synchronized region, or CUDA events for
device time) and keep setup, such as resetting a ring, outside it.

The runner (see docs/bench.md, "Method"):

1. runs warm-up samples (discarded) for at least ``warmup_s`` and ``warmup_samples``;
2. collects samples until *both* ``min_time_s`` seconds of sampling (wall clock, untimed
   per-sample setup included) and ``min_samples`` samples are reached; ``max_samples`` /
   ``max_time_s`` stop a runaway and are recorded as the stop reason;
3. divides each sample by ``batch`` (``unit`` ``ns/op``) or turns it into a rate
   (``ops/s``), and summarises with :func:`vyre.bench.stats.summarize`.

The cyclic garbage collector is paused while a benchmark samples (as ``timeit`` does), so a
collection triggered by someone else's garbage does not land in one method's numbers.

Methods that are compared with each other are measured *paired* (:meth:`Context.paired`):
their samples are taken in alternating rounds (A B, B A, A B, ...) so that a drift of the
machine during the run lands on both sides instead of looking like a speedup. Baselines carry
a cross-check (:mod:`vyre.bench.checks`); ratios come with bootstrap confidence intervals.
"""
from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from vyre.bench import checks as checks_mod
from vyre.bench import targets as targets_mod
from vyre.bench.stats import CI_LEVEL, block_medians, median_ci, ratio_ci, summarize

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
    #: ``--op MODULE:NAME``: the user op the user-op suite measures
    op: str | None = None

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
    #: bootstrap CI of the median and medians of consecutive blocks (the run's own drift)
    median_ci: list[float] | None = None
    block_medians: list[float] | None = None
    #: rounds of a paired measurement (1: measured on its own)
    rounds: int = 1
    #: the cross-check record (:mod:`vyre.bench.checks`), baselines only
    check: dict[str, Any] | None = None
    #: the per-op values in the order taken, by round (kept in memory for the bootstrap)
    strata: list[list[float]] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "strata"}
        for key in ("samples", "median_ci", "block_medians", "check"):
            if d[key] is None:
                del d[key]
        return d

    @property
    def suspect(self) -> bool:
        return bool(self.check and self.check["status"] == "suspect")


@dataclass
class Comparison:
    """How many times better ``subject`` is than ``baseline`` (same suite, same run).

    ``ratio_low``/``ratio_high``: the p10-p90 bounds; ``ci_low``/``ci_high``: the bootstrap
    confidence interval of the ratio at ``ci_level``. An ``excluded`` comparison (a baseline
    that failed its cross-check) carries the reason and no numbers."""

    suite: str
    subject: str
    baseline: str
    ratio: float | None
    ratio_low: float | None
    ratio_high: float | None
    text: str
    ci_low: float | None = None
    ci_high: float | None = None
    ci_level: float = CI_LEVEL
    paired: bool = False
    meaning: str = ""
    target: dict[str, Any] | None = None
    excluded: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        if d["target"] is None:
            del d["target"]
        if not d["excluded"]:
            del d["excluded"]
        return d


@dataclass
class Method:
    """One method of a paired measurement (:meth:`Context.paired`): the arguments of
    :meth:`Context.bench`, plus ``session``, a context-manager factory opened around each
    round's block of samples (e.g. a started megakernel, which the GPU baselines must not
    share the device with) -- entered once per round, so it must be cheap enough for that."""

    name: str
    sample: SampleFn | None = None
    batch: int = 1
    unit: str = "ns/op"
    params: dict[str, Any] | None = None
    clock: str = "perf_counter_ns"
    keep_samples: bool = False
    min_samples: int | None = None
    min_time_s: float | None = None
    verify: Callable[[], tuple[bool, str]] | None = None
    notes: str = ""
    method: str | None = None
    check: checks_mod.Check | None = None
    #: ``session()`` returns a context manager whose value is the sample function when
    #: ``sample`` is None (the sample needs what the session opened)
    session: Callable[[], AbstractContextManager[Any]] | None = None


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


def targets(options: Options, min_samples: int | None = None,
            min_time_s: float | None = None) -> tuple[int, float]:
    """The stopping rule's sample count and seconds for one benchmark: the run's options,
    raised to what the suite asks for."""
    assert options.min_samples is not None and options.min_time_s is not None
    return max(min_samples or 0, options.min_samples), max(min_time_s or 0.0, options.min_time_s)


def measure(sample: SampleFn, options: Options, *, min_samples: int | None = None,
            min_time_s: float | None = None, exact: bool = False,
            warmup_s: float | None = None, max_time_s: float | None = None,
            warmup_samples: int | None = None,
            min_guard: int = 3) -> tuple[list[float], dict[str, Any]]:
    """Warm up, then sample by the stopping rule. Returns raw sample times (ns) and metadata
    (``warmup_samples``, ``stop_reason``, ``elapsed_s`` of measured time). ``exact``: take
    ``min_samples``/``min_time_s`` as given instead of raising them to the options (one
    round of a paired measurement)."""
    if exact:
        min_n, min_t = max(1, min_samples or 1), min_time_s or 0.0
    else:
        min_n, min_t = targets(options, min_samples, min_time_s)
    warm_s = float((options.warmup_s or 0.0) if warmup_s is None else warmup_s)
    max_t = float((options.max_time_s or 0.0) if max_time_s is None else max_time_s)
    warm_n = options.warmup_samples if warmup_samples is None else warmup_samples
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        clock = time.perf_counter
        t_end = clock() + warm_s
        warm = 0
        while warm < warm_n or clock() < t_end:
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
            if spent >= max_t and len(raw) >= min_guard:
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
        #: cross-check references measured so far this run, by key
        self._references: dict[str, dict[str, Any]] = {}

    # -- recording ---------------------------------------------------------------------
    def bench(self, name: str, sample: SampleFn, *, method: str | None = None,
              params: dict[str, Any] | None = None, batch: int = 1, unit: str = "ns/op",
              clock: str = "perf_counter_ns", keep_samples: bool = False,
              min_samples: int | None = None, min_time_s: float | None = None,
              verify: Callable[[], tuple[bool, str]] | None = None,
              notes: str = "", check: checks_mod.Check | None = None) -> Result | None:
        """Measure ``sample`` and record it as ``<suite>/<name>``.

        ``batch`` ops per sample: each sample is divided by it (``ns/op``) or turned into a
        rate (``ops/s``, or ``B/s`` when ``batch`` counts bytes). ``verify()`` runs after
        sampling and checks that the measured path did its work (e.g. the observable holds
        the expected sum); a failed check records an error instead of a number. ``check``
        cross-checks a baseline against its reference (:mod:`vyre.bench.checks`). Any
        exception is recorded as an error of this benchmark and ``None`` is returned, so the
        suite's other methods still run.
        """
        rid = f"{self.suite}/{name}"
        self.progress.update(f"{rid}")
        try:
            raw, meta = measure(sample, self.options, min_samples=min_samples,
                                min_time_s=min_time_s)
            verified = _verify(verify)
        except Exception as exc:  # a failing method must not take the run down
            self.error(name, exc)
            return None
        m = Method(name, sample, batch=batch, unit=unit, params=params, clock=clock,
                   keep_samples=keep_samples, notes=notes, method=method, check=check)
        return self._record(m, [raw], meta, verified)

    def paired(self, methods: list[Method], rounds: int | None = None) -> dict[str, Result | None]:
        """Measure ``methods`` in alternating rounds and record each as ``<suite>/<name>``.

        Round r runs every method once, in order for even r and reversed for odd r (A B,
        B A, A B ...: a linear drift lands on both sides alike). Each round takes
        ``1/rounds`` of every method's sample count and time (so a paired run samples as
        long as an unpaired one) and warms up again, inside its ``session`` when there is one.
        A method that fails in a round is recorded as an error and leaves the later rounds.
        Returns ``{name: Result or None}``.
        """
        if rounds is None:
            rounds = 2 if self.options.quick else 5
        rounds = max(1, rounds)
        raws: dict[str, list[list[float]]] = {m.name: [] for m in methods}
        metas: dict[str, dict[str, Any]] = {m.name: _empty_meta() for m in methods}
        failed: set[str] = set()
        for r in range(rounds):
            order = methods if r % 2 == 0 else methods[::-1]
            for m in order:
                if m.name in failed:
                    continue
                self.progress.update(f"{self.suite}/{m.name} (round {r + 1}/{rounds})")
                try:
                    raw, meta, verified = self.measure_round(m, r, rounds)
                except Exception as exc:
                    self.error(m.name, exc)
                    failed.add(m.name)
                    continue
                _add_round(raws[m.name], metas[m.name], raw, meta)
                if r == rounds - 1:  # the work of every round, checked once
                    metas[m.name]["verified"] = verified
        return self._record_rounds(methods, raws, metas, failed, rounds)

    def measure_round(self, m: Method, r: int, rounds: int, verify: bool | None = None,
                      cold: bool = False) -> tuple[list[float], dict[str, Any], bool | None]:
        """Round ``r`` of ``rounds`` of one method, inside its session: 1/rounds of its sample
        count and time after a warm-up (the first round's, or a ``cold`` process's, full
        one; later rounds' one sample). Returns the raw samples, their metadata and, in the
        last round (or always with ``verify=True``), the method's verification."""
        n, t = targets(self.options, m.min_samples, m.min_time_s)
        with (m.session() if m.session else nullcontext(None)) as opened:
            sample = m.sample if m.sample is not None else opened
            if sample is None:
                raise TypeError(f"method {m.name} has no sample function")
            raw, meta = measure(sample, self.options, exact=True,
                                min_samples=math.ceil(n / rounds), min_time_s=t / rounds,
                                warmup_s=(self.options.warmup_s or 0.0) / rounds,
                                max_time_s=(self.options.max_time_s or 0) / rounds,
                                # later rounds re-warm a fresh session once
                                warmup_samples=None if r == 0 or cold else 1, min_guard=1)
            checked = _verify(m.verify) if (verify or (verify is None and r == rounds - 1)) \
                else None
        return raw, meta, checked

    def paired_in_processes(self, factory: str, spec: dict[str, Any], rounds: int | None = None,
                            timeout_s: float | None = None) -> dict[str, Result | None]:
        """:meth:`paired`, each round in a fresh Python process (``python -m
        vyre.bench.round``), for rates whose level depends on the process (where the host
        thread and its memory landed, as pyperf's worker processes assume) or drifts over
        seconds: round r of every method runs in process r, so one method's rounds span
        processes and the whole call, and its block medians and CI show that spread.

        ``factory`` (``"module:function"``) builds the methods from ``spec`` (JSON values),
        here for their names and again in every process. A method that fails in a round (or
        that a process did not build) is an error and leaves the later rounds. A process that
        fails or outlives ``timeout_s`` (default: 60 s plus, per method, its longest sampling
        share, its warm-up and 10 s to start) is an error of every method it was measuring,
        with the tail of its stderr, and ends the measurement."""
        if rounds is None:
            rounds = 2 if self.options.quick else 5
        rounds = max(1, rounds)
        methods = load_factory(factory)(spec)
        raws: dict[str, list[list[float]]] = {m.name: [] for m in methods}
        metas: dict[str, dict[str, Any]] = {m.name: _empty_meta() for m in methods}
        failed: set[str] = set()
        pids: dict[str, set[int]] = {}
        if timeout_s is None:
            o = self.options
            per = max((o.max_time_s or 0.0), targets(o, None, None)[1]) / rounds
            timeout_s = 60.0 + len(methods) * (per + (o.warmup_s or 0.0) + 10.0)
        for r in range(rounds):
            self.progress.update(f"{self.suite}: round {r + 1}/{rounds} in its own process")
            job = {"factory": factory, "spec": spec, "round": r, "rounds": rounds,
                   "options": self.options.as_dict(), "skip": sorted(failed)}
            try:
                p = subprocess.run([sys.executable, "-m", "vyre.bench.round"],
                                   input=json.dumps(job), capture_output=True, text=True,
                                   timeout=timeout_s, env=dict(os.environ))
                if p.returncode != 0:
                    raise RuntimeError(f"exit {p.returncode}: {p.stderr.strip()[-400:]}")
                lines = [ln for ln in p.stdout.splitlines() if ln.startswith(ROUND_MARK)]
                if not lines:
                    raise RuntimeError(f"round {r + 1}'s process printed no result: "
                                       f"{p.stderr.strip()[-400:]}")
                got = json.loads(lines[-1][len(ROUND_MARK):])
            except Exception as exc:
                if isinstance(exc, subprocess.TimeoutExpired):
                    exc = TimeoutError(f"round {r + 1} did not finish within {timeout_s:.0f} s")
                for m in methods:
                    if m.name not in failed:
                        self.error(m.name, exc)
                        failed.add(m.name)
                break
            for m in methods:
                if m.name in failed:
                    continue
                rec = got["methods"].get(m.name)
                if rec is None:
                    rec = {"error": f"round {r + 1}'s process did not build this method "
                                    f"(the factory gave {sorted(got['methods'])})"}
                if "error" in rec:
                    self.errors.append({"suite": self.suite, "name": m.name,
                                        "error": rec["error"]})
                    failed.add(m.name)
                    continue
                _add_round(raws[m.name], metas[m.name], rec["raw"], rec["meta"])
                pids.setdefault(m.name, set()).add(got["pid"])
                if m.params is not None:
                    m.params.update(rec.get("params") or {})
                    m.params["processes"] = len(pids[m.name])
                if rec["verified"]:  # every process checks its own round (a failure: an error)
                    metas[m.name]["verified"] = True
        return self._record_rounds(methods, raws, metas, failed, rounds)

    def _record_rounds(self, methods: list[Method], raws: dict[str, list[list[float]]],
                       metas: dict[str, dict[str, Any]], failed: set[str],
                       rounds: int) -> dict[str, Result | None]:
        out: dict[str, Result | None] = {}
        for m in methods:
            if m.name in failed or not raws[m.name]:
                out[m.name] = None
                continue
            meta = dict(metas[m.name])
            verified = meta.pop("verified", None)
            out[m.name] = self._record(m, raws[m.name], meta, verified, rounds=rounds)
        return out

    def _record(self, m: Method, raws: list[list[float]], meta: dict[str, Any],
                verified: bool | None, rounds: int = 1) -> Result | None:
        if m.unit in RATE_UNITS:
            strata = [[m.batch / (ns * 1e-9) for ns in raw] for raw in raws]
            better = "higher"
        else:
            strata = [[ns / m.batch for ns in raw] for raw in raws]
            better = "lower"
        values = [v for part in strata for v in part]
        lo, hi = median_ci(strata)
        result = Result(
            id=f"{self.suite}/{m.name}", suite=self.suite, name=m.name,
            method=m.method or m.name, params=jsonable(m.params or {}), unit=m.unit,
            better=better, batch=m.batch, clock=m.clock, summary=summarize(values),
            verified=verified, notes=m.notes, samples=values if m.keep_samples else None,
            median_ci=[lo, hi], block_medians=block_medians(values), rounds=rounds,
            strata=strata, **meta)
        if m.check is not None:
            result.check = self._cross_check(result, m.check)
        self.results.append(result)
        return result

    def _cross_check(self, result: Result, check: checks_mod.Check) -> dict[str, Any]:
        """Measure (once per run and key) the reference of a baseline and judge it."""
        key = check.key or result.id
        if key not in self._references:
            self.progress.update(f"{result.id} (cross-check)")
            try:
                self._references[key] = {"value": float(check.reference())}
            except Exception as exc:
                why = traceback.format_exception_only(type(exc), exc)[-1].strip()
                self._references[key] = {"error": why}
        ref = self._references[key]
        if "error" in ref:
            return checks_mod.unchecked(check, ref["error"])
        return checks_mod.verdict(result.summary, ref["value"], result.better, check)

    def compare(self, subject: Result | None, baseline: Result | None) -> Comparison | None:
        """Record the ratio subject vs baseline (both measured in this run), with its
        bootstrap CI and target; a suspect baseline records the comparison as excluded,
        with the reason. A missing side (skipped or failed) records nothing."""
        if subject is None or baseline is None:
            return None
        if subject.unit != baseline.unit:
            raise ValueError(f"cannot compare {subject.unit} with {baseline.unit}")
        lower = subject.better == "lower"
        meaning = (f"{baseline.name} median / {subject.name} median: how many times less time "
                   f"{subject.name} takes" if lower else
                   f"{subject.name} median / {baseline.name} median: how many times the rate")
        target = targets_mod.target_for(subject.id, baseline.id)
        paired = subject.rounds > 1 and subject.rounds == baseline.rounds
        for side in (baseline, subject):
            if side.suspect:
                assert side.check is not None
                why = f"{side.name} failed its cross-check: {side.check['reason']}"
                c = Comparison(self.suite, subject.id, baseline.id, None, None, None,
                               f"{subject.name} vs {baseline.name}: not compared ({why})",
                               paired=paired, meaning=meaning, excluded=why,
                               target=None if target is None else {"ratio": target, "met": None})
                self.comparisons.append(c)
                return c
        r, lo, hi = ratio_of(subject.summary, baseline.summary, subject.better)
        ci_lo, ci_hi = ratio_ci(subject.strata, baseline.strata, subject.better)
        text = f"{subject.name} vs {baseline.name}: {describe_ratio(r, lower)}; " \
               f"{int(CI_LEVEL * 100)}% CI of the ratio {fmt_ratio(ci_lo)}-{fmt_ratio(ci_hi)}"
        tgt = None
        if target is not None:
            tgt = {"ratio": target, "met": r >= target}
            text += f"; {target_words(r, ci_lo, ci_hi, target)}"
        c = Comparison(self.suite, subject.id, baseline.id, r, lo, hi, text, ci_lo, ci_hi,
                       paired=paired, meaning=meaning, target=tgt)
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


def _empty_meta() -> dict[str, Any]:
    return {"warmup_samples": 0, "elapsed_s": 0.0, "stop_reason": "min_time_and_samples"}


def _add_round(raws: list[list[float]], agg: dict[str, Any], raw: list[float],
               meta: dict[str, Any]) -> None:
    raws.append(raw)
    agg["warmup_samples"] += meta["warmup_samples"]
    agg["elapsed_s"] += meta["elapsed_s"]
    if meta["stop_reason"] != "min_time_and_samples":
        agg["stop_reason"] = meta["stop_reason"]


#: the prefix of the line a round's process (vyre.bench.round) prints its result on
ROUND_MARK = "vyre-bench-round: "


def load_factory(ref: str) -> Callable[[dict[str, Any]], list[Method]]:
    """The function ``"module:function"`` names (a suite's method factory)."""
    import importlib

    module, _, name = ref.partition(":")
    if not module or not name:
        raise ValueError(f"a method factory is 'module:function', not {ref!r}")
    return getattr(importlib.import_module(module), name)


def _verify(verify: Callable[[], tuple[bool, str]] | None) -> bool | None:
    if verify is None:
        return None
    ok, detail = verify()
    if not ok:
        raise AssertionError(f"verification failed: {detail}")
    return True


def describe_ratio(r: float, lower: bool) -> str:
    """``350x faster`` / ``2.1x slower (ratio 0.476x)``: the readable way round."""
    if r >= 1:
        return f"{fmt_ratio(r)} {'faster' if lower else 'higher throughput'}"
    return f"{fmt_ratio(1 / r)} {'slower' if lower else 'lower throughput'} (ratio {fmt_ratio(r)})"


def target_words(r: float, ci_lo: float | None, ci_hi: float | None, target: float) -> str:
    """``target 300x: met`` / ``not met``, and whether the CI straddles the target."""
    met = "met" if r >= target else "not met"
    if ci_lo is not None and ci_hi is not None and ci_lo < target <= ci_hi:
        met += " (the CI straddles it)"
    return f"target {fmt_ratio(target)}: {met}"
