"""vyre.bench.compare: ratios, the flagging rule, output and the CLI exit status."""
import json
import subprocess
import sys

import pytest

from vyre.bench.compare import compare, flag_change, format_compare, has_regression
from vyre.bench.report import build_document


def summ(median, p10, p90):
    return {"n": 20, "median": median, "p10": p10, "p25": (p10 + median) / 2,
            "p75": (median + p90) / 2, "p90": p90, "p99": p90, "min": p10, "max": p90,
            "mean": median, "stdev": 1.0}


def result(rid, s, unit="ns/op"):
    suite, name = rid.split("/")
    return {"id": rid, "suite": suite, "name": name, "method": name, "params": {},
            "unit": unit, "better": "higher" if unit == "ops/s" else "lower", "batch": 1,
            "clock": "perf_counter_ns", "summary": s, "stop_reason": "min_time_and_samples",
            "warmup_samples": 2, "elapsed_s": 1.0, "verified": True, "notes": ""}


def doc(results, gpu="NVIDIA H100", commit="aaaa"):
    return build_document(
        environment={"date_utc": "2026-01-01T00:00:00+00:00", "command": "vyre-bench",
                     "python": {"version": "3.12.0"}, "cpu": {"model": "x"},
                     "gpus": [{"name": gpu}], "cuda": {}, "packages": {"vyre": "0.1.0"},
                     "git": {"commit": commit}},
        options={}, suites=[], results=results, comparisons=[], skipped=[], errors=[])


def test_rule_needs_both_medians_outside_the_other_band():
    old = summ(100, 95, 105)
    assert flag_change(old, summ(150, 145, 155))          # clear shift
    assert not flag_change(old, summ(103, 98, 108))       # within noise
    # new run is noisy: its median is outside old's band, but old's median sits inside
    # the new (wide) band -> not flagged
    assert not flag_change(old, summ(110, 60, 160))
    # symmetric: a noisy *old* run cannot produce a flag either
    assert not flag_change(summ(110, 60, 160), old)
    # the boundary counts as inside
    assert not flag_change(old, summ(105, 100, 110))


def test_verdicts_respect_direction():
    a = doc([result("d/lat", summ(100, 95, 105)),
             result("t/rate", summ(1e6, 0.9e6, 1.1e6), "ops/s"),
             result("d/same", summ(10, 9, 11)), result("d/gone", summ(1, 1, 1))])
    b = doc([result("d/lat", summ(50, 48, 52)),
             result("t/rate", summ(0.5e6, 0.45e6, 0.55e6), "ops/s"),
             result("d/same", summ(10.5, 9.5, 11.5)), result("d/new", summ(1, 1, 1))],
            gpu="NVIDIA H200", commit="bbbb")
    cmp = compare(a, b)
    rows = {r["id"]: r for r in cmp["rows"]}
    assert rows["d/lat"]["verdict"] == "better" and rows["d/lat"]["ratio"] == pytest.approx(0.5)
    assert rows["t/rate"]["verdict"] == "worse"  # fewer ops/s
    assert rows["d/same"]["verdict"] == "~"
    assert cmp["only_old"] == ["d/gone"] and cmp["only_new"] == ["d/new"]
    assert has_regression(cmp)
    text = format_compare(cmp)
    assert "BETTER" in text and "WORSE" in text and "0.500" in text
    assert "rule: flagged when the new median is outside the old p10-p90 band" in text
    assert "only in old: d/gone" in text and "only in new: d/new" in text
    assert "environment differs in gpus.0.name: 'NVIDIA H100' -> 'NVIDIA H200'" in text
    assert "git.commit" in text


def test_unit_change_is_not_a_verdict():
    a = doc([result("x/y", summ(100, 95, 105))])
    b = doc([result("x/y", summ(1e6, 1e6, 1e6), "ops/s")])
    assert compare(a, b)["rows"][0]["verdict"] == "unit changed"


def test_cli_compare_exit_status(tmp_path):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(doc([result("d/lat", summ(100, 95, 105))])))
    new.write_text(json.dumps(doc([result("d/lat", summ(200, 190, 210))])))
    run = lambda *a: subprocess.run([sys.executable, "-m", "vyre.bench", "compare", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    p = run(str(old), str(new))
    assert p.returncode == 0 and "WORSE" in p.stdout and "2.000" in p.stdout
    assert run(str(old), str(new), "--fail-on-regression").returncode == 1
    assert run(str(new), str(old), "--fail-on-regression").returncode == 0  # an improvement
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    p = run(str(old), str(bad))
    assert p.returncode == 2 and "not a vyre-bench result" in p.stderr
