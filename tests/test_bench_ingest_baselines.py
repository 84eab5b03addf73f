"""The ingest suite's CPU scanner baselines and device-array benchmark: same files, counts
checked per pattern (a scanner that miscounts fails loudly, never reports a number), ratios
against each, per-pattern vyre scans used when this vyre has them, the device-array scan
skipped without CUDA and its input and reference count exact."""
from __future__ import annotations

import types

import numpy as np
import pytest

from vyre.bench import scanners
from vyre.bench.runner import Context, Options
from vyre.bench.suites import _common, ingest
from vyre.ingest.dfa import count_matches

pytest.importorskip("hyperscan")
pytest.importorskip("ahocorasick")


def _cpu_ok() -> None:
    try:
        fx = _common.facade()
        _common.megakernel(fx, "cpu", slot_count=16, observable_slots=4).shutdown()
        import vyre.ingest.stream  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"CPU backend or ingest not usable here: {exc}")


def _run(monkeypatch) -> Context:
    monkeypatch.setenv("VYRE_BENCH_INGEST_MIB", "8")
    ctx = Context(Options(quick=True, min_time_s=0.0, warmup_s=0.0, min_samples=2,
                          backend="cpu"))
    ctx.suite = "ingest"
    ingest.run(ctx)
    return ctx


def test_baselines_run_verified_and_compared(monkeypatch):
    _cpu_ok()
    ctx = _run(monkeypatch)
    assert ctx.errors == [], ctx.errors
    by = {r.name: r for r in ctx.results}
    here = [n for n, why in scanners.available().items() if why is None]
    assert {"hyperscan", "pyahocorasick"} <= set(here)
    for name in here:
        assert by[name].verified is True, name
        assert by[name].check["status"] in ("ok", "suspect")
    compared = {(c.subject, c.baseline) for c in ctx.comparisons}
    for name in here:
        assert ("ingest/gpustream_scan", f"ingest/{name}") in compared
    skipped = {s["name"]: s["reason"] for s in ctx.skipped}
    assert "CUDA backend" in skipped["device_array_scan"]
    info = ctx.info["ingest"]
    assert len(info["matches_per_pattern"]) == len(ingest.PATTERNS)
    # the two patterns cannot overlap: positions = the sum of the per-pattern counts
    assert info["matches"] == sum(info["matches_per_pattern"])


def test_a_scanner_that_miscounts_fails_loudly(monkeypatch):
    _cpu_ok()
    real = scanners.HyperscanCounter.count_files

    def off_by_one(self, paths):
        out = real(self, paths)
        out[0] += 1
        return out

    monkeypatch.setattr(scanners.HyperscanCounter, "count_files", off_by_one)
    ctx = _run(monkeypatch)
    errs = {e["name"]: e["error"] for e in ctx.errors}
    assert "hyperscan" in errs and "expected" in errs["hyperscan"]
    assert "hyperscan" not in {r.name for r in ctx.results}  # an error, never a number


def test_per_pattern_scan_is_measured_when_the_stream_has_it(monkeypatch):
    _cpu_ok()
    from vyre.ingest import stream as stream_mod

    class OldStream:  # a vyre whose scan has no per_pattern option
        def scan(self, sources, dfa):
            return {}

    assert not ingest.scan_has_per_pattern(OldStream)
    assert ingest.scan_has_per_pattern(stream_mod.GpuStream)
    ctx = _run(monkeypatch)
    assert ctx.errors == [], ctx.errors
    by = {r.name: r for r in ctx.results}
    assert by["gpustream_scan_per_pattern"].verified is True
    compared = {(c.subject, c.baseline): c for c in ctx.comparisons}
    vs_hs = compared[("ingest/gpustream_scan_per_pattern", "ingest/hyperscan")]
    assert vs_hs.target is not None and vs_hs.target["ratio"] == 3.0  # issue 20 sets it


def test_the_naive_per_pattern_reference_counts_overlaps():
    assert ingest.count_per_pattern([b"aa", b"a", b"b"], b"aaab").tolist() == [2, 3, 1]


def _numpy_as_cupy():
    return types.SimpleNamespace(asarray=np.asarray, empty=np.empty, uint8=np.uint8,
                                 asnumpy=np.asarray)


@pytest.mark.parametrize("size,block", [(1, 64), (5000, 4096), (300_001, 70_000)])
def test_device_input_and_its_reference_count(size, block):
    cp = _numpy_as_cupy()
    arr = ingest.device_input(cp, size, block=block)
    assert arr.dtype == np.uint8 and arr.size == size
    for piece in (7, 1000, 1 << 20):
        assert ingest.count_device(cp, arr, piece=piece) == count_matches(ingest.PATTERNS,
                                                                          arr.tobytes())


def test_device_input_plants_the_patterns():
    arr = ingest.device_input(_numpy_as_cupy(), 1 << 20, block=1 << 18)
    assert count_matches(ingest.PATTERNS, arr.tobytes()) >= 4 * (1 << 18) // (1 << 16) - 4


def test_device_array_size_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("VYRE_BENCH_DEVICE_MIB", raising=False)
    assert ingest._device_mib(False) == 4096 and ingest._device_mib(True) == 64
    monkeypatch.setenv("VYRE_BENCH_DEVICE_MIB", "128")
    assert ingest._device_mib(False) == 128
    for bad in ("4G", "0"):
        monkeypatch.setenv("VYRE_BENCH_DEVICE_MIB", bad)
        with pytest.raises(ValueError, match="VYRE_BENCH_DEVICE_MIB"):
            ingest._device_mib(False)


def test_only_the_methods_named_are_measured(monkeypatch):
    _cpu_ok()
    monkeypatch.setenv("VYRE_BENCH_INGEST_METHODS", "gpustream_scan_per_pattern, hyperscan")
    ctx = _run(monkeypatch)
    assert ctx.errors == [], ctx.errors
    assert {r.name for r in ctx.results} == {"gpustream_scan_per_pattern", "hyperscan"}
    skipped = {s["name"]: s["reason"] for s in ctx.skipped}
    for name in ("gpustream_scan", "read_only", "python_count", "pyahocorasick",
                 "device_array_scan"):
        assert "VYRE_BENCH_INGEST_METHODS" in skipped[name], name
    assert {(c.subject, c.baseline) for c in ctx.comparisons} == \
        {("ingest/gpustream_scan_per_pattern", "ingest/hyperscan")}


@pytest.mark.parametrize("value", ["gpustream_scan,hyprescan", ",", " , "])
def test_a_selection_naming_no_known_method_is_refused_before_any_input(monkeypatch, value):
    _cpu_ok()
    written = []
    monkeypatch.setattr(ingest, "write_input", lambda *a, **k: written.append(a))
    monkeypatch.setenv("VYRE_BENCH_INGEST_METHODS", value)
    with pytest.raises(ValueError, match=r"VYRE_BENCH_INGEST_METHODS.*choose from .*hyperscan"):
        _run(monkeypatch)
    assert written == []  # refused before any input file was written


def test_the_device_array_scan_is_selected_by_name(monkeypatch):
    seen = []
    monkeypatch.setattr(ingest, "_device_array", lambda ctx, *a: seen.append(a[0]))
    monkeypatch.setenv("VYRE_BENCH_INGEST_METHODS", "device_array_scan")
    _cpu_ok()
    ctx = _run(monkeypatch)
    assert ctx.errors == [], ctx.errors
    assert len(seen) == 1 and ctx.results == []
