"""Command line of the harness: ``vyre-bench`` / ``python -m vyre.bench``.

    vyre-bench [--suite NAME ...] [--backend auto|cpu|cuda] [--quick] [--min-time S]
               [--repeat N] [--op MODULE:NAME] [--json PATH] [--markdown PATH] [--plot DIR]
               [--no-progress]
    vyre-bench compare OLD.json NEW.json [--fail-on-regression [PCT]] [--tolerance PCT]
               [--force]
    vyre-bench show RESULT.json [--markdown PATH] [--plot DIR]
    vyre-bench list

Exit status: 0 on success, 1 when a benchmark or suite failed (the report still lists
everything that ran) or ``--fail-on-regression`` found a regression, 2 on usage errors and
on runs that are not like for like (``compare`` without ``--force``).
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time
import traceback
from collections.abc import Callable

from vyre.bench import compare as compare_mod
from vyre.bench import env, report, suites, userop
from vyre.bench.runner import Context, Options, Progress
from vyre.bench.suites import Unavailable


def run_suites(options: Options, progress: Progress | None = None,
               argv: list[str] | None = None, user_op: object | None = None,
               user_op_args: object | None = None,
               checkpoint: Callable[[dict], None] | None = None) -> dict:
    """Run the selected suites and return the result document. Never raises for a suite
    that cannot run (skipped, with the reason) or fails (an error entry). ``user_op``: the
    op ``--op`` named, for the user-op suite (``ctx.cache["user_op"]``). ``checkpoint``, when
    given, receives the document so far after every suite but the last, marked
    ``incomplete`` (``--json`` writes it, so a run cut short still leaves its suites)."""
    ctx = Context(options, progress)
    if user_op is not None:
        ctx.cache["user_op"] = user_op
        ctx.cache["user_op_args"] = user_op_args
    statuses: list[dict] = []
    names = options.suites or list(suites.DEFAULT)
    environment: dict | None = None

    def document(env_doc: dict) -> dict:
        opts = options.as_dict()
        opts["resolved_backend"] = (ctx.cache.get("backend") or {}).get("name")
        return report.build_document(
            environment=env_doc, options=opts, suites=statuses,
            results=[r.as_dict() for r in ctx.results],
            comparisons=[c.as_dict() for c in ctx.comparisons],
            skipped=ctx.skipped, errors=ctx.errors)

    for index, name in enumerate(names):
        ctx.suite = name
        before = env.snapshot()
        t0 = time.perf_counter()
        status, reason = "ran", ""
        n_errors = len(ctx.errors)
        try:
            suites.load(name).run(ctx)
        except Unavailable as why:
            status, reason = "skipped", str(why)
            ctx.skip("*", reason)
        except Exception as exc:  # a broken suite must not take the others down
            status = "error"
            reason = traceback.format_exception_only(type(exc), exc)[-1].strip()
            ctx.error("*", exc)
        if status == "ran" and len(ctx.errors) > n_errors:
            status, reason = "error", f"{len(ctx.errors) - n_errors} benchmark(s) failed"
        if name == userop.SUITE:
            unmeasured = userop.unmeasured_error(ctx.cache, status)
            if unmeasured:
                ctx.errors.append({"suite": name, "name": "--op", "error": unmeasured})
                status, reason = "error", unmeasured
        duration = time.perf_counter() - t0
        after = env.snapshot()
        statuses.append({"name": name, "status": status, "reason": reason,
                         "duration_s": duration, "info": ctx.info.get(name, {}),
                         "before": before, "after": after,
                         "clocks_moved": env.clocks_moved(before, after)})
        if checkpoint is not None and index < len(names) - 1:
            if environment is None:  # probed once, after the first suite, as the end does
                environment = env.collect(argv)
            partial = document(environment)
            partial["incomplete"] = (
                f"written after suite {index + 1} of {len(names)} ({name}); the suites "
                f"{', '.join(names[index + 1:])} had not run yet")
            checkpoint(partial)
    ctx.progress.done()
    return document(env.collect(argv))


def _suite_list(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    unknown = [n for n in names if n not in suites.SUITES]
    if unknown:
        raise SystemExit(f"vyre-bench: unknown suite(s) {', '.join(unknown)}; "
                         f"known: {', '.join(suites.SUITES)}")
    return list(dict.fromkeys(names))  # keep order, drop repeats


def _outputs(doc: dict, markdown: str | None, plot: str | None) -> None:
    if markdown:
        _mkdir_for(markdown)
        with open(markdown, "w", encoding="utf-8") as f:
            f.write(report.format_markdown(doc))
    if plot:
        from vyre.bench import plots

        try:
            written = plots.write_plots(doc, plot)
        except plots.PlottingUnavailable as why:
            print(f"vyre-bench: no plots: {why}", file=sys.stderr)
        else:
            for path in written:
                print(f"vyre-bench: wrote {path}", file=sys.stderr)


def _write_checkpoint(path: str, partial: dict) -> None:
    try:
        report.write_json(partial, path)
    except (OSError, ValueError) as exc:  # the final write reports it again
        print(f"vyre-bench: checkpoint not written: {exc}", file=sys.stderr)


def _mkdir_for(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)


def _run_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="vyre-bench",
        description="vyre microbenchmarks. Subcommands: compare OLD.json NEW.json | "
                    "show RESULT.json | list. See docs/bench.md.")
    ap.add_argument("--suite", action="append", metavar="NAME",
                    help=f"suite(s) to run, repeatable or comma separated "
                         f"({', '.join(suites.SUITES)}; default: all but "
                         f"{', '.join(suites.ON_REQUEST)})")
    ap.add_argument("--backend", choices=("auto", "cpu", "cuda"), default="auto",
                    help="megakernel backend for latency/dispatch/throughput (default auto)")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes and short sampling (smoke test, not for quoting)")
    ap.add_argument("--min-time", type=float, metavar="S",
                    help="minimum seconds of sampling per benchmark, warm-up excluded "
                         "(default 1.0; quick 0.1)")
    ap.add_argument("--repeat", type=int, metavar="N",
                    help="minimum samples per benchmark (default 20; quick 5); suites may "
                         "ask for more (latency)")
    ap.add_argument("--op", metavar="MODULE:NAME",
                    help="measure your own registered op (vyre.ops) through the megakernel "
                         "against the same C source launched per op and as a CUDA graph")
    ap.add_argument("--json", metavar="PATH", help="write the result document (JSON)")
    ap.add_argument("--markdown", metavar="PATH", help="write a markdown report")
    ap.add_argument("--plot", metavar="DIR", help="write PNG plots (needs matplotlib)")
    ap.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    ap.add_argument("--summary", action="store_true",
                    help="print the ratios in sentences (figure, baseline, CI, target) "
                         "instead of the full table")
    return ap


def _main_run(argv: list[str]) -> int:
    args = _run_parser().parse_args(argv)
    if args.min_time is not None and args.min_time < 0:
        raise SystemExit("vyre-bench: --min-time must be >= 0")
    if args.repeat is not None and args.repeat < 1:
        raise SystemExit("vyre-bench: --repeat must be >= 1")
    chosen = _suite_list(args.suite)
    user_op = user_op_args = None
    if args.op:
        try:
            user_op, suite = userop.resolve(args.op)
            user_op_args = userop.args_function(args.op)
        except userop.UserOpError as exc:
            print(f"vyre-bench: {exc}", file=sys.stderr)
            return 2
        chosen = [suite] if chosen is None else list(dict.fromkeys([*chosen, suite]))
    options = Options(suites=chosen, backend=args.backend, quick=args.quick,
                      min_time_s=args.min_time, min_samples=args.repeat, op=args.op)
    checkpoint: Callable[[dict], None] | None = None
    if args.json:
        _mkdir_for(args.json)
        checkpoint = functools.partial(_write_checkpoint, args.json)
    doc = run_suites(options, Progress(enabled=not args.no_progress),
                     argv=["vyre-bench", *argv], user_op=user_op, user_op_args=user_op_args,
                     checkpoint=checkpoint)
    if args.summary:
        sys.stdout.write(report.format_summary(doc, suites.phrases(chosen or suites.SUITES)))
    else:
        sys.stdout.write(report.format_table(doc))
    rc = 1 if doc["errors"] else 0
    if args.json:
        _mkdir_for(args.json)
        try:
            report.write_json(doc, args.json)
        except ValueError as exc:  # a harness bug; say so rather than write a bad file
            print(f"vyre-bench: {exc}", file=sys.stderr)
            rc = 1
    _outputs(doc, args.markdown, args.plot)
    return rc


def _main_compare(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="vyre-bench compare",
        description="label each benchmark of two result files FASTER / SLOWER / SAME / UNSURE "
                    "from the two runs' spreads (docs/bench.md, 'Comparing runs')")
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--fail-on-regression", nargs="?", const=0.0, type=float, metavar="PCT",
                    help="exit 1 when a benchmark is SLOWER and its median moved by more than "
                         "PCT percent (default 0: any SLOWER); a CI gate")
    ap.add_argument("--tolerance", type=float, default=compare_mod.DEFAULT_TOLERANCE * 100,
                    metavar="PCT", help="changes within PCT percent count as SAME (default 5)")
    ap.add_argument("--force", action="store_true",
                    help="compare runs of different modes, backends or machines anyway "
                         "(the output says so on every page)")
    args = ap.parse_args(argv)
    if args.tolerance < 0 or (args.fail_on_regression or 0) < 0:
        raise SystemExit("vyre-bench compare: --tolerance and --fail-on-regression must be >= 0")
    try:
        cmp = compare_mod.compare(report.load_json(args.old), report.load_json(args.new),
                                  tolerance=args.tolerance / 100, force=args.force)
    except (OSError, ValueError) as exc:
        print(f"vyre-bench compare: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(compare_mod.format_compare(cmp))
    if args.fail_on_regression is not None:
        bad = compare_mod.regressions(cmp, args.fail_on_regression)
        if bad:
            print(f"vyre-bench compare: {len(bad)} regression(s) beyond "
                  f"{args.fail_on_regression:g}%: " + ", ".join(r["id"] for r in bad),
                  file=sys.stderr)
            return 1
    return 0


def _main_show(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="vyre-bench show",
                                 description="re-render a result file")
    ap.add_argument("result")
    ap.add_argument("--markdown", metavar="PATH")
    ap.add_argument("--plot", metavar="DIR")
    args = ap.parse_args(argv)
    try:
        doc = report.load_json(args.result)
    except (OSError, ValueError) as exc:
        print(f"vyre-bench show: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(report.format_table(doc))
    _outputs(doc, args.markdown, args.plot)
    return 0


def _main_list() -> int:
    for name in suites.SUITES:
        print(f"{name:12s} {suites.load(name).DESCRIPTION}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vyre-bench`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "compare":
            return _main_compare(argv[1:])
        if argv and argv[0] == "show":
            return _main_show(argv[1:])
        if argv and argv[0] == "list":
            return _main_list()
        return _main_run(argv)
    except SystemExit as exc:  # argparse and our usage errors
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 2
        return 2 if exc.code else 0


if __name__ == "__main__":
    sys.exit(main())
