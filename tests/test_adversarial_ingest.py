"""Adversarial ingest cases: sharing, threads, hostile files, bad arguments, resource cycles.

Each test pins one defect of the ingest path (streams sharing counting words, a stream used
from two threads, an IoService thread dying on a bad resource, FIFOs and pseudo-files, input
validation, buffer-table exhaustion, io_uring timeouts) on the CPU backend and the preadv /
io_uring readers.
"""
from __future__ import annotations

import gc
import os
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("vyre.ingest._uring")
from vyre.errors import (
    ArgumentError,
    InvalidTypeError,
    InvalidValueError,
    IoUringError,
    PipelineError,
)
from vyre.ingest import _uring
from vyre.ingest.dfa import build_dfa, count_matches
from vyre.ingest.stream import GpuStream
from vyre.ioservice import IoService

ABI = _uring.ABI
URING_OK = _uring.available()[0]
PATS = [b"needle", b"hay", b"\x00\xff"]


@pytest.fixture(params=["uring", "fallback"])
def ingest_path(request, monkeypatch):
    if request.param == "uring" and not URING_OK:
        pytest.skip("io_uring unavailable here")
    monkeypatch.setenv("VYRE_INGEST", request.param)
    return request.param


@pytest.fixture
def cpu_mk():
    megakernel = pytest.importorskip("vyre.megakernel")
    mk = megakernel.Megakernel(backend="cpu", workers=2, observable_slots=64).start()
    yield mk
    mk.shutdown(drain=False)


@pytest.fixture
def real_mk(backend):
    """A started megakernel of each backend present (``backend`` from conftest)."""
    megakernel = pytest.importorskip("vyre.megakernel")
    kw = {"workers": 2} if backend == "cpu" else {}
    mk = megakernel.Megakernel(backend=backend, observable_slots=64, **kw).start()
    yield mk
    mk.shutdown(drain=False)


def _planted(seed: int, size: int, every: int = 700) -> bytes:
    rng = np.random.default_rng(seed)
    data = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    for i, at in enumerate(range(13, size - 8, every)):
        p = PATS[i % len(PATS)]
        data[at:at + len(p)] = p
    return bytes(data)


