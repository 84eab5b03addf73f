"""vyre.bench.report and schema: JSON round trip, schema validation, table, markdown."""
import copy
import itertools
import json

import pytest

from vyre.bench import env
from vyre.bench.report import (
    build_document,
    display_scale,
    fmt_num,
    format_markdown,
    format_table,
    load_json,
    write_json,
)
from vyre.bench.runner import Context, Options
from vyre.bench.schema import SCHEMA, SCHEMA_VERSION, validate


def make_doc():
    """A small but complete document produced through the real Context."""
    ctx = Context(Options(min_time_s=0.0, warmup_s=0.0, min_samples=5))
    ctx.suite = "dispatch"
    vals = itertools.cycle([1000.0, 1100.0, 1200.0, 900.0, 1000.0])
    mk = ctx.bench("megakernel", lambda: next(vals), batch=10, params={"ops": 10})
    base_vals = itertools.cycle([100_000.0, 90_000.0, 110_000.0])
    base = ctx.bench("pycuda_launch", lambda: next(base_vals), batch=10,
                     notes="one | pipe in a note")
    ctx.compare(mk, base)
    ctx.skip("cupy_launch", "cupy not importable (ModuleNotFoundError)")
    ctx.suite = "latency"
    lat = itertools.cycle([3000.0, 3100.0, 2900.0])
    ctx.bench("megakernel", lambda: next(lat), unit="ns", keep_samples=True)
    ctx.suite = "throughput"
    rate = itertools.cycle([1e6, 1.1e6])
    ctx.bench("ring_size=256", lambda: next(rate), unit="ops/s", batch=65536,
              params={"sweep": "ring_size", "ring_size": 256})
    ctx.suite = "ingest"
    ctx.skip("*", "not available: vyre.ingest.stream is not importable")
    return build_document(
        environment=env.collect(["vyre-bench", "--quick"]), options=ctx.options.as_dict(),
        suites=[{"name": "dispatch", "status": "ran", "reason": "", "duration_s": 1.0,
                 "info": {"ops_per_sample": 10}},
                {"name": "ingest", "status": "skipped", "reason": "not available",
                 "duration_s": 0.0, "info": {}}],
        results=[r.as_dict() for r in ctx.results],
        comparisons=[c.as_dict() for c in ctx.comparisons],
        skipped=ctx.skipped, errors=ctx.errors)


def test_document_is_valid_and_round_trips(tmp_path):
    doc = make_doc()
    assert validate(doc) == []
    assert doc["schema_version"] == SCHEMA_VERSION
    path = tmp_path / "r.json"
    write_json(doc, str(path))
    back = load_json(str(path))
    assert back == json.loads(json.dumps(doc))
    lat = [r for r in back["results"] if r["suite"] == "latency"][0]
    assert len(lat["samples"]) == lat["summary"]["n"]
    # results without kept samples carry no samples key at all
    assert "samples" not in back["results"][0]


def test_environment_metadata_is_recorded():
    e = make_doc()["environment"]
    for key in ("date_utc", "command", "python", "cpu", "gpus", "cuda", "packages", "git",
                "timer"):
        assert key in e
    assert e["date_utc"].endswith("+00:00")
    assert e["command"] == "vyre-bench --quick"
    assert e["packages"]["numpy"] is not None
    assert e["cpu"]["count"] >= 1


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d.pop("schema_version"), "missing required key 'schema_version'"),
    (lambda d: d.update(schema_version=99), "schema_version"),
    (lambda d: d["results"][0]["summary"].update(median="fast"), "summary.median: expected number"),
    (lambda d: d["results"][0]["summary"].update(n=True), "summary.n: expected integer"),
    (lambda d: d["results"][0].update(unit="furlongs"), "results[0].unit"),
    (lambda d: d["results"][0].update(batch=0), "below the minimum"),
    (lambda d: d["results"][0].update(extra=1), "unexpected key 'extra'"),
    (lambda d: d["skipped"][0].pop("reason"), "missing required key 'reason'"),
    (lambda d: d["suites"][0].update(status="maybe"), "suites[0].status"),
])
def test_validator_catches_schema_violations(mutate, needle):
    doc = copy.deepcopy(make_doc())
    mutate(doc)
    problems = validate(doc)
    assert problems and any(needle in p for p in problems), problems


def test_write_and_load_refuse_invalid_documents(tmp_path):
    doc = make_doc()
    doc["results"][0]["summary"]["median"] = None
    with pytest.raises(ValueError, match="schema"):
        write_json(doc, str(tmp_path / "bad.json"))
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a vyre-bench result"):
        load_json(str(bad))


