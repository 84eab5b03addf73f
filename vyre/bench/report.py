"""Outputs of a run: the result document (JSON), an aligned terminal table, markdown.

The document is the source of truth; the table and markdown are rendered from it, so a JSON
file written on the GPU machine can be re-rendered anywhere (``vyre-bench show A.json``).
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable

from vyre.atomic_write import write_atomically
from vyre.bench.runner import RATE_UNITS
from vyre.bench.schema import SCHEMA_VERSION, validate

COLUMNS = ("median", "p10", "p90", "p99", "min", "max", "mean", "stdev")

# display scales per unit: (threshold, divisor, label); the largest threshold <= |median|
_TIME_SCALES = ((0, 1, "ns"), (1e3, 1e3, "us"), (1e6, 1e6, "ms"), (1e9, 1e9, "s"))
_RATE_SCALES = ((0, 1, ""), (1e3, 1e3, "k"), (1e6, 1e6, "M"), (1e9, 1e9, "G"))


def build_document(*, environment: dict, options: dict, suites: list[dict], results: list[dict],
                   comparisons: list[dict], skipped: list[dict], errors: list[dict]) -> dict:
    """Assemble the result document (schema in :mod:`vyre.bench.schema`)."""
    return {"schema_version": SCHEMA_VERSION, "tool": "vyre-bench", "environment": environment,
            "options": options, "suites": suites, "results": results,
            "comparisons": comparisons, "skipped": skipped, "errors": errors}


def write_json(doc: dict, path: str) -> None:
    """Validate and write ``doc``; refuses to write a document that breaks the schema."""
    problems = validate(doc)
    if problems:
        raise ValueError("result document does not match the schema: " + "; ".join(problems[:5]))
    # replaced whole: a run writes this file after every suite, and a run killed while
    # writing must leave the previous checkpoint, not a torn file
    write_atomically(path, [dumps(doc).encode("utf-8")], prefix=".vyre-bench-")


def load_json(path: str) -> dict:
    """Read and validate a result file; raises ValueError naming the first problems."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    problems = validate(doc)
    if problems:
        raise ValueError(f"{path} is not a vyre-bench result (schema_version "
                         f"{SCHEMA_VERSION}): " + "; ".join(problems[:5]))
    return doc


def display_scale(unit: str, reference: float) -> tuple[float, str]:
    """Divisor and label that show values of ``unit`` near ``reference`` readably
    (``us/op``, ``ms``, ``Mops/s``, ``GB/s``)."""
    rate = unit in RATE_UNITS
    scales = _RATE_SCALES if rate else _TIME_SCALES
    div, label = 1.0, scales[0][2]
    for threshold, d, lab in scales:
        if abs(reference) >= threshold:
            div, label = d, lab
    if rate:
        return div, f"{label}{unit}"
    return div, label + ("/op" if unit == "ns/op" else "")