def _write(tmp_path, name: str, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def _assert_fix(err: BaseException) -> None:
    assert isinstance(err, PipelineError) and "Fix: " in str(err) and err.fix


# ------------------------------------------------------------------ two streams, one megakernel
def test_two_streams_on_one_megakernel_count_apart_from_two_threads(real_mk, ingest_path,
                                                                    tmp_path):
    """Default obs_base: each stream counts into observables of its own, so two streams
    scanning at once from two threads both get exact counts (they shared the same words)."""
    d = build_dfa(PATS)
    files = [_write(tmp_path, f"f{i}", _planted(i, 60_000 + 9_000 * i)) for i in range(2)]
    want = [{f: count_matches(PATS, Path(f).read_bytes())} for f in files]
    with GpuStream(real_mk, chunk_bytes=4096, depth=4) as a, \
            GpuStream(real_mk, chunk_bytes=4096, depth=4) as b:
        ra, rb = set(range(a.obs_base, a.obs_base + 4)), set(range(b.obs_base, b.obs_base + 4))
        assert not ra & rb
        got: list[list[dict[str, int]]] = [[], []]
        barrier = threading.Barrier(2)

        def run(k: int, s: GpuStream) -> None:
            barrier.wait()
            for _ in range(6):
                got[k].append(s.scan(files[k], d))

        ts = [threading.Thread(target=run, args=(k, s)) for k, s in enumerate((a, b))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        assert got == [[want[0]] * 6, [want[1]] * 6]
    # closed: the observables are free again, a stream of the whole range fits
    with GpuStream(real_mk, chunk_bytes=4096, depth=64) as whole:
        assert whole.obs_base == 0


def test_observables_run_out_with_a_fix_and_explicit_ranges_may_overlap(cpu_mk):
    s1 = GpuStream(cpu_mk, chunk_bytes=4096, depth=40).open()
    try:
        with pytest.raises(InvalidValueError) as ei:
            GpuStream(cpu_mk, chunk_bytes=4096, depth=40).open()
        _assert_fix(ei.value)
        assert "observable" in ei.value.fix
        # told to share: allowed
        with GpuStream(cpu_mk, chunk_bytes=4096, depth=4, obs_base=s1.obs_base):
            pass
    finally:
        s1.close()


# ------------------------------------------------------------------ one stream, two threads
def test_one_stream_from_two_threads_is_refused(real_mk, ingest_path, tmp_path):
    """While one thread is inside a call, a second thread's call raises at once with a fix;
    the first call's counts stay exact and the stream stays usable."""
    d = build_dfa(PATS)
    data = _planted(7, 50_000)
    path = _write(tmp_path, "shared", data)
    entered, release = threading.Event(), threading.Event()
    out: dict[str, object] = {}
    with GpuStream(real_mk, chunk_bytes=4096, depth=3) as s:
        def slot_fn(handle, off, n, file_off):
            entered.set()
            release.wait(30)
            return []

        def first() -> None:
            out["ingest"] = s.ingest(path, slot_fn)

        t = threading.Thread(target=first)
        t.start()
        assert entered.wait(30)
        try:
            with pytest.raises(PipelineError) as ei:
                s.scan(path, d)
            assert "two threads" in str(ei.value)
            _assert_fix(ei.value)
            with pytest.raises(PipelineError, match="two threads"):
                s.ingest(path, slot_fn)
        finally:
            release.set()
            t.join(60)
        assert out["ingest"]["bytes"] == len(data)
        assert s.scan(path, d) == {path: count_matches(PATS, data)}


def test_a_slot_fn_that_calls_its_own_stream_is_told_so(cpu_mk, tmp_path):
    path = _write(tmp_path, "reenter", b"x" * 100)
    seen: list[BaseException] = []
    with GpuStream(cpu_mk, chunk_bytes=4096, depth=2) as s:
        def slot_fn(handle, off, n, file_off):
            try:
                s.scan(path, build_dfa([b"x"]))
            except PipelineError as e:
                seen.append(e)
            return []

        s.ingest(path, slot_fn)
        assert len(seen) == 1 and "re-entered" in str(seen[0])
        assert s.scan(path, build_dfa([b"x"])) == {path: 100}


# ------------------------------------------------------------------ IoService
def _publish_io(ioq, i, rid, dst, offset, count, tag=7):
    w = ABI["IO_SLOT_WORDS"]
    s = ioq[i * w:(i + 1) * w]
    s[ABI["IO_OP_TYPE"]] = ABI["IO_READ"]
    s[ABI["IO_SRC_HANDLE"]] = rid
    s[ABI["IO_DST_HANDLE"]] = dst
    s[ABI["IO_OFFSET_LO"]] = offset & 0xFFFFFFFF
    s[ABI["IO_OFFSET_HI"]] = offset >> 32
    s[ABI["IO_BYTE_COUNT"]] = count
    s[ABI["IO_TAG"]] = tag
    s[ABI["IO_STATUS"]] = ABI["STATUS_PUBLISHED"]


def _status_becomes(ioq, i, want, limit=30.0):
    st = ABI["IO_SLOT_WORDS"] * i + ABI["IO_STATUS"]
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if int(ioq[st]) == want:
            return True
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("count", [16, 0])
def test_io_service_survives_a_closed_fd_resource(ingest_path, tmp_path, count):
    """A resource whose fd was closed ends its request in ERROR with a reason; the service
    thread keeps serving the next request."""
    good = _write(tmp_path, "good", bytes(range(256)))
    r, w = os.pipe()
    os.close(r)
    os.close(w)  # `r` is now a closed descriptor
    ioq = np.zeros(8 * ABI["IO_SLOT_WORDS"], np.uint32)
    dst = {1: np.zeros(64, np.uint8)}
    io = IoService(SimpleNamespace(backend=SimpleNamespace(ioq=ioq)), {5: r, 6: good},
                   buffers=dst).start()
    try:
        _publish_io(ioq, 0, 5, 1, 0, count)
        assert _status_becomes(ioq, 0, ABI["IO_STATUS_ERROR"])
        assert io.errors and "resource 5" in io.errors[-1][2]
        _publish_io(ioq, 1, 6, 1, 10, 16)
        assert _status_becomes(ioq, 1, ABI["IO_STATUS_OK"])
        assert dst[1][:16].tobytes() == bytes(range(10, 26))
    finally:
        io.stop()


# ------------------------------------------------------------------ FIFOs and signals
def test_a_fifo_is_refused_not_waited_on(cpu_mk, ingest_path, tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)

    def alarm(*_):
        raise TimeoutError("the open of a FIFO blocked")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(5)
    try:
        with GpuStream(cpu_mk, chunk_bytes=4096, depth=2, timeout=2.0) as s, \
                pytest.raises(IoUringError) as ei:
            s.scan([fifo], build_dfa([b"x"]))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert "regular file" in str(ei.value)
    _assert_fix(ei.value)


def test_a_timeout_error_raised_during_open_stays_a_timeout_error(cpu_mk, ingest_path,
                                                                  tmp_path, monkeypatch):
    """An alarm handler's TimeoutError (an OSError without errno) is not turned into an
    IoUringError about the file."""
    path = _write(tmp_path, "f", b"abc")
    real_open = os.open

    def open_interrupted(p, *a, **k):
        if os.fspath(p) == path:
            raise TimeoutError("alarm")
        return real_open(p, *a, **k)

    with GpuStream(cpu_mk, chunk_bytes=4096, depth=2) as s:
        monkeypatch.setattr(os, "open", open_interrupted)
        with pytest.raises(TimeoutError) as ei:
            s.scan(path, build_dfa([b"b"]))
        assert not isinstance(ei.value, IoUringError)
        monkeypatch.setattr(os, "open", real_open)
        assert s.scan(path, build_dfa([b"b"])) == {path: 1}


# ------------------------------------------------------------------ pseudo-files
@pytest.mark.parametrize("chunk", [64, 4096])
def test_proc_files_that_report_size_zero_are_read_to_the_end(cpu_mk, ingest_path, chunk):
    path = "/proc/cpuinfo"
    if not os.path.exists(path) or os.stat(path).st_size != 0:
        pytest.skip("no /proc/cpuinfo of size 0 here")
    data = Path(path).read_bytes()
    pats = [b"processor", b"\n"]
    d = build_dfa(pats)
    with GpuStream(cpu_mk, chunk_bytes=chunk, depth=3) as s:
        got = s.scan(path, d)[path]
    assert got == count_matches(pats, data) and got > 0


def test_sysfs_files_that_report_a_page_are_read_to_the_end(cpu_mk, ingest_path):
    path = "/sys/devices/system/cpu/online"
    if not os.path.exists(path):
        pytest.skip("no sysfs here")
    data = Path(path).read_bytes()
    if os.stat(path).st_size == len(data):
        pytest.skip("this sysfs reports the true size")
    with GpuStream(cpu_mk, chunk_bytes=4096, depth=2) as s:
        assert s.scan(path, build_dfa([b"\n"])) == {path: data.count(b"\n")}


def test_sparse_and_empty_files_count_right(cpu_mk, ingest_path, tmp_path):
    """Files with no allocated blocks take the read-to-EOF path: a hole reads as zeros."""
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:
        f.truncate(100_000)
    empty = _write(tmp_path, "empty", b"")
    with GpuStream(cpu_mk, chunk_bytes=4096, depth=3) as s:
        assert s.scan([str(sparse), empty], build_dfa([b"\0\0"])) == {str(sparse): 99_999,
                                                                     empty: 0}


# ------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize("patterns", [[5], list(b"ab"), [10 ** 8], [-1], [None], [1.5]])
def test_build_dfa_refuses_patterns_that_are_not_bytes(patterns):
    with pytest.raises(InvalidTypeError) as ei:
        build_dfa(patterns)
    _assert_fix(ei.value)


@pytest.mark.parametrize("patterns", [None, 5, object()])
def test_build_dfa_refuses_a_pattern_list_that_is_not_one(patterns):
    with pytest.raises(ArgumentError) as ei:
        build_dfa(patterns)
    _assert_fix(ei.value)


def test_build_dfa_still_takes_every_bytes_like_pattern():
    d = build_dfa([b"ab", bytearray(b"cd"), memoryview(b"ef"), np.frombuffer(b"gh", np.uint8)])
    assert d.patterns == (b"ab", b"cd", b"ef", b"gh")
    with pytest.raises(InvalidValueError):
        build_dfa([b""])


@pytest.mark.parametrize("kw, err", [
    ({"chunk_bytes": 1.5}, InvalidTypeError), ({"chunk_bytes": "64"}, InvalidTypeError),
    ({"chunk_bytes": None}, InvalidTypeError), ({"chunk_bytes": 0}, InvalidValueError),
    ({"chunk_bytes": -4096}, InvalidValueError), ({"chunk_bytes": 1 << 40}, InvalidValueError),
    ({"depth": 1.5}, InvalidTypeError), ({"depth": "8"}, InvalidTypeError),
    ({"depth": 0}, InvalidValueError), ({"depth": True}, InvalidTypeError),
    ({"timeout": float("nan")}, InvalidValueError), ({"timeout": -1}, InvalidValueError),
    ({"timeout": 0}, InvalidValueError), ({"timeout": float("inf")}, InvalidValueError),
    ({"timeout": "x"}, InvalidTypeError), ({"max_context": -1}, InvalidValueError),
    ({"slices": 0}, InvalidValueError), ({"tenant": -1}, InvalidValueError),
    ({"obs_base": -1}, InvalidValueError), ({"obs_base": "0"}, InvalidTypeError),
])
def test_stream_arguments_are_checked(cpu_mk, kw, err):
    with pytest.raises(err) as ei:
        GpuStream(cpu_mk, **kw)
    _assert_fix(ei.value)


def test_stream_without_a_megakernel_or_dfa_says_what_is_missing(cpu_mk, tmp_path):
    with pytest.raises(InvalidTypeError) as ei:
        GpuStream(None)
    _assert_fix(ei.value)
    path = _write(tmp_path, "f", b"abc")
    with GpuStream(cpu_mk, chunk_bytes=4096, depth=2) as s:
        for bad in (None, [b"a"], "a"):
            with pytest.raises(InvalidTypeError) as ei:
                s.scan(path, bad)
            _assert_fix(ei.value)
        with pytest.raises(InvalidTypeError):
            s.scan(5, build_dfa([b"a"]))
        with pytest.raises(InvalidTypeError):
            s.ingest(path, None)
        assert s.scan(path, build_dfa([b"b"])) == {path: 1}


# ------------------------------------------------------------------ resources
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_open_close_cycles_give_handles_and_memory_back(real_mk, ingest_path, tmp_path):
    """300 streams opened, used and closed one after the other on one megakernel: the buffer
    table does not fill and memory does not grow with the cycles."""
    d = build_dfa(PATS)
    data = _planted(3, 1 << 20)
    path = _write(tmp_path, "cycle", data)
    want = {path: count_matches(PATS, data)}
    rss = []
    for i in range(300):
        with GpuStream(real_mk, chunk_bytes=1 << 18, depth=4) as s:
            assert s.scan(path, d) == want
        if i in (20, 299):
            gc.collect()
            rss.append(_rss())
    assert rss[1] - rss[0] < 64 << 20, rss
    # and a stream of another geometry still finds room
    with GpuStream(real_mk, chunk_bytes=4096, depth=2) as s:
        assert s.scan(path, d) == want


def test_many_dfas_on_one_stream_reuse_the_tables_of_dropped_ones(real_mk, tmp_path):
    """A DFA that is no longer referenced gives its table buffer to the next one, so a
    stream scanning 300 DFAs in turn does not fill the 255-handle buffer table."""
    path = _write(tmp_path, "many", b"".join(b"pat%d " % i for i in range(300)))
    with GpuStream(real_mk, chunk_bytes=4096, depth=2) as s:
        for i in range(300):
            d = build_dfa([b"pat%d " % i])
            assert s.scan(path, d) == {path: 1}
            del d


class _Interrupt(BaseException):
    """Stands for KeyboardInterrupt: escapes the pipeline without being turned into an error."""


def test_a_stream_closed_with_slots_still_running_gives_nothing_back(real_mk, tmp_path,
                                                                     monkeypatch):
    """Slots of an interrupted call that do not finish by close() keep their staging and
    observables from reuse; a clean close hands them to the next stream."""
    from vyre.errors import WaitTimeoutError

    d = build_dfa(PATS)
    data = _planted(5, 40_000)
    path = _write(tmp_path, "orphans", data)
    real = real_mk.wait
    calls = {"n": 0}

    def interrupted(tickets, timeout=None):
        if timeout != 0:
            calls["n"] += 1
            if calls["n"] == 2:
                raise _Interrupt()
        return real(tickets, timeout=timeout)

    def stuck(tickets, timeout=None):
        raise WaitTimeoutError("not finished", "wait longer")

    s = GpuStream(real_mk, chunk_bytes=2048, depth=4, slices=2).open()
    handle, base = s.handle, s.obs_base
    monkeypatch.setattr(real_mk, "wait", interrupted)
    with pytest.raises(_Interrupt):
        s.scan(path, d)
    assert s.telemetry()["in_flight"] > 0
    monkeypatch.setattr(real_mk, "wait", stuck)
    s.close()
    monkeypatch.setattr(real_mk, "wait", real)
    real_mk.drain()
    with GpuStream(real_mk, chunk_bytes=2048, depth=4, slices=2) as t:
        assert t.handle != handle and t.obs_base != base
        assert t.scan(path, d) == {path: count_matches(PATS, data)}
        handle2 = t.handle
    with GpuStream(real_mk, chunk_bytes=2048, depth=4, slices=2) as u:
        assert u.handle == handle2


# ------------------------------------------------------------------ io_uring timeouts
@pytest.mark.skipif(not URING_OK, reason="io_uring unavailable here")
def test_uring_timeouts_refuse_nan_and_take_inf_as_no_limit():
    ring = _uring.Ring(8)
    q = _uring.ReadQueue(ring, 4)
    try:
        with pytest.raises(InvalidValueError) as ei:
            q.poll(0, timeout=float("nan"))
        _assert_fix(ei.value)
        with pytest.raises(InvalidValueError):
            ring.wait(1, timeout=float("nan"))
        with pytest.raises(InvalidTypeError):
            q.poll(0, timeout="1")
        q.nop(9)
        for t in (float("inf"), 1e300, 2.0 ** 63):
            assert q.poll(0, timeout=t) in ([], [(9, 0, 0, False)])
        assert q.poll(1, timeout=float("inf")) in ([(9, 0, 0, False)], [])
        assert q.poll(0, timeout=-float("inf")) == []
    finally:
        q.close()
        ring.close()
