"""GpuStream.scan with per-pattern counts and match records (DFA_MATCH), against the plain
``bytes.find`` references, on the CPU backend and (marker ``gpu``) the CUDA backend."""
from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
from _planted import planted
from hypothesis import given, settings
from hypothesis import strategies as st

from vyre.errors import InvalidTypeError, InvalidValueError
from vyre.ingest.dfa import build_dfa, count_matches, count_per_pattern, find_matches
from vyre.ingest.match_scan import MatchOptions, MatchScan, cap_matches, in_order, sorted_records
from vyre.ingest.results import MATCH_DTYPE, ScanResult
from vyre.ingest.stream import GpuStream
from vyre.protocol import ABI


@pytest.fixture(scope="module")
def mk(started_mk):
    return started_mk


def _pairs(res: ScanResult) -> list[tuple[int, int]]:
    return [(int(p), int(o)) for p, o in res.matches]


def _check(res: ScanResult, pats, data, ignore_case=False, *, matches=True):
    per = count_per_pattern(pats, data, ignore_case=ignore_case)
    assert isinstance(res, ScanResult)
    assert res.per_pattern.dtype == np.uint64 and res.per_pattern.shape == (len(pats),)
    assert res.per_pattern.tolist() == per.tolist()
    assert res.positions == count_matches(pats, data, ignore_case=ignore_case)
    if matches:
        assert res.matches.dtype == MATCH_DTYPE
        assert _pairs(res) == find_matches(pats, data, ignore_case=ignore_case)
        assert res.dropped == 0
    else:
        assert res.matches.size == 0 and res.dropped == 0


PATS = [b"abc", b"cab", b"hgfedcba", b"a", b"ddd", b"ffgghh", b"\x00\xff\x00", b"abc", b"ca"]


@pytest.mark.parametrize("slices", [None, 1, 7])
def test_matches_across_chunk_and_slice_boundaries(mk, tmp_path, slices):
    rng = random.Random(21)
    chunk = 1024
    d = build_dfa(PATS)
    data = planted(rng, 30 * chunk + 77, PATS, chunk, every=300)
    path = tmp_path / "planted.bin"
    path.write_bytes(data)
    with GpuStream(mk, chunk_bytes=chunk, depth=4, slices=slices) as s:
        got = s.scan([str(path), data], d, per_pattern=True, matches=True)
        plain = s.scan([str(path)], d)
    assert set(got) == {str(path), 1}
    for res in got.values():
        _check(res, PATS, data)
    assert got[str(path)].positions == plain[str(path)]
    assert got[1].per_pattern[0] == got[1].per_pattern[7] > 30  # a duplicate counts twice


def test_per_pattern_only(mk):
    rng = random.Random(2)
    data = planted(rng, 9000, PATS, 512, every=300)
    with GpuStream(mk, chunk_bytes=512, depth=3) as s:
        res = s.scan(data, build_dfa(PATS), per_pattern=True)[0]
    _check(res, PATS, data, matches=False)


def test_an_empty_pattern_set(mk):
    with GpuStream(mk, chunk_bytes=256, depth=2) as s:
        res = s.scan(b"abc" * 100, build_dfa([]), per_pattern=True, matches=True)[0]
    assert res.positions == 0 and res.per_pattern.shape == (0,) and res.matches.size == 0
    assert res.dropped == 0


EDGE_PATS = [b"a", b"aa", b"aaa", b"\x00", b"\x00\x00a", b"z", b"za"]


@pytest.mark.parametrize("data", [
    b"", b"a", b"z", b"\x00", b"za", b"a" * 9, b"aza" + b"b" * 600 + b"z",
    b"\x00\x00a" * 200, b"z" + bytes(1000) + b"a",
], ids=lambda b: f"{len(b)}B")
def test_edge_sources(mk, tmp_path, data):
    d = build_dfa(EDGE_PATS)
    path = tmp_path / "edge.bin"
    path.write_bytes(data)
    with GpuStream(mk, chunk_bytes=64, depth=2, max_context=64) as s:
        got = s.scan([str(path), data, bytearray(data)], d, per_pattern=True, matches=True)
    for res in got.values():
        _check(res, EDGE_PATS, data)


def test_matches_at_the_first_and_last_byte_of_every_chunk(mk):
    pats = [b"Q", b"QQ"]
    chunk = 128
    data = bytearray(b"." * (chunk * 6))
    for b in range(0, len(data), chunk):
        data[b] = data[b + chunk - 1] = ord("Q")
    data = bytes(data)
    with GpuStream(mk, chunk_bytes=chunk, depth=3, max_context=64, slices=4) as s:
        res = s.scan(data, build_dfa(pats), matches=True)[0]
    _check(res, pats, data)
    assert res.matches["offset"][0] == 1 and res.matches["offset"][-1] == len(data)


