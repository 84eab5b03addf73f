"""Pattern ids, ignore_case and saved pattern sets (vyre.ingest.dfa, vyre.ingest.dfa_file).

The tables are checked by walking them in Python (``Dfa.walk_matches``, DFA_MATCH's walk)
against the plain ``bytes.find`` references ``count_per_pattern`` / ``find_matches``; the
opcode and the stream are checked against the same references in test_interp_dfa_match.py and
test_stream_match.py.
"""
from __future__ import annotations

import os
import random
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vyre
import vyre.ingest
from vyre.errors import InvalidTypeError, PipelineError
from vyre.ingest.dfa import (
    Dfa,
    PatternError,
    build_dfa,
    count_matches,
    count_per_pattern,
    find_matches,
    load_dfa,
)
from vyre.ingest.dfa_file import FORMAT_VERSION, PatternSetFileError


def _check(pats, data, ignore_case=False):
    d = build_dfa(pats, ignore_case=ignore_case)
    pos, per, found = d.walk_matches(data)
    assert per.tolist() == count_per_pattern(pats, data, ignore_case=ignore_case).tolist()
    assert sorted(found, key=lambda m: (m[1], m[0])) == find_matches(
        pats, data, ignore_case=ignore_case)
    assert pos == count_matches(pats, data, ignore_case=ignore_case) == d.scan(data)[0]
    return d, pos, per, found


def test_reference_functions_on_a_small_case():
    pats = [b"a", b"aa", b"aaa", b"b"]
    assert count_per_pattern(pats, b"aaaa").tolist() == [4, 3, 2, 0]
    assert count_per_pattern(pats, b"aaaa").dtype == np.uint64
    # end offset = one past the last byte, sorted by offset then id
    assert find_matches(pats, b"aab") == [(0, 1), (0, 2), (1, 2), (3, 3)]
    assert find_matches([b"x"], b"") == []
    assert count_per_pattern([], b"abc").tolist() == []


def test_overlapping_patterns_count_under_each_id():
    d, pos, per, found = _check([b"a", b"aa", b"aaa"], b"aaaa")
    assert pos == 4 and per.tolist() == [4, 3, 2]
    assert found.count((0, 4)) == 1 and (1, 4) in found and (2, 4) in found


def test_duplicates_keep_their_ids_and_count_twice():
    pats = [b"ab", b"x", b"ab", b"ab"]
    d = build_dfa(pats)
    assert d.patterns == tuple(pats)
    _, pos, per, found = _check(pats, b"abxab")
    assert per.tolist() == [2, 1, 2, 2]
    assert pos == 3  # positions count once however many ids end there
    assert sorted(m for m in found if m[1] == 2) == [(0, 2), (2, 2), (3, 2)]


def test_nul_bytes_and_every_byte_value():
    pats = [b"\x00", b"\x00\x00", bytes(range(256)), b"\xff\x00", b"\x00\xff"]
    data = b"\x00\x00\x00" + bytes(range(256)) + b"\xff\x00\xff"
    _check(pats, data)


def test_ignore_case_folds_ascii_letters_only():
    pats = [b"Error", b"WARN", b"\xc3\x89t\xc3\xa9", b"a1", b"error"]
    data = b"ERROR error eRrOr warn Warn \xc3\xa9T\xc3\xa9 \xc3\x89T\xc3\xa9 A1 a1 [1"
    d, pos, per, found = _check(pats, data, ignore_case=True)
    assert per.tolist() == [3, 2, 1, 2, 3]  # "\xc3\x89" and "\xc3\xa9" are different bytes
    assert d.ignore_case
    # case matters without the flag
    assert count_per_pattern(pats, data).tolist() == [0, 0, 0, 1, 1]
    # '[' (0x5B) and '{' (0x7B) and '@'/'`' are not letters: no folding
    assert count_per_pattern([b"["], b"{", ignore_case=True).tolist() == [0]
    d2 = build_dfa([b"["], ignore_case=True)
    assert d2.walk_matches(b"{")[0] == 0 and d2.walk_matches(b"[")[0] == 1


def test_ignore_case_must_be_a_bool():
    with pytest.raises(InvalidTypeError):
        build_dfa([b"a"], ignore_case=1)


def test_context_rule_holds_for_ids():
    rng = random.Random(5)
    pats = [b"abca", b"bc", b"cab", b"a", b"abcabc"]
    data = bytes(rng.choice(b"abc") for _ in range(3000))
    d = build_dfa(pats)
    full = d.walk_matches(data)[2]
    for cut in (1, 7, 100, 1499, 2999):
        lo = max(0, cut - d.context)
        _, _, tail = d.walk_matches(data[lo:], cut - lo)
        assert [(p, e + lo) for p, e in tail] == [m for m in full if m[1] > cut]


def test_ten_thousand_patterns():
    rng = random.Random(9)
    pats = [bytes(rng.choice(b"abcd") for _ in range(rng.randint(1, 9))) for _ in range(10_000)]
    data = bytes(rng.choice(b"abcd") for _ in range(5000))
    d = build_dfa(pats)
    pos, per, _ = d.walk_matches(data)
    assert per.tolist() == count_per_pattern(pats, data).tolist()
    assert pos == count_matches(pats, data)


