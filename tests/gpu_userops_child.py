"""Child process of tests/test_cuda_userops.py: each scenario runs here, under the parent's
timeout (a hung kernel cannot hang the test run), and prints one JSON line.

    python tests/gpu_userops_child.py SCENARIO [ARGS...]
"""
from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np

from vyre import Megakernel, Opcode
from vyre.protocol import OBSERVABLE_BASE

# the ops of these tests: one lane (ADD, like ATOMIC_ADD), all lanes on a slice (AXPY, HIST),
# a fault the op raises itself (CHECK)
ADD = r"""
VYRE_OP(uadd) {  /* control[a1] += a0; result: the new value (as ATOMIC_ADD) */
    if (op->lane != 0) return;
    const uint32_t v = vyre_arg(op, 0);
    const uint32_t before = vyre_atomic_add_u32(op, 0, vyre_arg(op, 1), v);
    if (!vyre_op_failed(op)) vyre_op_result(op, 0, before + v);
}
"""
AXPY = r"""
VYRE_OP(uaxpy) {  /* y[off:off+n] = a * x[off:off+n] + y[off:off+n]; result: n */
    const uint32_t hx = vyre_arg(op, 0), hy = vyre_arg(op, 1);
    const uint64_t off = vyre_arg(op, 2), n = vyre_arg(op, 3);
    const float a = vyre_bits_f32(vyre_arg(op, 4));
    const float *x = (const float *)vyre_buf_ptr(op, hx, 4 * off, 4 * n, 0);
    float *y = (float *)vyre_buf_ptr(op, hy, 4 * off, 4 * n, 1);
    if (x == NULL || y == NULL) return;
    for (uint64_t i = op->lane; i < n; i += op->lanes) y[i] = a * x[i] + y[i];
    if (op->lane == 0) vyre_op_result(op, 0, (uint32_t)n);
}
"""
HIST = r"""
VYRE_OP(uhist) {  /* hist[d[i]] += 1 for d = bytes [off, off+n) of a0; result: lane 31's count */
    const uint32_t hd = vyre_arg(op, 0), hh = vyre_arg(op, 1);
    const uint64_t off = vyre_arg(op, 2), n = vyre_arg(op, 3);
    const uint8_t *d = (const uint8_t *)vyre_buf_ptr(op, hd, off, n, 0);
    if (d == NULL) return;
    uint32_t mine = 0;
    for (uint64_t i = op->lane; i < n; i += op->lanes) {
        vyre_atomic_add_u32(op, hh, d[i], 1u);
        mine++;
    }
    if (op->lane == 31) vyre_op_result(op, 1, mine);
    if (op->lane == 0) vyre_op_result(op, 0, (uint32_t)n);
}
"""
CHECK = r"""
VYRE_OP(ucheck) {  /* faults with code a0 from lane a1 (no fault when a1 >= 32); reads a word */
    if (op->lane == vyre_arg(op, 1)) vyre_op_fault(op, vyre_arg(op, 0));
    const uint32_t v = vyre_load_u32(op, vyre_arg(op, 2), vyre_arg(op, 3));
    if (op->lane == 0) vyre_op_result(op, 2, v);
}
"""
SOURCES = {"uadd": ADD, "uaxpy": AXPY, "uhist": HIST, "ucheck": CHECK}


def register_all(mk: Megakernel) -> dict[str, int]:
    """Every op of SOURCES, always in the same order, so that the builds of one scenario are
    the pipeline cache's hits in the next (each registration builds the set so far)."""
    return {name: register(mk, name) for name in SOURCES}


def register(mk: Megakernel, name: str) -> int:
    """Register one op, by the facade when it has register_op, else straight on the backend."""
    reg = getattr(mk, "register_op", None)
    if reg is not None:
        return int(reg(name, SOURCES[name]))
    from types import SimpleNamespace

    ops = getattr(mk, "_test_ops", [])
    op = SimpleNamespace(name=name, opcode=0x100 + len(ops), source=SOURCES[name])
    mk._test_ops = ops + [op]  # type: ignore[attr-defined]
    mk.backend.load_ops(mk._test_ops)  # type: ignore[attr-defined]
    return op.opcode


