"""The vyre-bench command line: a real --quick run, skips with reasons, failure isolation."""
import importlib
import io
import json
import os
import subprocess
import sys
import time
import types

import pytest
from _cpu_backend import cpu_backend_works

from vyre.bench import suites
from vyre.bench.__main__ import _suite_list, main, run_suites
from vyre.bench.runner import Options, Progress
from vyre.bench.schema import validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def importable(name):
    try:
        importlib.import_module(name)
    except Exception:
        return False
    return True


def test_quick_run_on_the_cpu_finishes_within_a_minute(tmp_path):
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "vyre.bench", "--quick", "--backend", "cpu",
                        "--json", str(out), "--markdown", str(md), "--plot", str(tmp_path / "p")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - t0
    assert p.returncode == 0, p.stdout + p.stderr
    assert elapsed < 60
    doc = json.loads(out.read_text())
    assert validate(doc) == []
    assert doc["errors"] == []
    status = {s["name"]: s for s in doc["suites"]}
    assert list(status) == list(suites.DEFAULT)
    skipped_suites = {s["suite"]: s["reason"] for s in doc["skipped"] if s["name"] == "*"}
    for name, s in status.items():
        assert s["status"] in ("ran", "skipped")
        if s["status"] == "skipped":
            assert s["reason"] and skipped_suites[name] == s["reason"]
        else:
            assert any(r["suite"] == name for r in doc["results"])
    # dispatch is a GPU comparison; on the CPU backend it says why it does not run
    assert status["dispatch"]["status"] == "skipped"
    assert "does not apply to the cpu backend" in status["dispatch"]["reason"]
    if importable("vyre.wire"):
        assert status["publish"]["status"] == "ran"
    if cpu_backend_works():
        for name in ("latency", "throughput", "cpu"):
            assert status[name]["status"] == "ran", status[name]
        if importable("vyre.ingest.stream"):
            assert status["ingest"]["status"] == "ran", status["ingest"]
        # a streaming rate depends on the start: every configuration spans several starts
        tp = [r for r in doc["results"] if r["suite"] == "throughput"]
        assert tp and all(r["rounds"] >= 2 for r in tp), [(r["name"], r["rounds"]) for r in tp]
    for r in doc["results"]:
        assert r["verified"] in (True, None)
        assert r["summary"]["n"] >= 5  # --quick's minimum count
        lo, hi = r["median_ci"]
        assert lo <= r["summary"]["median"] <= hi and len(r["block_medians"]) >= 1
    # every baseline of a ratio carries its cross-check; suspect ones are excluded
    by = {r["id"]: r for r in doc["results"]}
    for c in doc["comparisons"]:
        check = by[c["baseline"]]["check"]
        assert check["status"] in ("ok", "suspect", "unchecked") and check["what"]
        suspect = any((by[c[k]].get("check") or {}).get("status") == "suspect"
                      for k in ("subject", "baseline"))
        assert (c["ratio"] is None) == suspect == ("excluded" in c)
        assert c["paired"], c  # both sides measured in the same alternating rounds
    assert all("before" in s and "after" in s for s in doc["suites"])
    assert doc["options"]["resolved_backend"] == "cpu"
    assert doc["environment"]["command"].startswith("vyre-bench --quick")
    assert md.read_text().startswith("# vyre-bench results")
    assert "benchmark" in p.stdout  # the terminal table
    if importable("matplotlib"):  # every suite that measured something has its plot
        plotted = {f.name.split(".")[0].split("_")[0] for f in (tmp_path / "p").iterdir()}
        assert {s for s, st in status.items() if st["status"] == "ran"} <= plotted, plotted


