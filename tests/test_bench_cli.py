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
    assert all("before" in s and "after" in s for s in doc["suites"])
    assert doc["options"]["resolved_backend"] == "cpu"
    assert doc["environment"]["command"].startswith("vyre-bench --quick")
    assert md.read_text().startswith("# vyre-bench results")
    assert "benchmark" in p.stdout  # the terminal table


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
