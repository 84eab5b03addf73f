"""DFA_STEP, DFA_SCAN and vyre_dfa_scan_part against a pure-Python reference.

Random dense tables (``states*256`` u32 entries, ``next | accept << 31``). For the context
(a6) split the tables have the context property by construction: the state is a shift
register of the last ``k`` byte classes (under a random state permutation), so after ``k``
bytes it no longer depends on where the scan started.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
from test_interp_rig import DFA_SCAN, DFA_STEP, DONE, NO_STATE, Rig

ACCEPT = 1 << 31
MASK = ACCEPT - 1


def random_table(rng: random.Random, states: int, p_accept: float = 0.2) -> np.ndarray:
    t = np.array([rng.randrange(states) | (ACCEPT if rng.random() < p_accept else 0)
                  for _ in range(states * 256)], dtype=np.uint32)
    return t


def context_table(rng: random.Random, k: int, classes: int = 4, p_accept: float = 0.15):
    """A table whose state depends only on the last k bytes. Returns (table, k)."""
    n = classes ** k
    cls = [rng.randrange(classes) for _ in range(256)]
    perm = list(range(n))
    rng.shuffle(perm)
    t = np.zeros(n * 256, dtype=np.uint32)
    for raw in range(n):
        for b in range(256):
            nxt = (raw * classes + cls[b]) % n
            acc = ACCEPT if rng.random() < p_accept else 0
            t[perm[raw] * 256 + b] = perm[nxt] | acc
    return t


def ref_scan(table: np.ndarray, data: bytes, lo: int, length: int, start: int, ctx: int):
    """docs/spec.md §3 DFA_SCAN reference: (accepts, final state). Positions past the data are not
    scanned; accepts inside the first ctx bytes are not counted; missing entries read 0."""
    n = len(table)
    end = min(lo + length, len(data)) if lo < len(data) else lo
    st, acc = start & MASK, 0
    for p in range(lo, end):
        i = st * 256 + data[p]
        e = int(table[i]) if i < n else 0
        if p >= lo + ctx:
            acc += e >> 31
        st = e & MASK
    return acc, st


@pytest.fixture(scope="module")
def rig():
    r = Rig(observable_slots=16, workers=2)
    yield r
    r.close()


def test_dfa_step_matches_table(rig):
    rng = random.Random(1)
    table = random_table(rng, 7)
    h = rig.be.register_buffer(table)
    for _ in range(200):
        s, b = rng.randrange(9), rng.randrange(256)  # states 7 and 8 are past the table
        rig.obs[3] = 0xDEADBEEF
        assert rig.run(DFA_STEP, [s, b, 3, h]) == DONE
        want = int(table[s * 256 + b]) if s < 7 else 0
        assert rig.obs[3] == want, (s, b)
    # a1 is used as given (a0*256 + a1), unregistered handles read 0
    assert rig.run(DFA_STEP, [0, 256 + 5, 4, h]) == DONE and rig.obs[4] == table[256 + 5]
    rig.obs[4] = 1
    assert rig.run(DFA_STEP, [0, 0, 4, 200]) == DONE and rig.obs[4] == 0
    assert rig.run(DFA_STEP, [0xFFFFFFFF, 255, 4, h]) == DONE and rig.obs[4] == 0


def _scan(rig, th, dh, lo, length, a4, a5, ctx):
    return rig.run(DFA_SCAN, [th, dh, lo, length, a4, a5, ctx])


@pytest.mark.parametrize("seed", range(6))
def test_dfa_scan_matches_reference(rig, seed):
    rng = random.Random(100 + seed)
    states = rng.choice([1, 3, 17, 64])
    table = random_table(rng, states)
    if seed % 3 == 2:
        table = table[: len(table) - rng.randrange(1, 300)].copy()  # partial last state
    data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
    th = rig.be.register_buffer(table)
    dh = rig.be.register_buffer(np.frombuffer(data, np.uint8).copy())
    for _ in range(8):
        lo = rng.randrange(len(data) + 5)
        length = rng.choice([0, 1, rng.randrange(len(data) + 10), 0xFFFFFFFF])
        start = rng.randrange(states + 2)
        ctx = rng.choice([0, 0, 3, rng.randrange(50)])
        rig.obs[5] = start
        rig.obs[6] = prior = rng.randrange(1 << 32)
        assert _scan(rig, th, dh, lo, length, 5, 6, ctx) == DONE
        acc, st = ref_scan(table, data, lo, length, start, ctx)
        assert int(rig.obs[5]) == st
        assert int(rig.obs[6]) == (prior + acc) & 0xFFFFFFFF


def test_dfa_scan_no_state_and_out_of_range_observables(rig):
    rng = random.Random(7)
    table = random_table(rng, 5, p_accept=0.5)
    data = bytes(rng.randrange(256) for _ in range(500))
    th = rig.be.register_buffer(table)
    dh = rig.be.register_buffer(bytearray(data))
    rig.obs[:] = 0
    header = rig.header()
    assert _scan(rig, th, dh, 0, 500, NO_STATE, 2, 0) == DONE  # starts at 0, stores no state
    acc, _ = ref_scan(table, data, 0, 500, 0, 0)
    assert rig.obs[2] == acc and acc > 0
    assert sum(int(x) for x in rig.obs) == acc
    # state and accept observables past the end: nothing is written anywhere
    assert _scan(rig, th, dh, 0, 500, 16, 17, 0) == DONE
    assert _scan(rig, th, dh, 0, 500, 0xFFFFFF60, 0xFFFFFF61, 0) == DONE  # 160 + a would wrap
    h = rig.header()
    header[1] = h[1]
    assert np.array_equal(header, h) and sum(int(x) for x in rig.obs) == acc


def test_dfa_scan_unregistered_buffers(rig):
    rig.obs[:] = 0
    rig.obs[1] = 9
    assert _scan(rig, 250, 251, 0, 100, 1, 2, 0) == DONE  # empty data: nothing scanned
    assert rig.obs[1] == 9 and rig.obs[2] == 0
    data = rig.be.register_buffer(bytearray(b"\x01" * 10))
    assert _scan(rig, 250, data, 0, 10, 1, 2, 0) == DONE  # empty table: entries read 0
    assert rig.obs[1] == 0 and rig.obs[2] == 0


@pytest.mark.parametrize("seed", range(5))
def test_dfa_scan_context_split_is_exact(rig, seed):
    """vyre_dfa_scan_part: parts 1..33 give the same accepts (summed) and final state (last
    part) as the sequential scan, for tables with the context property."""
    rng = random.Random(seed)
    k = rng.choice([1, 2, 3])
    table = context_table(rng, k)
    states = len(table) // 256
    data = bytes(rng.randrange(256) for _ in range(rng.randrange(40, 1500)))
    th = rig.be.register_buffer(table)
    dh = rig.be.register_buffer(bytearray(data))
    pool = rig.be.pool
    for trial in range(6):
        lo = rng.randrange(len(data) // 2)
        length = rng.choice([rng.randrange(len(data)), len(data), k, k + 1, 0xFFFFFFFF])
        ctx = rng.choice([k, k, k + rng.randrange(5), 0])
        start = rng.randrange(states)
        args = [th, dh, lo, length, 0, 0, ctx]
        want = ref_scan(table, data, lo, length, start, ctx)
        assert pool.dfa_scan_part(args, start, 0, 1) == want
        for parts in range(1, 34):
            results = [pool.dfa_scan_part(args, start, p, parts) for p in range(parts)]
            acc = sum(a for a, _ in results)
            assert (acc, results[-1][1]) == want, (seed, trial, parts, ctx, length)
        # a part index at or past parts contributes nothing
        assert pool.dfa_scan_part(args, start, 40, 33)[0] == 0
        # and DFA_SCAN through the ring agrees
        rig.obs[8], rig.obs[9] = start, 0
        assert _scan(rig, th, dh, lo, length, 8, 9, ctx) == DONE
        assert (int(rig.obs[9]), int(rig.obs[8])) == want


def test_dfa_scan_parts_without_context_keep_the_start_state(rig):
    # a6 = 0: the range cannot be split; the last part does all of it from start_state
    rng = random.Random(3)
    table = random_table(rng, 9, p_accept=0.4)
    data = bytes(rng.randrange(256) for _ in range(300))
    th = rig.be.register_buffer(table)
    dh = rig.be.register_buffer(bytearray(data))
    args = [th, dh, 10, 250, 0, 0, 0]
    want = ref_scan(table, data, 10, 250, 4, 0)
    for parts in (1, 2, 32):
        res = [rig.be.pool.dfa_scan_part(args, 4, p, parts) for p in range(parts)]
        assert (sum(a for a, _ in res), res[-1][1]) == want


def test_dfa_scan_counts_only_after_context(rig):
    # a table that accepts on every transition: accepts = bytes scanned minus the context
    table = np.full(256, ACCEPT, dtype=np.uint32)
    th = rig.be.register_buffer(table)
    dh = rig.be.register_buffer(bytearray(100))
    for length, ctx, want in [(100, 0, 100), (100, 10, 90), (100, 100, 0), (100, 500, 0),
                              (50, 7, 43), (0, 5, 0)]:
        rig.obs[10] = 0
        assert _scan(rig, th, dh, 0, length, NO_STATE, 10, ctx) == DONE
        assert rig.obs[10] == want, (length, ctx)
        res = [rig.be.pool.dfa_scan_part([th, dh, 0, length, 0, 0, ctx], 0, p, 32)
               for p in range(32)]
        assert sum(a for a, _ in res) == want
