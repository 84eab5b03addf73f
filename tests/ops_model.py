"""User ops for the randomized suite and a pure-Python model of what they do (docs/ops.md).

The model implements the op API's rules independently of the C: the accessor checks in
their order (out of bounds, misaligned, protected), a lane's first fault, the lowest lane's
fault and result words, built-in results, tenant authorization. tests/test_ops_random.py
runs random programs of these ops and compares every result word and buffer byte.
"""
from __future__ import annotations

import numpy as np

from vyre.protocol import OBSERVABLE_BASE, FaultReason, Opcode

M32 = 0xFFFFFFFF
LANES = 32
#: control words below this change by themselves (counters, heartbeat) or stop the kernel:
#: the programs never read or write them, except writes a tenant != 0 is refused
QUIET_FROM = 144

SOURCES = {
    "t_add": r"""
VYRE_OP(t_add) {                 /* lane 0: r0 = atomic add(a0[a1] += a2) before; r1 = a0[a3] */
    if (op->lane != 0) return;
    vyre_op_result(op, 0, vyre_atomic_add_u32(op, op->args[0], op->args[1], op->args[2]));
    vyre_op_result(op, 1, vyre_load_u32(op, op->args[0], op->args[3]));
}
""",
    "t_lanes": r"""
VYRE_OP(t_lanes) {               /* lane l: a0[a1 + l*a2] = a3 ^ l; results from lanes a4, a5 */
    const uint32_t l = op->lane;
    vyre_store_u32(op, op->args[0], (uint64_t)op->args[1] + (uint64_t)l * op->args[2],
                   op->args[3] ^ l);
    if (l == op->args[4] % 32u || l == op->args[5] % 32u) vyre_op_result(op, l & 3u, l + 100u);
    if (!vyre_op_failed(op)) vyre_op_result(op, 3, op->args[3] + l);
}
""",
    "t_cas": r"""
/* lane 0: r0 = cas(a0[a1], a2 -> a3); r1 = failed; r[a5 % 5] = 7 */
VYRE_OP(t_cas) {
    if (op->lane != 0) return;
    vyre_op_result(op, 0,
                   vyre_atomic_cas_u32(op, op->args[0], op->args[1], op->args[2], op->args[3]));
    vyre_op_result(op, 1, (uint32_t)vyre_op_failed(op));
    vyre_op_result(op, op->args[5] % 5u, 7u);
}
""",
    "t_obs": r"""
/* lane 0: r0 = obs[a0] += a1 before, r1 = obs[a5]; lane a2 may raise a4 */
VYRE_OP(t_obs) {
    if (op->lane == 0) {
        vyre_op_result(op, 0, vyre_obs_add(op, op->args[0], op->args[1]));
        vyre_op_result(op, 1, vyre_obs_load(op, op->args[5]));
    }
    if ((op->args[3] & 1u) && op->lane == op->args[2] % 32u) vyre_op_fault(op, op->args[4]);
}
""",
    "t_ptr": r"""
/* lane 0: bytes [a1, a1+a2) of a0: r0 = their sum, then = a4 if a3&1 */
VYRE_OP(t_ptr) {
    if (op->lane != 0) return;
    uint8_t *p = (uint8_t *)vyre_buf_ptr(op, op->args[0], op->args[1], op->args[2],
                                         (int)(op->args[3] & 1u));
    uint32_t sum = 0;
    if (p != NULL) {
        for (uint32_t i = 0; i < op->args[2]; ++i) {
            sum += p[i];
            if (op->args[3] & 1u) p[i] = (uint8_t)op->args[4];
        }
    }
    vyre_op_result(op, 0, sum);
    vyre_op_result(op, 1, p != NULL);
}
""",
}
OPCODES = {"t_add": 0x100, "t_lanes": 0x101, "t_cas": 0x102, "t_obs": 0x103, "t_ptr": 0x104}


class _Lane:
    __slots__ = ("fault", "lane", "results")

    def __init__(self, lane: int) -> None:
        self.lane = lane
        self.fault: tuple[int, int, int, int] | None = None
        self.results: dict[int, int] = {}

    def raise_(self, reason: int, d0: int, d1: int) -> None:
        if self.fault is None:
            self.fault = (int(reason), d0 & M32, d1 & M32, self.lane)

    def result(self, i: int, v: int) -> None:
        if i >= 4:
            self.raise_(FaultReason.BAD_RESULT, i, 0)
        else:
            self.results[i] = v & M32


