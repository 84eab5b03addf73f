"""vyre.bench.compare: labels on synthetic runs, like-for-like refusal, the CI gate."""
import json
import subprocess
import sys

import numpy as np
import pytest

from vyre.bench.compare import (
    NotComparable,
    compare,
    format_compare,
    has_regression,
    label,
    regressions,
)
from vyre.bench.report import build_document
from vyre.bench.runner import Context, Options
from vyre.bench.schema import validate


def synthetic_run(spec, quick=False, gpu="NVIDIA H200", backend="cuda", seed=0):
    """A result document whose benchmarks have samples drawn from known distributions.

    ``spec``: {id: (median ns/op, relative spread, drift over the run)}. The samples go
    through the real runner path (summary, bootstrap CI, block medians)."""
    rng = np.random.default_rng(seed)
    ctx = Context(Options(quick=quick, min_time_s=0.0, warmup_s=0.0, min_samples=1))
    for rid, (median, spread, drift) in spec.items():
        ctx.suite, name = rid.split("/")
        n = 400
        trend = 1 + drift * np.linspace(0, 1, n)
        values = median * trend * np.exp(rng.normal(0, spread, n))
        it = iter(values.tolist())
        ctx.bench(name, lambda it=it: next(it), min_samples=n - 10)
    return build_document(
        environment={"date_utc": "2026-12-02T00:00:00+00:00", "command": "vyre-bench",
                     "python": {"version": "3.11"}, "cpu": {"model": "Xeon"},
                     "gpus": [{"name": gpu}], "cuda": {}, "packages": {"vyre": "0.1.0"},
                     "git": {"commit": "abc"}},
        options={**Options(quick=quick).as_dict(), "resolved_backend": backend},
        suites=[], results=[r.as_dict() for r in ctx.results], comparisons=[], skipped=[],
        errors=[])


def labels(cmp):
    return {r["id"]: r["verdict"] for r in cmp["rows"]}


def test_same_faster_slower_noisy_on_synthetic_runs():
    old = synthetic_run({"d/same": (100, 0.02, 0), "d/faster": (100, 0.02, 0),
                         "d/slower": (100, 0.02, 0), "d/noisy": (100, 0.5, 0)}, seed=1)
    new = synthetic_run({"d/same": (100, 0.02, 0), "d/faster": (70, 0.02, 0),
                         "d/slower": (140, 0.02, 0), "d/noisy": (110, 0.5, 0)}, seed=2)
    assert validate(old) == [] and validate(new) == []
    got = labels(compare(old, new))
    assert got == {"d/same": "SAME", "d/faster": "FASTER", "d/slower": "SLOWER",
                   "d/noisy": "UNSURE"}


def test_drift_within_a_run_widens_its_interval():
    # the new run's median drifts by 30 % while it runs: its block medians show it, so a
    # 10 % shift of the median is not called SLOWER
    old = synthetic_run({"d/x": (100, 0.01, 0)}, seed=3)
    new = synthetic_run({"d/x": (95, 0.01, 0.3)}, seed=4)
    row = compare(old, new)["rows"][0]
    assert row["spread"] == "CI+blocks"
    assert row["verdict"] == "UNSURE" and row["high"] > 1.2


def test_rates_read_the_other_way():
    def rate(r, median):
        return {**r, "unit": "ops/s", "better": "higher",
                "summary": {**r["summary"], "median": median},
                "median_ci": [median * 0.99, median * 1.01], "block_medians": [median] * 5}

    base = synthetic_run({"t/r": (100, 0.01, 0)})["results"][0]
    assert label(rate(base, 1e6), rate(base, 2e6))["verdict"] == "FASTER"
    assert label(rate(base, 2e6), rate(base, 1e6))["verdict"] == "SLOWER"
    assert label(rate(base, 1e6), rate(base, 1.01e6))["verdict"] == "SAME"


def test_old_files_without_ci_fall_back_to_the_p10_p90_band():
    old = synthetic_run({"d/x": (100, 0.02, 0)})
    new = synthetic_run({"d/x": (50, 0.02, 0)})
    for doc in (old, new):
        for r in doc["results"]:
            del r["median_ci"], r["block_medians"]
    row = compare(old, new)["rows"][0]
    assert row["spread"] == "p10-p90" and row["verdict"] == "FASTER"


@pytest.mark.parametrize("change", [{"quick": True}, {"gpu": "NVIDIA H100"},
                                    {"backend": "cpu"}])
def test_runs_not_like_for_like_are_refused_unless_forced(change):
    old = synthetic_run({"d/x": (100, 0.02, 0)})
    new = synthetic_run({"d/x": (100, 0.02, 0)}, **change)
    with pytest.raises(NotComparable, match="not like for like.*--force"):
        compare(old, new)
    cmp = compare(old, new, force=True)
    text = format_compare(cmp)
    assert text.startswith("WARNING: NOT LIKE FOR LIKE")
    assert text.rstrip().endswith(cmp["forced"][0])  # said again at the end
    key = next(iter(change)).replace("quick", "mode")
    assert any(line.startswith(key) for line in cmp["forced"])