def fmt_num(v: float | None) -> str:
    """Four significant digits, no exponent for the ranges the scales produce."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if v == 0:
        return "0"
    digits = max(0, 3 - int(math.floor(math.log10(abs(v)))))
    return f"{v:,.{digits}f}"


def result_rows(results: Iterable[dict]) -> list[list[str]]:
    """Rows of the results table: id, unit, batch, n, then COLUMNS in the display unit."""
    rows = []
    for r in results:
        s = r["summary"]
        div, label = display_scale(r["unit"], s["median"])
        cells = [r["id"], label, str(r["batch"]), str(s["n"])]
        cells += [fmt_num(None if s[k] is None else s[k] / div) for k in COLUMNS]
        rows.append(cells)
    return rows


def align_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a plain-text table: the first two columns left-aligned, the rest right."""
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    lines = []
    for i, row in enumerate([header] + rows):
        cells = [c.ljust(w) if j < 2 else c.rjust(w)
                 for j, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def run_label(doc: dict) -> dict[str, str]:
    """Mode, backend, device and commit of a run, in words (plot titles, report headers)."""
    env, opts = doc["environment"], doc.get("options") or {}
    gpus = env.get("gpus") or []
    backend = opts.get("resolved_backend") or opts.get("backend") or "?"
    device = (gpus[0].get("name") if gpus and backend != "cpu" else None) or \
        (env.get("cpu") or {}).get("model") or "?"
    git = env.get("git") or {}
    commit = (git.get("commit") or "?")[:10] + ("+dirty" if git.get("dirty") else "")
    return {"mode": "quick" if opts.get("quick") else "full", "backend": backend,
            "device": device, "commit": commit}


def _env_lines(env: dict) -> list[str]:
    gpus = env.get("gpus") or []
    gpu = ", ".join(f"{g.get('name')} (driver {g.get('driver_version')}, SM {g.get('clocks_sm')}"
                    f"/{g.get('clocks_max_sm')} MHz)" for g in gpus) or "none"
    cuda = env.get("cuda") or {}
    cpu = env.get("cpu") or {}
    py = env.get("python") or {}
    pk = env.get("packages") or {}
    git = env.get("git") or {}
    commit = (git.get("commit") or "?")[:12] + (" (dirty)" if git.get("dirty") else "")
    return [
        f"date: {env.get('date_utc')}   commit: {commit}",
        f"gpu: {gpu}   CUDA driver {cuda.get('driver_cuda')}",
        f"cpu: {cpu.get('model')} x{cpu.get('count')} (usable {cpu.get('usable')})",
        f"python {py.get('version')}; " + ", ".join(f"{k} {v}" for k, v in pk.items() if v),
        f"command: {env.get('command')}",
    ]


def _run_lines(doc: dict) -> list[str]:
    lab = run_label(doc)
    why = ("small sizes, short sampling: a smoke test, not numbers to quote"
           if lab["mode"] == "quick" else "the sizes and sampling to quote")
    out = [f"run: {lab['mode']} mode ({why}), backend {lab['backend']}, "
           f"device {lab['device']}"]
    if doc.get("incomplete"):
        out.append(f"INCOMPLETE RUN (a checkpoint): {doc['incomplete']}")
    if doc.get("suites"):
        out.append("suites (wall time each, setup and cross-checks included): " + "; ".join(
            f"{s['name']} {s['status']} {s['duration_s']:.1f} s" for s in doc["suites"]))
    return out


def check_lines(doc: dict) -> list[str]:
    """One line per cross-checked baseline: its median against its reference."""
    out = []
    for r in doc["results"]:
        c = r.get("check")
        if not c:
            continue
        if c["status"] == "unchecked":
            out.append(f"  UNCHECKED {r['id']}: {c['reason']}")
            continue
        div, label = display_scale(r["unit"], r["summary"]["median"])
        head = "ok" if c["status"] == "ok" else "SUSPECT"
        out.append(f"  {head:9s} {r['id']}: median {fmt_num(r['summary']['median'] / div)} "
                   f"{label}, {c['kind']} {fmt_num(c['reference'] / div)} {label} "
                   f"({c['what']})" + (f": {c['reason']}" if c["reason"] else ""))
    return out


def environment_lines(doc: dict) -> list[str]:
    """Per-suite flags: GPU clocks that moved or throttled, a loaded host."""
    out = []
    usable = (doc["environment"].get("cpu") or {}).get("usable") or 0
    for s in doc["suites"]:
        if s["status"] == "skipped":
            continue
        if s.get("clocks_moved"):
            out.append(f"  {s['name']}: GPU speed may have changed: {s['clocks_moved']}")
        loads = [x.get("loadavg") for x in (s.get("before"), s.get("after")) if x]
        peak = max((la[0] for la in loads if la), default=None)
        if usable and peak is not None and peak > usable:
            out.append(f"  {s['name']}: host loaded (1-minute load {peak:.2f} on {usable} "
                       "usable CPUs): host-side figures are noisier")
    return out


def ratio_lines(doc: dict) -> list[str]:
    """The ratios, each saying what it means and whether its target is met."""
    out = []
    for c in doc["comparisons"]:
        out.append(f"  {c['text']}")
        if c.get("meaning"):
            out.append(f"      ({c['meaning']}{'; paired rounds' if c.get('paired') else ''})")
    return out


def format_table(doc: dict) -> str:
    """The terminal report: environment, aligned results, ratios, checks, skips, errors."""
    header = ["benchmark", "unit", "batch", "n", *COLUMNS]
    out = _env_lines(doc["environment"]) + _run_lines(doc) + [""]
    if doc["results"]:
        out += align_table(header, result_rows(doc["results"]))
    else:
        out.append("(no results)")
    if doc["comparisons"]:
        out += ["", "ratios (same run; > 1 means vyre is better; CI: 95% bootstrap interval "
                    "of the ratio):"] + ratio_lines(doc)
    checks = check_lines(doc)
    if checks:
        out += ["", "baseline cross-checks (each baseline against the same call measured "
                    "alone; off by > 2x = suspect, excluded from ratios):"] + checks
    flags = environment_lines(doc)
    if flags:
        out += ["", "environment:"] + flags
    if doc["skipped"]:
        out += ["", "skipped:"] + [f"  {s['suite']}/{s['name']}: {s['reason']}"
                                   for s in doc["skipped"]]
    if doc["errors"]:
        out += ["", "ERRORS:"] + [f"  {e['suite']}/{e['name']}: {e['error']}"
                                  for e in doc["errors"]]
    return "\n".join(out) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def format_markdown(doc: dict) -> str:
    """GitHub markdown of the same report (paste into bench/RESULTS.md)."""
    out = ["# vyre-bench results", ""]
    out += [f"- {_md_escape(line)}" for line in _env_lines(doc["environment"]) + _run_lines(doc)]
    out += ["", "Medians and percentiles per op (see docs/bench.md for the method).", ""]
    header = ["benchmark", "unit", "batch", "n", *COLUMNS]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
    for row in result_rows(doc["results"]):
        out.append("| " + " | ".join(_md_escape(c) for c in row) + " |")
    notes = [r for r in doc["results"] if r["notes"]]
    if notes:
        out += ["", "## Notes", ""] + [f"- {r['id']}: {_md_escape(r['notes'])}" for r in notes]
    if doc["comparisons"]:
        out += ["", "## Ratios (same run; > 1 means vyre is better)", ""]
        out += [f"- {_md_escape(c['text'])}" + (f" ({_md_escape(c['meaning'])})"
                                                  if c.get("meaning") else "")
                for c in doc["comparisons"]]
    checks = check_lines(doc)
    if checks:
        out += ["", "## Baseline cross-checks", ""] + [f"- {_md_escape(x.strip())}"
                                                        for x in checks]
    flags = environment_lines(doc)
    if flags:
        out += ["", "## Environment flags", ""] + [f"- {_md_escape(x.strip())}" for x in flags]
    if doc["skipped"]:
        out += ["", "## Skipped", "", "| benchmark | reason |", "|---|---|"]
        out += [f"| {s['suite']}/{_md_escape(s['name'])} | {_md_escape(s['reason'])} |"
                for s in doc["skipped"]]
    if doc["errors"]:
        out += ["", "## Errors", ""]
        out += [f"- {e['suite']}/{_md_escape(e['name'])}: {_md_escape(e['error'])}"
                for e in doc["errors"]]
    return "\n".join(out) + "\n"


def dumps(doc: dict) -> str:
    """The document as JSON text (as :func:`write_json` writes it)."""
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"


def format_summary(doc: dict, phrases: dict[str, str] | None = None) -> str:
    """The run in sentences: each subject's figure, then each baseline's figure, the ratio
    the readable way round with its CI, and the target's verdict (``vyre-bench --summary``,
    ``python -m vyre demo``). ``phrases`` names methods in words, by result id."""
    from vyre.bench.runner import describe_ratio, fmt_ratio

    by = {r["id"]: r for r in doc["results"]}
    said = (phrases or {}).get

    def figure(rid: str) -> str:
        r = by[rid]
        div, label = display_scale(r["unit"], r["summary"]["median"])
        return f"{fmt_num(r['summary']['median'] / div)} {label}"

    out, last = [], None
    for c in doc["comparisons"]:
        if c["subject"] != last:
            last = c["subject"]
            out.append(f"  {said(last, last)}: {figure(last)} (median)")
        base = f"{said(c['baseline'], c['baseline'])} ({figure(c['baseline'])})"
        if c.get("excluded"):
            out.append(f"    not compared with {base}: {c['excluded']}")
            continue
        lower = by[c["subject"]]["better"] == "lower"
        line = f"    {describe_ratio(c['ratio'], lower).split(' (ratio')[0]} than {base}"
        if c.get("ci_low") is not None:
            lo, hi = c["ci_low"], c["ci_high"]
            if c["ratio"] < 1:  # said the readable way round, as the words are
                lo, hi = 1 / hi, 1 / lo
            line += f" (95% CI {fmt_ratio(lo)}-{fmt_ratio(hi)})"
        if c.get("target"):
            t = c["target"]
            line += f"; the target is {fmt_ratio(t['ratio'])}: {'met' if t['met'] else 'not met'}"
        out.append(line)
    checks = [r["check"] for r in doc["results"] if r.get("check")]
    if checks:
        ok = sum(c["status"] == "ok" for c in checks)
        out.append(f"  baselines cross-checked against the same call measured alone: {ok} of "
                   f"{len(checks)} agree within 2x" +
                   ("" if ok == len(checks) else " (the others are named above, or unchecked)"))
    out += [f"  skipped {s['suite']}/{s['name']}: {s['reason']}" for s in doc["skipped"]]
    out += [f"  FAILED {e['suite']}/{e['name']}: {e['error']}" for e in doc["errors"]]
    out += environment_lines(doc)
    return "\n".join(out) + "\n"
