"""``vyre-bench compare OLD.json NEW.json``: per-benchmark ratios and a noise-aware flag.

The flagging rule (docs/bench.md, "Comparing runs"): a benchmark is flagged as changed when

    new median is outside the old run's [p10, p90] band  AND
    old median is outside the new run's [p10, p90] band.

Each run's p10-p90 band is its own run-to-run spread; asking that each median fall outside
the *other* run's band means the change is larger than the noise of either run, so one noisy
run cannot produce a flag by itself, and a tight run cannot hide a shift seen from the other
side. Everything else is reported as ``~`` (within noise), whatever its ratio.
"""
from __future__ import annotations

from typing import Any

from vyre.bench.report import align_table, display_scale, fmt_num

#: environment fields whose difference makes a comparison less meaningful
_ENV_KEYS = (("gpus", 0, "name"), ("cpu", "model"), ("python", "version"), ("git", "commit"),
             ("packages", "vyre"), ("cuda", "driver_cuda"))


def _dig(env: dict, path: tuple) -> Any:
    cur: Any = env
    for key in path:
        try:
            cur = cur[key]
        except (KeyError, IndexError, TypeError):
            return None
    return cur


def flag_change(old: dict, new: dict) -> bool:
    """The flagging rule above, on two summaries (same unit)."""
    new_out = not old["p10"] <= new["median"] <= old["p90"]
    old_out = not new["p10"] <= old["median"] <= new["p90"]
    return new_out and old_out


def compare(old_doc: dict, new_doc: dict) -> dict[str, Any]:
    """Rows for the benchmarks both runs have, plus what only one has and env differences.

    Each row: ``id``, ``unit``, ``old`` / ``new`` summaries, ``ratio`` = new median / old
    median, ``verdict`` in ``better`` / ``worse`` / ``~`` / ``unit changed``."""
    old = {r["id"]: r for r in old_doc["results"]}
    new = {r["id"]: r for r in new_doc["results"]}
    rows = []
    for rid in [i for i in new if i in old]:
        a, b = old[rid], new[rid]
        row = {"id": rid, "unit": b["unit"], "old": a["summary"], "new": b["summary"],
               "ratio": b["summary"]["median"] / a["summary"]["median"]}
        if a["unit"] != b["unit"]:
            row["verdict"] = "unit changed"
        elif flag_change(a["summary"], b["summary"]):
            improved = (row["ratio"] < 1) == (b["better"] == "lower")
            row["verdict"] = "better" if improved else "worse"
        else:
            row["verdict"] = "~"
        rows.append(row)
    env_diffs = []
    for path in _ENV_KEYS:
        x, y = _dig(old_doc["environment"], path), _dig(new_doc["environment"], path)
        if x != y:
            env_diffs.append((".".join(map(str, path)), x, y))
    return {"rows": rows,
            "only_old": [i for i in old if i not in new],
            "only_new": [i for i in new if i not in old],
            "env_diffs": env_diffs}


def format_compare(cmp: dict[str, Any]) -> str:
    """Aligned text of :func:`compare`'s result."""
    header = ["benchmark", "unit", "old median", "new median", "new/old", "verdict"]
    rows = []
    for r in cmp["rows"]:
        div, label = display_scale(r["unit"], r["old"]["median"])
        verdict = {"better": "BETTER", "worse": "WORSE"}.get(r["verdict"], r["verdict"])
        rows.append([r["id"], label, fmt_num(r["old"]["median"] / div),
                     fmt_num(r["new"]["median"] / div), f"{r['ratio']:.3f}", verdict])
    out = align_table(header, rows) if rows else ["(no benchmark in both files)"]
    out += ["", "rule: flagged when the new median is outside the old p10-p90 band and the "
                "old median is outside the new p10-p90 band; '~' = within run-to-run spread"]
    for what in ("only_old", "only_new"):
        if cmp[what]:
            out.append(f"{what.replace('_', ' in ')}: " + ", ".join(cmp[what]))
    for key, x, y in cmp["env_diffs"]:
        out.append(f"note: environment differs in {key}: {x!r} -> {y!r}")
    return "\n".join(out) + "\n"


def has_regression(cmp: dict[str, Any]) -> bool:
    """True when some benchmark is flagged ``worse``."""
    return any(r["verdict"] == "worse" for r in cmp["rows"])
