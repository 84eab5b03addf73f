"""Kernel-only DFA_SCAN rate: k concurrent scans of one buffer, in host (mapped) or device memory.

Separates the megakernel's scan speed from the GpuStream pipeline around it, for each
assist part size (0: a scan stays on the warp that holds it):
    python bench/micro/scan_rate.py [--mb 64] [--parts 0,16384,65536]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from vyre import Megakernel, Opcode
from vyre.dfa import build_dfa


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--parts", default="0,16384,65536", help="assist_part_bytes values")
    args = ap.parse_args()
    dfa = build_dfa([b"vyre", b"needle"])
    data = np.random.default_rng(1).integers(0, 256, args.mb << 20, dtype=np.uint8)
    want = dfa.count_matches(data.tobytes())
    for part in (int(p) for p in args.parts.split(",")):
        run(dfa, data, want, part)


def run(dfa, data: np.ndarray, want: int, part: int) -> None:
    size = data.size
    with Megakernel("cuda", slot_count=256, observable_slots=64, assist_part_bytes=part) as mk:
        h_tab, _ = mk.alloc_buffer(dfa.table, device=True)
        for where in ("host", "device"):
            h, _ = mk.alloc_buffer(data, device=where == "device")
            for k in (1, 8, 32):
                seg = size // k
                for i in range(k):
                    mk.observables[i] = 0
                t0 = time.perf_counter()
                ts = [mk.submit(Opcode.DFA_SCAN, [h_tab, h, i * seg, seg, 0xFFFFFFFF, i,
                                                   dfa.context])
                      for i in range(k)]
                mk.wait(ts, timeout=120)
                dt = time.perf_counter() - t0
                got = int(mk.observables[:k].sum())
                print(f"part={part:6d} {where:6s} scans={k:2d} {size / dt / 1e9:7.3f} GB/s  "
                      f"(counted {got}, whole-buffer reference {want})", flush=True)


if __name__ == "__main__":
    main()
