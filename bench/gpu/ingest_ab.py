"""Ingest on the GPU under different megakernel options, alternated, one process.

Why the position scan runs at ~9 GB/s where it once ran at 44.8 GB/s (bench/RESULTS.md): each
configuration scans the same page-cached files with ``GpuStream.scan`` (positions, then
``per_pattern=True``), rounds alternating A/B/C/..., and prints per configuration the median
/ p10 / p90 GB/s, how often the kernel left the GPU on its own and was relaunched, and how
many assist parts idle warps took. With CuPy present it also scans a device array in place.

    python3 bench/gpu/ingest_ab.py [--mib 1024] [--rounds 5] [--device-mib 1024]
    python3 bench/gpu/ingest_ab.py --densities 0.0001,0.01 [--mib 512]   # match records' cost
    python3 bench/gpu/ingest_ab.py --profile [--configs X,Y]             # host side of a scan
    python3 bench/gpu/ingest_ab.py --timeline --files 8 [--configs X]     # stage times per chunk
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
import time

import numpy as np

import vyre
from vyre.ingest import dfa as dfa_mod
from vyre.ingest import stream as stream_mod

PATTERNS = [b"vyre", b"needle"]
CONFIGS = {
    "default+share1": {"sm_share": 1.0},
    "noexit+noyield": {"sm_share": 1.0, "idle_exit_ms": 0, "yield_ms": 0},
    "noyield": {"sm_share": 1.0, "yield_ms": 0},
    "noexit": {"sm_share": 1.0, "idle_exit_ms": 0},
    # the stream's shape (chunk MiB x depth; 4 x 20 where not named), defaults + sm_share 1
    "chunk8x10": {"sm_share": 1.0, "chunk_mib": 8, "depth": 10},
    "chunk8x20": {"sm_share": 1.0, "chunk_mib": 8, "depth": 20},
    "chunk16x8": {"sm_share": 1.0, "chunk_mib": 16, "depth": 8},
    # more chunks in flight on the whole GPU without yields: a chunk holds its staging slot for its
    # read and copy (~2 ms per 4 MiB on the H200) and its mirror slot while scanned
    "noyield+depth32": {"sm_share": 1.0, "yield_ms": 0, "depth": 32},
    "noyield+chunk2x40": {"sm_share": 1.0, "yield_ms": 0, "chunk_mib": 2, "depth": 40},
    # a file's first slot as long as it was before the 64-byte head (docs/decisions.md)
    "noyield+head4k": {"sm_share": 1.0, "yield_ms": 0, "head_bytes": 4096},
}
HEAD_BYTES = stream_mod._HEAD_BYTES


def setup(name: str) -> tuple[dict, dict]:
    """(Megakernel options, GpuStream options) of configuration ``name``; sets the stream's
    head length (a module constant, so only one configuration runs at a time)."""
    mk = dict(CONFIGS[name])
    stream_mod._HEAD_BYTES = mk.pop("head_bytes", HEAD_BYTES)
    st = {"chunk_bytes": mk.pop("chunk_mib", 4) << 20, "depth": mk.pop("depth", 20)}
    return (mk if BACKEND == "cuda" else {}), st


BACKEND = "cuda"  # --backend cpu: a dry run of this script on a machine without a GPU


def stats(gbs: list[float]) -> str:
    a = np.asarray(gbs)
    return (f"median {np.median(a):7.2f}  p10 {np.percentile(a, 10):7.2f}  "
            f"p90 {np.percentile(a, 90):7.2f}  max {a.max():7.2f} GB/s  n {a.size}")


def planted(rng: np.random.Generator, n: int, density: float) -> np.ndarray:
    """``n`` random bytes over an alphabet without ``v``, with ``vyre`` planted so that about
    ``density`` of the byte positions end a match."""
    data = rng.integers(0, 255, n, dtype=np.uint8)
    data[data == ord("v")] = 255
    count = int(n * density)
    if count:
        offs = rng.choice(n // 8, count, replace=False) * 8
        data[offs[:, None] + np.arange(4)] = np.frombuffer(b"vyre", np.uint8)
    return data


def densities(a: argparse.Namespace, rng: np.random.Generator, tmp: str) -> None:
    """Positions, per-pattern counts and match records over files of each density,
    alternated; records verified complete (nothing dropped)."""
    dfa = dfa_mod.build_dfa(PATTERNS)
    for d in (float(x) for x in a.densities.split(",")):
        paths = []
        for i in range(a.files):
            p = os.path.join(tmp, f"d{d}_{i}.bin")
            planted(rng, (a.mib << 20) // a.files, d).tofile(p)
            paths.append(p)
        total = sum(os.path.getsize(p) for p in paths)
        res: dict[str, list[float]] = {"positions": [], "per_pattern": [], "matches": []}
        opts = {"positions": {}, "per_pattern": {"per_pattern": True}, "matches": {"matches": True}}
        got = 0
        mko, sto = setup(a.configs.split(",")[0])
        with vyre.Megakernel(backend=BACKEND, slot_count=1024, observable_slots=64, **mko) as mk, \
                stream_mod.GpuStream(mk, **sto, match_records=1 << 17) as s:
            s.scan(paths[:1], dfa, matches=True)
            for _ in range(a.rounds * 3):
                for k in res:
                    t0 = time.perf_counter()
                    out = s.scan(paths, dfa, **opts[k])
                    res[k].append(total / (time.perf_counter() - t0) / 1e9)
                    if k == "matches":
                        got = sum(len(out[p].matches) for p in paths)
                        assert sum(out[p].dropped for p in paths) == 0
        print(f"density {d:g}: {got} records in {total >> 20} MiB")
        for k, v in res.items():
            print(f"  {k:12s} {stats(v)}")


def profile(paths: list[str], name: str) -> None:
    """cProfile of one per-pattern scan (the host's share of it)."""
    import cProfile
    import pstats

    dfa = dfa_mod.build_dfa(PATTERNS)
    mko, sto = setup(name)
    print(f"profile of configuration {name}: {mko} {sto}")
    with vyre.Megakernel(backend=BACKEND, slot_count=1024, observable_slots=64, **mko) as mk, \
            stream_mod.GpuStream(mk, **sto) as s:
        s.scan(paths, dfa, per_pattern=True)
        for kind in ({}, {"per_pattern": True}):
            prof = cProfile.Profile()
            t0 = time.perf_counter()
            prof.enable()
            s.scan(paths, dfa, **kind)
            prof.disable()
            print(f"scan {kind}: {time.perf_counter() - t0:.4f} s")
            pstats.Stats(prof).sort_stats("tottime").print_stats(18)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(
                r"publish|retire|emit|_loop|submit_many|poll|submit\b")


def timeline(paths: list[str], name: str) -> None:
    """Where a scan's time goes, chunk by chunk (the stream's trace hook): the time each chunk
    spent between stages, split into a file's first chunk, its last and the others, and the
    longest pauses between two publications (a stall of the host, e.g. at a file boundary)."""
    dfa = dfa_mod.build_dfa(PATTERNS)
    mko, sto = setup(name)
    mib = sum(os.path.getsize(p) for p in paths) >> 20
    print(f"timeline of configuration {name}: {mko} {sto}, {mib} MiB in {len(paths)} files")
    order = {p: i for i, p in enumerate(paths)}
    with vyre.Megakernel(backend=BACKEND, slot_count=1024, observable_slots=64, **mko) as mk, \
            stream_mod.GpuStream(mk, **sto) as s:
        s.scan(paths, dfa, per_pattern=True)  # warm: tables, the match buffer
        for kind in ({}, {"per_pattern": True}):
            s._trace = trace = []
            t0 = time.perf_counter()
            s.scan(paths, dfa, **kind)
            total = time.perf_counter() - t0
            s._trace = None
            chunks: dict[tuple[str, int], dict[str, float]] = {}
            for stage, key, t in trace:
                chunks.setdefault(key, {})[stage] = t
            last = {p: max(off for q, off in chunks if q == p) for p in paths}
            spans = [("read", "landed"), ("landed", "copied"), ("copied", "published"),
                     ("landed", "published"), ("published", "retired")]
            print(f"  scan {kind or 'positions'}: {total * 1e3:.2f} ms, {len(chunks)} chunks")
            def where_of(k: tuple[str, int], last: dict = last) -> str:
                return "first" if k[1] == 0 else "last" if k[1] == last[k[0]] else "middle"

            for where in ("first", "last", "middle"):
                parts = []
                for a, b in spans:
                    d = [1e3 * (c[b] - c[a]) for k, c in chunks.items()
                         if where_of(k) == where and a in c and b in c]
                    if d:
                        parts.append(f"{a}->{b} {np.median(d):.3f}/{max(d):.3f}")
                print(f"    {where:6s} chunks, ms median/max: " + "; ".join(parts))
            # Little's law: chunks in a stage on average = the sum of their times in it / the
            # scan's time; a staging slot is held from read to copied (to retired without a
            # device copy: the scan reads it), a mirror slot from its copy's start to retired
            copied = any("copied" in c for c in chunks.values())
            stages = [("staging", "read", "copied" if copied else "retired"),
                      ("reading", "read", "landed"), ("scanning", "published", "retired")]
            if copied:
                stages.insert(1, ("mirror", "copying", "retired"))
            held = {}
            for name_, a, b in stages:
                busy = sum(c[b] - c[a] for c in chunks.values() if a in c and b in c)
                held[name_] = busy / total
            print(f"    chunks held on average (depth {sto['depth']}): " +
                  "; ".join(f"{k} {v:.1f}" for k, v in held.items()))
            firsts = [c["published"] for c in chunks.values() if "published" in c]
            ends = [c["retired"] for c in chunks.values() if "retired" in c]
            if firsts and ends:
                print(f"    fill (start to first publication) {(min(firsts) - t0) * 1e3:.3f} ms; "
                      f"drain (last publication to its retire) "
                      f"{(max(ends) - max(firsts)) * 1e3:.3f} ms")
            pubs = sorted((c["published"], k) for k, c in chunks.items() if "published" in c)
            gaps = sorted(((b[0] - a[0]) * 1e3, b[1])
                          for a, b in zip(pubs, pubs[1:], strict=False))[-5:]
            print("    longest pauses between publications, ms (file, MiB offset after it): " +
                  "; ".join(f"{g:.3f} ({order[k[0]]}, {k[1] >> 20})" for g, k in reversed(gaps)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device-mib", type=int, default=1024)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--densities", default="")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--timeline", action="store_true",
                    help="per-chunk stage times of a positions and a per-pattern scan")
    ap.add_argument("--backend", default="cuda")
    a = ap.parse_args()
    global BACKEND
    BACKEND = a.backend
    rng = np.random.default_rng(7)
    tmp = tempfile.mkdtemp(prefix="vyre-ingest-ab-")
    atexit.register(shutil.rmtree, tmp, True)  # GiBs of files: gone however main ends
    if a.densities:
        densities(a, rng, tmp)
        return
    per = (a.mib << 20) // a.files
    paths = []
    for i in range(a.files):
        data = rng.integers(0, 256, per, dtype=np.uint8)
        for off in rng.integers(0, per - 8, 2000):
            data[off:off + 4] = np.frombuffer(b"vyre", np.uint8)
        p = os.path.join(tmp, f"f{i}.bin")
        data.tofile(p)
        paths.append(p)
    total = per * a.files
    if a.timeline:
        for name in a.configs.split(",") if a.configs != ",".join(CONFIGS) else ["noyield"]:
            timeline(paths, name)
        return
    if a.profile:  # the first configuration named (--configs X,Y: both, in turn)
        for name in (a.configs.split(",") if a.configs != ",".join(CONFIGS)
                     else ["noexit+noyield"]):
            profile(paths, name)
        return
    dfa = dfa_mod.build_dfa(PATTERNS)
    names = a.configs.split(",")
    res: dict[str, dict[str, list[float]]] = {n: {"pos": [], "pp": []} for n in names}
    info: dict[str, list[str]] = {n: [] for n in names}
    ref = None
    for _ in range(a.rounds):
        for n in names:
            mko, sto = setup(n)
            with vyre.Megakernel(backend=BACKEND, slot_count=1024, observable_slots=64,
                                 **mko) as mk:
                with stream_mod.GpuStream(mk, **sto) as s:
                    s.scan(paths[:1], dfa)  # warm
                    for kind in ("pos", "pp"):
                        for _ in range(3):
                            t0 = time.perf_counter()
                            out = s.scan(paths, dfa, per_pattern=(kind == "pp"))
                            dt = time.perf_counter() - t0
                            res[n][kind].append(total / dt / 1e9)
                            if kind == "pos":
                                got = sum(out[p] for p in paths)
                                ref = got if ref is None else ref
                                assert got == ref, (got, ref)
                b = mk.backend
                if hasattr(b, "idle_exits"):
                    info[n].append(f"exits {b.idle_exits} relaunches {b.relaunches} "
                                   f"helped {b.assist_helped()}")
    print(f"{total >> 20} MiB in {a.files} files, positions {ref}")
    for n in names:
        print(f"{n:18s} positions   {stats(res[n]['pos'])}")
        print(f"{n:18s} per-pattern {stats(res[n]['pp'])}")
        print(f"{n:18s} last round: {(info[n] or ['-'])[-1]}")
    try:
        import cupy as cp
    except ImportError:
        return
    if not a.device_mib:
        return
    arr = cp.asarray(rng.integers(0, 256, a.device_mib << 20, dtype=np.uint8))
    for n in names[:2]:
        gbs, gpp = [], []
        mko, sto = setup(n)
        with vyre.Megakernel(backend=BACKEND, slot_count=1024, observable_slots=64, **mko) as mk, \
                stream_mod.GpuStream(mk, **sto) as s:
            s.scan([arr], dfa)
            for _ in range(5):
                t0 = time.perf_counter()
                s.scan([arr], dfa)
                gbs.append(arr.nbytes / (time.perf_counter() - t0) / 1e9)
                t0 = time.perf_counter()
                s.scan([arr], dfa, per_pattern=True)
                gpp.append(arr.nbytes / (time.perf_counter() - t0) / 1e9)
        print(f"device array {n:16s} positions   {stats(gbs)}")
        print(f"device array {n:16s} per-pattern {stats(gpp)}")


if __name__ == "__main__":
    main()
