"""Sources beyond paths: bytes-like data, NumPy arrays, BytesIO and open files go through the
same staging path as files, with the same exact counts (context re-read across chunks)."""
from __future__ import annotations

import io
import os
import sys

import numpy as np
import pytest

pytest.importorskip("vyre.ingest._uring")
from vyre.errors import InvalidTypeError, InvalidValueError  # noqa: E402
from vyre.ingest import _uring  # noqa: E402
from vyre.ingest.dfa import build_dfa, count_matches  # noqa: E402
from vyre.ingest.stream import GpuStream  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _fake_mk import FakeMegakernel  # noqa: E402

PATS = [b"needle", b"hay", b"\x00\xff", b"aa"]


@pytest.fixture(params=["fake", "cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def mk(request):
    if request.param == "fake":
        m = FakeMegakernel(seed=11)
        yield m
        assert m.violations == []
    else:
        megakernel = pytest.importorskip("vyre.megakernel")
        kw = {"workers": 2} if request.param == "cpu" else {}
        m = megakernel.Megakernel(backend=request.param, observable_slots=64, **kw).start()
        yield m
        m.shutdown(drain=False)


@pytest.fixture(params=["uring", "fallback"], autouse=True)
def ingest_path(request, monkeypatch):
    if request.param == "uring" and not _uring.available()[0]:
        pytest.skip("io_uring unavailable here")
    monkeypatch.setenv("VYRE_INGEST", request.param)
    return request.param


def _planted(seed: int, size: int) -> bytes:
    rng = np.random.default_rng(seed)
    data = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    for i, at in enumerate(range(5, max(size - 8, 5), 331)):
        p = PATS[i % len(PATS)]
        data[at:at + len(p)] = p[:max(0, size - at)]
    return bytes(data)


def test_in_memory_sources_count_like_files(mk, tmp_path):
    d = build_dfa(PATS)
    data = _planted(1, 50_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    words = np.frombuffer(data[:40_000], np.uint32)
    strided = np.frombuffer(data, np.uint8)[::3]  # not contiguous: its elements, in order
    sources = [data, bytearray(data[:7_000]), memoryview(data)[100:30_100], words, strided,
               io.BytesIO(data[:12_345]), str(path)]
    want = [count_matches(PATS, data), count_matches(PATS, data[:7_000]),
            count_matches(PATS, data[100:30_100]), count_matches(PATS, words.tobytes()),
            count_matches(PATS, strided.tobytes()), count_matches(PATS, data[:12_345]),
            count_matches(PATS, data)]
    with GpuStream(mk, chunk_bytes=4096, depth=3) as s:
        got = s.scan(sources, d)
        assert got == {0: want[0], 1: want[1], 2: want[2], 3: want[3], 4: want[4],
                       5: want[5], str(path): want[6]}
        assert s.scan(data, d) == {0: want[0]}


@pytest.mark.parametrize("data", [b"", b"a", b"aa", b"needle", b"xxneedle", b"needlexx"])
def test_tiny_in_memory_sources(mk, data):
    d = build_dfa(PATS)
    with GpuStream(mk, chunk_bytes=8, depth=2) as s:
        assert s.scan([data], d) == {0: count_matches(PATS, data)}


def test_matches_straddling_chunks_of_memory_count_once(mk):
    d = build_dfa([b"needle"])
    chunk = 64
    data = bytearray(b"." * (chunk * 6))
    for k in range(1, 6):  # one needle across every chunk boundary, shifted each time
        at = k * chunk - k
        data[at:at + 6] = b"needle"
    with GpuStream(mk, chunk_bytes=chunk, depth=2) as s:
        assert s.scan(bytes(data), d) == {0: 5}


def test_open_files_are_read_whole(mk, tmp_path):
    d = build_dfa(PATS)
    data = _planted(2, 20_000)
    path = tmp_path / "g.bin"
    path.write_bytes(data)
    with open(path, "rb") as f, GpuStream(mk, chunk_bytes=4096, depth=3) as s:
        f.seek(1000)  # the scan reads from offset 0 whatever the file position
        assert s.scan([f], d) == {0: count_matches(PATS, data)}
        assert s.ingest([f, data], lambda *a: [])["bytes"] == 2 * len(data)


def test_sources_that_are_none_of_these_are_refused(mk):
    d = build_dfa(PATS)
    with GpuStream(mk, chunk_bytes=4096, depth=2) as s:
        for bad in ([1.5], [None], 7, [["a"]]):
            with pytest.raises(InvalidTypeError) as ei:
                s.scan(bad, d)
            assert "Fix: " in str(ei.value)
        with open(os.devnull, "rb") as closed:
            pass
        with pytest.raises(InvalidValueError):
            s.scan([closed], d)