def slot_words(mk: Megakernel, ticket: int) -> list[int]:
    """[status, result words 12..15] of a finished ticket (before its slot is reused)."""
    from vyre.errors import SlotFaultError
    from vyre.protocol import SlotStatus

    try:
        return [int(SlotStatus.DONE), *(int(w) for w in mk.result(ticket))]
    except SlotFaultError as err:
        return [int(SlotStatus.FAULT), *(int(w) for w in err.words)]  # type: ignore[attr-defined]


def cross(backend: str, seed: int, n: int) -> dict:
    """n random ops of every kind (some out of bounds or faulting) on ``backend``: the final
    status and result words of every slot whose results do not depend on the order ops run
    in, the observables and the buffers' bytes. Every uaxpy writes a window of its own, so
    concurrent ops never race on a float."""
    rng = np.random.default_rng(seed)
    with Megakernel(backend=backend, slot_count=8192, observable_slots=256) as mk:
        codes = register_all(mk)
        x = (rng.standard_normal(64 * n) * 3).astype(np.float32)
        y0 = rng.standard_normal(64 * n).astype(np.float32)
        data = rng.integers(0, 256, 8192, dtype=np.uint8)
        hx, _ = mk.alloc_buffer(x)
        hy, by = mk.alloc_buffer(y0)
        hd, _ = mk.alloc_buffer(data)
        hh, bh = mk.alloc_buffer(np.zeros(256, np.uint32))
        kinds = rng.integers(0, 5, n)
        out: list[list[int]] = []
        tickets: list[tuple[int, bool]] = []  # (ticket, results independent of order)

        def collect() -> None:
            mk.drain(timeout=60)
            for t, exact in tickets:
                w = slot_words(mk, t)
                out.append(w if exact or w[0] != 3 else w[:1])  # DONE: order-dependent value
            tickets.clear()

        for i in range(n):
            k = int(kinds[i])
            if k == 0:  # uadd: an observable, or a word past the end of control (a fault)
                word = OBSERVABLE_BASE + int(rng.integers(0, 256 + 8))
                tickets.append((mk.submit(codes["uadd"], [int(rng.integers(1, 100)), word]), False))
            elif k == 1:  # uaxpy on window i of y (sometimes too long: out of bounds)
                cnt = 64 if rng.random() > 0.1 else 64 * n
                a = int(np.float32(rng.standard_normal()).view(np.uint32))
                tickets.append((mk.submit(codes["uaxpy"], [hx, hy, 64 * i, cnt, a]), True))
            elif k == 2:
                off, cnt = int(rng.integers(0, 8192)), int(rng.integers(0, 600))
                tickets.append((mk.submit(codes["uhist"], [hd, hh, off, cnt]), True))
            elif k == 3:  # a raised fault from a random lane (none for >= 32), a read of x
                lane, idx = int(rng.integers(0, 40)), int(rng.integers(0, 64 * n + 64))
                tickets.append((mk.submit(codes["ucheck"],
                                          [int(rng.integers(1, 1 << 31)), lane, hx, idx]), True))
            else:
                tickets.append((mk.submit(Opcode.ATOMIC_ADD,
                                          [1, OBSERVABLE_BASE + int(rng.integers(0, 256))]), False))
            if len(tickets) >= 4096:
                collect()
        collect()
        return {"slots": out, "obs": [int(v) for v in mk.observables[:256]],
                "y": np.asarray(by).view(np.uint32).tolist(),
                "hist": np.asarray(bh).view(np.uint32).tolist()}


