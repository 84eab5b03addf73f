"""vyre.bench.runner: warm-up, stopping rule, per-op normalisation, ratios, skips, errors."""
import itertools
import time

import pytest

from vyre.bench.runner import Context, Options, measure, ratio_of


def counting(values):
    """A sample function returning successive values, and its call counter."""
    it = itertools.cycle(values)
    calls = [0]

    def sample():
        calls[0] += 1
        return next(it)

    return sample, calls


def opts(**kw):
    kw.setdefault("min_time_s", 0.0)
    kw.setdefault("warmup_s", 0.0)
    return Options(**kw)


def test_defaults_follow_mode():
    full, quick = Options(), Options(quick=True)
    assert (full.min_time_s, full.min_samples) == (1.0, 20)
    assert (quick.min_time_s, quick.min_samples) == (0.1, 5)
    with pytest.raises(ValueError):
        Options(min_samples=0)


def test_min_count_and_warmup_excluded():
    sample, calls = counting([100.0])
    raw, meta = measure(sample, opts(min_samples=7, warmup_samples=3))
    assert len(raw) == 7
    assert meta["warmup_samples"] == 3
    assert calls[0] == 10  # warm-up ran but is not in the samples
    assert meta["stop_reason"] == "min_time_and_samples"


def test_min_time_keeps_sampling_past_min_count():
    def sample():
        time.sleep(0.002)
        return 1.0

    raw, meta = measure(sample, opts(min_samples=2, min_time_s=0.05))
    assert len(raw) > 2
    assert meta["elapsed_s"] >= 0.05
    assert meta["stop_reason"] == "min_time_and_samples"


def test_suite_may_raise_min_samples_but_not_lower_it():
    sample, _ = counting([1.0])
    assert len(measure(sample, opts(min_samples=5), min_samples=9)[0]) == 9
    assert len(measure(sample, opts(min_samples=5), min_samples=2)[0]) == 5


def test_max_samples_cap_is_recorded():
    sample, _ = counting([1.0])
    raw, meta = measure(sample, opts(min_samples=50, max_samples=10))
    assert len(raw) == 10 and meta["stop_reason"] == "max_samples"


def test_bench_divides_by_batch_and_records_result():
    ctx = Context(opts(min_samples=4, warmup_samples=1))
    ctx.suite = "s"
    sample, _ = counting([1000.0, 2000.0, 3000.0, 4000.0])
    r = ctx.bench("m", sample, batch=10, params={"k": 1})
    assert r.id == "s/m" and r.unit == "ns/op" and r.better == "lower" and r.batch == 10
    # warm-up consumed 1000; samples are 2000, 3000, 4000, 1000 -> per op /10
    assert r.summary["min"] == 100.0 and r.summary["max"] == 400.0
    assert r.summary["median"] == 250.0
    assert r.samples is None and ctx.results == [r]


def test_rate_unit_turns_samples_into_ops_per_second():
    ctx = Context(opts(min_samples=3, warmup_samples=0))
    ctx.suite = "t"
    sample, _ = counting([1e6])  # 1 ms per sample of 1000 ops
    r = ctx.bench("rate", sample, batch=1000, unit="ops/s", keep_samples=True)
    assert r.better == "higher"
    assert r.summary["median"] == pytest.approx(1e6)
    assert r.samples == pytest.approx([1e6] * 3)


def test_failed_verification_is_an_error_not_a_number():
    ctx = Context(opts(min_samples=2))
    ctx.suite = "v"
    sample, _ = counting([1.0])
    assert ctx.bench("bad", sample, verify=lambda: (False, "observable is 3, expected 4")) is None
    assert ctx.results == []
    assert ctx.errors[0]["name"] == "bad" and "expected 4" in ctx.errors[0]["error"]
    r = ctx.bench("good", sample, verify=lambda: (True, ""))
    assert r.verified is True


def test_exception_in_sample_is_recorded_and_run_goes_on():
    ctx = Context(opts(min_samples=2))
    ctx.suite = "x"

    def boom():
        raise RuntimeError("device lost")

    assert ctx.bench("boom", boom) is None
    assert "device lost" in ctx.errors[0]["error"]
    assert ctx.compare(None, None) is None  # a missing side records nothing
    assert ctx.comparisons == []


