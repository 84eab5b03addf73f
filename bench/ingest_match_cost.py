"""Cost of per-pattern counts and match records against a plain position count.

    python bench/ingest_match_cost.py [--backend cpu|cuda] [--mib 64] [--repeat 5]

For each match density (matches per scanned byte: 0.01 % and 1 %) one in-memory source of
``--mib`` MiB is built: lower-case random letters, with 50 upper-case patterns of 8..16 bytes
planted at random offsets until the density is reached (random lower-case data never matches
them, so the planted ones are all the matches). It is then scanned by one GpuStream
(4 MiB chunks, depth 8) four ways, each ``--repeat`` times, interleaved:

* ``positions``: ``scan(src, dfa)`` (DFA_SCAN);
* ``per_pattern``: ``scan(src, dfa, per_pattern=True)`` (DFA_MATCH, no records);
* ``matches``: ``scan(src, dfa, matches=True)`` (DFA_MATCH with records);
* ``positions_match_op``: the plain scan with the slices DFA_MATCH uses (same slots per
  chunk), to separate the slicing from the per-match work. On the CPU backend it is the
  same configuration as ``positions`` (both 64 slices of 64 KiB), so the gap between the
  two is the noise of the run.

Every result is checked against the reference (``count_per_pattern``). For each the best wall
time and the best process CPU time (all threads of this process: the CPU workers and the
host side; less sensitive than wall time to other jobs on a shared machine) are printed as
GB/s with their ratio to ``positions``; the order of the four rotates from one repeat to the
next.
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from vyre import Megakernel
from vyre.ingest.dfa import build_dfa, count_per_pattern
from vyre.ingest.match_scan import match_slices
from vyre.ingest.stream import GpuStream

CHUNK = 4 << 20
DEPTH = 8


def make_source(size: int, density: float, rng: np.random.Generator,
                pats: list[bytes]) -> bytes:
    data = rng.integers(ord("a"), ord("z") + 1, size, dtype=np.uint8)
    want = int(size * density)
    at = np.sort(rng.choice(size // 16 - 1, want, replace=False)) * 16
    for i, off in enumerate(at.tolist()):
        p = pats[i % len(pats)]
        data[off:off + len(p)] = np.frombuffer(p, np.uint8)
    return data.tobytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    pats = [bytes(rng.integers(ord("A"), ord("Z") + 1, int(rng.integers(8, 17)),
                               dtype=np.uint8)) for _ in range(50)]
    dfa = build_dfa(pats)
    size = args.mib << 20
    print(f"# {platform.node()} {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
          f"backend={args.backend} size={args.mib} MiB chunk={CHUNK >> 20} MiB depth={DEPTH} "
          f"patterns={len(pats)} repeat={args.repeat} (best of)")
    with Megakernel(backend=args.backend, observable_slots=256) as mk:
        with GpuStream(mk, chunk_bytes=CHUNK, depth=DEPTH) as s, \
                GpuStream(mk, chunk_bytes=CHUNK, depth=DEPTH,
                          slices=match_slices(CHUNK)) as s_sliced:
            for density in (0.0001, 0.01):
                src = make_source(size, density, rng, pats)
                ref = count_per_pattern(pats, src)
                runs = {
                    "positions": lambda src=src: s.scan(src, dfa)[0],
                    "positions_match_op": lambda src=src: s_sliced.scan(src, dfa)[0],
                    "per_pattern": lambda src=src: s.scan(src, dfa, per_pattern=True)[0],
                    "matches": lambda src=src: s.scan(src, dfa, matches=True)[0],
                }
                best = dict.fromkeys(runs, float("inf"))
                best_cpu = dict.fromkeys(runs, float("inf"))
                names = list(runs)
                for r in range(args.repeat):  # the order rotates: no method always goes first
                    for name in names[r % len(names):] + names[:r % len(names)]:
                        fn = runs[name]
                        c0, t0 = time.process_time(), time.perf_counter()
                        out = fn()
                        dt = time.perf_counter() - t0
                        best[name] = min(best[name], dt)
                        best_cpu[name] = min(best_cpu[name], time.process_time() - c0)
                        if name in ("per_pattern", "matches"):
                            assert out.per_pattern.tolist() == ref.tolist(), name
                            if name == "matches":
                                assert len(out.matches) + out.dropped == int(ref.sum())
                        else:
                            assert out == int(ref.sum()), name  # patterns do not overlap
                print(f"density {density * 100:g} %: {int(ref.sum())} matches")
                for name, dt in best.items():
                    cpu = best_cpu[name]
                    print(f"  {name:20s} wall {size / dt / 1e9:7.3f} GB/s "
                          f"x{best['positions'] / dt:5.2f}   cpu {size / cpu / 1e9:7.3f} GB/s "
                          f"x{best_cpu['positions'] / cpu:5.2f}  (of positions)")


if __name__ == "__main__":
    main()
