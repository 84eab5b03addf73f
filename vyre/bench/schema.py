"""The result-file schema (``schema_version`` 1) and a small validator for it.

``SCHEMA`` is written in a subset of JSON Schema (``type``, ``required``, ``properties``,
``additionalProperties``, ``items``, ``enum``, ``minimum``) so that it can be handed to any
JSON Schema validator, while :func:`validate` checks it here without a new dependency.
docs/bench.md describes every field.
"""
from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 1

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STR = {"type": "string"}

SUMMARY = {
    "type": "object",
    "required": ["n", "median", "p10", "p25", "p75", "p90", "p99", "min", "max", "mean", "stdev"],
    "properties": {"n": {"type": "integer", "minimum": 1}, "median": _NUM, "p10": _NUM,
                   "p25": _NUM, "p75": _NUM, "p90": _NUM, "p99": _NUM, "min": _NUM,
                   "max": _NUM, "mean": _NUM, "stdev": _NUM_OR_NULL},
    "additionalProperties": False,
}

CHECK = {
    "type": "object",
    "required": ["status", "kind", "reference", "factor", "tolerance", "what", "reason"],
    "properties": {"status": {"enum": ["ok", "suspect", "unchecked"]},
                   "kind": {"enum": ["reference", "floor"]},
                   "reference": _NUM_OR_NULL, "factor": _NUM_OR_NULL, "tolerance": _NUM,
                   "what": _STR, "reason": _STR},
    "additionalProperties": False,
}

RESULT = {
    "type": "object",
    "required": ["id", "suite", "name", "method", "params", "unit", "better", "batch", "clock",
                 "summary", "stop_reason", "warmup_samples", "elapsed_s", "verified", "notes"],
    "properties": {
        "id": _STR, "suite": _STR, "name": _STR, "method": _STR,
        "params": {"type": "object"},
        "unit": {"enum": ["ns/op", "ns", "ops/s", "B/s"]},
        "better": {"enum": ["lower", "higher"]},
        "batch": {"type": "integer", "minimum": 1},
        "clock": {"enum": ["perf_counter_ns", "cuda_event"]},
        "summary": SUMMARY,
        "stop_reason": {"enum": ["min_time_and_samples", "max_samples", "max_time"]},
        "warmup_samples": {"type": "integer", "minimum": 0},
        "elapsed_s": _NUM,
        "verified": {"type": ["boolean", "null"]},
        "notes": _STR,
        "samples": {"type": "array", "items": _NUM},
        "median_ci": {"type": "array", "items": _NUM},
        "block_medians": {"type": "array", "items": _NUM},
        "rounds": {"type": "integer", "minimum": 1},
        "check": CHECK,
    },
    "additionalProperties": False,
}

COMPARISON = {
    "type": "object",
    "required": ["suite", "subject", "baseline", "ratio", "ratio_low", "ratio_high", "text"],
    "properties": {"suite": _STR, "subject": _STR, "baseline": _STR, "ratio": _NUM_OR_NULL,
                   "ratio_low": _NUM_OR_NULL, "ratio_high": _NUM_OR_NULL, "text": _STR,
                   "ci_low": _NUM_OR_NULL, "ci_high": _NUM_OR_NULL, "ci_level": _NUM,
                   "paired": {"type": "boolean"}, "meaning": _STR,
                   "target": {"type": "object", "required": ["ratio", "met"],
                              "properties": {"ratio": _NUM,
                                             "met": {"type": ["boolean", "null"]}},
                              "additionalProperties": False},
                   "excluded": _STR},
    "additionalProperties": False,
}

SUITE = {
    "type": "object",
    "required": ["name", "status", "reason", "duration_s", "info"],
    "properties": {"name": _STR, "status": {"enum": ["ran", "skipped", "error"]},
                   "reason": _STR, "duration_s": _NUM, "info": {"type": "object"},
                   # device clocks and host load around the suite (vyre.bench.env.snapshot)
                   "before": {"type": "object"}, "after": {"type": "object"},
                   "clocks_moved": _STR},
    "additionalProperties": False,
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema_version", "tool", "environment", "options", "suites", "results",
                 "comparisons", "skipped", "errors"],
    "properties": {
        "schema_version": {"enum": [SCHEMA_VERSION]},
        "tool": {"enum": ["vyre-bench"]},
        "environment": {
            "type": "object",
            "required": ["date_utc", "command", "python", "cpu", "gpus", "cuda", "packages", "git"],
        },
        "options": {"type": "object"},
        "suites": {"type": "array", "items": SUITE},
        "results": {"type": "array", "items": RESULT},
        "comparisons": {"type": "array", "items": COMPARISON},
        "skipped": {"type": "array", "items": {
            "type": "object", "required": ["suite", "name", "reason"],
            "properties": {"suite": _STR, "name": _STR, "reason": _STR},
            "additionalProperties": False}},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["suite", "name", "error"],
            "properties": {"suite": _STR, "name": _STR, "error": _STR},
            "additionalProperties": False}},
        # only in a checkpoint written while the run went on: which suites had not run
        "incomplete": _STR,
    },
    "additionalProperties": False,
}

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    # bool is an int in Python but not a number in JSON
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def validate(doc: Any, schema: dict[str, Any] = SCHEMA, path: str = "$") -> list[str]:
    """Every violation of ``schema`` in ``doc``, as ``"<json path>: <problem>"`` strings."""
    errors: list[str] = []
    if "enum" in schema and doc not in schema["enum"]:
        errors.append(f"{path}: {doc!r} is not one of {schema['enum']!r}")
        return errors
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](doc) for t in types):
            errors.append(f"{path}: expected {' or '.join(types)}, got {type(doc).__name__}")
            return errors
    if "minimum" in schema and isinstance(doc, (int, float)) and doc < schema["minimum"]:
        errors.append(f"{path}: {doc!r} is below the minimum {schema['minimum']!r}")
    if isinstance(doc, dict):
        for key in schema.get("required", ()):
            if key not in doc:
                errors.append(f"{path}: missing required key {key!r}")
        props = schema.get("properties", {})
        for key, value in doc.items():
            if key in props:
                errors.extend(validate(value, props[key], f"{path}.{key}"))
            elif schema.get("additionalProperties", True) is False:
                errors.append(f"{path}: unexpected key {key!r}")
    if isinstance(doc, list) and "items" in schema:
        for i, item in enumerate(doc):
            errors.extend(validate(item, schema["items"], f"{path}[{i}]"))
    return errors
