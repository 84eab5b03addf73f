"""DFA_MATCH split into lane-parts (docs/spec.md §3.2): each slot's counted range is cut into
the 32 lane-parts of DFA_SCAN's rule, each re-reading the context before it from state 0, so
every match end is counted once; counters and records are appended atomically, so records
within a slot come in any order and a full region keeps an unspecified subset. Checked on
each backend (the CPU runs the lane-parts in order on one thread; the GPU one per lane, and
over assisting warps for ranges past ``assist_part_bytes``) against the Python walk of the
whole range and a Python model of the lane-parts."""
from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from vyre import Opcode, SlotFaultError
from vyre.ingest.dfa import build_dfa, count_per_pattern
from vyre.protocol import ABI, FaultReason

PARTS = ABI["DFA_LANE_PARTS"]


@pytest.fixture(scope="module")
def mk(started_mk):
    return started_mk


def lane_parts_model(d, data: bytes, lo: int, length: int, ctx: int, parts: int = PARTS):
    """The lane-part rule in Python: (positions, per_pattern, records with ends from lo)."""
    n = max(0, min(length, len(data) - lo))
    c = min(ctx, n)
    span = n - c
    if parts == 1 or c == 0 or span == 0:
        cuts = [(lo, lo + c, lo + n)]
    else:
        cuts = []
        for k in range(parts):
            f, t = lo + c + span * k // parts, lo + c + span * (k + 1) // parts
            cuts.append((lo if k == 0 else f - c, f, t))
    pos, per, found = 0, np.zeros(len(d.patterns), np.uint64), []
    for s, f, t in cuts:
        p, pp, fd = d.walk_matches(data[s:t], f - s)
        pos += p
        per += pp
        found += [(i, e + s - lo) for i, e in fd]
    return pos, per, found


class Run:
    """One Dfa's tables, a data buffer and a fresh out buffer per DFA_MATCH submitted."""

    def __init__(self, mk, pats, data: bytes):
        self.mk, self.data, self.np = mk, data, len(pats)
        self.d = build_dfa(pats)
        self.th, _ = mk.alloc_buffer(self.d.table)
        self.ih, _ = mk.alloc_buffer(self.d.ids)
        self.dh, _ = mk.alloc_buffer(np.frombuffer(data, np.uint8))

    def __call__(self, lo, length, ctx, cap, *, ids=None, obs=9):
        oh, out = self.mk.alloc_buffer(4 * (self.np + 1 + 2 * max(cap, 1)))
        out = np.asarray(out).view(np.uint32)
        out[self.np] = 0xDEAD  # the record counter: the op sets it before appending
        self.mk.observables[obs] = 0
        t = self.mk.submit(Opcode.DFA_MATCH, [self.th, self.dh, lo, length,
                                              self.ih if ids is None else ids, obs, ctx, oh,
                                              0, self.np, self.np, cap])
        res = self.mk.result(t, timeout=120)
        written = int(out[self.np]) if cap else 0
        recs = out[self.np + 1:self.np + 1 + 2 * written].reshape(-1, 2)
        return (res, out[:self.np].copy(), [(int(i), int(e)) for i, e in recs],
                int(self.mk.observables[obs]))


def _check_exact(run: Run, lo: int, length: int, ctx: int) -> None:
    data = run.data
    seg = data[lo:lo + length]
    cap = len(seg) * run.np + 1  # room for every match
    res, counters, recs, obs = run(lo, length, ctx, cap)
    pos, per, found = run.d.walk_matches(seg, min(ctx, len(seg)))
    mpos, mper, mfound = lane_parts_model(run.d, data, lo, length, ctx)
    assert (mpos, mper.tolist(), Counter(mfound)) == (pos, per.tolist(), Counter(found))
    assert counters.tolist() == per.tolist()
    assert res == (pos, int(per.sum()), len(found), 0) and obs == pos
    assert Counter(recs) == Counter(found)  # the same set, each match once, in any order