def test_ignore_case_through_the_stream(mk):
    pats = [b"ERROR", b"warn", b"Error:"]
    rng = random.Random(8)
    words = [b"error", b"ERROR", b"Error:", b"WARN", b"warn", b"wArN", b"ok ", b" "]
    data = b"".join(rng.choice(words) for _ in range(3000))
    d = build_dfa(pats, ignore_case=True)
    with GpuStream(mk, chunk_bytes=1000, depth=4) as s:
        res = s.scan(data, d, per_pattern=True, matches=True)[0]
    _check(res, pats, data, ignore_case=True)


def test_ten_thousand_patterns(mk):
    rng = random.Random(12)
    pats = [bytes(rng.choice(b"abcdef") for _ in range(rng.randint(2, 8)))
            for _ in range(10_000)]
    data = bytes(rng.choice(b"abcdef") for _ in range(60_000))
    d = build_dfa(pats)
    with GpuStream(mk, chunk_bytes=8192, depth=4, match_records=1 << 20) as s:
        res = s.scan(data, d, per_pattern=True, matches=True)[0]
    assert res.per_pattern.tolist() == count_per_pattern(pats, data).tolist()
    assert res.dropped == 0 and len(res.matches) == int(res.per_pattern.sum())
    assert _pairs(res) == find_matches(pats, data)


def test_caps_and_dropped_are_never_silent(mk):
    pats = [b"a", b"b", b"ab"]
    rng = random.Random(4)
    data = bytes(rng.choice(b"abc") for _ in range(20_000))
    d = build_dfa(pats)
    ref = find_matches(pats, data)
    total = len(ref)
    with GpuStream(mk, chunk_bytes=2048, depth=4, slices=2) as s:
        r = s.scan(data, d, matches=True, max_matches=25)[0]
        assert _pairs(r) == ref[:25] and r.dropped == total - 25
        r = s.scan(data, d, matches=True, first_per_pattern=3)[0]
        want = [m for m in ref if [x for x in ref if x[0] == m[0]].index(m) < 3]
        assert _pairs(r) == want and r.dropped == total - 9
        r = s.scan(data, d, matches=True, first_per_pattern=2, max_matches=5)[0]
        assert len(r.matches) == 5 and r.dropped == total - 5
        assert _pairs(r) == [m for m in ref if [x for x in ref if x[0] == m[0]].index(m) < 2][:5]
        r = s.scan(data, d, matches=True, max_matches=0)[0]
        assert r.matches.size == 0 and r.dropped == total
        assert r.per_pattern.tolist() == count_per_pattern(pats, data).tolist()
    # a record buffer that fills: each slot keeps some of its matches, the rest are counted
    with GpuStream(mk, chunk_bytes=2048, depth=4, slices=2, match_records=40) as s:
        r = s.scan(data, d, matches=True)[0]
    assert r.dropped > 0 and len(r.matches) + r.dropped == total
    assert set(_pairs(r)) <= set(ref)
    assert r.per_pattern.tolist() == count_per_pattern(pats, data).tolist()


def test_plain_scan_still_returns_positions(mk):
    d = build_dfa([b"ab"])
    with GpuStream(mk, chunk_bytes=256, depth=2) as s:
        assert s.scan(b"abab", d) == {0: 2}


def test_argument_errors(mk):
    d = build_dfa([b"ab"])
    with GpuStream(mk, chunk_bytes=256, depth=2) as s:
        with pytest.raises(InvalidValueError, match="matches=True"):
            s.scan(b"ab", d, max_matches=3)
        with pytest.raises(InvalidValueError, match="matches=True"):
            s.scan(b"ab", d, per_pattern=True, first_per_pattern=1)
        with pytest.raises(InvalidTypeError):
            s.scan(b"ab", d, per_pattern=1)
        with pytest.raises(InvalidValueError):
            s.scan(b"ab", d, matches=True, max_matches=-1)
        with pytest.raises(InvalidTypeError):
            s.scan(b"ab", d, matches=True, first_per_pattern=1.5)
        assert s.scan(b"ab", d, matches=True)[0].dropped == 0  # still usable
    with pytest.raises(InvalidValueError):
        GpuStream(mk, match_records=0)


def test_match_buffers_and_id_tables_are_reused(mk):
    from vyre.ingest.leases import leases_for

    d = build_dfa([b"x", b"xy"])
    with GpuStream(mk, chunk_bytes=256, depth=2) as s:
        leases = leases_for(mk, s._nobs)
        s.scan(b"xyx", d, per_pattern=True)
        pooled = [h for h, _ in leases._match_bufs]
        for _ in range(30):
            assert s.scan(b"xyx", d, per_pattern=True)[0].per_pattern.tolist() == [2, 1]
        assert sorted(h for h, _ in leases._match_bufs) == sorted(pooled)  # none added
        handles = {h for _, h, _, _ in leases._tables.values()}
        assert len(handles) >= 2  # the table and the id table


