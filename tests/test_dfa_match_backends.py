"""DFA_MATCH through the facade on each backend: the same words, results and faults on the
CPU workers and (marker ``gpu``) the megakernel, from the one interpreter source."""
from __future__ import annotations

import random

import numpy as np
import pytest

from vyre import Opcode, SlotFaultError
from vyre.ingest.dfa import build_dfa, count_per_pattern, find_matches
from vyre.protocol import FaultReason


@pytest.fixture(scope="module")
def mk(started_mk):
    return started_mk


def _setup(mk, pats, data, out_words):
    d = build_dfa(pats)
    th, _ = mk.alloc_buffer(d.table)
    ih, _ = mk.alloc_buffer(d.ids)
    dh, _ = mk.alloc_buffer(np.frombuffer(data, np.uint8))
    oh, out = mk.alloc_buffer(4 * out_words)
    return d, th, ih, dh, oh, np.asarray(out).view(np.uint32)


def test_counts_records_and_results(mk):
    rng = random.Random(31)
    pats = [b"ab", b"b", b"abab", b"ab", b"\x00b"]
    data = bytes(rng.choice(b"ab\x00") for _ in range(50_000))
    cap = 200
    npat = len(pats)
    d, th, ih, dh, oh, out = _setup(mk, pats, data, npat + 1 + 2 * cap)
    before = out[:npat].copy()
    mk.observables[7] = 0
    t = mk.submit(Opcode.DFA_MATCH, [th, dh, 10, len(data) - 10, ih, 7, 4, oh, 0, npat,
                                     npat, cap])
    res = mk.result(t, timeout=60)
    seg = data[10:]
    pos, per, found = d.walk_matches(seg, 4)
    assert (out[:npat] - before).tolist() == per.tolist()
    assert res == (pos, int(per.sum()), cap, 0)
    assert int(mk.observables[7]) == pos
    assert int(out[npat]) == cap
    recs = [(int(p), int(e)) for p, e in out[npat + 1:npat + 1 + 2 * cap].reshape(cap, 2)]
    # a full region keeps `cap` different real matches, which ones unspecified (lane-parts)
    assert len(set(recs)) == cap and set(recs) <= set(found)
    # and the walk agrees with the references, which do not use the tables
    whole = d.walk_matches(data)
    assert whole[1].tolist() == count_per_pattern(pats, data).tolist()
    assert sorted(whole[2], key=lambda m: (m[1], m[0])) == find_matches(pats, data)


def test_out_of_range_out_buffer_faults_the_same_way(mk):
    d, th, ih, dh, oh, out = _setup(mk, [b"a"], b"aaa", 4)
    t = mk.submit(Opcode.DFA_MATCH, [th, dh, 0, 3, ih, 8, 0, oh, 0, 1, 1, 8])
    with pytest.raises(SlotFaultError) as ei:
        mk.result(t, timeout=30)
    assert ei.value.reason == FaultReason.OUT_OF_BOUNDS
    assert ei.value.details[:2] == (oh, 4)
    assert not out.any()


def test_corrupt_id_table_faults_instead_of_looping(mk):
    d = build_dfa([b"a"])
    bad = d.ids.copy()
    bad[0] = 0  # same_next[0] = 0: a cycle
    th, _ = mk.alloc_buffer(d.table)
    ih, _ = mk.alloc_buffer(bad)
    dh, _ = mk.alloc_buffer(np.frombuffer(b"xa", np.uint8))
    oh, _ = mk.alloc_buffer(64)
    t = mk.submit(Opcode.DFA_MATCH, [th, dh, 0, 2, ih, 8, 0, oh, 0, 1, 1, 0])
    with pytest.raises(SlotFaultError) as ei:
        mk.result(t, timeout=30)
    assert ei.value.reason == FaultReason.OUT_OF_BOUNDS and ei.value.details[0] == ih
