"""One round of :meth:`vyre.bench.runner.Context.paired_in_processes`, in this process.

Reads a JSON job on stdin (``factory``, ``spec``, ``round``, ``rounds``, ``options``), builds
the methods with the factory, measures round ``round`` of each (in order for an even round,
reversed for an odd one, as :meth:`~vyre.bench.runner.Context.paired` does) and verifies each
one's work, and prints one JSON line: ``{"pid": ..., "methods": {name: {"raw", "meta",
"verified", "params"} or {"error"}}}``. A method that fails is reported and the others run.
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

from vyre.bench.runner import Context, Options, jsonable, load_factory


def run_round(job: dict[str, Any]) -> dict[str, Any]:
    """Measure one round of the job's methods; what the parent process records."""
    ctx = Context(Options(**job["options"]))
    methods = load_factory(job["factory"])(job["spec"])
    r, rounds = int(job["round"]), int(job["rounds"])
    out: dict[str, Any] = {}
    for m in methods if r % 2 == 0 else methods[::-1]:
        try:
            raw, meta, verified = ctx.measure_round(m, r, rounds, verify=True)
        except Exception as exc:
            out[m.name] = {"error": traceback.format_exception_only(type(exc), exc)[-1].strip()}
            continue
        out[m.name] = {"raw": raw, "meta": jsonable(meta), "verified": verified,
                       "params": jsonable(m.params or {})}
    return {"pid": os.getpid(), "methods": out}


def main() -> None:
    result = run_round(json.loads(sys.stdin.read()))
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
