"""``vyre-bench compare OLD.json NEW.json``: did each benchmark get faster, slower, or neither?

Labels (docs/bench.md, "Comparing runs"). Each run gives every benchmark an *uncertainty
interval* for its median: the wider of the median's bootstrap confidence interval and the
range of its block medians (the medians of five consecutive blocks of samples, i.e. how far
the median wandered during that run). Files without those fields (older results) fall back
to the p10-p90 band. The change interval is then ``new/old`` at its two extremes
(``new_low/old_high`` .. ``new_high/old_low``), read in the benchmark's direction:

* ``FASTER`` / ``SLOWER``: the whole change interval is beyond the tolerance (default 5 %)
  on one side;
* ``SAME``: the whole change interval lies within the tolerance;
* ``UNSURE``: neither -- the spreads are too wide to tell (the interval straddles a
  tolerance edge).

A comparison of runs of different modes (``--quick`` vs full), backends or machines (GPU or
CPU model) is refused unless forced, and then every line of the output says so.
"""
from __future__ import annotations

from typing import Any

from vyre.bench.report import align_table, display_scale, fmt_num

#: default tolerance of SAME and of FASTER/SLOWER (fraction of the old median)
DEFAULT_TOLERANCE = 0.05

#: environment fields whose difference makes a comparison less meaningful
_ENV_KEYS = (("gpus", 0, "name"), ("cpu", "model"), ("python", "version"), ("git", "commit"),
             ("packages", "vyre"), ("cuda", "driver_cuda"))


class NotComparable(ValueError):
    """The runs differ in mode, backend or machine (``--force`` compares them anyway)."""


def _dig(env: Any, path: tuple) -> Any:
    cur: Any = env
    for key in path:
        try:
            cur = cur[key]
        except (KeyError, IndexError, TypeError):
            return None
    return cur


def run_identity(doc: dict) -> dict[str, Any]:
    """What must match for two runs to be compared: mode, backend, machine."""
    opts, env = doc.get("options") or {}, doc.get("environment") or {}
    return {"mode": "quick" if opts.get("quick") else "full",
            "backend": opts.get("resolved_backend") or opts.get("backend"),
            "gpu": _dig(env, ("gpus", 0, "name")),
            "cpu": _dig(env, ("cpu", "model"))}


def mismatches(old_doc: dict, new_doc: dict) -> list[str]:
    """Why two runs are not like for like, one line per difference ([] when they are)."""
    a, b = run_identity(old_doc), run_identity(new_doc)
    return [f"{key}: {a[key]!r} vs {b[key]!r}" for key in a if a[key] != b[key]]


def interval(result: dict) -> tuple[float, float, str]:
    """The uncertainty interval of a result's median and what it is made of."""
    s = result["summary"]
    ci, blocks = result.get("median_ci"), result.get("block_medians")
    if ci and blocks:
        return (min(ci[0], *blocks), max(ci[1], *blocks), "CI+blocks")
    if ci:
        return ci[0], ci[1], "CI"
    return s["p10"], s["p90"], "p10-p90"


