"""Call path on the GPU (docs/call.md), one process, in this order:

1. round trips as distributions (p50 / p90 / p99, us): mk.call(NOP), mk.call(ATOMIC_ADD),
   mk.call of a user op (where the build runs user ops on the GPU), the ring's
   submit + wait + read, all on one megakernel with the call warp (call_lanes=8);
2. the ring with and without the call warp (call_lanes 8 vs 0, alternating, `--reps` each):
   drain rate (N NOPs published with notify=False, then notify() + drain(), M slots/s) and
   dispatch (submit_many of N ATOMIC_ADDs + drain, ns/op); and the drain rate with the call
   warp while another thread makes calls back to back;
3. after every megakernel is shut down: PyCUDA and CuPy launch + synchronize + read
   (vyre.bench.suites._gpu launchers), and the ratios of their p50 to call(NOP)'s p50.

    python3 bench/gpu/call_gpu.py [--n 20000] [--ring 1048576] [--reps 3] [--roundtrips-only]
                                  [--quick] [--baselines-only --nop-p50 US]
"""
from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from functools import partial

import numpy as np

import vyre
from vyre import Opcode

OBS = vyre.protocol.OBSERVABLE_BASE
ADD = int(Opcode.ATOMIC_ADD)
USER_ADD = r"""
VYRE_OP(gpu_call_add) {
    if (op->lane == 0)
        vyre_op_result(op, 0, vyre_obs_add(op, op->args[0], op->args[1]) + op->args[1]);
}
"""


def pct(samples_ns: list[float]) -> tuple[float, float, float, float]:
    us = np.asarray(samples_ns) / 1e3
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    return float(p50), float(p90), float(p99), float(us.min())


def show(name: str, samples: list[float]) -> float:
    p50, p90, p99, low = pct(samples)
    print(f"{name:<28} p50 {p50:7.2f}  p90 {p90:7.2f}  p99 {p99:7.2f}  min {low:6.2f} us  "
          f"(n={len(samples)})", flush=True)
    return p50


