"""``python -m vyre demo``: a representative workload on the best backend present, checked.

It runs a mix of opcodes, a packed slot, a window, a fenced batch and a DFA scan over a
registered buffer, verifies every result against values computed here, reports what ran where
and how fast, then runs the quick benchmark suite for the headline comparison.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from vyre import Megakernel, Opcode
from vyre.ingest.dfa import build_dfa
from vyre.protocol import DFA_NO_STATE, OBSERVABLE_BASE

OBS = OBSERVABLE_BASE  # control word of observables[0]


class DemoFailure(AssertionError):
    """A result did not match: the demo exits non-zero."""


def check(label: str, got, want) -> None:
    if got != want:
        raise DemoFailure(f"{label}: got {got!r}, expected {want!r}")
    print(f"  ok  {label}")


def mixed_opcodes(mk: Megakernel) -> None:
    mk.wait(mk.submit(Opcode.STORE_U32, [40, OBS + 1]))
    mk.wait(mk.submit(Opcode.ATOMIC_ADD, [2, OBS + 1]))
    mk.wait(mk.submit(Opcode.LOAD_U32, [OBS + 1, 2]))
    mk.wait(mk.submit(Opcode.COMPARE_SWAP, [OBS + 1, 42, 7]))
    mk.wait(mk.submit(Opcode.MEMCPY, [OBS + 1, OBS + 3, 2]))
    check("store, add, load, compare-swap, memcpy", list(mk.observables[1:5]), [7, 42, 7, 42])


def packed_window_batch(mk: Megakernel) -> None:
    mk.wait(mk.submit_packed([(Opcode.STORE_U32, [5, OBS + 8]), (Opcode.ATOMIC_ADD, [6, OBS + 8]),
                              (Opcode.LOAD_U32, [OBS + 8, 9])]))
    check("packed slot: three inner ops in order", list(mk.observables[8:10]), [11, 11])
    # NOP payloads: the facade refuses a user opcode that no registered op handles
    window = mk.submit_window(0, Opcode.NOP, ticket=99, required=[[1, 2]], lookahead=[[3]])
    mk.wait(window)
    check("window: one slot per payload", len(window), 2)
    epoch = mk.epoch
    mk.wait(mk.submit_batch([(Opcode.ATOMIC_ADD, [1, OBS + 10])] * 5, tag=0xD3))
    check("batch: 5 adds, then the fence bumps EPOCH and tags obs[0]",
          (int(mk.observables[10]), mk.epoch - epoch, int(mk.observables[0])), (5, 1, 0xD3))


def dfa_scan(mk: Megakernel) -> float:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=8 << 20, dtype=np.uint8)
    patterns = [b"vyre", b"megakernel", b"\x00\x01\x02"]
    for i, pos in enumerate(rng.integers(0, data.size - 16, size=300)):
        p = patterns[i % len(patterns)]
        data[pos:pos + len(p)] = np.frombuffer(p, np.uint8)
    dfa = build_dfa(patterns)
    h_table, _ = mk.alloc_buffer(dfa.table, device=True)
    h_data, _ = mk.alloc_buffer(data)
    t0 = time.perf_counter()
    mk.wait(mk.submit(Opcode.DFA_SCAN, [h_table, h_data, 0, data.size, DFA_NO_STATE, 20, 0]))
    elapsed = time.perf_counter() - t0
    check(f"DFA scan of {data.size >> 20} MiB for {len(patterns)} patterns",
          int(mk.observables[20]), dfa.count_matches(data.tobytes()))
    return data.size / elapsed


def bulk(mk: Megakernel, n: int) -> float:
    ops = np.full(n, Opcode.ATOMIC_ADD, np.uint32)
    args = np.stack([np.ones(n, np.uint32), OBS + 32 + np.arange(n, dtype=np.uint32) % 64], axis=1)
    before = int(mk.observables[32:96].astype(np.uint64).sum())
    t0 = time.perf_counter()
    mk.submit_many(ops, args)
    mk.drain()
    elapsed = time.perf_counter() - t0
    check(f"{n:,} ATOMIC_ADDs, each exactly once",
          int(mk.observables[32:96].astype(np.uint64).sum()) - before, n)
    return n / elapsed


def where(mk: Megakernel) -> str:
    """The backend and device in words (no raw dicts)."""
    d = mk.backend.describe()
    if mk.backend.name == "cuda":
        return (f"the cuda backend: {d.get('name')}, one persistent megakernel of "
                f"{d.get('grid')} blocks x {d.get('block')} threads polling the ring")
    return (f"the cpu backend: {d.get('workers')} native worker threads on {d.get('cores')} "
            f"cores ({d.get('name') or 'this CPU'}) running the GPU's interpreter")


def demo(backend: str, bench: bool) -> int:
    with Megakernel(backend=backend, slot_count=1 << 16, observable_slots=128) as mk:
        print(f"vyre demo on {where(mk)}.\n\nChecks (each result compared with a value "
              "computed here):")
        mixed_opcodes(mk)
        packed_window_batch(mk)
        scan_rate = dfa_scan(mk)
        n = 1_000_000
        rate = bulk(mk, n)
        print(f"\nAll {mk.done_count:,} slots ran with {mk.fault_count} faults.")
        print(f"  DFA_SCAN: {scan_rate / 1e9:.2f} GB/s for one scan slot over 8 MiB "
              f"(one measurement, first touch included)")
        print(f"  bulk: {rate / 1e6:.1f} M ops/s for {n:,} ATOMIC_ADDs in one submit_many + "
              "drain (one measurement)")
        name = mk.backend.name
    if not bench:
        return 0
    from vyre.bench.__main__ import main as bench_main

    suites = "dispatch,latency" if name == "cuda" else "cpu,latency"
    argv = ["--quick", "--suite", suites, "--backend", name, "--no-progress", "--summary"]
    print(f"\nHow fast, against what (`vyre-bench {' '.join(argv)}`: quick mode is a smoke "
          "test, not numbers to quote):", flush=True)
    return bench_main(argv)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vyre", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the demo workload, then the quick benchmark")
    d.add_argument("--backend", default="auto", choices=("auto", "cpu", "cuda"))
    d.add_argument("--no-bench", action="store_true", help="skip the quick benchmark")
    args = ap.parse_args(argv)
    try:
        return demo(args.backend, bench=not args.no_bench)
    except DemoFailure as err:
        print(f"demo FAILED: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