def _straddling_data(rng: random.Random, n: int) -> bytes:
    # runs of "a" (overlapping a / aa / aaa ends at every byte), copies of a pattern longer
    # than a lane-part, and noise
    out = bytearray()
    long_pat = b"xyz" * 40
    while len(out) < n:
        r = rng.random()
        out += (b"a" * rng.randint(1, 9) if r < 0.5 else long_pat if r < 0.6
                else bytes(rng.choice(b"abxyz") for _ in range(rng.randint(1, 30))))
    return bytes(out[:n])


PATS = [b"a", b"aa", b"aaa", b"ab", b"xyz" * 40, b"zx", b"ba"]


@pytest.mark.parametrize("lo,length,ctx", [
    (0, 6000, 120),      # lane-parts of ~184 bytes, shorter than the context
    (7, 4000, 200),      # lane-parts of ~119 bytes, shorter than the 120-byte pattern
    (0, 6000, 0),        # no context: one lane-part scans it all
    (3, 150, 121),       # fewer counted bytes than parts: empty lane-parts
    (100, 50_000, 120),  # past the GPU's cooperative threshold
])
def test_lane_parts_count_every_match_once(mk, lo, length, ctx):
    rng = random.Random(lo * 31 + length + ctx)
    run = Run(mk, PATS, _straddling_data(rng, 60_000))
    _check_exact(run, lo, length, ctx)


def test_many_assist_parts(mk):
    # several assist parts of 64 KiB on CUDA, 32 lane-parts each; one slot on the CPU
    rng = random.Random(5)
    data = _straddling_data(rng, 300_000)
    run = Run(mk, PATS, data)
    _check_exact(run, 0, 300_000, 0)  # one lane: the references, independent of the tables
    assert run(0, 300_000, 0, 0)[1].tolist() == count_per_pattern(PATS, data).tolist()
    _check_exact(run, 0, 300_000, 120)
    _check_exact(run, 1, 299_000, 200)


def test_the_lane_part_bounds_are_the_documented_ones(mk):
    # a context shorter than the longest pattern breaks the rule the split relies on: the
    # counts then show where the lane-parts begin (the model's cuts), not the whole walk's
    pats = [b"abcdefgh"]
    data = b"abcdefgh" * 500
    run = Run(mk, pats, data)
    for lo, length in ((0, len(data)), (5, 3001)):
        res, counters, recs, _ = run(lo, length, 2, 4096)
        pos, per, found = lane_parts_model(run.d, data, lo, length, 2)
        whole = run.d.walk_matches(data[lo:lo + length], 2)
        assert pos != whole[0]  # the case does tell the split from one pass
        assert res == (pos, int(per.sum()), len(found), 0)
        assert counters.tolist() == per.tolist() and Counter(recs) == Counter(found)


def test_dropped_is_exact_when_the_region_fills(mk):
    rng = random.Random(8)
    data = _straddling_data(rng, 40_000)
    run = Run(mk, PATS, data)
    for cap in (1, 5, 333):
        res, counters, recs, _ = run(0, len(data), 120, cap)
        pos, per, found = run.d.walk_matches(data, 120)
        assert res == (pos, int(per.sum()), cap, 0)
        assert counters.tolist() == per.tolist()
        assert len(recs) == cap == len(set(recs))  # distinct: each a different match
        assert not Counter(recs) - Counter(found)  # all real ones
        assert res[1] - res[2] == len(found) - cap  # dropped: exactly the rest


def test_a_fault_in_any_lane_part_faults_the_slot(mk):
    pats = [b"q", b"qq"]
    data = b"." * 30_000 + b"q"  # the one match, in the last lane-part
    run = Run(mk, pats, data)
    bad = run.d.ids.copy()
    bad[0] = 0  # same_next[0] = 0: a cycle
    ih, _ = mk.alloc_buffer(bad)
    with pytest.raises(SlotFaultError) as ei:
        run(0, len(data), 2, 16, ids=ih)
    assert ei.value.reason == FaultReason.OUT_OF_BOUNDS and ei.value.details[0] == ih
    # the valid table on the same range: DONE, the one match
    res, counters, recs, _ = run(0, len(data), 2, 16)
    assert res == (1, 1, 1, 0) and recs == [(0, len(data))]