def timed(fn, n: int) -> list[float]:
    now = time.perf_counter_ns
    for _ in range(max(n // 10, 100)):
        fn()
    out = []
    for _ in range(n):
        t0 = now()
        fn()
        out.append(now() - t0)
    return out


def quick(n: int, trace: bool = False) -> float:
    """call(NOP) and call(ATOMIC_ADD) only: A/B runs of kernel images (VYRE_PTX)."""
    with vyre.Megakernel(backend="cuda", slot_count=4096, observable_slots=64) as mk:
        call = mk.call
        nop = show("call_nop", timed(lambda: call(0), n))
        show("call_atomic_add", timed(lambda: call(ADD, (1, OBS)), n))
        r = call(ADD, (1, OBS))
        print(f"  check: observable {int(mk.observables[0])} == returned {r} == "
              f"{n + max(n // 10, 100) + 1}", flush=True)
        if trace:
            for name, args in (("nop", (0,)), ("atomic_add", (ADD, (1, OBS)))):
                traced(mk, name, args, min(n, 5000))
        return nop


def traced(mk, name: str, args: tuple, n: int) -> None:
    """A kernel built with -DVYRE_CALL_TRACE writes, per answer, into lane words 24..31: ns from
    the request seen to the verdict, to the op's end, to the answer issued; the poll passes
    since the last call; the last pass's length; whether the verdict read the control words;
    the answer's sequence number; ns from the request seen to the serve function's start."""
    area = mk.backend.call_area.reshape(-1, 32)
    rows = []
    for _ in range(n):
        mk.call(*args)
        # the trace words land after the answer: wait (bounded) for the answered lane's
        lane = int(np.argmax(area[:, 16]))  # one caller: the lane with the newest answer
        w = area[lane]
        deadline = time.monotonic() + 0.01
        while time.monotonic() < deadline:
            if int(w[30]) == int(w[16]) & 0xFFFF:
                rows.append([int(x) for x in w[24:30]] + [int(w[31])])
                break
        if not rows:  # the first call's words never came: not a trace build
            break
    if not rows:
        print(f"  trace {name}: no trace words (a kernel without -DVYRE_CALL_TRACE)", flush=True)
        return
    a = np.asarray(rows, np.float64)
    q = np.percentile(a, [10, 50, 90], axis=0)
    cols = ("to_verdict", "to_op_end", "to_answer", "passes", "pass_ns", "read_control",
            "to_serve_start")
    print(f"  trace {name} (n={len(rows)}), p10/p50/p90: " + "; ".join(
        f"{c} {q[0, i]:.0f}/{q[1, i]:.0f}/{q[2, i]:.0f}" for i, c in enumerate(cols)), flush=True)


def lanes_ab(n: int, reps: int) -> None:
    """call(NOP) with 1 and 8 call lanes, alternated: what polling a wider request area costs
    (each pass reads 64 bytes per lane)."""
    got: dict[int, list[float]] = {1: [], 8: []}
    for rep in range(reps):
        for lanes in (1, 8) if rep % 2 == 0 else (8, 1):
            with vyre.Megakernel(backend="cuda", slot_count=4096, observable_slots=64,
                                 call_lanes=lanes) as mk:
                got[lanes] += timed(partial(mk.call, 0), n)
    for lanes, v in got.items():
        show(f"call_nop_lanes{lanes}", v)


def roundtrips(n: int) -> float:
    with vyre.Megakernel(backend="cuda", slot_count=4096, observable_slots=64) as mk:
        print("device:", mk.backend.describe(), flush=True)
        call = mk.call
        nop = show("call_nop", timed(lambda: call(0), n))
        # the same request through the C port directly: what the Python layers above it cost
        port = mk._callpath().port
        show("call_nop_port_direct", timed(lambda: port.call(0, (), 0, -1.0, None, 0.005), n))
        before = int(mk.observables[0])
        show("call_atomic_add", timed(lambda: call(ADD, (1, OBS)), n))
        r = call(ADD, (1, OBS))
        print(f"  check: observable {int(mk.observables[0])} == returned {r} == "
              f"{before + n + max(n // 10, 100) + 1}", flush=True)
        try:
            op = mk.register_op("gpu_call_add", USER_ADD)
            show("call_user_op", timed(lambda: call(op.opcode, (1, 1)), n))
            r = call(op.opcode, (1, 1))
            print(f"  check: observable {int(mk.observables[1])} == returned {r} == "
                  f"{n + max(n // 10, 100) + 1}", flush=True)
        except Exception as err:  # noqa: BLE001 - a build without GPU user ops: say so, go on
            print(f"call_user_op                 skipped: {type(err).__name__}: {err}", flush=True)
        obs = mk.observables

        def ring():
            mk.wait(mk.submit(ADD, (1, OBS)))
            obs[0]
        show("ring_submit_wait_read", timed(ring, n))
        return nop


def drain_rate(lanes: int, n: int, calls_meanwhile: bool = False) -> tuple[float, float]:
    """(M slots/s of a notify=False batch drained, ns/op of submit_many + drain)."""
    with vyre.Megakernel(backend="cuda", slot_count=n, observable_slots=64,
                         call_lanes=lanes) as mk:
        ops = np.zeros(n, np.uint32)
        stop = threading.Event()
        made = [0]

        def caller():
            while not stop.is_set():
                mk.call(0)
                made[0] += 1
        th = threading.Thread(target=caller) if calls_meanwhile else None
        if th:
            th.start()
        try:
            mk.submit_many(ops[:1024])
            mk.drain()
            mk.submit_many(ops, notify=False)
            t0 = time.perf_counter()
            mk.notify()
            mk.drain()
            rate = n / (time.perf_counter() - t0) / 1e6
            adds = np.full(n, ADD, np.uint32)
            args = np.tile(np.array([[1, OBS]], np.uint32), (n, 1))
            t0 = time.perf_counter()
            mk.submit_many(adds, args)
            mk.drain()
            dispatch = (time.perf_counter() - t0) / n * 1e9
        finally:
            stop.set()
            if th:
                th.join()
        if calls_meanwhile:
            print(f"  (calls made meanwhile: {made[0]})", flush=True)
        return rate, dispatch


def baselines(n: int, nop_p50: float) -> None:
    from vyre.bench.suites._common import Unavailable
    from vyre.bench.suites._gpu import CuPyLauncher, PyCudaLauncher

    for name, cls in (("pycuda_launch_sync", PyCudaLauncher), ("cupy_launch_sync", CuPyLauncher)):
        try:
            lau = cls()
        except Unavailable as why:
            print(f"{name:<28} skipped: {why}", flush=True)
            continue
        try:
            def sample(lau=lau) -> None:
                lau.launch_n(1)
                lau.sync()
                lau.host[0]
            p50 = show(name, timed(sample, n))
            print(f"  {name} p50 / call_nop p50 = {p50 / nop_p50:.2f}x", flush=True)
        finally:
            lau.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--ring", type=int, default=1 << 20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--roundtrips-only", action="store_true",
                    help="step 1 only (e.g. another kernel image through VYRE_PTX)")
    ap.add_argument("--quick", action="store_true",
                    help="call(NOP) and call(ATOMIC_ADD) only (A/B of kernel images)")
    ap.add_argument("--trace", action="store_true",
                    help="with --quick: read the serve times a -DVYRE_CALL_TRACE kernel writes")
    ap.add_argument("--baselines-only", action="store_true",
                    help="step 3 only, against --nop-p50 (us)")
    ap.add_argument("--nop-p50", type=float, default=0.0)
    ap.add_argument("--lanes-ab", action="store_true",
                    help="only call(NOP) with 1 vs 8 call lanes, alternated")
    a = ap.parse_args()
    print(f"# call path on the GPU, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"kernel {os.environ.get('VYRE_PTX') or 'as built'}", flush=True)
    if a.baselines_only:
        baselines(a.n, a.nop_p50 or float("nan"))
        return
    if a.quick:
        quick(a.n, a.trace)
        return
    if a.lanes_ab:
        lanes_ab(a.n, a.reps)
        return
    nop = roundtrips(a.n)
    if a.roundtrips_only:
        return
    res: dict[int, list[tuple[float, float]]] = {0: [], 8: []}
    for rep in range(a.reps):
        for lanes in (0, 8) if rep % 2 == 0 else (8, 0):
            r = drain_rate(lanes, a.ring)
            res[lanes].append(r)
            print(f"ring call_lanes={lanes}: drain {r[0]:8.1f} M slots/s   dispatch "
                  f"{r[1]:6.2f} ns/op", flush=True)
    for lanes in (0, 8):
        print(f"ring call_lanes={lanes} median: drain "
              f"{statistics.median(x[0] for x in res[lanes]):8.1f} M slots/s   dispatch "
              f"{statistics.median(x[1] for x in res[lanes]):6.2f} ns/op", flush=True)
    r = drain_rate(8, a.ring, calls_meanwhile=True)
    print(f"ring call_lanes=8 with calls meanwhile: drain {r[0]:8.1f} M slots/s   dispatch "
          f"{r[1]:6.2f} ns/op", flush=True)
    baselines(a.n, nop)


if __name__ == "__main__":
    main()
