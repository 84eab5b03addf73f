"""DFA_MATCH (docs/spec.md §3) on the CPU interpreter against the Python references.

Tables come from ``build_dfa``; the expected values from ``Dfa.walk_matches`` (the walk the
opcode does, in Python) and, independently of any table, ``count_per_pattern`` /
``find_matches``.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
from test_interp_rig import DFA_SCAN, DONE, FAULT, NO_STATE, OBS, Rig

from vyre.ingest.dfa import build_dfa, count_per_pattern, find_matches
from vyre.protocol import ABI

DFA_MATCH = ABI["OP_DFA_MATCH"]
NO_ID = ABI["DFA_NO_ID"]
OOB, PROTECTED, MISALIGNED = ABI["FAULT_OUT_OF_BOUNDS"], ABI["FAULT_PROTECTED"], \
    ABI["FAULT_MISALIGNED"]


@pytest.fixture(scope="module")
def rig():
    r = Rig(observable_slots=16, workers=2)
    yield r
    r.close()


def _results(rig, ticket):
    return [int(x) for x in rig.ring[ticket % rig.n, 12:16]]


class Setup:
    """A Dfa's two tables, a data buffer and an out buffer registered on the rig."""

    def __init__(self, rig, pats, data, *, out_words=None, ignore_case=False):
        self.rig = rig
        self.d = build_dfa(pats, ignore_case=ignore_case)
        self.np = len(pats)
        self.th = rig.be.register_buffer(self.d.table)
        self.ih = rig.be.register_buffer(self.d.ids)
        self.data = np.frombuffer(data, np.uint8).copy() if data else np.zeros(1, np.uint8)
        self.dh = rig.be.register_buffer(self.data)
        self.out = np.zeros(out_words or (self.np + 1 + 2 * 4096), np.uint32)
        self.oh = rig.be.register_buffer(self.out)

    def run(self, lo, length, ctx, *, cap=4096, obs=3, counters=0, records=None, tenant=0,
            **over):
        records = self.np if records is None else records
        a = [self.th, self.dh, lo, length, self.ih, obs, ctx, self.oh, counters, self.np,
             records, cap]
        for k, v in over.items():
            a[int(k[1:])] = v
        t = self.rig.publish(DFA_MATCH, a, tenant)
        return self.rig.wait(t), _results(self.rig, t)

    def records(self, n, records=None):
        at = self.np if records is None else records
        pairs = self.out[at + 1:at + 1 + 2 * n].reshape(n, 2)
        return [(int(p), int(e)) for p, e in pairs]


def test_counts_and_records_equal_the_references(rig):
    rng = random.Random(3)
    pats = [b"a", b"aa", b"aaa", b"ab", b"ba", b"\x00a", b"ab", b"bab\x00"]
    data = bytes(rng.choice(b"ab\x00") for _ in range(20_000))
    s = Setup(rig, pats, data, out_words=len(pats) + 1 + 2 * 40_000)
    rig.obs[3] = 0
    status, res = s.run(0, len(data), 0, cap=40_000)
    assert status == DONE
    per = count_per_pattern(pats, data)
    found = find_matches(pats, data)
    assert s.out[:len(pats)].tolist() == per.tolist()
    assert res == [int(rig.obs[3]), int(per.sum()) & 0xFFFFFFFF, len(found), 0]
    assert int(s.out[len(pats)]) == len(found)
    got = s.records(len(found))
    assert sorted(got, key=lambda m: (m[1], m[0])) == found  # in any order (lane-parts)


def test_positions_equal_dfa_scan(rig):
    rng = random.Random(4)
    pats = [b"xy", b"y", b"xyx"]
    data = bytes(rng.choice(b"xyz") for _ in range(5000))
    s = Setup(rig, pats, data)
    rig.obs[4] = rig.obs[5] = 0
    assert s.run(100, 3000, 7, obs=4)[0] == DONE
    assert rig.wait(rig.publish(DFA_SCAN, [s.th, s.dh, 100, 3000, NO_STATE, 5, 7])) == DONE
    assert rig.obs[4] == rig.obs[5] > 0


@pytest.mark.parametrize("lo,length,ctx", [(0, 0, 0), (0, 1, 0), (5, 40, 3), (1, 99, 4),
                                            (60, 1000, 4), (99, 5, 0), (100, 5, 2)])
def test_context_and_range_rules(rig, lo, length, ctx):
    pats = [b"abca", b"ca", b"a"]
    data = (b"abcabca" * 15)[:100]
    s = Setup(rig, pats, data)
    status, res = s.run(lo, length, ctx)
    assert status == DONE
    d = s.d
    end = min(lo + length, len(data))
    seg = data[lo:end] if lo < len(data) else b""
    c = min(ctx, len(seg))
    pos, per, found = d.walk_matches(seg, c)
    assert s.out[:3].tolist() == per.tolist()
    assert res[:3] == [pos, int(per.sum()), len(found)]
    # offsets from a2, one past the last byte; in any order (lane-parts)
    assert sorted(s.records(len(found))) == sorted(found)


