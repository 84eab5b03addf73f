"""Wire-layer microbenchmarks: vyre.wire against pure-Python references, in the same run.

    python bench/bench_wire.py [--quick] [--write]

* ``publish_slot``: one call per slot (STORE_U32-like user opcode, 2 args) into a ring of
  ``SLOTS`` slots; one sample publishes every slot once; the ring is reset to EMPTY between
  samples, outside the timed region. Per-call cost = sample time / SLOTS; it includes the
  ``for`` loop overhead (reported separately as ``empty_loop``, not subtracted).
* ``model.publish_slot``: the pure-Python reference (tests/wire_model.py): the same
  validation (opcode class, u32 ranges, priority, arg count, slot index and status) and the
  same bytes via ``struct.pack_into``, status last.
* ``publish_many``: one bulk call publishing a whole ring from numpy arrays (4 args/slot);
  reference: a pure-Python loop of the model's publish_slot over the same rows.

Prints n / median / p10 / p90 / p99 / min per method (statistics as in vyre.bench.stats);
``--write`` records the figures in the "Wire layer" section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import re
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import wire_model as model  # noqa: E402

from vyre import wire  # noqa: E402
from vyre.bench.stats import summarize  # noqa: E402

USER_OPCODE = 0x1000
ARGS = (5, 160)


def timed_samples(run, reset, samples: int, per: int) -> list[float]:
    """ns per item of `samples` timed calls of run(); reset() runs untimed before each."""
    out = []
    for _ in range(2):  # warm-up: caches, branch predictors, lazily built objects
        reset()
        run()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(samples):
            reset()
            t0 = time.perf_counter_ns()
            run()
            out.append((time.perf_counter_ns() - t0) / per)
    finally:
        if gc_was:
            gc.enable()
    return out


def bench_publish_slot(slots: int, samples: int, ref_samples: int) -> dict[str, dict]:
    results: dict[str, dict] = {}
    rings = {"bytearray": bytearray(64 * slots), "numpy": np.zeros(16 * slots, np.uint32)}
    idx = range(slots)

    def reset_for(ring):
        view = np.frombuffer(ring, np.uint32) if isinstance(ring, bytearray) else ring
        return lambda: view.__setitem__(slice(0, None, 16), 0)

    def empty():
        for _ in idx:
            pass

    results["empty_loop"] = summarize(timed_samples(empty, lambda: None, samples, slots))
    for kind, ring in rings.items():
        def run(ring=ring, publish=wire.publish_slot):
            for i in idx:
                publish(ring, i, 0, USER_OPCODE, ARGS)
        results[f"publish_slot[{kind}]"] = summarize(
            timed_samples(run, reset_for(ring), samples, slots))

    ring = rings["bytearray"]

    def run_model(publish=model.publish_slot):
        for i in idx:
            publish(ring, i, 0, USER_OPCODE, ARGS)
    results["model.publish_slot[bytearray]"] = summarize(
        timed_samples(run_model, reset_for(ring), ref_samples, slots))
    return results


def bench_publish_many(slots: int, samples: int, ref_samples: int) -> dict[str, dict]:
    ring = np.zeros((slots, 16), np.uint32)
    ops = np.full(slots, USER_OPCODE, np.uint32)
    args = np.arange(slots * 4, dtype=np.uint32).reshape(slots, 4)

    def reset():
        ring[:, 0] = 0

    results = {
        f"publish_many[{slots}]": summarize(timed_samples(
            lambda: wire.publish_many(ring, 0, 0, ops, args), reset, samples, slots)),
    }
    # the reference writes a bytearray: struct is fastest there (conservative ratio)
    buf = bytearray(64 * slots)
    buf_words = np.frombuffer(buf, np.uint32)
    rows = args.tolist()
    op_list = ops.tolist()

    def loop(publish=model.publish_slot):
        for i in range(slots):
            publish(buf, i, 0, op_list[i], rows[i])
    results[f"python_loop[{slots}]"] = summarize(timed_samples(
        loop, lambda: buf_words.__setitem__(slice(0, None, 16), 0), ref_samples, slots))
    return results


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        found = re.search(r"Model name:\s*(.+)", lscpu)
        model_name = found.group(1).strip() if found else platform.processor() or "unknown CPU"
    except OSError:
        model_name = platform.processor() or "unknown CPU"
    return f"{os.cpu_count()}-core dev box, {model_name}, Python {platform.python_version()}"


def table(results: dict[str, dict]) -> str:
    head = "| method | n | median | p10 | p90 | p99 | min |\n|---|---|---|---|---|---|---|\n"
    rows = "".join(
        f"| {name} | {s['n']} | {s['median']:.1f} | {s['p10']:.1f} | {s['p90']:.1f} | "
        f"{s['p99']:.1f} | {s['min']:.1f} |\n" for name, s in results.items())
    return head + rows


def write_section(path: str, text: str) -> None:
    """Replace (or append) the '## Wire layer' section, leaving other sections alone."""
    old = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    pattern = re.compile(r"^## Wire layer\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(old):
        new = pattern.sub(lambda _: text, old)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    with open(path, "w") as f:
        f.write(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    ap.add_argument("--write", action="store_true", help="record results in bench/RESULTS.md")
    opts = ap.parse_args()
    samples, ref, many = (30, 5, 5) if opts.quick else (300, 60, 60)

    single = bench_publish_slot(1024, samples, ref)
    bulk = bench_publish_many(65536, many, 3)
    bulk.update(bench_publish_many(4096, samples, 5))

    med = {k: v["median"] for k, v in {**single, **bulk}.items()}
    speed_slot = med["model.publish_slot[bytearray]"] / med["publish_slot[bytearray]"]
    speed_many = med["python_loop[65536]"] / med["publish_many[65536]"]
    summary = (
        f"- publish_slot median: {med['publish_slot[bytearray]']:.0f} ns/call (bytearray), "
        f"{med['publish_slot[numpy]']:.0f} ns/call (numpy uint32), target <= 250 ns; "
        f"{speed_slot:.1f}x the pure-Python struct.pack_into reference (target >= 10x)\n"
        f"- publish_many: {1e3 / med['publish_many[65536]']:.0f} M slots/s on a 65 536-slot "
        f"ring (4 MiB), {1e3 / med['publish_many[4096]']:.0f} M slots/s on a 4 096-slot ring; "
        f"{speed_many:.0f}x the pure-Python loop (targets >= 50 M slots/s, >= 100x)\n")
    command = "python bench/bench_wire.py" + (" --quick" if opts.quick else "") + \
        (" --write" if opts.write else "")
    text = (
        "## Wire layer\n\n"
        f"Measured {datetime.date.today().isoformat()} on a {machine()}; command "
        f"`{command}` (bench/bench_wire.py). All figures are **ns per slot** (per call for "
        "publish_slot), per-sample means over a batch; n = samples. publish_slot figures include "
        "the Python `for` loop (`empty_loop`). The box is shared with other jobs while it "
        "runs, so the p90/p99 tails (and the noisy pure-Python references) most likely show "
        "samples that lost the CPU, not the code under test; compare medians.\n\n"
        + summary + "\n" + table(single) + "\n" + table(bulk) + "\n")
    print(text)
    if opts.write:
        write_section(os.path.join(HERE, "RESULTS.md"), text)
        print("written to bench/RESULTS.md")


if __name__ == "__main__":
    main()