def test_a_run_whose_clocks_moved_is_noted():
    old = synthetic_run({"d/x": (100, 0.01, 0)})
    new = synthetic_run({"d/x": (100, 0.01, 0)})
    new["suites"] = [{"name": "dispatch", "status": "ran", "reason": "", "duration_s": 1.0,
                      "info": {}, "clocks_moved": "GPU 0 after: power cap"}]
    assert validate(new) == []
    text = format_compare(compare(old, new))
    assert "note: GPU speed may have changed in the new run, suite dispatch: GPU 0 after: " \
           "power cap" in text


def test_regression_gate_threshold():
    old = synthetic_run({"d/a": (100, 0.01, 0), "d/b": (100, 0.01, 0)})
    new = synthetic_run({"d/a": (120, 0.01, 0), "d/b": (80, 0.01, 0)})
    cmp = compare(old, new)
    assert labels(cmp) == {"d/a": "SLOWER", "d/b": "FASTER"}
    assert [r["id"] for r in regressions(cmp, 10)] == ["d/a"]
    assert regressions(cmp, 30) == []
    assert has_regression(cmp) and not has_regression(compare(new, new))


def test_cli_compare_labels_refusal_and_gate(tmp_path):
    def write(name, doc):
        path = tmp_path / name
        path.write_text(json.dumps(doc))
        return str(path)

    old = write("old.json", synthetic_run({"d/lat": (100, 0.01, 0)}))
    new = write("new.json", synthetic_run({"d/lat": (200, 0.01, 0)}, seed=5))
    quick = write("quick.json", synthetic_run({"d/lat": (100, 0.01, 0)}, quick=True))

    def run(*a):
        return subprocess.run([sys.executable, "-m", "vyre.bench", "compare", *a],
                              capture_output=True, text=True, timeout=120)

    p = run(old, new)
    assert p.returncode == 0 and "SLOWER" in p.stdout and "2.0" in p.stdout
    assert run(old, new, "--fail-on-regression").returncode == 1
    assert run(old, new, "--fail-on-regression", "150").returncode == 0  # +100 % < 150 %
    assert run(new, old, "--fail-on-regression").returncode == 0  # an improvement
    p = run(old, quick)
    assert p.returncode == 2 and "mode: 'full' vs 'quick'" in p.stderr
    p = run(old, quick, "--force")
    assert p.returncode == 0 and "NOT LIKE FOR LIKE" in p.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    p = run(old, str(bad))
    assert p.returncode == 2 and "not a vyre-bench result" in p.stderr


def _as_rate(doc):
    """The same runs as throughputs: ops/s, higher is better (what a ns/op sample of t ns
    is as a rate: 1e9 / t)."""
    for r in doc["results"]:
        r["unit"], r["better"] = "ops/s", "higher"
        s = r["summary"]
        inv = {k: 1e9 / s[k] for k in ("median", "p10", "p25", "p75", "p90", "p99", "min",
                                        "max", "mean")}
        inv["p10"], inv["p90"] = 1e9 / s["p90"], 1e9 / s["p10"]
        inv["min"], inv["max"] = 1e9 / s["max"], 1e9 / s["min"]
        s.update(inv)
        r["median_ci"] = sorted(1e9 / v for v in r["median_ci"])
        r["block_medians"] = [1e9 / v for v in r["block_medians"]]
    return doc


def test_regression_gate_on_rates_reads_lower_as_worse():
    old = _as_rate(synthetic_run({"t/a": (100, 0.01, 0), "t/b": (100, 0.01, 0)}))
    new = _as_rate(synthetic_run({"t/a": (125, 0.01, 0), "t/b": (80, 0.01, 0)}))
    cmp = compare(old, new)
    # t/a: a sample takes 25 % longer, so its rate fell to 0.8x: SLOWER, 25 % worse
    assert labels(cmp) == {"t/a": "SLOWER", "t/b": "FASTER"}
    assert [r["id"] for r in regressions(cmp, 20)] == ["t/a"]
    assert regressions(cmp, 30) == []


def test_runs_of_different_cpus_are_refused():
    old = synthetic_run({"d/x": (100, 0.02, 0)})
    new = synthetic_run({"d/x": (100, 0.02, 0)})
    new["environment"]["cpu"]["model"] = "AMD EPYC"
    with pytest.raises(NotComparable, match="cpu: 'Xeon' vs 'AMD EPYC'"):
        compare(old, new)


def test_a_suspect_baseline_is_named_in_the_compare_row():
    old = synthetic_run({"d/base": (100, 0.01, 0)})
    new = synthetic_run({"d/base": (100, 0.01, 0)}, seed=3)
    new["results"][0]["check"] = {"status": "suspect", "kind": "reference", "reference": 10.0,
                                  "factor": 10.0, "tolerance": 2.0, "what": "alone",
                                  "reason": "measured 10x slower than its reference"}
    assert validate(new) == []
    cmp = compare(old, new)
    assert cmp["rows"][0]["suspect"] == ["new"]
    assert "SAME (suspect baseline in new)" in format_compare(cmp)