def test_record_cap_keeps_real_matches_and_counts_everything(rig):
    pats = [b"a", b"aa"]
    data = b"a" * 50
    s = Setup(rig, pats, data)
    status, res = s.run(0, 50, 0, cap=7)
    assert status == DONE
    assert s.out[:2].tolist() == [50, 49]
    assert res == [50, 99, 7, 0]
    assert int(s.out[2]) == 7
    # which 7 of the 99 is unspecified (docs/spec.md §3.2): 7 different real matches
    every = {(0, e) for e in range(1, 51)} | {(1, e) for e in range(2, 51)}
    assert len(set(s.records(7))) == 7 and set(s.records(7)) <= every
    # cap 0: no record region touched at all
    s.out[2] = 0xABCD
    status, res = s.run(0, 50, 0, cap=0)
    assert status == DONE and res == [50, 99, 0, 0] and int(s.out[2]) == 0xABCD


def test_counters_add_across_slots(rig):
    pats = [b"ab"]
    s = Setup(rig, pats, b"ab" * 10)
    for _ in range(3):
        assert s.run(0, 20, 0, cap=0)[0] == DONE
    assert int(s.out[0]) == 30


def test_ignore_case_table_in_the_interpreter(rig):
    pats = [b"GET", b"get /"]
    data = b"get / Get / gEt x GET /"
    s = Setup(rig, pats, data, ignore_case=True)
    assert s.run(0, len(data), 0)[0] == DONE
    assert s.out[:2].tolist() == count_per_pattern(pats, data, ignore_case=True).tolist() \
        == [4, 3]


def test_out_buffer_too_small_faults_before_anything_is_written(rig):
    pats = [b"a", b"b"]
    s = Setup(rig, pats, b"abab", out_words=8)
    rig.obs[3] = 0
    status, res = s.run(0, 4, 0, cap=3, counters=0, records=2)  # needs 2 + 1 + 6 = 9 words
    assert status == FAULT and res[:3] == [OOB, s.oh, 8]
    assert not s.out.any() and rig.obs[3] == 0
    status, res = s.run(0, 4, 0, cap=0, counters=7)  # counters 7..8 of 8 words
    assert status == FAULT and res[:3] == [OOB, s.oh, 8]
    status, res = s.run(0, 4, 0, cap=0, counters=0xFFFFFFFF)
    assert status == FAULT and res[:3] == [OOB, s.oh, 0xFFFFFFFF]
    # an unregistered out handle is an empty buffer
    status, res = s.run(0, 4, 0, cap=0, a7=200)
    assert status == FAULT and res[:2] == [OOB, 200]


def test_misaligned_buffers_fault(rig):
    pats = [b"a"]
    s = Setup(rig, pats, b"aaa")
    raw = np.zeros(4 * 64 + 1, np.uint8)
    odd = rig.be.register_buffer(raw[1:])
    for arg in ("a0", "a4", "a7"):
        status, res = s.run(0, 3, 0, **{arg: odd})
        assert status == FAULT and res[:2] == [MISALIGNED, odd], arg


def test_corrupt_id_tables_fault_instead_of_looping(rig):
    pats = [b"a", b"ab"]
    s = Setup(rig, pats, b"xab")
    ids = s.d.ids.copy()
    # an id past the pattern count
    bad = ids.copy()
    st = int(s.d.table[ord("a")] & 0x7FFFFFFF)  # state after "a"
    bad[2 + 2 * st] = 9
    h = rig.be.register_buffer(bad)
    status, res = s.run(0, 3, 0, a4=h)
    assert status == FAULT and res[:3] == [OOB, h, 9]
    # a same_next cycle
    bad = ids.copy()
    bad[0] = 0
    h = rig.be.register_buffer(bad)
    status, res = s.run(0, 3, 0, a4=h)
    assert status == FAULT and res[:2] == [OOB, h]
    # a dict_link cycle through states without ids
    bad = ids.copy()
    bad[2 + 2 * st] = NO_ID
    bad[2 + 2 * st + 1] = st
    h = rig.be.register_buffer(bad)
    status, res = s.run(0, 3, 0, a4=h)
    assert status == FAULT and res[:2] == [OOB, h]
    # an id table too short for the state walked
    h = rig.be.register_buffer(ids[:3].copy())
    status, res = s.run(0, 3, 0, a4=h)
    assert status == FAULT and res[:2] == [OOB, h]
    # no accepting position: the id table is never read
    status, res = s.run(0, 1, 0, a4=200)
    assert status == DONE and res == [0, 0, 0, 0]


def test_writes_into_control_follow_the_protected_word_rule(rig):
    pats = [b"a"]
    s = Setup(rig, pats, b"aa")
    # tenant 1 aiming the counters or the records below OBSERVABLE_BASE: refused
    status, res = s.run(0, 2, 0, cap=0, a7=0, counters=5, tenant=1)
    assert status == FAULT and res[:3] == [PROTECTED, 0, 5]
    status, res = s.run(0, 2, 0, cap=1, a7=0, counters=OBS + 8, records=100, tenant=1)
    assert status == FAULT and res[:3] == [PROTECTED, 0, 100]
    # into observables: allowed, and atomic like any observable
    rig.obs[8:12] = 0
    status, res = s.run(0, 2, 0, cap=1, a7=0, counters=OBS + 8, records=OBS + 9, tenant=1)
    assert status == DONE
    assert rig.obs[8:12].tolist() == [2, 1, 0, 1]
