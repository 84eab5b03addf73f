"""One round of :meth:`vyre.bench.runner.Context.paired_in_processes`, in this process.

Reads a JSON job on stdin (``factory``, ``spec``, ``round``, ``rounds``, ``options``), builds
the methods with the factory, measures round ``round`` of each (in order for an even round,
reversed for an odd one, as :meth:`~vyre.bench.runner.Context.paired` does; those named in
``skip`` failed earlier and are left out) and verifies each one's work, and prints one line,
``ROUND_MARK`` and JSON: ``{"pid": ..., "methods": {name: {"raw", "meta", "verified",
"params"} or {"error"}}}``. A method that fails is reported and the others run. The process
then ends at once: a thread or a driver teardown that would keep it alive cannot cost the
round its result.
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

from vyre.bench.runner import ROUND_MARK, Context, Options, jsonable, load_factory


def run_round(job: dict[str, Any]) -> dict[str, Any]:
    """Measure one round of the job's methods; what the parent process records."""
    ctx = Context(Options(**job["options"]))
    methods = load_factory(job["factory"])(job["spec"])
    r, rounds = int(job["round"]), int(job["rounds"])
    skip = set(job.get("skip") or ())
    out: dict[str, Any] = {}
    for m in methods if r % 2 == 0 else methods[::-1]:
        if m.name in skip:
            continue
        try:
            raw, meta, verified = ctx.measure_round(m, r, rounds, verify=True, cold=True)
        except Exception as exc:
            out[m.name] = {"error": traceback.format_exception_only(type(exc), exc)[-1].strip()}
            continue
        out[m.name] = {"raw": raw, "meta": jsonable(meta), "verified": verified,
                       "params": jsonable(m.params or {})}
    return {"pid": os.getpid(), "methods": out}


def main() -> None:
    result = run_round(json.loads(sys.stdin.read()))
    sys.stdout.write("\n" + ROUND_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