def label(old: dict, new: dict, tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """FASTER / SLOWER / SAME / UNSURE for one benchmark present in both runs (same unit),
    with the ratio ``new/old`` of the medians and the change interval."""
    o_lo, o_hi, o_how = interval(old)
    n_lo, n_hi, n_how = interval(new)
    ratio = new["summary"]["median"] / old["summary"]["median"]
    lo, hi = n_lo / o_hi, n_hi / o_lo
    down, up = 1 - tolerance, 1 + tolerance
    lower_better = new["better"] == "lower"
    if hi < down:
        verdict = "FASTER" if lower_better else "SLOWER"
    elif lo > up:
        verdict = "SLOWER" if lower_better else "FASTER"
    elif lo >= down and hi <= up:
        verdict = "SAME"
    else:
        verdict = "UNSURE"
    return {"ratio": ratio, "low": lo, "high": hi, "verdict": verdict,
            "spread": o_how if o_how == n_how else f"{o_how}/{n_how}"}


def compare(old_doc: dict, new_doc: dict, *, tolerance: float = DEFAULT_TOLERANCE,
            force: bool = False) -> dict[str, Any]:
    """Rows for the benchmarks both runs have, what only one has, and env differences.

    Raises :class:`NotComparable` when the runs differ in mode, backend or machine, unless
    ``force`` (then ``forced`` lists the differences)."""
    diff = mismatches(old_doc, new_doc)
    if diff and not force:
        raise NotComparable("the runs are not like for like (" + "; ".join(diff) + "); "
                            "compare runs of one mode, backend and machine, or pass --force "
                            "to compare them anyway")
    old = {r["id"]: r for r in old_doc["results"]}
    new = {r["id"]: r for r in new_doc["results"]}
    rows = []
    for rid in [i for i in new if i in old]:
        a, b = old[rid], new[rid]
        row: dict[str, Any] = {"id": rid, "unit": b["unit"], "better": b["better"],
                               "old": a["summary"], "new": b["summary"]}
        if a["unit"] != b["unit"]:
            row.update(ratio=None, low=None, high=None, verdict="UNIT CHANGED", spread="")
        else:
            row.update(label(a, b, tolerance))
        suspect = [w for w, r in (("old", a), ("new", b))
                   if (r.get("check") or {}).get("status") == "suspect"]
        row["suspect"] = suspect
        rows.append(row)
    env_diffs = []
    for path in _ENV_KEYS:
        x, y = _dig(old_doc["environment"], path), _dig(new_doc["environment"], path)
        if x != y:
            env_diffs.append((".".join(map(str, path)), x, y))
    moved = [f"{which} run, suite {s['name']}: {s['clocks_moved']}"
             for which, d in (("old", old_doc), ("new", new_doc))
             for s in d.get("suites") or [] if s.get("clocks_moved")]
    incomplete = [f"the {which} run is a checkpoint of a run that did not finish: "
                  f"{d['incomplete']}"
                  for which, d in (("old", old_doc), ("new", new_doc)) if d.get("incomplete")]
    return {"rows": rows, "tolerance": tolerance, "forced": diff, "clocks_moved": moved,
            "incomplete": incomplete,
            "only_old": [i for i in old if i not in new],
            "only_new": [i for i in new if i not in old],
            "env_diffs": env_diffs}


def format_compare(cmp: dict[str, Any]) -> str:
    """Aligned text of :func:`compare`'s result."""
    warn = []
    if cmp["forced"]:
        warn = ["WARNING: NOT LIKE FOR LIKE, compared because of --force: "
                + "; ".join(cmp["forced"]), ""]
    header = ["benchmark", "unit", "old median", "new median", "new/old", "change interval",
              "label"]
    rows = []
    for r in cmp["rows"]:
        div, unit = display_scale(r["unit"], r["old"]["median"])
        span = "-" if r["low"] is None else f"{r['low']:.3f}-{r['high']:.3f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        lab = r["verdict"] + (f" (suspect baseline in {'+'.join(r['suspect'])})"
                              if r["suspect"] else "")
        rows.append([r["id"], unit, fmt_num(r["old"]["median"] / div),
                     fmt_num(r["new"]["median"] / div), ratio, span, lab])
    out = warn + (align_table(header, rows) if rows else ["(no benchmark in both files)"])
    tol = f"{cmp['tolerance'] * 100:g}%"
    out += ["",
            "new/old: ratio of the medians. change interval: new/old at the extremes of each "
            "run's uncertainty (the median's 95% bootstrap CI and its 5 block medians; p10-p90 "
            "for files without them).",
            f"FASTER/SLOWER: the whole interval is beyond {tol}; SAME: the whole interval is "
            f"within {tol}; UNSURE: the spreads are too wide to tell."]
    counts = {k: sum(r["verdict"] == k for r in cmp["rows"])
              for k in ("FASTER", "SLOWER", "SAME", "UNSURE")}
    out.append("summary: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    for what in ("only_old", "only_new"):
        if cmp[what]:
            out.append(f"{what.replace('_', ' in ')}: " + ", ".join(cmp[what]))
    for key, x, y in cmp["env_diffs"]:
        out.append(f"note: environment differs in {key}: {x!r} -> {y!r}")
    for line in cmp.get("clocks_moved", []):
        out.append(f"note: GPU speed may have changed in the {line}")
    for line in cmp.get("incomplete", []):
        out.append(f"note: {line}")
    out += [""] + warn[:1] if warn else []
    return "\n".join(out) + "\n"


def regressions(cmp: dict[str, Any], pct: float = 0.0) -> list[dict[str, Any]]:
    """Rows labelled SLOWER whose median moved by more than ``pct`` percent the wrong way."""
    out = []
    for r in cmp["rows"]:
        if r["verdict"] != "SLOWER" or r["ratio"] is None:
            continue
        worse = r["ratio"] - 1 if r["better"] == "lower" else 1 / r["ratio"] - 1
        if worse * 100 > pct:
            out.append(r)
    return out


def has_regression(cmp: dict[str, Any], pct: float = 0.0) -> bool:
    """True when some benchmark is SLOWER by more than ``pct`` percent."""
    return bool(regressions(cmp, pct))
