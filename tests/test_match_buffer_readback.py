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
    stream = SimpleNamespace(depth=4, mk=SimpleNamespace(backend=backend))
    size = MatchScan.nbytes(4, 3, 1, 8, ABI["DFA_RECORD_WORDS"])
    return MatchScan(stream, ABI, dfa, opts, 1, 8, 1, 2, (7, raw)), size


def _fill(words: np.ndarray, ms: MatchScan, slot: int, counters, records) -> None:
    words[slot * 3:slot * 3 + 3] += np.asarray(counters, np.uint32)
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
            _fill(words, ms, slot, counters, records)
            ms.published(slot, [1000 * slot])
            ms.retire(slot, job)
    for job in jobs:
        h, d = host_ms.result(job, 0), dev_ms.result(job, 0)
        assert d.per_pattern.tolist() == h.per_pattern.tolist()
        assert d.matches.tolist() == h.matches.tolist() and d.dropped == h.dropped
    assert host_ms.result(jobs[0], 0).per_pattern.tolist() == [1, 4, 2]
    assert host_ms.result(jobs[1], 0).per_pattern.tolist() == [2**32 - 1, 1, 1]
    assert backend.reads  # every read went through the backend