def test_offsets_are_64_bit():
    """A chunk far into a source: the record offset is the chunk's file offset plus the
    offset from a2, past 2**32 (the slot carries 32-bit offsets only)."""
    abi = dict(ABI)
    stream = SimpleNamespace(depth=1, chunk_bytes=1 << 20)
    d = build_dfa([b"a"])
    size = MatchScan.nbytes(1, 1, 1, 4, abi["DFA_RECORD_WORDS"])
    raw = np.zeros(size, np.uint8)
    ms = MatchScan(stream, abi, d, MatchOptions(True, None, None), 1, 4, 1, 2, (3, raw))
    words = raw.view(np.uint32)
    base = (5 << 32) + 123
    job = SimpleNamespace()
    assert ms.published(0, [base], job, 1 << 20) == 0  # counter row 0
    words[0] = 2                    # counter of pattern 0
    words[1 + 0] = 2                # records written, slot 0 row 0
    words[2:6] = [0, 7, 0, 0xFFFFFFFF]
    ms.retire(0, job)
    r = ms.result(job, positions=2)
    assert r.matches["offset"].tolist() == [base + 7, base + 0xFFFFFFFF]
    assert r.per_pattern.tolist() == [2] and r.dropped == 0


def test_cap_matches_orders_and_limits():
    rec = np.array([(2, 5), (1, 5), (0, 9), (1, 1), (1, 3)], dtype=MATCH_DTYPE)
    out = cap_matches(rec, None, None)
    assert out.tolist() == [(1, 1), (1, 3), (1, 5), (2, 5), (0, 9)]
    assert cap_matches(rec, None, 1).tolist() == [(1, 1), (2, 5), (0, 9)]
    assert cap_matches(rec, 2, None).tolist() == [(1, 1), (1, 3)]
    assert cap_matches(rec[:0], 3, 2).size == 0


def test_a_slots_records_are_sorted_with_a_64_bit_key():
    """A slot's (pattern, offset) pairs arrive in the order its lanes found them; they come
    back sorted by offset then pattern, offsets 64-bit (base above 2**32), pattern ids up to
    2**32 - 1 and offsets up to 2**32 - 1 keeping their own words of the key."""
    top = 2**32 - 1
    pairs = np.array([[3, 7], [top, 0], [0, top], [1, 7], [0, 7], [2, 0]], dtype=np.uint32)
    base = 5 << 32
    rec = sorted_records(pairs, base)
    assert rec.dtype == MATCH_DTYPE
    assert rec.tolist() == [(2, base), (top, base), (0, base + 7), (1, base + 7), (3, base + 7),
                            (0, base + top)]
    assert in_order(rec) and sorted_records(pairs[:0], 0).size == 0


def test_runs_concatenated_out_of_order_are_still_sorted():
    """cap_matches trusts no order: runs that are each sorted but overlap (or come in the
    wrong order) are sorted whole; ordered input is left as is."""
    a = sorted_records(np.array([[0, 1], [0, 9]], np.uint32), 100)
    b = sorted_records(np.array([[1, 0], [0, 5]], np.uint32), 100)
    both = np.concatenate([a, b])
    assert not in_order(both)
    assert cap_matches(both, None, None).tolist() == [(1, 100), (0, 101), (0, 105), (0, 109)]
    assert in_order(cap_matches(both, None, None))
    same = np.array([(0, 4), (1, 4), (0, 5)], dtype=MATCH_DTYPE)
    assert in_order(same) and not in_order(same[::-1])


def _over(raw: bytes, alphabet: bytes) -> bytes:
    return bytes(alphabet[x % len(alphabet)] for x in raw)


@settings(max_examples=25, deadline=None)
@given(pats=st.lists(st.binary(min_size=1, max_size=6).map(lambda b: _over(b, b"abAB")),
                     min_size=1, max_size=8),
       data=st.binary(max_size=3000).map(lambda b: _over(b, b"aAbB`@")),
       chunk=st.integers(8, 700), slices=st.integers(1, 9), ignore_case=st.booleans())
def test_random_scans_equal_the_reference(mk, pats, data, chunk, slices, ignore_case):
    d = build_dfa(pats, ignore_case=ignore_case)
    with GpuStream(mk, chunk_bytes=chunk, depth=3, max_context=8, slices=slices) as s:
        res = s.scan(data, d, per_pattern=True, matches=True)[0]
    _check(res, pats, data, ignore_case=ignore_case)