class Model:
    """Control words and buffers as the ops leave them, with each slot's outcome."""

    def __init__(self, control: np.ndarray, buffers: dict[int, bytearray],
                 aligned: dict[int, bool], tenants: int, observable_slots: int) -> None:
        self.control = [int(w) for w in control]
        self.bufs = buffers
        self.aligned = aligned
        self.tenants = tenants
        self.obs_slots = observable_slots

    # ---------------------------------------------------------------- memory
    def size(self, h: int) -> int:
        if h == 0:
            return 4 * len(self.control)
        return len(self.bufs.get(h, b""))

    def rd(self, h: int, i: int) -> int:
        if h == 0:
            return self.control[i]
        return int.from_bytes(self.bufs[h][4 * i:4 * i + 4], "little")

    def wr(self, h: int, i: int, v: int) -> None:
        if h == 0:
            self.control[i] = v & M32
        else:
            self.bufs[h][4 * i:4 * i + 4] = (v & M32).to_bytes(4, "little")

    def word(self, ln: _Lane, tenant: int, h: int, i: int, write: bool) -> bool:
        if i >= self.size(h) // 4:
            ln.raise_(FaultReason.OUT_OF_BOUNDS, h, min(i, M32))
            return False
        if h != 0 and not self.aligned.get(h, True):
            ln.raise_(FaultReason.MISALIGNED, h, min(i, M32))
            return False
        if write and h == 0 and tenant != 0 and i < OBSERVABLE_BASE:
            ln.raise_(FaultReason.PROTECTED, h, i)
            return False
        return True

    def obs(self, ln: _Lane, i: int) -> bool:
        if i >= self.obs_slots or i + OBSERVABLE_BASE >= len(self.control):
            ln.raise_(FaultReason.OUT_OF_BOUNDS, 0, min(i + OBSERVABLE_BASE, M32))
            return False
        return True

    # ---------------------------------------------------------------- ops
    def run(self, opcode: int, tenant: int, a: list[int]) -> tuple[bool, tuple[int, ...]]:
        """(done, the 4 result words) of one slot, applying its effects."""
        if not (tenant < self.tenants):
            return False, (int(FaultReason.UNAUTHORIZED), tenant, 0, 0)
        if opcode < 8:
            return self._builtin(opcode, tenant, a)
        name = {v: k for k, v in OPCODES.items()}[opcode]
        lanes = []
        for lane in range(LANES):
            ln = _Lane(lane)
            getattr(self, "_" + name)(ln, tenant, a)
            lanes.append(ln)
        faulted = [ln for ln in lanes if ln.fault is not None]
        if faulted:
            return False, faulted[0].fault  # type: ignore[return-value]
        res = [0, 0, 0, 0]
        for i in range(4):
            for ln in lanes:
                if i in ln.results:
                    res[i] = ln.results[i]
                    break
        return True, tuple(res)

    def _builtin(self, op: int, tenant: int, a: list[int]) -> tuple[bool, tuple[int, ...]]:
        cw = len(self.control)
        if op == Opcode.ATOMIC_ADD:
            if tenant != 0 and a[1] < OBSERVABLE_BASE:
                return False, (int(FaultReason.PROTECTED), 0, a[1], 0)
            if a[1] >= cw:
                return True, (0, 0, 0, 0)
            self.control[a[1]] = (self.control[a[1]] + a[0]) & M32
            return True, (self.control[a[1]], 0, 0, 0)
        if op == Opcode.LOAD_U32:
            v = self.control[a[0]] if a[0] < cw else 0
            if a[1] < self.obs_slots and a[1] + OBSERVABLE_BASE < cw:
                self.control[OBSERVABLE_BASE + a[1]] = v
            return True, (v, 0, 0, 0)
        if op == Opcode.COMPARE_SWAP:
            if tenant != 0 and a[0] < OBSERVABLE_BASE:
                return False, (int(FaultReason.PROTECTED), 0, a[0], 0)
            prev = 0
            if a[0] < cw:
                prev = self.control[a[0]]
                if prev == a[1]:
                    self.control[a[0]] = a[2]
            if a[0] < self.obs_slots and a[0] + OBSERVABLE_BASE < cw:
                self.control[OBSERVABLE_BASE + a[0]] = prev
            return True, (prev, 0, 0, 0)
        raise AssertionError(op)

    def _t_add(self, ln: _Lane, tenant: int, a: list[int]) -> None:
        if ln.lane != 0:
            return
        old = 0
        if self.word(ln, tenant, a[0], a[1], True):
            old = self.rd(a[0], a[1])
            self.wr(a[0], a[1], old + a[2])
        ln.result(0, old)
        v = self.rd(a[0], a[3]) if self.word(ln, tenant, a[0], a[3], False) else 0
        ln.result(1, v)

    def _t_lanes(self, ln: _Lane, tenant: int, a: list[int]) -> None:
        lane = ln.lane
        i = a[1] + lane * a[2]
        if self.word(ln, tenant, a[0], i, True):
            self.wr(a[0], i, a[3] ^ lane)
        if lane == a[4] % 32 or lane == a[5] % 32:
            ln.result(lane & 3, lane + 100)
        if ln.fault is None:
            ln.result(3, a[3] + lane)

    def _t_cas(self, ln: _Lane, tenant: int, a: list[int]) -> None:
        if ln.lane != 0:
            return
        seen = 0
        if self.word(ln, tenant, a[0], a[1], True):
            seen = self.rd(a[0], a[1])
            if seen == a[2]:
                self.wr(a[0], a[1], a[3])
        ln.result(0, seen)
        ln.result(1, int(ln.fault is not None))
        ln.result(a[5] % 5, 7)

    def _t_obs(self, ln: _Lane, tenant: int, a: list[int]) -> None:
        if ln.lane == 0:
            old = 0
            if self.obs(ln, a[0]):
                old = self.control[OBSERVABLE_BASE + a[0]]
                self.control[OBSERVABLE_BASE + a[0]] = (old + a[1]) & M32
            ln.result(0, old)
            ln.result(1, self.control[OBSERVABLE_BASE + a[5]] if self.obs(ln, a[5]) else 0)
        if (a[3] & 1) and ln.lane == a[2] % 32:
            ln.raise_(FaultReason.RAISED, a[4], 0)

    def _t_ptr(self, ln: _Lane, tenant: int, a: list[int]) -> None:
        if ln.lane != 0:
            return
        h, off, n, writable = a[0], a[1], a[2], a[3] & 1
        size = self.size(h)
        ok = True
        if off > size or n > size - off or size == 0:
            ln.raise_(FaultReason.OUT_OF_BOUNDS, h, min(off, M32))
            ok = False
        elif writable and h == 0 and tenant != 0 and n != 0 and off < OBSERVABLE_BASE * 4:
            ln.raise_(FaultReason.PROTECTED, h, off >> 2)
            ok = False
        total = 0
        if ok:
            if h == 0:
                raw = bytearray(np.array(self.control, dtype=np.uint32).tobytes())
            else:
                raw = self.bufs[h]
            total = sum(raw[off:off + n])
            if writable:
                raw[off:off + n] = bytes([a[4] & 0xFF]) * n
                if h == 0:
                    self.control = [int(w) for w in np.frombuffer(bytes(raw), dtype=np.uint32)]
        ln.result(0, total)
        ln.result(1, int(ok))


