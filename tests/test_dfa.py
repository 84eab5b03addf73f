"""vyre.ingest.dfa: the dense Aho–Corasick table against a plain search; the context property."""
from __future__ import annotations

import random

import numpy as np
import pytest

pytest.importorskip("vyre.ingest._uring")  # the ABI constants come from vyre_abi.h through it
from vyre.ingest.dfa import Dfa, PatternError, build_dfa, count_matches  # noqa: E402


def _rand_bytes(rng: random.Random, n: int, alphabet: bytes) -> bytes:
    return bytes(rng.choice(alphabet) for _ in range(n))


def test_textbook_example():
    d = build_dfa([b"he", b"she", b"his", b"hers"])
    assert isinstance(d, Dfa)
    assert d.context == 4
    # "ushers": she+he end at 3, hers at 5 -> 2 accepting positions
    assert d.scan(b"ushers") [0] == 2 == d.count_matches(b"ushers")


def test_table_layout():
    d = build_dfa([b"abc", b"b"])
    assert d.table.dtype == np.dtype("<u4") and d.table.flags.c_contiguous
    assert d.table.size == d.states * 256
    nxt = d.table & 0x7FFFFFFF
    assert int(nxt.max()) < d.states
    assert d.states == 5  # root, a, ab, abc, b


def test_states_count_is_trie_size():
    d = build_dfa([b"abc", b"abd", b"x"])
    assert d.states == 1 + 4 + 1  # root, a, ab, abc, abd, x


def test_overlaps_and_multiple_endings_count_once_per_position():
    d = build_dfa([b"aa"])
    assert d.scan(b"aaaa")[0] == 3 == count_matches([b"aa"], b"aaaa")
    d = build_dfa([b"a", b"aa", b"aaa"])
    assert d.scan(b"aaaa")[0] == 4  # one per position, however many patterns end there


def test_binary_patterns_and_duplicates():
    pats = [b"\x00\xff", b"\xff\x00", b"\x00\xff"]
    d = build_dfa(pats)
    assert d.patterns == tuple(pats)  # ids are positions: duplicates kept
    data = b"\x00\xff\x00\xff\xff\x00"
    assert d.scan(data)[0] == count_matches(pats, data) == 4


def test_empty_pattern_list_never_accepts():
    d = build_dfa([])
    assert d.states == 1 and d.context == 0
    assert not (d.table & 0x80000000).any()
    assert d.scan(b"anything")[0] == 0


@pytest.mark.parametrize("bad,fix", [([b""], "remove empty"), (["abc"], "encode"),
                                     (b"abc", "wrap it in a list"), ([3.5], "bytes")])
def test_bad_patterns_are_clear_errors(bad, fix):
    with pytest.raises(PatternError) as ei:
        build_dfa(bad)
    assert isinstance(ei.value, ValueError)
    assert ". Fix: " in str(ei.value) and fix in ei.value.fix
    # a pattern of the wrong type is also a TypeError (vyre.InvalidTypeError)
    assert isinstance(ei.value, TypeError) is (fix != "remove empty")


def test_too_many_states_refused():
    with pytest.raises(PatternError) as ei:
        build_dfa([b"x" * 100], max_states=50)
    assert "max_states" in ei.value.fix


@pytest.mark.parametrize("seed", range(30))
def test_random_patterns_match_the_reference(seed):
    rng = random.Random(seed)
    alphabet = bytes(rng.sample(range(256), rng.choice([2, 3, 4, 16])))
    pats = [_rand_bytes(rng, rng.randint(1, 6), alphabet) for _ in range(rng.randint(1, 12))]
    data = _rand_bytes(rng, 2000, alphabet)
    d = build_dfa(pats)
    assert d.scan(data)[0] == count_matches(pats, data)


@pytest.mark.parametrize("seed", range(10))
def test_state_depends_only_on_the_last_context_bytes(seed):
    """The proof in vyre/dfa.py, checked: restarting `context` bytes early gives the same state."""
    rng = random.Random(100 + seed)
    alphabet = b"ab" if seed % 2 else b"abc"
    pats = [_rand_bytes(rng, rng.randint(1, 7), alphabet) for _ in range(rng.randint(1, 8))]
    d = build_dfa(pats)
    data = _rand_bytes(rng, 600, alphabet)
    full_state = 0
    rows = d.table.tolist()
    for p in range(len(data)):
        restart = d.scan(data[max(0, p - d.context):p])[1]
        assert restart == full_state, (pats, p)
        full_state = rows[full_state * 256 + data[p]] & 0x7FFFFFFF


@pytest.mark.parametrize("seed", range(10))
def test_chunked_scan_with_context_is_exact(seed):
    """DFA_SCAN semantics per chunk (restart at 0, re-read `context` bytes, a6 = context):
    any chunking, and any split of a chunk across lanes, gives the whole-file count."""
    rng = random.Random(200 + seed)
    pats = [_rand_bytes(rng, rng.randint(1, 9), b"xyz") for _ in range(5)]
    d = build_dfa(pats)
    data = _rand_bytes(rng, 3000, b"xyz")
    want = count_matches(pats, data)
    chunk = rng.randint(1, 400)
    total = 0
    for off in range(0, len(data), chunk):
        c = min(d.context, off)
        total += d.scan(data[off - c:off + chunk], 0, c)[0]
    assert total == want
    # lane split inside one range: part i restarts `context` bytes before its start
    parts = rng.randint(2, 9)
    bounds = sorted(rng.sample(range(1, len(data)), parts - 1))
    starts, ends = [0] + bounds, bounds + [len(data)]
    total = 0
    for s, e in zip(starts, ends, strict=True):
        c = min(d.context, s)
        total += d.scan(data[s - c:e], 0, c)[0]
    assert total == want


def test_context_shorter_than_max_length_would_be_wrong():
    """The context must cover the longest pattern: with one byte less a straddling match of
    the longest pattern is still found, but the stored state differs (so the bound is tight
    for the state, which DFA_SCAN stores to obs[a4])."""
    d = build_dfa([b"abcd"])
    assert d.context == 4
    data = b"zzabcd"
    assert d.scan(data[2:6])[1] == d.scan(data)[1]
    assert d.scan(data[3:6])[1] != d.scan(data)[1]


def test_large_pattern_set_builds_quickly():
    rng = random.Random(5)
    pats = [_rand_bytes(rng, rng.randint(4, 16), bytes(range(256))) for _ in range(2000)]
    d = build_dfa(pats)
    assert d.states <= 1 + sum(len(p) for p in pats)
    data = bytearray(_rand_bytes(rng, 20000, bytes(range(256))))
    for p in pats[:50]:
        at = rng.randrange(0, len(data) - len(p))
        data[at:at + len(p)] = p
    assert d.scan(bytes(data))[0] == count_matches(pats, bytes(data)) >= 1
