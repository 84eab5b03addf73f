"""vyre.bench.plots: PNGs when matplotlib is installed, a clean refusal when it is not."""
import itertools
import sys

import pytest

from vyre.bench import plots
from vyre.bench.report import build_document
from vyre.bench.runner import Context, Options

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def plot_doc():
    ctx = Context(Options(min_time_s=0.0, warmup_s=0.0, min_samples=20))
    ctx.suite = "latency"
    for name, base in (("megakernel", 3000.0), ("pycuda_launch_sync", 15000.0)):
        vals = itertools.cycle([base, base * 1.1, base * 0.95, base * 2])
        ctx.bench(name, lambda v=vals: next(v), unit="ns", keep_samples=True)
    ctx.suite = "throughput"
    for sweep, values in (("ring_size", [256, 1024, 4096]), ("workers", [1, 2, 4])):
        for v in values:
            rates = itertools.cycle([1e6 / v, 1.1e6 / v])
            ctx.bench(f"{sweep}={v}", lambda r=rates: next(r), unit="ops/s", batch=1000,
                      params={"sweep": sweep, sweep: v})
    ctx.suite = "dispatch"
    res = {}
    for name, ns in (("megakernel_submit_many", 1e5), ("pycuda_launch", 1e8)):
        res[name] = ctx.bench(name, lambda ns=ns: ns, batch=10_000)
    ctx.compare(res["megakernel_submit_many"], res["pycuda_launch"])
    ctx.suite = "ingest"  # a rate suite gets bars too
    for name, rate in (("gpustream_scan", 1e9), ("read_only", 4e9)):
        ctx.bench(name, lambda r=rate: 1e9 / r * 1e6, unit="B/s", batch=1_000_000)
    return build_document(environment={"gpus": [{"name": "test GPU"}], "cpu": {},
                                       "git": {"commit": "0123456789abcdef", "dirty": False}},
                          options={"quick": True, "resolved_backend": "cuda"}, suites=[],
                          results=[r.as_dict() for r in ctx.results],
                          comparisons=[c.as_dict() for c in ctx.comparisons], skipped=[],
                          errors=[])


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    written = plots.write_plots(plot_doc(), str(tmp_path / "plots"))
    names = sorted(p.rsplit("/", 1)[-1] for p in written)
    assert names == ["dispatch.png", "ingest.png", "latency.png", "latency_cdf.png",
                     "throughput.png", "throughput_ring_size.png", "throughput_workers.png"]
    for path in written:
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC


def test_no_data_no_plot(tmp_path):
    pytest.importorskip("matplotlib")
    doc = plot_doc()
    doc["results"] = []
    assert plots.write_plots(doc, str(tmp_path)) == []


def test_without_matplotlib_plotting_is_refused_cleanly(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(plots.PlottingUnavailable, match="pip install"):
        plots.write_plots(plot_doc(), str(tmp_path))


def test_titles_name_backend_device_mode_and_commit():
    title = plots._title(plot_doc(), "dispatch")
    assert "cuda backend on test GPU" in title and "quick run" in title
    assert "commit 0123456789" in title


def test_throughput_plots_draw_the_runs_baselines(tmp_path):
    pytest.importorskip("matplotlib")
    plt = plots._pyplot()
    doc = plot_doc()
    fig, ax = plt.subplots()
    plots._rate_baselines(ax, doc)
    labels = [line.get_label() for line in ax.get_lines()]
    # pycuda_launch: 1e8 ns per 10 000 ops = 10 us/op = 0.1 M ops/s
    assert labels == ["dispatch/pycuda_launch (0.1 M ops/s)"]
    plt.close(fig)
