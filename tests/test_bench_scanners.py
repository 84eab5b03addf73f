"""The CPU scanner baselines (vyre.bench.scanners) count every occurrence of every pattern,
overlapping ones included, exactly like a naive find loop: on edge data, across the pieces
the threads split files into, with duplicates, NUL bytes, case folding and 10 000 patterns.
ripgrep (non-overlapping) agrees on the patterns marked comparable."""
from __future__ import annotations

import numpy as np
import pytest

from vyre.bench import scanners

hyperscan = pytest.importorskip("hyperscan")
ahocorasick = pytest.importorskip("ahocorasick")


def naive(patterns, data: bytes, ignore_case: bool = False) -> list[int]:
    """Every occurrence of every pattern, overlapping ones included (a find loop)."""
    if ignore_case:
        data, patterns = data.lower(), [p.lower() for p in patterns]
    out = []
    for p in patterns:
        n, i = 0, data.find(p)
        while i >= 0:
            n += 1
            i = data.find(p, i + 1)
        out.append(n)
    return out


def _rng_bytes(seed: int, n: int, alphabet: bytes = b"ab\x00") -> bytes:
    rng = np.random.default_rng(seed)
    return bytes(rng.choice(np.frombuffer(alphabet, np.uint8), n).astype(np.uint8))


OVERLAP = [b"a", b"aa", b"aaa", b"ab", b"aa"]  # the last a duplicate: counted under both ids
EDGE = [
    (OVERLAP, b""),
    (OVERLAP, b"a"),
    (OVERLAP, b"b"),
    (OVERLAP, b"aaaa"),
    ([b"first", b"last"], b"first" + b"x" * 100 + b"last"),
    ([b"\x00", b"\x00\x00", b"a\x00b", b"\xff\x00"], b"\x00\x00\x00a\x00b\xff\x00\x00"),
    ([b"ab", b"bab", b"aaa", b"\x00a"], _rng_bytes(1, 20_011)),
    ([bytes([b]) for b in range(256)], bytes(range(256)) * 3),
]


def _counters(patterns, **kw):
    return [scanners.HyperscanCounter(patterns, threads=3, piece_bytes=7, **kw),
            scanners.HyperscanCounter(patterns, threads=1, **kw),
            scanners.AhoCorasickCounter(patterns, piece_bytes=5, **kw),
            scanners.AhoCorasickCounter(patterns, **kw)]


@pytest.mark.parametrize("case", range(len(EDGE)))
def test_counters_equal_the_naive_count_on_edge_data(case):
    patterns, data = EDGE[case]
    want = naive(patterns, data)
    for c in _counters(patterns):
        try:
            got = c.count_buffers([data])
            assert got.dtype == np.uint64
            assert got.tolist() == want, c.name
        finally:
            c.close()


@pytest.mark.parametrize("case", range(len(EDGE)))
def test_counters_on_files_equal_buffers(tmp_path, case):
    patterns, data = EDGE[case]
    paths = []
    for i, chunk in enumerate((data, b"", data[::-1])):
        p = tmp_path / f"f{i}.bin"
        p.write_bytes(chunk)
        paths.append(str(p))
    want = np.add(naive(patterns, data), naive(patterns, data[::-1])).tolist()
    for c in _counters(patterns):
        assert c.count_files(paths).tolist() == want, c.name
        c.close()


def test_ignore_case_folds_ascii_only():
    patterns = [b"NeEdLe", b"needle", b"\xc4x"]
    data = b"needle NEEDLE nEeDlE \xc4X \xe4x"
    want = naive(patterns, data, ignore_case=True)
    assert want == [3, 3, 1]
    for c in _counters(patterns, ignore_case=True):
        assert c.count_buffers([data]).tolist() == want, c.name


def test_ten_thousand_patterns():
    rng = np.random.default_rng(7)
    patterns = [bytes(rng.choice(np.frombuffer(b"acgt", np.uint8), int(n)).astype(np.uint8))
                for n in rng.integers(4, 9, 10_000)]
    data = _rng_bytes(8, 60_000, b"acgt")
    want = naive(patterns, data)
    assert sum(want) > 10_000  # the data really hits many of them
    for c in (scanners.HyperscanCounter(patterns, threads=2, piece_bytes=9_999),
              scanners.AhoCorasickCounter(patterns, piece_bytes=13_001)):
        assert c.count_buffers([data]).tolist() == want, c.name


def test_bad_patterns_are_refused():
    for bad, err in (([], ValueError), ([b""], ValueError), (["text"], TypeError)):
        with pytest.raises(err):
            scanners.literal_patterns(bad)


def test_self_overlap():
    assert scanners.self_overlapping(b"aa") and scanners.self_overlapping(b"abcab")
    assert not scanners.self_overlapping(b"needle") and not scanners.self_overlapping(b"a")


def test_ripgrep_agrees_on_comparable_patterns(tmp_path):
    if scanners.available()["ripgrep"] is not None:
        pytest.skip("rg is not installed")
    patterns = [b"needle", b"vyre", b"aa", b"a\x00", b"line\nbreak", b"abc"]
    data = (b"needle aaaa vyre\nabc\x00\n" * 50) + b"needleneedle"
    paths = []
    for i in range(3):
        p = tmp_path / f"f{i}.txt"
        p.write_bytes(data[i:])
        paths.append(str(p))
    (tmp_path / "empty").write_bytes(b"")
    paths.append(str(tmp_path / "empty"))
    rg = scanners.RipgrepCounter(patterns, threads=2)
    assert rg.comparable.tolist() == [True, True, False, False, False, True]
    got = rg.count_files(paths)
    want = np.sum([naive(patterns, data[i:]) for i in range(3)], axis=0)
    assert got[rg.comparable].tolist() == want[rg.comparable].tolist()
    assert got[~rg.comparable].tolist() == [0, 0, 0]


def test_the_references_agree_with_vyres_own_where_it_exists():
    dfa = pytest.importorskip("vyre.ingest.dfa")
    patterns, data = EDGE[6]
    assert list(dfa.count_per_pattern(patterns, data)) == naive(patterns, data)