@settings(max_examples=60, deadline=None)
@given(pats=st.lists(st.binary(min_size=1, max_size=5).map(lambda b: bytes(x % 4 + 63 for x in b)),
                     min_size=1, max_size=12),
       data=st.binary(max_size=300).map(lambda b: bytes(x % 4 + 63 for x in b)),
       ignore_case=st.booleans())
def test_tables_match_the_reference(pats, data, ignore_case):
    # bytes 63..66 are '?', '@', 'A', 'B': letters and non-letters next to them
    _check(pats, data, ignore_case=ignore_case)


def test_exports():
    assert vyre.load_dfa is load_dfa and vyre.ingest.load_dfa is load_dfa
    assert vyre.ScanResult is vyre.ingest.ScanResult
    assert vyre.ingest.build_dfa is build_dfa
    with pytest.raises(AttributeError):
        vyre.ingest.no_such_name  # noqa: B018


# ------------------------------------------------------------------ saved pattern sets
def test_save_and_load_round_trip(tmp_path):
    pats = [b"Error", b"\x00\x01", b"Error", b"warn"]
    d = build_dfa(pats, ignore_case=True)
    path = tmp_path / "set.vyredfa"
    d.save(path)
    got = load_dfa(str(path))
    assert isinstance(got, Dfa)
    assert got.patterns == d.patterns and got.ignore_case and got.context == d.context
    assert got.states == d.states
    assert np.array_equal(got.table, d.table) and np.array_equal(got.ids, d.ids)
    data = b"ERROR \x00\x01 Warn error"
    assert got.walk_matches(data)[1].tolist() == d.walk_matches(data)[1].tolist() == [2, 1, 2, 1]
    # an empty set round-trips too
    build_dfa([]).save(path)
    e = load_dfa(path)
    assert e.patterns == () and e.states == 1


def _saved(tmp_path) -> tuple[str, bytes]:
    path = str(tmp_path / "p.vyredfa")
    build_dfa([b"abc", b"b"]).save(path)
    with open(path, "rb") as f:
        return path, f.read()


def _load_fails(path, what):
    with pytest.raises(PatternSetFileError) as ei:
        load_dfa(path)
    err = ei.value
    assert isinstance(err, PipelineError) and isinstance(err, ValueError)
    assert what in str(err) and "Fix:" in str(err)
    assert err.path == str(path)
    return err


def test_corrupt_files_are_refused(tmp_path):
    path, raw = _saved(tmp_path)
    for at in (20, len(raw) // 2, len(raw) - 40, len(raw) - 1):
        bad = bytearray(raw)
        bad[at] ^= 0x40
        with open(path, "wb") as f:
            f.write(bad)
        _load_fails(path, "damaged")
    with open(path, "wb") as f:
        f.write(raw[:-5])
    _load_fails(path, "damaged")
    with open(path, "wb") as f:
        f.write(raw + b"\0")
    _load_fails(path, "damaged")


def test_foreign_and_other_version_files_are_refused(tmp_path):
    path, raw = _saved(tmp_path)
    for foreign in (b"", b"hello", b"\x7fELF" + bytes(100), b"abc" * 20):
        with open(path, "wb") as f:
            f.write(foreign)
        _load_fails(path, "not a saved vyre pattern set")
    other = bytearray(raw)
    struct.pack_into("<I", other, 8, FORMAT_VERSION + 1)
    with open(path, "wb") as f:
        f.write(other)
    err = _load_fails(path, f"version {FORMAT_VERSION + 1}")
    assert "build_dfa" in str(err)


def test_a_file_whose_checksum_fits_but_tables_do_not_is_refused(tmp_path):
    import hashlib

    path, raw = _saved(tmp_path)
    body = bytearray(raw[:-32])
    # first table entry of state 0 points past the last state
    off = 32 + 4 * 2 + 4  # header, two lengths, "abcb" padded to 4
    struct.pack_into("<I", body, off, 1000)
    with open(path, "wb") as f:
        f.write(bytes(body) + hashlib.sha256(body).digest())
    _load_fails(path, "do not fit together")


def test_missing_file_and_bad_path_type(tmp_path):
    err = _load_fails(str(tmp_path / "missing"), "cannot read")
    assert isinstance(err.__cause__, FileNotFoundError)
    with pytest.raises(InvalidTypeError):
        load_dfa(5)
    with pytest.raises(InvalidTypeError):
        build_dfa([b"a"]).save(None)


def test_save_replaces_atomically(tmp_path):
    path = tmp_path / "s.vyredfa"
    build_dfa([b"old"]).save(path)
    build_dfa([b"new", b"newer"]).save(path)
    assert load_dfa(path).patterns == (b"new", b"newer")
    assert sorted(os.listdir(tmp_path)) == ["s.vyredfa"]  # no temporary left behind


def test_too_many_states_still_refused():
    with pytest.raises(PatternError):
        build_dfa([b"abcdef"], max_states=3)
