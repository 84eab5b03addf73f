"""GpuStream (io_uring / fallback → staging → DFA_SCAN slots) and the LOAD_MISS IoService.

Every stream test runs on a Python double of the facade that executes DFA_SCAN lazily
(tests/_fake_mk.py; it also checks that no chunk is overwritten while its slot is in flight),
on the real CPU backend and, where a GPU is present (marker ``gpu``), on the CUDA backend --
and on both read paths (``VYRE_INGEST=uring``
and ``VYRE_INGEST=fallback``).
"""
from __future__ import annotations

import errno
import os
import random
import sys

import numpy as np
import pytest

pytest.importorskip("vyre.ingest._uring")
from vyre.errors import IoUringError, PipelineError, SlotFaultError, WaitTimeoutError  # noqa: E402
from vyre.ingest._uring import ABI, Ring  # noqa: E402
from vyre.ingest.dfa import build_dfa, count_matches  # noqa: E402
from vyre.ingest.stream import _HEAD_BYTES, FileChangedError, GpuStream  # noqa: E402
from vyre.ioservice import IoService  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _fake_mk import FakeMegakernel  # noqa: E402
from _planted import planted  # noqa: E402

URING_OK = __import__("vyre.ingest._uring", fromlist=["available"]).available()[0]


def _real_mk(backend="cpu", **kw):
    if backend == "cpu":
        pytest.importorskip("vyre.backends.cpu")
        kw.setdefault("workers", 2)
    megakernel = pytest.importorskip("vyre.megakernel")
    return megakernel.Megakernel(backend=backend, observable_slots=64, **kw).start()


REAL_BACKENDS = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(params=["fake"] + REAL_BACKENDS)
def mk(request):
    if request.param == "fake":
        m = FakeMegakernel(seed=request.node.name.__hash__() & 0xFFFF)
        yield m
        assert m.violations == [], "a chunk was overwritten while its DFA_SCAN was in flight"
    else:
        m = _real_mk(request.param)
        yield m
        m.shutdown(drain=False)


@pytest.fixture(params=["uring", "fallback"], autouse=True)
def ingest_path(request, monkeypatch):
    if request.param == "uring" and not URING_OK:
        pytest.skip("io_uring unavailable here")
    monkeypatch.setenv("VYRE_INGEST", request.param)
    return request.param


@pytest.fixture(params=[False, True], ids=["inline-reads", "parallel-reads"])
def parallel_reads(request):
    """Reads complete inline in the submitting thread, or on io_uring's workers (IOSQE_ASYNC)."""
    return request.param


def _expected_path(ingest_path):
    return "fallback" if ingest_path == "fallback" else ("io_uring+fixed", "io_uring")