def relaunch(n: int) -> dict:
    """Registering ops while another thread keeps publishing: every ATOMIC_ADD slot runs
    exactly once (each adds 1 to its own observable), across the relaunches."""
    with Megakernel(backend="cuda", slot_count=4096, observable_slots=n) as mk:
        sent = [0]

        def publish() -> None:
            i = 0
            while i < n:
                m = min(256, n - i)
                ops = np.full(m, int(Opcode.ATOMIC_ADD), np.uint32)
                args = np.stack([np.ones(m, np.uint32),
                                 OBSERVABLE_BASE + np.arange(i, i + m, dtype=np.uint32)], 1)
                mk.submit_many(ops, args, timeout=60)
                i += m
                sent[0] = i

        th = threading.Thread(target=publish)
        th.start()
        pauses0 = mk.backend.pauses
        loads = []
        codes = {}
        for name in SOURCES:
            t0 = time.perf_counter()
            codes[name] = register(mk, name)
            loads.append(time.perf_counter() - t0)
        th.join(120)
        mk.drain(timeout=60)
        obs = mk.observables[:n]
        t = mk.submit(codes["ucheck"], [0, 99, 0, OBSERVABLE_BASE])
        mk.drain(timeout=30)
        return {"sent": sent[0], "ones": int((obs == 1).sum()), "max": int(obs.max()),
                "pauses": mk.backend.pauses - pauses0, "loads": loads,
                "after": slot_words(mk, t)}


def faults() -> dict:
    """Out-of-bounds and raised faults of user ops with their reasons and details."""
    with Megakernel(backend="cuda", slot_count=256, observable_slots=64) as mk:
        code = register_all(mk)["ucheck"]
        hh, _ = mk.alloc_buffer(np.zeros(16, np.uint32))
        cases = {"oob": [0, 99, hh, 16], "ok": [0, 99, hh, 15], "raised": [1234, 7, hh, 0],
                 "bad_handle": [0, 99, 77, 0], "protected_read_ok": [0, 99, 0, 5]}
        tickets = {k: mk.submit(code, v) for k, v in cases.items()}
        mk.drain(timeout=30)
        return {k: slot_words(mk, t) for k, t in tickets.items()}


def startup() -> dict:
    """Start time of a megakernel with the user ops: from the constructor to the first user
    op's result (the builds come from the pipeline cache once a scenario before made them)."""
    t0 = time.perf_counter()
    with Megakernel(backend="cuda", slot_count=256, observable_slots=64) as mk:
        t1 = time.perf_counter()
        codes = register_all(mk)
        t2 = time.perf_counter()
        t = mk.submit(codes["uadd"], [5, OBSERVABLE_BASE])
        mk.drain(timeout=30)
        t3 = time.perf_counter()
        words = slot_words(mk, t)
    return {"start_s": t3 - t0, "construct_s": t1 - t0, "register_s": t2 - t1,
            "first_op_s": t3 - t2, "result": words}


def prewarm() -> dict:
    """Fill the pipeline cache with every build the scenarios (and the userops bench suite)
    make, compiled in parallel: registering ops one at a time builds each prefix of the
    list, with the opcodes the registry hands out in order (0x100, 0x101, ...)."""
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    import pycuda.driver as drv

    from vyre.bench.suites.userops import START_OPS
    from vyre.ops import cuda_build
    from vyre.ops.cache import PipelineCache

    drv.init()
    major, minor = drv.Device(0).compute_capability()
    sets = []
    for table in (SOURCES, START_OPS):
        ops = [SimpleNamespace(name=k, opcode=0x100 + i, source=v)
               for i, (k, v) in enumerate(table.items())]
        sets += [ops[:k] for k in range(1, len(ops) + 1)]

    def build(ops: list) -> tuple[str, float]:
        # a cache object per build: one object builds under its lock, one entry at a time
        got = cuda_build.build_fused(ops, f"sm_{major}{minor}", cache=PipelineCache())
        return got.source, got.seconds

    with ThreadPoolExecutor(len(sets)) as pool:
        done = list(pool.map(build, sets))
    return {"builds": [[[o.name for o in ops], src, round(sec, 2)]
                       for ops, (src, sec) in zip(sets, done, strict=True)]}


if __name__ == "__main__":
    which = sys.argv[1]
    if which == "cross":
        res = cross(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif which == "relaunch":
        res = relaunch(int(sys.argv[2]))
    elif which == "faults":
        res = faults()
    elif which == "startup":
        res = startup()
    elif which == "prewarm":
        res = prewarm()
    else:
        raise SystemExit(f"unknown scenario {which}")
    print(json.dumps(res))
