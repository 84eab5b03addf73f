"""vyre next to PyTorch and CuPy in one process: what each costs the other (H200 figures in
bench/RESULTS.md, "vyre next to PyTorch and CuPy on the H200").

Run on a GPU machine with CuPy and PyTorch: ``python bench/coexist.py [--json out.json]``.
Each configuration runs in its own process under a time limit (a hang shows as a timeout
line, not a stuck run):

- ``none``: no vyre. Matmul throughput (8192^3 bf16, batches of 5 + torch.cuda.synchronize),
  a small PyTorch op + ``.item()``, the same + ``torch.cuda.synchronize()``, a CuPy launch +
  ``Device().synchronize()``.
- ``default`` (sm_share 0.25, idle exit 1 ms, yield 5 ms), ``yield2`` (yield 2 ms) and
  ``share1`` (sm_share 1.0):
  the same with a started megakernel that has done some work (idle), then while a thread
  has vyre serve a stream of ops (a round trip every ~100 us); vyre's round trip and
  dispatch (100k ATOMIC_ADDs, submit_many + drain) alone and under a matmul loop; the first
  op after an idle exit against a steady round trip; a bursty workload (bursts of round
  trips, exponential gaps) and how many of its ops paid a relaunch.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

CONFIGS = {"none": None, "default": {}, "yield2": {"yield_ms": 2.0}, "share1": {"sm_share": 1.0}}


def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _us(xs):
    return {"p50_us": round(_pct(xs, 0.5) / 1e3, 2), "p90_us": round(_pct(xs, 0.9) / 1e3, 2),
            "n": len(xs)}


def _matmul(torch, a, b, sync, seconds):
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(5):
            torch.matmul(a, b)
        sync()
        count += 5
    return round(2 * 8192 ** 3 * count / (time.perf_counter() - t0) / 1e12, 1)


def _user_side(torch, cp, a, b, small, k, arr, n=1000, seconds=1.5):
    s = torch.cuda.current_stream()
    out = {}
    # a loop that syncs its own stream (.item(), stream.synchronize()) and one that calls
    # torch.cuda.synchronize() (device-wide: it also waits for a resident megakernel to leave)
    out["matmul_tflops_stream_sync"] = _matmul(torch, a, b, s.synchronize, seconds)
    out["matmul_tflops_device_sync"] = _matmul(torch, a, b, torch.cuda.synchronize, seconds)
    xs = []
    for _ in range(n):
        t = time.perf_counter_ns()
        (small + 1).sum().item()
        xs.append(time.perf_counter_ns() - t)
    out["torch_op_item"] = _us(xs)
    xs = []
    for _ in range(n // 4 if n > 400 else n):
        t = time.perf_counter_ns()
        small.add_(1)
        torch.cuda.synchronize()
        xs.append(time.perf_counter_ns() - t)
    out["torch_op_device_sync"] = _us(xs)
    xs = []
    for _ in range(n // 4 if n > 400 else n):
        t = time.perf_counter_ns()
        k(arr, arr)
        cp.cuda.Device().synchronize()
        xs.append(time.perf_counter_ns() - t)
    out["cupy_launch_device_sync"] = _us(xs)
    return out


def one(config: str) -> dict:
    import cupy as cp
    import numpy as np
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    small = torch.ones(256, device="cuda")
    arr = cp.zeros(256, cp.float32)
    k = cp.ElementwiseKernel("float32 x", "float32 y", "y = x + 1", "coexist_inc")
    torch.matmul(a, b)
    (small + 1).sum().item()
    k(arr, arr)
    cp.cuda.Device().synchronize()
    res: dict = {"config": config, "device": torch.cuda.get_device_name()}
    opts = CONFIGS[config]
    if opts is None:
        res["user"] = _user_side(torch, cp, a, b, small, k, arr)
        return res
    from vyre import Megakernel, Opcode

    mk = Megakernel(backend="cuda", slot_count=4096, observable_slots=64, **opts).start()
    res["vyre"] = mk.backend.describe()
    add = int(Opcode.ATOMIC_ADD)

    def rt(n):
        xs = []
        for _ in range(n):
            t = time.perf_counter_ns()
            mk.wait(mk.submit(add, [1, 160]))
            xs.append(time.perf_counter_ns() - t)
        return xs

    ops = np.full(100_000, add, np.uint32)
    args = np.stack([np.ones(100_000, np.uint32),
                     160 + np.arange(100_000, dtype=np.uint32) % 64], 1)

    def dispatch(reps=10):
        xs = []
        for _ in range(reps):
            t = time.perf_counter_ns()
            mk.submit_many(ops, args)
            mk.drain()
            xs.append((time.perf_counter_ns() - t) / 100_000)
        return round(_pct(xs, 0.5), 2)

    rt(300)
    res["vyre_round_trip_alone"] = _us(rt(3000))
    res["vyre_dispatch_ns_per_op_alone"] = dispatch()
    time.sleep(0.01)
    res["user_vyre_idle"] = _user_side(torch, cp, a, b, small, k, arr)
    stop, served = threading.Event(), [0]

    def serve():
        while not stop.is_set():
            mk.wait(mk.submit(add, [1, 161]))
            served[0] += 1
            time.sleep(0.0001)

    th = threading.Thread(target=serve, daemon=True)
    r0 = mk.backend.relaunches
    t0 = time.perf_counter()
    th.start()
    res["user_vyre_serving"] = _user_side(torch, cp, a, b, small, k, arr, n=200)
    stop.set()
    th.join()
    res["served_ops_per_s"] = round(served[0] / (time.perf_counter() - t0))
    res["relaunches_while_serving"] = mk.backend.relaunches - r0
    stop2 = threading.Event()

    def mm():
        while not stop2.is_set():
            for _ in range(5):
                torch.matmul(a, b)
            torch.cuda.current_stream().synchronize()

    th2 = threading.Thread(target=mm, daemon=True)
    th2.start()
    time.sleep(0.3)
    res["vyre_round_trip_under_matmul"] = _us(rt(3000))
    res["vyre_dispatch_ns_per_op_under_matmul"] = dispatch()
    stop2.set()
    th2.join()
    # the first op after an idle exit: the kernel left (>> idle_exit_ms), the submit relaunches
    first = []
    for _ in range(100):
        time.sleep(0.005)
        first += rt(1)
    res["first_op_after_idle_exit"] = _us(first)
    res["round_trip_steady"] = _us(rt(2000))
    # bursty: bursts of 1..64 round trips, gaps exponential with a 1 ms mean
    rng = np.random.default_rng(3)
    r0, e0, xs = mk.backend.relaunches, mk.backend.idle_exits, []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        xs += rt(int(rng.integers(1, 65)))
        time.sleep(float(rng.exponential(0.001)))
    res["bursty"] = {"ops": len(xs), "relaunches": mk.backend.relaunches - r0,
                     "idle_exits": mk.backend.idle_exits - e0, **_us(xs),
                     "p99_us": round(_pct(xs, 0.99) / 1e3, 2)}
    mk.shutdown()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json")
    ap.add_argument("--one", choices=sorted(CONFIGS))
    ap.add_argument("--limit", type=float, default=150)
    ns = ap.parse_args()
    if ns.one:
        print("RESULT " + json.dumps(one(ns.one)), flush=True)
        return 0
    results = []
    for config in CONFIGS:
        try:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", config],
                                  capture_output=True, text=True, timeout=ns.limit,
                                  check=False)
        except subprocess.TimeoutExpired:
            print(f"{config}: TIMEOUT after {ns.limit} s (a hang)", flush=True)
            results.append({"config": config, "error": "timeout"})
            continue
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if not line:
            print(f"{config}: failed rc={proc.returncode}\n{proc.stderr[-3000:]}", flush=True)
            results.append({"config": config, "error": proc.stderr[-2000:]})
            continue
        r = json.loads(line[0][7:])
        print(json.dumps(r, indent=1), flush=True)
        results.append(r)
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
