"""A hash table resident where the megakernel runs, driven from Python by many small ops:
insert, lookup and delete are user ops that answer through their result words.

    python examples/hashtable.py [--backend cpu|cuda]

Open addressing with linear probing over a buffer of (key, value) word pairs; key 0 is an
empty entry, 0xFFFFFFFF a deleted one. Inserts claim an entry with a compare-and-swap, so
ops running at once on different keys never collide. Every answer is checked against a
Python dict.
"""
from __future__ import annotations

import sys
import time

import numpy as np
from _common import device_array, parse

from vyre import Megakernel

PRELUDE = r"""
#ifndef HT_PRELUDE
#define HT_PRELUDE
#define HT_EMPTY 0u
#define HT_GONE 0xFFFFFFFFu
VYRE_OP_HELPER uint32_t ht_home(uint32_t key, uint32_t cap) {
    return (key * 0x9E3779B1u) & (cap - 1u);
}
VYRE_OP_HELPER uint32_t ht_cap(vyre_op_t *op, uint32_t t) {
    return (uint32_t)(vyre_buf_bytes(op, t) / 8u);
}
#endif
"""

INSERT = PRELUDE + r"""
VYRE_OP(ht_insert) {     /* a0 = table, a1 = key (not 0 or ~0), a2 = value; r0 = 1 new, 2 updated */
    if (op->lane != 0) return;
    const uint32_t t = vyre_arg(op, 0), key = vyre_arg(op, 1), cap = ht_cap(op, t);
    if (key == HT_EMPTY || key == HT_GONE || cap == 0u || (cap & (cap - 1u))) {
        vyre_op_fault(op, 1);
        return;
    }
    for (uint32_t probe = 0, i = ht_home(key, cap); probe < cap;
         ++probe, i = (i + 1u) & (cap - 1u)) {
        uint32_t seen = vyre_load_u32(op, t, 2u * i);
        if (seen == HT_EMPTY) seen = vyre_atomic_cas_u32(op, t, 2u * i, HT_EMPTY, key);
        if (seen == HT_EMPTY || seen == key) {     /* claimed it, or the key is there */
            vyre_store_u32(op, t, 2u * i + 1u, vyre_arg(op, 2));
            vyre_op_result(op, 0, seen == HT_EMPTY ? 1u : 2u);
            vyre_op_result(op, 1, i);
            return;
        }
    }
    vyre_op_fault(op, 2);                          /* full */
}
"""

LOOKUP = PRELUDE + r"""
VYRE_OP(ht_lookup) {     /* a0 = table, a1 = key; r0 = 1 found / 0, r1 = value */
    if (op->lane != 0) return;
    const uint32_t t = vyre_arg(op, 0), key = vyre_arg(op, 1), cap = ht_cap(op, t);
    for (uint32_t probe = 0, i = ht_home(key, cap); probe < cap;
         ++probe, i = (i + 1u) & (cap - 1u)) {
        const uint32_t seen = vyre_load_u32(op, t, 2u * i);
        if (seen == HT_EMPTY) break;
        if (seen == key) {
            vyre_op_result(op, 0, 1u);
            vyre_op_result(op, 1, vyre_load_u32(op, t, 2u * i + 1u));
            return;
        }
    }
}
"""

DELETE = PRELUDE + r"""
VYRE_OP(ht_delete) {     /* a0 = table, a1 = key; r0 = 1 deleted / 0 absent */
    if (op->lane != 0) return;
    const uint32_t t = vyre_arg(op, 0), key = vyre_arg(op, 1), cap = ht_cap(op, t);
    for (uint32_t probe = 0, i = ht_home(key, cap); probe < cap;
         ++probe, i = (i + 1u) & (cap - 1u)) {
        const uint32_t seen = vyre_load_u32(op, t, 2u * i);
        if (seen == HT_EMPTY) break;
        if (seen == key) {
            vyre_op_result(op, 0, vyre_atomic_cas_u32(op, t, 2u * i, key, HT_GONE) == key);
            return;
        }
    }
}
"""


def run_batch(mk, op, argv: np.ndarray) -> np.ndarray:
    """Submit one op per row of ``argv`` and return their result words (n, 4)."""
    tickets = mk.submit_many(np.full(len(argv), op.opcode, np.uint32), argv)
    mk.drain()
    return np.array([mk.result(t) for t in tickets], dtype=np.uint32)


def main() -> int:
    args = parse(__doc__.splitlines()[0])
    cap, n, batch = 1 << 16, 20000, 2048
    rng = np.random.default_rng(3)
    keys = rng.choice(np.arange(1, 1 << 31, dtype=np.uint32), n, replace=False)
    values = rng.integers(0, 1 << 32, n, dtype=np.uint32)
    model: dict[int, int] = {}
    ops_run = 0
    t0 = time.perf_counter()
    with Megakernel(backend=args.backend, slot_count=batch) as mk:
        insert = mk.register_op("ht_insert", INSERT)
        lookup = mk.register_op("ht_lookup", LOOKUP)
        delete = mk.register_op("ht_delete", DELETE)
        t_ops = time.perf_counter()  # registration may compile (cold) or load from the cache
        table = device_array(mk, np.zeros(2 * cap, np.uint32))
        h = mk.register_buffer(table)
        for lo in range(0, n, batch):  # inserts
            k, v = keys[lo:lo + batch], values[lo:lo + batch]
            res = run_batch(mk, insert, np.stack([np.full(len(k), h, np.uint32), k, v], axis=1))
            assert (res[:, 0] == 1).all(), "an insert of a new key did not report 'new'"
            model.update(zip(k.tolist(), v.tolist(), strict=True))
            ops_run += len(k)
        gone = keys[: n // 3]
        for lo in range(0, len(gone), batch - 1):  # deletes, and one absent key each batch
            k = np.concatenate([gone[lo:lo + batch - 1], np.array([0x7FFFFFFF], np.uint32)])
            res = run_batch(mk, delete, np.stack([np.full(len(k), h, np.uint32), k], axis=1))
            want = np.array([1 if int(x) in model else 0 for x in k], np.uint32)
            assert np.array_equal(res[:, 0], want), "a delete answered wrongly"
            for x in k.tolist():
                model.pop(x, None)
            ops_run += len(k)
        probe = np.concatenate([keys, rng.integers(1, 1 << 31, 1000, dtype=np.uint32)])
        for lo in range(0, len(probe), batch):  # lookups: present, deleted and never inserted
            k = probe[lo:lo + batch]
            res = run_batch(mk, lookup, np.stack([np.full(len(k), h, np.uint32), k], axis=1))
            for key, (found, value, _, _) in zip(k.tolist(), res.tolist(), strict=True):
                if (key in model) != bool(found) or (found and model[key] != value):
                    print(f"MISMATCH for key {key}: got found={found} value={value}, "
                          f"want {model.get(key)}")
                    return 1
            ops_run += len(k)
    end = time.perf_counter()
    print(f"hash table: {ops_run} ops (insert/delete/lookup) on {args.backend} in "
          f"{end - t_ops:.2f} s ({(end - t_ops) / ops_run * 1e6:.1f} us/op, batches of "
          f"{batch}); start + op registration {t_ops - t0:.2f} s: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
