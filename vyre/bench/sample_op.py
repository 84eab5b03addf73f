"""A sample user op for ``vyre-bench --op vyre.bench.sample_op:bump`` (docs/bench.md).

``bump`` adds ``a0`` to observable ``a1 % 64`` from lane 0 and returns the new value: the work
of one ATOMIC_ADD slot, written as a user op, so its figures sit beside the dispatch suite's.
``bump_args(n)`` gives the argument rows the ``op`` suite submits: ``a0 = 1``, ``a1 = i``.
Copy this file to measure an op of your own.
"""
from __future__ import annotations

import numpy as np

from vyre.ops import Op

SOURCE = r"""
VYRE_OP(bump) {  /* obs[a1 % 64] += a0 from lane 0; result: the new value */
    if (op->lane != 0) return;
    const uint32_t v = vyre_arg(op, 0);
    const uint32_t before = vyre_obs_add(op, vyre_arg(op, 1) % 64u, v);
    if (!vyre_op_failed(op)) vyre_op_result(op, 0, before + v);
}
"""

bump = Op("bump", SOURCE)


def bump_args(n: int) -> np.ndarray:
    """``n`` argument rows ``(a0, a1) = (1, i)``."""
    return np.stack([np.ones(n, np.uint32), np.arange(n, dtype=np.uint32)], axis=1)
