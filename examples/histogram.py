"""A byte histogram: each op counts one slice of a buffer into 256 shared bins (atomics).

    python examples/histogram.py [--backend cpu|cuda]

Checks the bins against numpy.bincount.
"""
from __future__ import annotations

import sys

import numpy as np
from _common import device_array, parse, to_host

from vyre import Megakernel

HISTOGRAM = r"""
/* a0 = data handle, a1 = bins handle (256 u32), a2 = first byte, a3 = count */
VYRE_OP(histogram) {
    const uint64_t off = vyre_arg(op, 2), n = vyre_arg(op, 3);
    const uint8_t *d = (const uint8_t *)vyre_buf_ptr(op, vyre_arg(op, 0), off, n, 0);
    if (d == NULL || vyre_buf_bytes(op, vyre_arg(op, 1)) < 1024) {
        vyre_op_fault(op, 1);                      /* a bad slice or bin buffer */
        return;
    }
    for (uint64_t i = op->lane; i < n; i += op->lanes)
        vyre_atomic_add_u32(op, vyre_arg(op, 1), d[i], 1u);
    if (op->lane == 0) vyre_op_result(op, 0, (uint32_t)n);
}
"""


def main() -> int:
    args = parse(__doc__.splitlines()[0])
    n, piece = 1 << 20, 8192
    data = np.random.default_rng(2).integers(0, 256, n, dtype=np.uint8)
    data[: n // 4] = 7  # a skewed distribution: contended bins
    with Megakernel(backend=args.backend, slot_count=512) as mk:
        op = mk.register_op("histogram", HISTOGRAM)
        dd, bins = device_array(mk, data), device_array(mk, np.zeros(256, np.uint32))
        hd, hb = mk.register_buffer(dd), mk.register_buffer(bins)
        slices = n // piece
        argv = np.zeros((slices, 4), np.uint32)
        argv[:, 0], argv[:, 1] = hd, hb
        argv[:, 2] = np.arange(slices, dtype=np.uint32) * piece
        argv[:, 3] = piece
        tickets = mk.submit_many(np.full(slices, op.opcode, np.uint32), argv)
        mk.drain()
        assert mk.result(tickets[0]) == (piece, 0, 0, 0)
        got = to_host(bins)
    want = np.bincount(data, minlength=256).astype(np.uint32)
    if not np.array_equal(got, want):
        print("MISMATCH in bins", np.nonzero(got != want)[0][:10])
        return 1
    print(f"histogram of {n} bytes in {slices} ops on {args.backend}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
