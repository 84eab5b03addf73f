"""y[off:off+n] += a * x[off:off+n], one op per slice, every lane taking a stride of the slice.

    python examples/axpy.py [--backend cpu|cuda]

Checks y against NumPy bit for bit (the op is compiled without FMA contraction).
"""
from __future__ import annotations

import sys

import numpy as np
from _common import device_array, parse, to_host

from vyre import Megakernel, SlotFaultError

AXPY = r"""
/* a0 = x handle, a1 = y handle, a2 = first element, a3 = count, a4 = a (f32 bits) */
VYRE_OP(axpy) {
    const uint64_t off = vyre_arg(op, 2), n = vyre_arg(op, 3);
    const float a = vyre_bits_f32(vyre_arg(op, 4));
    const float *x = (const float *)vyre_buf_ptr(op, vyre_arg(op, 0), 4 * off, 4 * n, 0);
    float *y = (float *)vyre_buf_ptr(op, vyre_arg(op, 1), 4 * off, 4 * n, 1);
    if (x == NULL || y == NULL) return;            /* the slot FAULTs: OUT_OF_BOUNDS */
    for (uint64_t i = op->lane; i < n; i += op->lanes) y[i] = a * x[i] + y[i];
    if (op->lane == 0) vyre_op_result(op, 0, (uint32_t)n);
}
"""


def main() -> int:
    args = parse(__doc__.splitlines()[0])
    n, piece, a = 1 << 20, 4096, np.float32(2.5)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(n, dtype=np.float32)
    y0 = rng.standard_normal(n, dtype=np.float32)
    with Megakernel(backend=args.backend, slot_count=1024) as mk:
        axpy = mk.register_op("axpy", AXPY)
        dx, dy = device_array(mk, x), device_array(mk, y0.copy())
        hx, hy = mk.register_buffer(dx), mk.register_buffer(dy)
        slices = n // piece
        argv = np.zeros((slices, 5), np.uint32)
        argv[:, 0], argv[:, 1] = hx, hy
        argv[:, 2] = np.arange(slices, dtype=np.uint32) * piece
        argv[:, 3] = piece
        argv[:, 4] = a.view(np.uint32)
        tickets = mk.submit_many(np.full(slices, axpy.opcode, np.uint32), argv)
        mk.drain()
        assert mk.result(tickets[-1]) == (piece, 0, 0, 0)
        # an out-of-bounds slice faults with the reason instead of touching memory
        bad = mk.submit(axpy, [hx, hy, n - 10, 20, int(a.view(np.uint32))])
        try:
            mk.result(bad)
            raise AssertionError("the out-of-bounds slice did not fault")
        except SlotFaultError as err:
            print("out-of-bounds slice:", err)
        got = to_host(dy)
    want = a * x + y0
    if not np.array_equal(got.view(np.uint32), want.view(np.uint32)):
        print("MISMATCH at", np.nonzero(got != want)[0][:10])
        return 1
    print(f"axpy over {slices} slices of {piece} on {args.backend}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