def random_program(seed: int, n: int, *, control_words: int, buf_bytes: dict[int, int],
                   tenants: int) -> list[tuple[int, int, list[int]]]:
    """``n`` random (opcode, tenant, args): in-bounds and out-of-bounds accesses, unauthorized
    tenants, protected words, raised faults, bad result indices. Never reads or writes the
    control words below QUIET_FROM except writes a tenant != 0 is refused."""
    rng = np.random.default_rng(seed)
    handles = [0, 0, 1, 1, 1, 2, 3, 200]
    prog = []
    for _ in range(n):
        r = rng.random()
        tenant = 0 if r < 0.5 else 1 if r < 0.8 else 2 if r < 0.95 else tenants + 2
        kind = int(rng.integers(0, 8))
        a = [int(x) for x in rng.integers(0, 1 << 32, size=12, dtype=np.uint64)]
        h = handles[int(rng.integers(0, len(handles)))]
        words = (control_words if h == 0 else buf_bytes.get(h, 0) // 4)

        def index(write: bool, h: int = h, tenant: int = tenant, words: int = words) -> int:
            roll = rng.random()
            if roll < 0.03:
                return M32
            if h == 0:
                lo = 0 if (write and tenant != 0) else QUIET_FROM
                return int(rng.integers(lo, control_words + 6))
            return int(rng.integers(0, max(words, 1) + 6))

        if kind == 0:
            prog.append((OPCODES["t_add"], tenant, [h, index(True), a[2], index(False)]))
        elif kind == 1:
            stride = int(rng.integers(1, 5))
            start = index(True)
            if h == 0 and tenant == 0:
                start = max(start, QUIET_FROM)
            prog.append((OPCODES["t_lanes"], tenant,
                         [h, start, stride, a[3], a[4] % 40, a[5] % 40]))
        elif kind == 2:
            i = index(True)
            prog.append((OPCODES["t_cas"], tenant, [h, i, a[2] % 3, a[3], 0, a[5]]))
        elif kind == 3:
            prog.append((OPCODES["t_obs"], tenant,
                         [int(rng.integers(0, control_words - OBSERVABLE_BASE + 4)), a[1],
                          a[2] % 40, a[3], a[4],
                          int(rng.integers(0, control_words - OBSERVABLE_BASE + 4))]))
        elif kind == 4:
            size = 4 * control_words if h == 0 else buf_bytes.get(h, 0)
            writable = int(rng.integers(0, 2))
            lo = 0 if (h == 0 and writable and tenant != 0) else (4 * QUIET_FROM if h == 0 else 0)
            off = int(rng.integers(lo, size + 8)) if rng.random() > 0.02 else M32
            prog.append((OPCODES["t_ptr"], tenant,
                         [h, off, int(rng.integers(0, 40)), writable, a[4]]))
        elif kind == 5:
            lo = 0 if tenant != 0 else QUIET_FROM
            prog.append((int(Opcode.ATOMIC_ADD), tenant,
                         [a[0], int(rng.integers(lo, control_words + 4))]))
        elif kind == 6:
            prog.append((int(Opcode.LOAD_U32), tenant,
                         [int(rng.integers(QUIET_FROM, control_words + 4)),
                          int(rng.integers(0, control_words - OBSERVABLE_BASE + 4))]))
        else:
            lo = 0 if tenant != 0 else QUIET_FROM
            target = int(rng.integers(lo, control_words + 4))
            # CAS writes obs[a0] too: keep that a quiet word for tenant 0
            prog.append((int(Opcode.COMPARE_SWAP), tenant, [target, a[1] % 3, a[2]]))
    return prog