def test_cuda_backend_without_a_gpu_is_skipped_with_the_reason(tmp_path):
    from vyre.backends import cuda_available

    if cuda_available()[0]:
        pytest.skip("a GPU is present")
    out = tmp_path / "r.json"
    rc = main(["--suite", "latency,dispatch", "--suite", "cpu", "--backend", "cuda", "--quick",
               "--no-progress", "--json", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    reasons = {s["name"]: (s["status"], s["reason"]) for s in doc["suites"]}
    for suite in ("latency", "dispatch"):
        assert reasons[suite][0] == "skipped"
        assert "CUDA backend is unavailable" in reasons[suite][1]
    assert reasons["cpu"] == ("skipped",
                              "--backend cuda selected; this suite measures the CPU backend")


def test_a_failing_suite_is_recorded_and_the_run_goes_on(monkeypatch):
    def ok(ctx):
        ctx.bench("m", lambda: 10.0)

    def unavailable(ctx):
        raise suites.Unavailable("pycuda not importable")

    def broken(ctx):
        raise RuntimeError("half-written module")

    def half(ctx):
        ctx.bench("good", lambda: 1.0)
        ctx.bench("bad", lambda: 1 / 0)

    fake = {"publish": ok, "latency": unavailable, "dispatch": broken, "throughput": half}
    monkeypatch.setattr(suites, "load", lambda name: types.SimpleNamespace(run=fake[name]))
    opts = Options(suites=list(fake), min_time_s=0.0, warmup_s=0.0, min_samples=3)
    doc = run_suites(opts, argv=["vyre-bench"])
    assert validate(doc) == []
    st = {s["name"]: (s["status"], s["reason"]) for s in doc["suites"]}
    assert st["publish"] == ("ran", "")
    assert st["latency"] == ("skipped", "pycuda not importable")
    assert st["dispatch"][0] == "error" and "half-written module" in st["dispatch"][1]
    assert st["throughput"] == ("error", "1 benchmark(s) failed")
    assert [r["id"] for r in doc["results"]] == ["publish/m", "throughput/good"]
    assert {e["suite"] + "/" + e["name"] for e in doc["errors"]} == {"dispatch/*", "throughput/bad"}
    assert {"suite": "latency", "name": "*", "reason": "pycuda not importable"} in doc["skipped"]


def test_suite_option_parsing():
    assert _suite_list(None) is None
    assert _suite_list(["publish,latency", "publish", " cpu "]) == ["publish", "latency", "cpu"]
    with pytest.raises(SystemExit):
        _suite_list(["nonsense"])
    assert main(["--suite", "nonsense"]) == 2
    assert main(["--repeat", "0"]) == 2


def test_progress_line_only_after_the_threshold():
    quiet = io.StringIO()
    Progress(stream=quiet, after_s=3600).update("publish/publish_slot")
    assert quiet.getvalue() == ""
    loud = io.StringIO()
    Progress(stream=loud, after_s=0).update("publish/publish_slot")
    assert "publish/publish_slot" in loud.getvalue() and loud.getvalue().endswith("\n")


def test_list_and_show(tmp_path, capsys):
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in suites.SUITES)
    out = tmp_path / "r.json"
    assert main(["--suite", "dispatch", "--backend", "cpu", "--no-progress",
                 "--json", str(out)]) == 0
    capsys.readouterr()
    assert main(["show", str(out), "--markdown", str(tmp_path / "r.md")]) == 0
    assert "dispatch/*: this suite does not apply to the cpu backend" in capsys.readouterr().out
    assert (tmp_path / "r.md").exists()


def test_json_is_written_after_every_suite_so_a_cut_run_keeps_its_suites(tmp_path, monkeypatch):
    out = tmp_path / "sub" / "r.json"
    seen = {}

    def first(ctx):
        ctx.bench("m", lambda: 10.0)

    def second(ctx):
        # the run is still going: what a `timeout` kill would leave behind now
        seen["doc"] = json.loads(out.read_text())
        ctx.bench("m", lambda: 20.0)

    def third(ctx):
        ctx.bench("m", lambda: 30.0)

    fake = {"publish": first, "latency": second, "cpu": third}
    monkeypatch.setattr(suites, "load", lambda name: types.SimpleNamespace(run=fake[name]))
    rc = main(["--suite", "publish,latency,cpu", "--min-time", "0", "--repeat", "3",
               "--no-progress", "--json", str(out)])
    assert rc == 0
    partial = seen["doc"]
    assert validate(partial) == []
    assert [s["name"] for s in partial["suites"]] == ["publish"]
    assert [r["id"] for r in partial["results"]] == ["publish/m"]
    assert partial["incomplete"] == ("written after suite 1 of 3 (publish); the suites "
                                     "latency, cpu had not run yet")
    final = json.loads(out.read_text())
    assert "incomplete" not in final and validate(final) == []
    assert [r["id"] for r in final["results"]] == ["publish/m", "latency/m", "cpu/m"]
    assert [p.name for p in out.parent.iterdir()] == ["r.json"]  # no temporary file left


def test_a_checkpoint_says_it_is_one_in_the_table_and_in_compare(tmp_path, monkeypatch, capsys):
    from vyre.bench import report
    from vyre.bench.compare import compare, format_compare

    fake = {"publish": lambda ctx: ctx.bench("m", lambda: 10.0),
            "latency": lambda ctx: ctx.bench("m", lambda: 20.0)}
    monkeypatch.setattr(suites, "load", lambda name: types.SimpleNamespace(run=fake[name]))
    docs = []
    run_suites(Options(suites=list(fake), min_time_s=0.0, warmup_s=0.0, min_samples=3),
               argv=["vyre-bench"], checkpoint=docs.append)
    assert len(docs) == 1  # after every suite but the last
    text = report.format_table(docs[0])
    assert "INCOMPLETE RUN (a checkpoint): written after suite 1 of 2 (publish)" in text
    assert "suites (wall time each, setup and cross-checks included): publish ran " in text
    assert "INCOMPLETE" in report.format_markdown(docs[0])
    cmp_text = format_compare(compare(docs[0], docs[0]))
    assert "note: the new run is a checkpoint of a run that did not finish: written after " \
           "suite 1 of 2" in cmp_text
