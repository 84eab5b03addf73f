"""PNG plots of a result document (needs matplotlib: ``pip install 'vyre[plot]'``).

* ``latency_cdf.png``: empirical CDF of the round-trip samples, one line per method
  (log-scaled time axis, so methods orders of magnitude apart stay readable);
* ``throughput_<sweep>.png``: median ops/s against the swept knob (ring size, workers /
  blocks per SM, batch), with p10-p90 error bars;
* ``dispatch.png``: per-op cost of each dispatch method (median, p10-p90 bars, log scale).
A plot whose data the run does not have is not written.
"""
from __future__ import annotations

import os

SWEEP_LABELS = {"ring_size": "ring size (slots)",
                "workers": "workers (CPU threads / blocks per SM)",
                "batch": "ops per submit_many call"}


class PlottingUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never needs a display
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlottingUnavailable("matplotlib is not installed (pip install 'vyre[plot]')") from exc
    return plt


def _plain_ticks(axis) -> None:
    """Tick labels 3, 30, 4096 on a log axis, instead of 3x10^0."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _title(doc: dict, what: str) -> str:
    gpus = doc["environment"].get("gpus") or []
    where = gpus[0].get("name") if gpus else (doc["environment"].get("cpu") or {}).get("model")
    return f"vyre-bench {what} -- {where}"


def latency_cdf(plt, doc: dict, out_dir: str) -> str | None:
    rows = [r for r in doc["results"] if r["suite"] == "latency" and r.get("samples")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        xs = sorted(v / 1e3 for v in r["samples"])
        n = len(xs)
        ax.step(xs, [(i + 1) / n for i in range(n)], where="post",
                label=f"{r['name']} (median {r['summary']['median'] / 1e3:.3g} us, n={n})")
    ax.set_xscale("log")
    _plain_ticks(ax.xaxis)
    ax.set_xlabel("round trip (us, log scale)")
    ax.set_ylabel("fraction of samples <= x")
    ax.set_ylim(0, 1.001)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(_title(doc, "latency CDF"), fontsize=9)
    return _save(plt, fig, out_dir, "latency_cdf.png")


def throughput_sweeps(plt, doc: dict, out_dir: str) -> list[str]:
    written = []
    rows = [r for r in doc["results"] if r["suite"] == "throughput" and "sweep" in r["params"]]
    for sweep in sorted({r["params"]["sweep"] for r in rows}):
        pts = sorted((r["params"][sweep], r["summary"])
                     for r in rows if r["params"]["sweep"] == sweep)
        xs = [x for x, _ in pts]
        med = [s["median"] / 1e6 for _, s in pts]
        lo = [(s["median"] - s["p10"]) / 1e6 for _, s in pts]
        hi = [(s["p90"] - s["median"]) / 1e6 for _, s in pts]
        fig, ax = plt.subplots(figsize=(6.5, 4))
        ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3)
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs)
        _plain_ticks(ax.xaxis)
        ax.set_xlabel(SWEEP_LABELS.get(sweep, sweep))
        ax.set_ylabel("M ops/s (median, p10-p90)")
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(_title(doc, f"throughput vs {sweep}"), fontsize=9)
        written.append(_save(plt, fig, out_dir, f"throughput_{sweep}.png"))
    return written


def dispatch_bars(plt, doc: dict, out_dir: str) -> str | None:
    rows = [r for r in doc["results"] if r["suite"] == "dispatch"]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    names = [r["name"] for r in rows]
    med = [r["summary"]["median"] for r in rows]
    err = [[m - r["summary"]["p10"] for m, r in zip(med, rows)],
           [r["summary"]["p90"] - m for m, r in zip(med, rows)]]
    ax.barh(names, med, xerr=err, capsize=3)
    ax.set_xscale("log")
    ax.set_xlabel("ns per op (median, p10-p90; log scale)")
    ax.invert_yaxis()
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.set_title(_title(doc, f"dispatch of {rows[0]['batch']} ops"), fontsize=9)
    return _save(plt, fig, out_dir, "dispatch.png")


def _save(plt, fig, out_dir: str, name: str) -> str:
    path = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_plots(doc: dict, out_dir: str) -> list[str]:
    """Write every plot the document has data for into ``out_dir``; returns the paths.
    Raises :class:`PlottingUnavailable` without matplotlib."""
    plt = _pyplot()
    os.makedirs(out_dir, exist_ok=True)
    written = [latency_cdf(plt, doc, out_dir), dispatch_bars(plt, doc, out_dir)]
    written += throughput_sweeps(plt, doc, out_dir)
    return [p for p in written if p]