def test_schema_uses_only_the_supported_keywords():
    allowed = {"type", "required", "properties", "additionalProperties", "items", "enum",
               "minimum"}

    def walk(s):
        assert set(s) <= allowed, set(s) - allowed
        for sub in s.get("properties", {}).values():
            walk(sub)
        if isinstance(s.get("items"), dict):
            walk(s["items"])

    walk(SCHEMA)


def test_display_scale_and_numbers():
    assert display_scale("ns/op", 82.3) == (1.0, "ns/op")
    assert display_scale("ns/op", 14_600.0) == (1e3, "us/op")
    assert display_scale("ns", 2.5e6) == (1e6, "ms")
    assert display_scale("ops/s", 2.0e8) == (1e6, "Mops/s")
    assert fmt_num(82.34) == "82.34"
    assert fmt_num(1234.5) == "1,234"
    assert fmt_num(0.5) == "0.5000"
    assert fmt_num(None) == "-"


def test_table_is_aligned_and_complete():
    text = format_table(make_doc())
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("benchmark"))
    rows = lines[header:header + 2 + 4]
    # every row of the table ends at the same column (right-aligned numbers)
    assert len({len(row) for row in rows}) == 1, rows
    assert "dispatch/megakernel" in text and "us/op" in text
    assert "megakernel vs pycuda_launch: 100x faster" in text
    assert "dispatch/cupy_launch: cupy not importable" in text
    assert "ingest/*: not available" in text
    assert "Mops/s" in text
    # what a ratio is, and the run's mode, said in words
    assert "> 1 means vyre is better" in text
    assert "pycuda_launch median / megakernel median: how many times less time" in text
    assert "run: full mode (the sizes and sampling to quote), backend" in text


def test_markdown_report():
    md = format_markdown(make_doc())
    assert md.startswith("# vyre-bench results")
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert table[0].startswith("| benchmark | unit | batch | n | median | p10 | p90 | p99")
    assert set(table[1]) <= set("|-:")
    assert len({row.count(" | ") for row in table[:1] + table[2:6]}) == 1  # same column count
    assert "| dispatch/megakernel | ns/op | 10 | 5 | 100.0 | 94.00 | 116.0 |" in md
    assert "- dispatch/pycuda_launch: one \\| pipe in a note" in md
    assert "## Ratios (same run; > 1 means vyre is better)" in md and "100x faster" in md
    assert "| dispatch/cupy_launch | cupy not importable (ModuleNotFoundError) |" in md


def test_docs_name_every_field_of_the_schema():
    """docs/bench.md's "Result file" section names every key the schema allows."""
    import os
    import re

    from vyre.bench.schema import SCHEMA

    def keys(schema):
        for key, sub in (schema.get("properties") or {}).items():
            yield key
            yield from keys(sub)
        if isinstance(schema.get("items"), dict):
            yield from keys(schema["items"])

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "bench.md"), encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## Result file"):text.index("## Outputs")]
    missing = sorted({k for k in keys(SCHEMA)
                      if not re.search(rf'"{re.escape(k)}"', section)})
    assert missing == [], f"docs/bench.md does not describe {missing}"


def test_clocks_that_moved_and_a_loaded_host_are_flagged():
    doc = make_doc()
    doc["environment"]["cpu"]["usable"] = 4
    snap = {"time_utc": "2026-12-02T00:00:00+00:00", "gpus": []}
    doc["suites"][0].update(before={**snap, "loadavg": [1.0, 1.0, 1.0]},
                            after={**snap, "loadavg": [6.5, 2.0, 1.0]},
                            clocks_moved="GPU 0 after: power cap")
    # a skipped suite's snapshots say nothing about the numbers: not flagged
    doc["suites"][1].update(before={**snap, "loadavg": [9.0, 9.0, 9.0]}, after=snap,
                            clocks_moved="GPU 0 after: power cap")
    assert validate(doc) == []
    text = format_table(doc)
    assert "environment:\n  dispatch: GPU speed may have changed: GPU 0 after: power cap\n" \
           "  dispatch: host loaded (1-minute load 6.50 on 4 usable CPUs): host-side figures " \
           "are noisier\n" in text
    assert "ingest: host loaded" not in text and "ingest: GPU speed" not in text
    md = format_markdown(doc)
    assert "## Environment flags" in md and "- dispatch: host loaded" in md


def test_newer_nvidia_smi_names_the_throttle_reasons_differently():
    def smi(cmd, timeout=10.0):
        if "clocks_throttle_reasons.active" in cmd[1]:
            return None  # this driver rejects the old field name
        assert "clocks_event_reasons.active" in cmd[1]
        return "1980, 2619, 0x0000000000000004, 70, 650.0\n"

    assert env.gpu_clocks(smi) == [{"clocks_sm": 1980.0, "clocks_mem": 2619.0,
                                    "throttle_reasons": 4, "temperature_gpu": 70.0,
                                    "power_draw": 650.0}]
    assert env.throttle_words(4) == ["power cap"]
