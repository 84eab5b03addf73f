"""PNG plots of a result document (needs matplotlib: ``pip install 'vyre[plot]'``).

* ``latency_cdf.png``: empirical CDF of the round-trip samples, one line per method,
  baselines included (log-scaled time axis, so methods orders of magnitude apart stay
  readable);
* ``<suite>.png`` for every suite with results (``<suite>_<unit>.png`` where a suite mixes
  units): one bar per method, the median with its 95% bootstrap CI, vyre's methods and the
  baselines in different colours, a suspect baseline hatched and labelled;
* ``throughput_<sweep>.png``: median ops/s against the swept knob (ring size, workers /
  blocks per SM, batch), with p10-p90 error bars and, as horizontal lines, the per-op
  baselines this run measured (dispatch's launches and graph, the cpu suite's thread pool).
Every title names the backend, the device, the mode (quick/full) and the commit. A plot whose
data the run does not have is not written.
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
    from vyre.bench.report import run_label

    lab = run_label(doc)
    return (f"vyre-bench {what}\n{lab['backend']} backend on {lab['device']}, "
            f"{lab['mode']} run, commit {lab['commit']}")


def _baseline_ids(doc: dict) -> set[str]:
    return {c["baseline"] for c in doc.get("comparisons") or []}


#: per-op baselines drawn on the throughput plots (as ops/s), when the run measured them
RATE_BASELINES = ("dispatch/pycuda_launch", "dispatch/cupy_launch", "dispatch/cuda_graph",
                  "cpu/threadpool_submit", "cpu/python_loop")


def latency_cdf(plt, doc: dict, out_dir: str) -> str | None:
    rows = [r for r in doc["results"] if r["suite"] == "latency" and r.get("samples")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        xs = sorted(v / 1e3 for v in r["samples"])
        n = len(xs)
        kind = " baseline" if r["id"] in _baseline_ids(doc) else ""
        if (r.get("check") or {}).get("status") == "suspect":
            kind = " baseline, SUSPECT"
        ax.step(xs, [(i + 1) / n for i in range(n)], where="post",
                linestyle="--" if kind else "-",
                label=f"{r['name']}{kind} (median {r['summary']['median'] / 1e3:.3g} us, n={n})")
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
        fig, ax = plt.subplots(figsize=(6.5, 4.3))
        ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, label="vyre (streaming)")
        levels = _rate_baselines(ax, doc) + med
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs)
        _plain_ticks(ax.xaxis)
        ax.set_xlabel(SWEEP_LABELS.get(sweep, sweep))
        if min(levels) > 0 and max(levels) / min(levels) > 50:  # baselines far apart
            ax.set_yscale("log")
            ax.set_ylabel("M ops/s (median, p10-p90; log scale)")
        else:
            ax.set_ylabel("M ops/s (median, p10-p90)")
            ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(_title(doc, f"throughput vs {sweep}"), fontsize=9)
        written.append(_save(plt, fig, out_dir, f"throughput_{sweep}.png"))
    return written


def _rate_baselines(ax, doc: dict) -> list[float]:
    """Horizontal lines at the per-op baselines' rates (M ops/s), or a note that the run
    has none; returns the rates drawn."""
    by = {r["id"]: r for r in doc["results"]}
    drawn: list[float] = []
    for i, rid in enumerate(RATE_BASELINES):
        r = by.get(rid)
        if r is None or r["unit"] != "ns/op":
            continue
        suspect = (r.get("check") or {}).get("status") == "suspect"
        rate = 1e9 / r["summary"]["median"] / 1e6
        ax.axhline(rate, linestyle="--", linewidth=1, color=f"C{i + 1}",
                   label=f"{rid} ({rate:.3g} M ops/s{', SUSPECT' if suspect else ''})")
        drawn.append(rate)
    if not drawn:
        ax.text(0.01, 0.01, "no per-op baseline in this run (add --suite dispatch or cpu)",
                transform=ax.transAxes, fontsize=7, alpha=0.7)
    return drawn


def suite_bars(plt, doc: dict, out_dir: str) -> list[str]:
    """One bar chart per suite (and unit): medians with 95% CIs, baselines marked."""
    written = []
    baselines = _baseline_ids(doc)
    suites = list(dict.fromkeys(r["suite"] for r in doc["results"]))
    for suite in suites:
        rows = [r for r in doc["results"] if r["suite"] == suite]
        units = list(dict.fromkeys(r["unit"] for r in rows))
        for unit in units:
            part = [r for r in rows if r["unit"] == unit]
            name = f"{suite}.png" if len(units) == 1 else \
                f"{suite}_{unit.replace('/', '_per_')}.png"
            written.append(_bars(plt, doc, part, unit, baselines, out_dir, name))
    return written


def _bars(plt, doc, rows, unit, baselines, out_dir, name) -> str:
    from vyre.bench.report import display_scale

    div, label = display_scale(unit, max(r["summary"]["median"] for r in rows))
    med = [r["summary"]["median"] / div for r in rows]
    lo, hi = [], []
    for r, m in zip(rows, med, strict=True):
        ci = r.get("median_ci") or [r["summary"]["p10"], r["summary"]["p90"]]
        lo.append(max(0.0, m - ci[0] / div))
        hi.append(max(0.0, ci[1] / div - m))
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.42 * len(rows)))
    names = []
    for i, (r, m) in enumerate(zip(rows, med, strict=True)):
        base = r["id"] in baselines
        suspect = (r.get("check") or {}).get("status") == "suspect"
        ax.barh(i, m, xerr=[[lo[i]], [hi[i]]], capsize=3,
                color="tab:gray" if base else "tab:blue", hatch="//" if suspect else None)
        names.append(r["name"] + (" (baseline, SUSPECT)" if suspect else
                                  " (baseline)" if base else ""))
        ax.text(m + hi[i], i, f" {m:.4g}", va="center", fontsize=7)  # past the CI bar
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(names, fontsize=8)
    if min(med) > 0 and max(med) / min(med) > 20:
        ax.set_xscale("log")
    better = "lower is better" if rows[0]["better"] == "lower" else "higher is better"
    ax.set_xlabel(f"{label} (median, 95% CI; {better})")
    ax.invert_yaxis()
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.set_title(_title(doc, f"{rows[0]['suite']}"), fontsize=9)
    return _save(plt, fig, out_dir, name)


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
    written = [latency_cdf(plt, doc, out_dir)]
    written += suite_bars(plt, doc, out_dir)
    written += throughput_sweeps(plt, doc, out_dir)
    return [p for p in written if p]
