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
    for name, ns in (("megakernel_submit_many", 1e5), ("pycuda_launch", 1e8)):
        ctx.bench(name, lambda ns=ns: ns, batch=10_000)
    return build_document(environment={"gpus": [{"name": "test GPU"}], "cpu": {}},
                          options={}, suites=[], results=[r.as_dict() for r in ctx.results],
                          comparisons=[], skipped=[], errors=[])


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    written = plots.write_plots(plot_doc(), str(tmp_path / "plots"))
    names = sorted(p.rsplit("/", 1)[-1] for p in written)
    assert names == ["dispatch.png", "latency_cdf.png", "throughput_ring_size.png",
                     "throughput_workers.png"]
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
