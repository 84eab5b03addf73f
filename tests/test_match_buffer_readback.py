"""A match buffer in device memory (CUDA: docs/ingest.md) is read through the backend's
``copy_from_device`` after each slot, word for word what a host buffer gives; checked here
with a stand-in backend whose "device" buffer is a host array the reads must go through."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from vyre.ingest.dfa import build_dfa
from vyre.ingest.match_scan import MatchOptions, MatchScan
from vyre.protocol import ABI


class FakeDevice:
    """Device memory the host may only read through copy_from_device."""

    def __init__(self, nbytes: int) -> None:
        self.mem = np.zeros(nbytes, np.uint8)
        self.nbytes = nbytes


class FakeBackend:
    def __init__(self) -> None:
        self.reads: list[tuple[int, int]] = []

    def copy_from_device(self, buffer: FakeDevice, offset: int, out: np.ndarray) -> None:
        assert 0 <= offset and offset + out.nbytes <= buffer.nbytes
        self.reads.append((offset, out.nbytes))
        out.view(np.uint8)[:] = buffer.mem[offset:offset + out.nbytes]


def _scan(raw, backend, opts):
    dfa = build_dfa([b"ab", b"cd", b"e"])
    stream = SimpleNamespace(depth=4, chunk_bytes=1 << 20, mk=SimpleNamespace(backend=backend))
    size = MatchScan.nbytes(4, 3, 1, 8, ABI["DFA_RECORD_WORDS"])
    return MatchScan(stream, ABI, dfa, opts, 1, 8, 1, 2, (7, raw)), size


def _fill(words: np.ndarray, ms: MatchScan, slot: int, row: int, counters, records) -> None:
    words[row * 3:row * 3 + 3] += np.asarray(counters, np.uint32)
    at = ms.rec_base + slot * ms.rows * ms.region
    words[at] = len(records)
    for k, (i, e) in enumerate(records):
        words[at + 1 + 2 * k:at + 3 + 2 * k] = (i, e)


def test_device_buffer_reads_equal_host_buffer_reads():
    opts = MatchOptions(matches=True, max_matches=None, first_per_pattern=None)
    backend = FakeBackend()
    host_ms, size = _scan(np.zeros(1 << 12, np.uint8), None, opts)
    dev = FakeDevice(1 << 12)
    dev_ms, _ = _scan(dev, backend, opts)
    assert dev_ms.words is None and host_ms.words is not None
    host_words = host_ms.raw[:size].view(np.uint32)
    dev_words = dev.mem[:size].view(np.uint32)
    jobs = [SimpleNamespace(), SimpleNamespace()]
    steps = [(0, jobs[0], [1, 0, 2], [(0, 5), (2, 9)]), (3, jobs[0], [0, 4, 0], []),
             (0, jobs[1], [2**32 - 1, 1, 1], [(1, 3)])]  # a counter wraps past 2**32
    for slot, job, counters, records in steps:
        for words, ms in ((host_words, host_ms), (dev_words, dev_ms)):
            row = ms.published(slot, [1000 * slot], job, 100)
            _fill(words, ms, slot, row, counters, records)
            ms.retire(slot, job)
    for job in jobs:
        h, d = host_ms.result(job, 0), dev_ms.result(job, 0)
        assert d.per_pattern.tolist() == h.per_pattern.tolist()
        assert d.matches.tolist() == h.matches.tolist() and d.dropped == h.dropped
    assert host_ms.result(jobs[0], 0).per_pattern.tolist() == [1, 4, 2]
    assert host_ms.result(jobs[1], 0).per_pattern.tolist() == [2**32 - 1, 1, 1]
    assert backend.reads  # every read went through the backend


def test_a_source_in_flight_is_read_once_not_per_chunk():
    # chunks of one big source overlap in flight: its counter row is read when the last of
    # them is done, and the counts of a second source in flight meanwhile stay apart
    opts = MatchOptions(matches=False, max_matches=None, first_per_pattern=None)
    backend = FakeBackend()
    dev = FakeDevice(1 << 12)
    ms, size = _scan(dev, backend, opts)
    words = dev.mem[:size].view(np.uint32)
    big, small = SimpleNamespace(), SimpleNamespace()
    backend.reads.clear()
    rb = [ms.published(s, [0], big, 100) for s in range(3)]
    assert len(set(rb)) == 1
    rs = ms.published(3, [0], small, 100)
    assert rs != rb[0]
    for _ in range(3):
        _fill(words, ms, 0, rb[0], [1, 2, 3], [])
    _fill(words, ms, 3, rs, [5, 0, 0], [])
    ms.retire(0, big)
    ms.retire(1, big)
    assert backend.reads == []  # chunks of `big` still in flight: nothing read yet
    ms.retire(3, small)
    ms.retire(2, big)
    assert len(backend.reads) == 2  # one read per source
    assert ms.result(big, 0).per_pattern.tolist() == [3, 6, 9]
    assert ms.result(small, 0).per_pattern.tolist() == [5, 0, 0]
    # the rows went back: a later source reuses one, counting from what is there
    again = SimpleNamespace()
    r = ms.published(0, [0], again, 100)
    _fill(words, ms, 0, r, [0, 0, 7], [])
    ms.retire(0, again)
    assert ms.result(again, 0).per_pattern.tolist() == [0, 0, 7]


def _gib_chunks_scan():
    """A per-pattern scan of depth 4 with 1 GiB chunks over a stand-in device buffer:
    (MatchScan, its backend, the buffer's words)."""
    opts = MatchOptions(matches=False, max_matches=None, first_per_pattern=None)
    backend = FakeBackend()
    dev = FakeDevice(1 << 12)
    dfa = build_dfa([b"ab", b"cd", b"e"])
    stream = SimpleNamespace(depth=4, chunk_bytes=1 << 30, mk=SimpleNamespace(backend=backend))
    ms = MatchScan(stream, ABI, dfa, opts, 1, 8, 1, 2, (7, dev))
    return ms, backend, dev.mem[:MatchScan.nbytes(4, 3, 1, 0, 2)].view(np.uint32)


def test_a_row_is_read_before_a_u32_counter_could_wrap():
    # chunks so large that depth of them in flight could add 2**31 to a counter: every
    # retire reads the row, so no two readings are 2**32 apart
    ms, backend, words = _gib_chunks_scan()
    job = SimpleNamespace()
    rows = [ms.published(s, [0], job, 1 << 30) for s in range(2)]
    _fill(words, ms, 0, rows[0], [2**31, 0, 0], [])
    backend.reads.clear()
    ms.retire(0, job)
    assert len(backend.reads) == 1  # read although a chunk of the source is still in flight
    _fill(words, ms, 1, rows[1], [2**31, 1, 0], [])
    ms.retire(1, job)
    assert ms.result(job, 0).per_pattern.tolist() == [2**32, 1, 0]


def test_chunks_in_flight_that_add_2_32_together_are_not_lost():
    # depth chunks of one source, each under 2**32 bytes but 2**32 together, all finish
    # before the host retires the first: a row they shared would read 2**32 matches as 0
    ms, backend, words = _gib_chunks_scan()
    job, other = SimpleNamespace(), SimpleNamespace()
    rows = [ms.published(s, [0], job, 1 << 30) for s in range(4)]
    for s in range(4):
        _fill(words, ms, s, rows[s], [1 << 30, 1, 0], [])
    for s in range(4):
        ms.retire(s, job)
    assert ms.result(job, 0).per_pattern.tolist() == [1 << 32, 4, 0]
    # the slots' rows are read per chunk, so a later source counts from what is there
    r = ms.published(2, [0], other, 10)
    _fill(words, ms, 2, r, [3, 0, 5], [])
    ms.retire(2, other)
    assert ms.result(other, 0).per_pattern.tolist() == [3, 0, 5]