def test_compare_orientation_and_bounds():
    ctx = Context(opts(min_samples=3, warmup_samples=0))
    ctx.suite = "c"
    fast = ctx.bench("fast", counting([10.0, 11.0, 12.0])[0])
    slow = ctx.bench("slow", counting([100.0, 110.0, 120.0])[0])
    c = ctx.compare(fast, slow)
    assert c.ratio == pytest.approx(10.0)
    assert c.ratio_low <= c.ratio <= c.ratio_high
    assert c.ratio_low == pytest.approx(slow.summary["p10"] / fast.summary["p90"])
    assert "fast vs slow: 10x faster" in c.text
    # higher-is-better: more ops/s is better
    s = {"median": 2.0, "p10": 1.5, "p90": 2.5}
    b = {"median": 1.0, "p10": 0.8, "p90": 1.2}
    assert ratio_of(s, b, "higher") == (2.0, 1.5 / 1.2, 2.5 / 0.8)


def test_compare_refuses_mixed_units():
    ctx = Context(opts(min_samples=2))
    ctx.suite = "u"
    a = ctx.bench("a", counting([1.0])[0])
    b = ctx.bench("b", counting([1.0])[0], unit="ops/s")
    with pytest.raises(ValueError):
        ctx.compare(a, b)


def test_skip_and_note():
    ctx = Context(opts())
    ctx.suite = "dispatch"
    ctx.skip("cupy_launch", "cupy not importable")
    ctx.note("ops_per_sample", 1000)
    assert ctx.skipped == [{"suite": "dispatch", "name": "cupy_launch",
                            "reason": "cupy not importable"}]
    assert ctx.info == {"dispatch": {"ops_per_sample": 1000}}


def test_ingest_input_size_comes_from_the_environment(monkeypatch):
    from vyre.bench.suites import ingest
    monkeypatch.delenv("VYRE_BENCH_INGEST_MIB", raising=False)
    assert ingest._total_mib() == 2048
    monkeypatch.setenv("VYRE_BENCH_INGEST_MIB", "4096")
    assert ingest._total_mib() == 4096
    for bad in ("4G", str(ingest.FILES - 1)):
        monkeypatch.setenv("VYRE_BENCH_INGEST_MIB", bad)
        with pytest.raises(ValueError, match="VYRE_BENCH_INGEST_MIB"):
            ingest._total_mib()


def test_targets_are_judged_and_paired_rounds_alternate():
    from vyre.bench.runner import Method

    order = []
    ctx = Context(Options(min_time_s=0.0, warmup_s=0.0, min_samples=4))
    ctx.suite = "dispatch"

    def sampler(name, ns):
        def sample():
            order.append(name)
            return ns
        return sample

    res = ctx.paired([Method("megakernel_submit_many", sampler("A", 1e5), batch=100),
                      Method("pycuda_launch", sampler("B", 2e7), batch=100),
                      Method("cuda_graph", sampler("C", 1e6), batch=100)], rounds=3)
    # rounds A B C | C B A | A B C; runs of one method merge across a round boundary
    runs = [k for i, k in enumerate(order) if i == 0 or order[i - 1] != k]
    assert runs == ["A", "B", "C", "B", "A", "B", "C"]
    assert all(r.rounds == 3 and r.summary["n"] >= 4 for r in res.values())
    hit = ctx.compare(res["megakernel_submit_many"], res["pycuda_launch"])  # 200x vs 300x
    miss = ctx.compare(res["megakernel_submit_many"], res["cuda_graph"])    # 10x vs 30x
    assert hit.target == {"ratio": 300.0, "met": False} and "target 300x: not met" in hit.text
    assert miss.target == {"ratio": 30.0, "met": False}
    res2 = ctx.paired([Method("megakernel_submit_many", sampler("A", 1e4), batch=100),
                       Method("cuda_graph", sampler("C", 1e6), batch=100)])
    met = ctx.compare(res2["megakernel_submit_many"], res2["cuda_graph"])  # 100x vs 30x
    assert met.target["met"] and "target 30x: met" in met.text
    assert met.paired and met.ci_low == pytest.approx(100) and met.ci_high == pytest.approx(100)