def _write(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


PATS = [b"abc", b"cab", b"hgfedcba", b"a", b"ddd", b"ffgghh", b"\x00\xff\x00"]


def test_scan_matches_reference_across_chunk_boundaries(mk, ingest_path, parallel_reads,
                                                         tmp_path):
    rng = random.Random(11)
    chunk = 1024
    d = build_dfa(PATS)
    data = planted(rng, 20 * chunk + 333, PATS, chunk)
    path = _write(tmp_path, "planted.bin", data)
    with GpuStream(mk, chunk_bytes=chunk, depth=4, parallel_reads=parallel_reads) as s:
        assert s.path in _expected_path(ingest_path)
        got = s.scan(path, d)
        t = s.telemetry()
    assert t["parallel_reads"] is (parallel_reads or ingest_path == "fallback")
    assert got == {path: count_matches(PATS, data)}
    assert got[path] > 40
    nchunks = -(-len(data) // chunk)
    head = int(min(len(data), chunk) > max(d.context, _HEAD_BYTES) + d.context)  # own slot
    assert t["bytes"] == len(data) and t["chunks"] == nchunks and t["slots"] == nchunks + head
    assert t["context_bytes"] == sum(min(d.context, off) for off in range(0, len(data), chunk))


@pytest.mark.parametrize("slices", [2, 7, 64])
def test_scan_split_into_slices_is_exact(mk, tmp_path, slices):
    """Several DFA_SCAN slots per chunk: matches across slice and chunk boundaries count
    once; a slice shorter than the context is never made (the split is capped)."""
    rng = random.Random(20 + slices)
    chunk = 2048
    d = build_dfa(PATS)
    data = planted(rng, 9 * chunk + 77, PATS, 61)  # dense: many matches straddle slices
    path = _write(tmp_path, "sliced.bin", data)
    with GpuStream(mk, chunk_bytes=chunk, depth=3, slices=slices) as s:
        got = s.scan(path, d)
        t = s.telemetry()
    assert got == {path: count_matches(PATS, data)}
    nchunks = -(-len(data) // chunk)
    per_chunk = min(slices, chunk // d.context)
    assert t["slots"] > nchunks and t["slots"] <= nchunks * per_chunk + 1  # + the file's head


def test_a_files_first_chunk_scans_a_short_head_alone(mk, tmp_path):
    """A file's first chunk has no context before it; unsplit it would be one a6 = 0 slot (one
    lane). It goes out as a short head plus the rest with context: counts stay exact across
    the head boundary, and short first chunks stay one slot."""
    rng = random.Random(41)
    chunk = 16 << 10
    d = build_dfa(PATS)
    head = max(d.context, _HEAD_BYTES)
    files = []
    for i, size in enumerate([3 * chunk + 5, head + d.context + 1, head + d.context, 40]):
        data = bytearray(planted(rng, size, PATS, 61))
        for at in range(head - len(PATS[2]) + 1, head):  # patterns straddling the head
            if at + len(PATS[2]) <= size:
                data[at:at + len(PATS[2])] = PATS[2]
        files.append((_write(tmp_path, f"head{i}.bin", bytes(data)), bytes(data)))
    with GpuStream(mk, chunk_bytes=chunk, depth=3, slices=1) as s:
        got = s.scan([p for p, _ in files], d)
        t = s.telemetry()
    assert got == {p: count_matches(PATS, data) for p, data in files}
    heads = sum(1 for _, data in files if min(len(data), chunk) > head + d.context)
    assert heads == 2
    assert t["slots"] == sum(-(-len(data) // chunk) for _, data in files) + heads


def _scan_rows(mk, path, d, per_pattern=False, **stream_kw):
    """The scan's result and the argument rows of every slot it published."""
    rows: list[list[int]] = []
    submit, submit_many = mk.submit, getattr(mk, "submit_many", None)

    def spy_many(opcodes, args, *a, **kw):
        rows.extend(np.asarray(args, np.uint32).reshape(len(opcodes), -1).tolist())
        return submit_many(opcodes, args, *a, **kw)

    def spy(opcode, args, *a, **kw):
        rows.append([int(x) for x in args])
        return submit(opcode, args, *a, **kw)

    mk.submit = spy
    if submit_many is not None:
        mk.submit_many = spy_many
    try:
        with GpuStream(mk, **stream_kw) as s:
            got = s.scan(path, d, per_pattern=per_pattern)
    finally:
        del mk.submit
        if submit_many is not None:
            del mk.submit_many
    return got[path], rows


@pytest.mark.parametrize("per_pattern", [False, True])
def test_the_slot_without_context_is_short(mk, tmp_path, per_pattern):
    """The one slot of a file that has no context before it (a6 = 0) runs on one lane, byte by
    byte: it must stay a few dozen bytes, not kilobytes (the per-source cost of a scan)."""
    if per_pattern and isinstance(mk, FakeMegakernel):
        pytest.skip("the fake megakernel runs DFA_SCAN only")
    rng = random.Random(5)
    d = build_dfa(PATS)
    data = planted(rng, 200_000, PATS, 997)
    path = _write(tmp_path, "ctx0.bin", data)
    got, rows = _scan_rows(mk, path, d, per_pattern, chunk_bytes=64 << 10, depth=3)
    assert (got.positions if per_pattern else got) == count_matches(PATS, data)
    no_context = [r for r in rows if r[6] == 0]
    assert len(no_context) == 1
    assert no_context[0][3] <= max(d.context, 64)


@pytest.mark.parametrize("pats", [PATS, [b"ab", b"b"]])
def test_every_slot_of_a_first_chunk_counts_bytes(mk, tmp_path, pats):
    """Cut into many slices, a first chunk just longer than its head gives no slot that counts
    nothing (a slot's counted bytes: its length a3 less its re-read context a6)."""
    d = build_dfa(pats)
    head = max(d.context, _HEAD_BYTES)
    rng = random.Random(9)
    for size in (head + d.context + 1, head + 2 * d.context, head + 5 * d.context + 3, 4096):
        data = planted(rng, size, pats, 29)
        path = _write(tmp_path, f"first{size}.bin", data)
        got, rows = _scan_rows(mk, path, d, chunk_bytes=8192, depth=2, slices=64)
        assert got == count_matches(pats, data)
        assert all(r[3] > r[6] for r in rows), [(r[3], r[6]) for r in rows]
        assert sum(r[3] - r[6] for r in rows) == size


@pytest.mark.parametrize("copy", [None, False, True])
def test_device_copy_scans_are_exact(mk, tmp_path, copy):
    """device_copy: scans read a device copy of each chunk (CUDA, the default there) or the
    staging itself; the counts are the same. Asking for it without device memory raises."""
    can = hasattr(getattr(mk, "backend", None), "copy_to_device_async")
    if copy and not can:
        with pytest.raises(PipelineError) as info:
            GpuStream(mk, chunk_bytes=4096, depth=2, device_copy=True)
        assert "device_copy" in info.value.fix
        return
    rng = random.Random(43)
    d = build_dfa(PATS)
    files = [_write(tmp_path, f"copy{i}.bin", planted(rng, size, PATS, 4096))
             for i, size in enumerate([100_000, 4096, 0, 9000])]
    want = {}
    for p in files:
        with open(p, "rb") as f:
            want[p] = count_matches(PATS, f.read())
    s = GpuStream(mk, chunk_bytes=16 << 10, depth=3, device_copy=copy)
    for _ in range(2):  # a reopened stream scans its device mirror again
        with s:
            assert s.scan(files, d) == want
            assert s.telemetry()["device_copy"] is (can and copy is not False)


class _LazyCopy:
    """A device copy that happens only when ``done()`` first says so (after ``polls``
    queries): a scan published before that reads stale bytes, and staging reused before it
    is copied in its new state. Copies finish in order, as on one CUDA stream."""

    def __init__(self, log, dst, data, polls):
        self.log, self.dst, self.src, self.left = log, dst, data, polls
        self.finished = False

    def done(self):
        if self.finished:
            return True
        if self.log[0] is not self:  # an older copy is still running
            return False
        self.left -= 1
        if self.left > 0:
            return False
        self.dst[:] = self.src
        self.finished = True
        self.log.pop(0)
        return True

    def wait(self, timeout=10.0):
        while self.log and not self.finished:
            self.log[0].left = 1
            self.log[0].done()


@pytest.mark.parametrize("polls", [1, 5])
def test_scans_publish_only_after_their_device_copy(mk, tmp_path, monkeypatch, polls):
    """With an asynchronous device copy, a chunk's scan slots go out only once its copy is
    done and its staging is refilled only after that, across many chunks and files; a copy
    that fails to start raises and the stream stays usable."""
    backend = getattr(mk, "backend", None)
    if backend is None or getattr(backend, "name", "") == "cuda":
        pytest.skip("drives the copy pipeline with a copier double on the host backends")
    log = []

    def copy_async(buffer, offset, data):
        c = _LazyCopy(log, buffer.reshape(-1)[offset:offset + data.nbytes], data, polls)
        log.append(c)
        return c

    monkeypatch.setattr(backend, "copy_to_device_async", copy_async, raising=False)
    rng = random.Random(47)
    d = build_dfa(PATS)
    files = [_write(tmp_path, f"lazy{i}.bin", planted(rng, size, PATS, 2048))
             for i, size in enumerate([70_000, 1, 0, 20_000, 8192])]
    want = {}
    for p in files:
        with open(p, "rb") as f:
            want[p] = count_matches(PATS, f.read())
    with GpuStream(mk, chunk_bytes=4096, depth=3, device_copy=True) as s:
        assert s.scan(files, d) == want
        t = s.telemetry()
        assert t["device_copy"] is True and t["in_flight"] == 0 and not log
        calls = {"n": 0}

        def failing(buffer, offset, data):
            calls["n"] += 1
            if calls["n"] == 4:
                raise RuntimeError("injected copy failure")
            return copy_async(buffer, offset, data)

        monkeypatch.setattr(backend, "copy_to_device_async", failing, raising=False)
        with pytest.raises(RuntimeError, match="injected"):
            s.scan(files, d)
        assert not log  # nothing left copying into staging the next call refills
        monkeypatch.setattr(backend, "copy_to_device_async", copy_async, raising=False)
        assert s.scan(files, d) == want


def test_a_device_copy_that_times_out_is_waited_for_once(mk, tmp_path, monkeypatch):
    """A copy that never lands: its wait's BackendError ends the scan after one wait (the
    clean-up does not wait on it, or the copies queued behind it, a second time); with copies
    working again the stream scans exactly."""
    from vyre.errors import BackendError
    backend = getattr(mk, "backend", None)
    if backend is None or getattr(backend, "name", "") == "cuda":
        pytest.skip("drives the copy pipeline with a copier double on the host backends")
    waits = []

    class Stuck:
        def done(self):
            return False

        def wait(self, timeout=10.0):
            waits.append(self)
            raise BackendError("a copy did not finish in 10 s", "the GPU stopped")

    monkeypatch.setattr(backend, "copy_to_device_async", lambda *a: Stuck(), raising=False)
    rng = random.Random(5)
    d = build_dfa(PATS)
    data = planted(rng, 40_000, PATS, 2048)
    path = _write(tmp_path, "stuck.bin", data)
    with GpuStream(mk, chunk_bytes=4096, depth=3, device_copy=True) as s:
        with pytest.raises(BackendError, match="did not finish"):
            s.scan(path, d)
        assert len(waits) == 1
        log = []
        def lazy_copy(b, o, x):
            log.append(_LazyCopy(log, b.reshape(-1)[o:o + x.nbytes], x, 1))
            return log[-1]

        monkeypatch.setattr(backend, "copy_to_device_async", lazy_copy, raising=False)
        assert s.scan(path, d) == {path: count_matches(PATS, data)}


def test_a_failed_publish_part_way_keeps_the_slot_until_its_slices_finish(mk, tmp_path,
                                                                          monkeypatch):
    """The 2nd chunk's publish fails after some of its slices went out: the scan raises, the
    staging slot is not reused under those slices, and the next scan's counts are exact."""
    from vyre.errors import ArgumentError

    rng = random.Random(31)
    chunk = 2048
    d = build_dfa(PATS)
    data = planted(rng, 6 * chunk, PATS, 97)
    path = _write(tmp_path, "partial.bin", data)
    calls = {"n": 0}
    if hasattr(mk, "submit_many"):
        real = mk.submit_many

        def flaky(ops, args, **kw):
            calls["n"] += 1
            if calls["n"] == 2:
                out = real(ops[:2], args[:2], **kw)
                err = ArgumentError("injected", "none")
                err.published = out
                raise err
            return real(ops, args, **kw)
        monkeypatch.setattr(mk, "submit_many", flaky)
    else:
        real = mk.submit

        def flaky(*a, **kw):
            calls["n"] += 1
            if calls["n"] == 6:
                raise ArgumentError("injected", "none")
            return real(*a, **kw)
        monkeypatch.setattr(mk, "submit", flaky)
    with GpuStream(mk, chunk_bytes=chunk, depth=2, slices=4) as s:
        with pytest.raises(ArgumentError, match="injected"):
            s.scan(path, d)
        # the slices that went out were waited for before the scan raised
        pending = mk._pending if hasattr(mk, "_pending") else None
        assert (len(pending) if pending is not None else mk.telemetry()["in_flight"]) == 0
        monkeypatch.undo()
        assert s.scan(path, d) == {path: count_matches(PATS, data)}


class _Interrupt(BaseException):
    """Stands for KeyboardInterrupt: escapes the pipeline without being turned into an error."""


def test_an_interrupted_scan_leaves_nothing_that_corrupts_the_next(mk, tmp_path, monkeypatch):
    """An exception escapes while chunks are still being scanned: the next call waits for
    those slots before it refills their staging and snapshots the counts, so its counts are
    exact and no scan saw its bytes change (the fake megakernel checks that)."""
    rng = random.Random(7)
    chunk = 2048
    d = build_dfa(PATS)
    data = planted(rng, 12 * chunk, PATS, 97)
    other = planted(rng, 12 * chunk, PATS, 89)
    path, path2 = _write(tmp_path, "a.bin", data), _write(tmp_path, "b.bin", other)
    real = mk.wait
    calls = {"n": 0}

    def interrupted(tickets, timeout=None):
        if timeout != 0:
            calls["n"] += 1
            if calls["n"] == 2:
                raise _Interrupt()
        return real(tickets, timeout=timeout)

    with GpuStream(mk, chunk_bytes=chunk, depth=4, slices=2) as s:
        monkeypatch.setattr(mk, "wait", interrupted)
        with pytest.raises(_Interrupt):
            s.scan(path, d)
        assert s.telemetry()["in_flight"] > 0  # scans were left out

        def stuck(tickets, timeout=None):
            raise WaitTimeoutError("not finished", "wait longer")

        monkeypatch.setattr(mk, "wait", stuck)  # they do not finish: the next call says so
        with pytest.raises(PipelineError, match="earlier interrupted call") as ei:
            s.scan(path2, d)
        assert "retry" in ei.value.fix

        def interrupt(tickets, timeout=None):
            raise _Interrupt()

        monkeypatch.setattr(mk, "wait", interrupt)  # a Ctrl-C while settling stays one
        with pytest.raises(_Interrupt):
            s.scan(path2, d)
        monkeypatch.setattr(mk, "wait", real)
        assert s.scan(path2, d) == {path2: count_matches(PATS, other)}
        assert s.telemetry()["in_flight"] == 0
        assert s.scan(path, d) == {path: count_matches(PATS, data)}
    mk.drain()  # anything still out runs now: on the fake, over bytes the later calls changed


def test_chunk_shorter_than_the_context_is_refused(mk, tmp_path):
    path = _write(tmp_path, "short.bin", b"abc" * 100)
    with GpuStream(mk, chunk_bytes=4, depth=2) as s:
        with pytest.raises(PipelineError, match="chunk_bytes >= 8"):
            s.scan(path, build_dfa(PATS))  # the longest pattern is 8 bytes


def test_slices_must_be_positive(mk):
    with pytest.raises(PipelineError, match="slices"):
        GpuStream(mk, chunk_bytes=1024, depth=2, slices=0)


def test_file_sizes_and_empty_files(mk, parallel_reads, tmp_path):
    rng = random.Random(12)
    chunk = 512
    d = build_dfa(PATS)
    sizes = [0, 1, 2, chunk - 1, chunk, chunk + 1, 3 * chunk, 3 * chunk + 17, 0]
    paths, want = [], {}
    for i, n in enumerate(sizes):
        data = planted(rng, n, PATS, chunk)
        p = _write(tmp_path, f"f{i}.bin", data)
        paths.append(p)
        want[p] = count_matches(PATS, data)
    with GpuStream(mk, chunk_bytes=chunk, depth=3, parallel_reads=parallel_reads) as s:
        got = s.scan(paths, d)
        assert s.telemetry()["bytes"] == sum(sizes)
    assert got == want


def test_every_byte_reaches_the_scan_exactly_once(mk, parallel_reads, tmp_path):
    """With every single byte a pattern, the count is the number of bytes scanned (the
    context bytes re-read before each chunk are not counted)."""
    every = build_dfa([bytes([b]) for b in range(256)])
    longest = build_dfa([bytes([b]) for b in range(256)] + [b"\x01" * 40])  # context 40
    rng = np.random.default_rng(13)
    sizes = [0, 5000, 4096, 12288 + 1]
    paths = [_write(tmp_path, f"e{i}", rng.integers(0, 256, n, dtype=np.uint8).tobytes())
             for i, n in enumerate(sizes)]
    with GpuStream(mk, chunk_bytes=4096, depth=2, parallel_reads=parallel_reads) as s:
        assert s.scan(paths, every) == dict(zip(paths, sizes, strict=True))
        assert s.scan(paths, longest) == dict(zip(paths, sizes, strict=True))
        assert s.telemetry()["bytes"] == 2 * sum(sizes)


def test_many_files(mk, parallel_reads, tmp_path):
    rng = random.Random(14)
    d = build_dfa([b"xy", b"yx", b"xxx"])
    paths, want = [], {}
    for i in range(40):
        data = bytes(rng.choice(b"xyz") for _ in range(rng.randint(0, 3000)))
        p = _write(tmp_path, f"m{i:02d}", data)
        paths.append(p)
        want[p] = count_matches(d.patterns, data)
    fds_before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    with GpuStream(mk, chunk_bytes=1000, depth=3, parallel_reads=parallel_reads) as s:
        assert s.scan(paths, d) == want
        assert s.scan(paths[::-1], d) == want  # the stream is reusable
        assert s.telemetry()["files"] == 80
    if fds_before is not None:
        assert len(os.listdir("/proc/self/fd")) <= fds_before  # no fd leaked


def test_missing_file_is_a_clear_error(mk, tmp_path):
    good = _write(tmp_path, "good", b"abcabc")
    d = build_dfa([b"abc"])
    with GpuStream(mk, chunk_bytes=4096, depth=2) as s:
        with pytest.raises(IoUringError) as ei:
            s.scan([good, str(tmp_path / "nope")], d)
        e = ei.value
        assert e.errno == errno.ENOENT and e.syscall == "open" and "nope" in str(e)
        assert ". Fix: " in str(e)
        assert s.scan(good, d) == {good: 2}  # still usable after the error


def test_directory_is_refused(mk, tmp_path):
    d = build_dfa([b"abc"])
    with GpuStream(mk, chunk_bytes=4096, depth=2) as s:
        with pytest.raises(IoUringError) as ei:
            s.scan(str(tmp_path), d)
        assert ei.value.errno == errno.EISDIR and "Fix:" in str(ei.value)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root reads files regardless of their mode")
def test_unreadable_file(mk, tmp_path):
    p = _write(tmp_path, "secret", b"abc")
    os.chmod(p, 0)
    d = build_dfa([b"abc"])
    with GpuStream(mk, chunk_bytes=4096, depth=2) as s:
        with pytest.raises(IoUringError) as ei:
            s.scan(p, d)
        assert ei.value.errno == errno.EACCES and "chmod" in ei.value.fix


class _Meddler:
    """Wraps a megakernel; changes a file once the first chunk is published."""

    def __init__(self, mk, action):
        self._mk, self._action, self._done = mk, action, False

    def submit(self, *a, **k):
        t = self._mk.submit(*a, **k)
        if not self._done:
            self._done = True
            self._action()
        return t

    def __getattr__(self, name):
        return getattr(self._mk, name)


def test_file_that_shrinks_during_the_scan(mk, tmp_path):
    data = bytes(random.Random(15).choice(b"ab") for _ in range(64 * 1024))
    p = _write(tmp_path, "shrinks", data)
    d = build_dfa([b"ab"])
    m = _Meddler(mk, lambda: os.truncate(p, 10 * 1024))
    with GpuStream(m, chunk_bytes=1024, depth=2) as s:
        with pytest.raises(FileChangedError) as ei:
            s.scan(p, d)
        e = ei.value
        assert e.path == p and e.expected == 64 * 1024 and e.actual < 64 * 1024
        assert "shr" in str(e) or "ended early" in str(e)
        assert ". Fix: " in str(e)
        assert s.telemetry()["errors"] >= 1  # each short in-flight read counts
        # nothing is left in flight; the stream keeps working
        q = _write(tmp_path, "after", b"abab")
        assert s.scan(q, d) == {q: 2}


def test_file_that_grows_during_the_scan(mk, tmp_path):
    p = _write(tmp_path, "grows", b"ab" * 4096)
    d = build_dfa([b"ab"])

    def grow():
        with open(p, "ab") as f:
            f.write(b"more")

    with GpuStream(_Meddler(mk, grow), chunk_bytes=1024, depth=2) as s:
        with pytest.raises(FileChangedError) as ei:
            s.scan(p, d)
        assert "grew" in str(ei.value) and ei.value.actual == 8196


def test_ingest_publishes_slot_fn_slots_per_chunk(mk, tmp_path):
    rng = np.random.default_rng(16)
    data = rng.integers(0, 256, 10000, dtype=np.uint8).tobytes()
    p = _write(tmp_path, "ingest.bin", data)
    seen = []
    with GpuStream(mk, chunk_bytes=3000, depth=2) as s:
        def slot_fn(handle, off, n, file_off):
            assert handle == s.handle
            arr = s.staging.array
            # the chunk landed whole, with its context before it
            assert arr[off:off + n].tobytes() == data[file_off:file_off + n]
            c = min(5, file_off)
            assert arr[off - c:off].tobytes() == data[file_off - c:file_off]
            seen.append((file_off, n))
            return [(0, [file_off & 0xFFFF]), (0, [])]  # two NOP slots over the chunk

        out = s.ingest(p, slot_fn, context=5)
    assert out == {"bytes": 10000, "chunks": 4, "tickets": 8, "files": 1}
    assert sorted(seen) == [(0, 3000), (3000, 3000), (6000, 3000), (9000, 1000)]


def test_backpressure_and_telemetry(mk, ingest_path, tmp_path):
    data = bytes(random.Random(17).choice(b"abc") for _ in range(32 * 1024))
    p = _write(tmp_path, "bp", data)
    d = build_dfa([b"abc", b"ca"])
    with GpuStream(mk, chunk_bytes=1024, depth=1) as s:
        assert s.scan(p, d) == {p: count_matches(d.patterns, data)}
        t = s.telemetry()
    for key in ("bytes", "chunks", "in_flight", "max_in_flight", "stalls", "gbps", "path",
                "reason", "reader", "seconds", "context_bytes", "slots", "io_waits",
                "parallel_reads", "copy_waits", "device_copy"):
        assert key in t
    # on by default (where the kernel has IOSQE_ASYNC); the fallback pool reads in parallel
    expect = ingest_path == "fallback" or Ring(8, async_reads=True).async_reads
    assert t["parallel_reads"] is expect
    # depth 1: one chunk at a time, or with the device copy one in staging and one in the
    # mirror (the next read starts once the previous chunk is copied)
    assert t["max_in_flight"] == (2 if t["device_copy"] else 1) and t["in_flight"] == 0
    assert t["stalls"] >= 31  # every next chunk waits for the previous one's staging slot
    assert t["gbps"] > 0 and t["path"] in _expected_path(ingest_path)
    if ingest_path == "fallback":
        assert "VYRE_INGEST" in t["reason"]


def test_configuration_errors(mk, tmp_path):
    with pytest.raises(PipelineError) as ei:
        GpuStream(mk, chunk_bytes=1024, depth=100)  # needs 100 observables, mk has 64
    assert "observable" in ei.value.fix
    with GpuStream(mk, chunk_bytes=1024, depth=2, max_context=8) as s:
        with pytest.raises(PipelineError) as ei:
            s.scan(_write(tmp_path, "x", b"x"), build_dfa([b"y" * 100]))
        assert "max_context=100" in ei.value.fix
    with pytest.raises(PipelineError):
        GpuStream(mk).scan("x", build_dfa([b"a"]))  # not opened


# ------------------------------------------------------------------ LOAD_MISS host service


def _publish_io(ioq, i, rid, dst, offset, count, tag=7, op=None):
    w = ABI["IO_SLOT_WORDS"]
    s = ioq[i * w:(i + 1) * w]
    s[ABI["IO_OP_TYPE"]] = ABI["IO_READ"] if op is None else op
    s[ABI["IO_SRC_HANDLE"]] = rid
    s[ABI["IO_DST_HANDLE"]] = dst
    s[ABI["IO_OFFSET_LO"]] = offset & 0xFFFFFFFF
    s[ABI["IO_OFFSET_HI"]] = offset >> 32
    s[ABI["IO_BYTE_COUNT"]] = count
    s[ABI["IO_TAG"]] = tag
    s[ABI["IO_STATUS"]] = ABI["STATUS_PUBLISHED"]


def test_io_service_claims_serves_and_completes(tmp_path):
    """The host side of docs/spec.md §8 on a plain IO queue: PUBLISHED → CLAIMED → OK / ERROR."""
    from types import SimpleNamespace

    data = np.random.default_rng(18).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    p = _write(tmp_path, "res", data)
    ioq = np.zeros(64 * ABI["IO_SLOT_WORDS"], np.uint32)
    dst = {1: np.zeros(256, np.uint8), 2: np.zeros(64, np.uint8)}
    fake = SimpleNamespace(backend=SimpleNamespace(ioq=ioq))
    io = IoService(fake, {10: p, 11: b"in-memory resource"}, buffers=dst)
    st = ioq[ABI["IO_STATUS"]::ABI["IO_SLOT_WORDS"]]
    _publish_io(ioq, 0, 10, 1, 4000, 200)
    _publish_io(ioq, 5, 11, 2, 3, 6)
    _publish_io(ioq, 9, 99, 1, 0, 8)          # unknown resource
    _publish_io(ioq, 10, 10, 2, 0, 65)        # larger than the destination
    _publish_io(ioq, 11, 10, 1, 4990, 20)     # past the end of the file
    _publish_io(ioq, 12, 10, 1, 0, 0, op=ABI["IO_FENCE"])
    _publish_io(ioq, 13, 10, 1, 0, 4, op=ABI["IO_WRITE"])
    ioq[20 * 8 + ABI["IO_STATUS"]] = ABI["STATUS_CLAIMED"]  # someone else's: left alone
    assert io.service_once() == 7
    ok, err = ABI["IO_STATUS_OK"], ABI["IO_STATUS_ERROR"]
    assert [int(st[i]) for i in (0, 5, 9, 10, 11, 12, 13)] == [ok, ok, err, err, err, ok, err]
    assert int(st[20]) == ABI["STATUS_CLAIMED"]
    assert dst[1][:200].tobytes() == data[4000:4200]
    assert dst[2][:6].tobytes() == b"memory"
    _publish_io(ioq, 30, 11, 2, 0, 0)         # byte_count 0: the default (rest, fits dst)
    _publish_io(ioq, 31, 10, 3, 4990, 0)      # default from a file: its last 10 bytes
    dst[3] = np.zeros(64, np.uint8)
    assert io.service_once() == 2 and int(st[30]) == ok and int(st[31]) == ok
    assert dst[2][:18].tobytes() == b"in-memory resource" and dst[3][:10].tobytes() == data[4990:]
    assert io.served == 5 and io.failed == 4 and len(io.errors) == 4
    assert io.service_once() == 0  # nothing published
    io.stop()


@pytest.mark.parametrize("backend", REAL_BACKENDS)
def test_load_miss_end_to_end(backend, ingest_path, tmp_path):
    """LOAD_MISS executed by the backend, served by IoService: the bytes land in the buffer."""
    mk = _real_mk(backend, io_slots=8)
    try:
        data = np.random.default_rng(19).integers(0, 256, 100000, dtype=np.uint8).tobytes()
        p = _write(tmp_path, "lm", data)
        handle, buf = mk.alloc_buffer(4096)
        op = ABI["OP_LOAD_MISS"]
        with IoService(mk, {3: p}) as io:
            ts = [mk.submit(op, [3, 1000, handle, 50000, 0])]
            mk.wait(ts, timeout=10)
            assert np.asarray(buf)[:1000].tobytes() == data[50000:51000]
            for k in range(20):  # more requests than IO slots: WAIT_IO + retry on the lane side
                ts.append(mk.submit(op, [3, 100, handle, k * 100, 0]))
            mk.wait(ts, timeout=20)
            assert io.served == 21
            bad = mk.submit(op, [77, 10, handle, 0, 0])  # unknown resource -> ERROR -> FAULT
            with pytest.raises(SlotFaultError):
                mk.wait(bad, timeout=10)
            assert io.errors and "resource 77" in io.errors[-1][2]
    finally:
        mk.shutdown(drain=False)


def test_sqpoll_and_plain_read_variants(ingest_path, tmp_path):
    """The io_uring variants (SQPOLL, no registered buffer, no fixed files, each with and
    without parallel reads) give the same counts."""
    if ingest_path != "uring":
        pytest.skip("io_uring variants")
    rng = random.Random(20)
    d = build_dfa(PATS)
    data = planted(rng, 9000, PATS, 1000)
    p = _write(tmp_path, "v", data)
    want = {p: count_matches(PATS, data)}
    for kw, path in [({"sqpoll": True}, "io_uring+fixed"),
                     ({"fixed_buffers": False, "fixed_files": False}, "io_uring"),
                     ({"sqpoll": True, "parallel_reads": False}, "io_uring+fixed"),
                     ({"fixed_buffers": False, "fixed_files": False, "parallel_reads": False},
                      "io_uring")]:
        mk = FakeMegakernel()
        try:
            s = GpuStream(mk, chunk_bytes=1000, depth=4, **kw).open()
        except IoUringError as e:  # SQPOLL refused here
            assert kw.get("sqpoll"), e
            continue
        with s:
            assert s.path == path
            assert s.scan(p, d) == want
            par = kw.get("parallel_reads", True) and Ring(8, async_reads=True).async_reads
            assert s.telemetry()["parallel_reads"] is par
        assert mk.violations == []


@pytest.mark.parametrize("backend", REAL_BACKENDS)
def test_a_faulting_scan_raises_after_draining_and_the_stream_stays_usable(backend, tmp_path):
    """Every DFA_SCAN of an unauthorized tenant FAULTs: scan raises SlotFaultError once what
    was in flight is drained (nothing left in flight), and the next scan is exact."""
    mk = _real_mk(backend, tenants=1)
    try:
        rng = random.Random(53)
        d = build_dfa(PATS)
        data = planted(rng, 40_000, PATS, 3000)
        p = _write(tmp_path, "fault.bin", data)
        with GpuStream(mk, chunk_bytes=4096, depth=3, tenant=3) as bad:
            with pytest.raises(SlotFaultError):
                bad.scan(p, d)
            assert bad.telemetry()["in_flight"] == 0
        with GpuStream(mk, chunk_bytes=4096, depth=3) as good:
            assert good.scan(p, d) == {p: count_matches(PATS, data)}
    finally:
        mk.shutdown(drain=False)
