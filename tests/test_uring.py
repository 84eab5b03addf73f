"""io_uring core (csrc/uring.c via vyre.ingest._uring) and the preadv fallback reader."""
from __future__ import annotations

import errno
import os
import platform
import random
import threading
import time

import numpy as np
import pytest

from vyre.errors import IoUringError, PipelineError

_uring = pytest.importorskip("vyre.ingest._uring")
from vyre.ingest.readers import FallbackReadQueue, ingest_mode, open_reader  # noqa: E402
from vyre.ingest.staging import PAGE_SIZE, StagingRing  # noqa: E402

URING_OK, URING_ERRNO = _uring.available()
needs_uring = pytest.mark.skipif(not URING_OK, reason=f"io_uring unavailable here "
                                 f"(errno {URING_ERRNO}); the fallback tests still run")


@pytest.fixture
def datafile(tmp_path):
    data = np.random.default_rng(1).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    p = tmp_path / "data.bin"
    p.write_bytes(data)
    fd = os.open(p, os.O_RDONLY)
    yield fd, data
    os.close(fd)


def _queues(capacity):
    """The io_uring ReadQueue (where available) and the fallback, same interface."""
    out = []
    if URING_OK:
        entries = 1
        while entries < capacity:
            entries *= 2
        ring = _uring.Ring(entries, cq_entries=2 * entries)
        out.append(("uring", _uring.ReadQueue(ring, capacity), ring))
    out.append(("fallback", FallbackReadQueue(capacity, threads=4), None))
    return out


@pytest.fixture(params=["uring", "uring-async", "fallback"])
def rq(request):
    if request.param.startswith("uring"):
        if not URING_OK:
            pytest.skip("io_uring unavailable")
        ring = _uring.Ring(64, cq_entries=128, async_reads=request.param == "uring-async")
        assert ring.async_reads == (request.param == "uring-async" and _fast_poll(ring))
        q = _uring.ReadQueue(ring, 64)
        yield q
        q.close()
        ring.close()
    else:
        q = FallbackReadQueue(64, threads=4)
        yield q
        q.close()


def _check_fix(err: PipelineError):
    assert ". Fix: " in str(err) and err.fix and str(err).endswith(err.fix)


# ------------------------------------------------------------------ ring setup / CQ sizes


@needs_uring
def test_ring_setup_reports_geometry_and_features():
    with _uring.Ring(8) as r:
        assert r.sq_entries == 8 and r.cq_entries == 16  # kernel default: CQ = 2 * SQ
        assert r.fd >= 0 and not r.closed
        if r.features & _uring.FEAT_SINGLE_MMAP:
            assert r.single_mmap
        assert r.sq_space == 8 and r.cq_ready == 0 and not r.overflowed
    assert r.closed and r.fd == -1
    r.close()  # twice is fine


IORING_FEAT_FAST_POLL = 1 << 5  # Linux 5.7, the first with IOSQE_ASYNC reads honoured


def _fast_poll(ring) -> bool:
    return bool(ring.features & IORING_FEAT_FAST_POLL)


@needs_uring
def test_async_reads_flag_is_reported():
    with _uring.Ring(8) as r:
        assert r.async_reads is False
    with _uring.Ring(8, async_reads=True) as r:
        # asked for and granted where the kernel has it; refused (reads inline) before 5.7
        assert r.async_reads is _fast_poll(r)
        with pytest.raises(AttributeError):
            r.async_reads = False  # read-only


@needs_uring
@pytest.mark.parametrize("sq,cq,expect", [(8, 64, 64), (8, 100, 128), (4, 4, 4), (1, 1024, 1024),
                                          (5, 0, 16)])
def test_cq_sizes(sq, cq, expect):
    with _uring.Ring(sq, cq_entries=cq) as r:
        assert r.cq_entries == expect
        assert r.sq_entries >= sq


@needs_uring
def test_cq_smaller_than_sq_is_a_clear_error():
    with pytest.raises(IoUringError) as ei:
        _uring.Ring(64, cq_entries=8)
    e = ei.value
    assert e.errno == errno.EINVAL and e.syscall == "io_uring_setup"
    assert isinstance(e, OSError) and isinstance(e, PipelineError)
    _check_fix(e)


@needs_uring
def test_readqueue_capacity_must_stay_below_cq():
    with _uring.Ring(8, cq_entries=16) as r:
        with pytest.raises(IoUringError) as ei:
            _uring.ReadQueue(r, 16)
        assert ei.value.errno == errno.EINVAL
        _check_fix(ei.value)
        q = _uring.ReadQueue(r, 15)
        assert q.capacity == 15
        with pytest.raises(IoUringError):
            _uring.ReadQueue(r, 4)  # one ReadQueue per ring
        q.close()


@needs_uring
def test_raw_nops_matched_by_user_data():
    with _uring.Ring(16) as r:
        uds = [random.Random(3).getrandbits(64) for _ in range(1)] + list(range(100, 115))
        for ud in uds:
            r.queue_nop(ud)
        assert r.sq_space == 0
        with pytest.raises(IoUringError) as ei:
            r.queue_nop(1)  # SQ full
        assert ei.value.errno == errno.EBUSY
        assert r.submit() == 16
        assert r.wait(16, timeout=5)
        got = r.reap()
        assert sorted(u for u, res, _ in got) == sorted(uds)
        assert all(res == 0 for _, res, _ in got)
        assert r.cq_ready == 0
        assert not r.wait(1, timeout=0.01)  # nothing in flight: times out, no hang


@needs_uring
def test_cq_overflow_is_detected():
    with _uring.Ring(4, cq_entries=4) as r:
        for round_ in range(3):  # 12 completions into a CQ of 4, never reaped
            for i in range(4):
                r.queue_nop(round_ * 4 + i)
            r.submit()
        time.sleep(0.01)
        assert r.overflowed
        with pytest.raises(IoUringError) as ei:
            r.reap()
        assert ei.value.errno == errno.EOVERFLOW
        _check_fix(ei.value)


@needs_uring
def test_raw_read_and_out_of_order_completion(datafile):
    fd, data = datafile
    rfd, wfd = os.pipe()
    try:
        with _uring.Ring(8) as r:
            pbuf = bytearray(5)
            fbuf = bytearray(1000)
            r.queue_read(rfd, pbuf, 0, 0xAAAA)   # submitted first, completes last
            r.queue_read(fd, fbuf, 4096, 0xBBBB)
            r.submit()
            assert r.wait(1, timeout=5)
            first = r.reap()
            assert [c[0] for c in first] == [0xBBBB] and first[0][1] == 1000
            assert bytes(fbuf) == data[4096:5096]
            os.write(wfd, b"hello")
            assert r.wait(1, timeout=5)
            (ud, res, _), = r.reap()
            assert (ud, res, bytes(pbuf)) == (0xAAAA, 5, b"hello")
    finally:
        os.close(rfd)
        os.close(wfd)


# ------------------------------------------------------------------ ReadQueue (both paths)


def test_many_concurrent_reads_out_of_order(rq, datafile):
    """Hundreds of reads at random offsets, sizes and destinations; each matched by its tag."""
    fd, data = datafile
    rng = random.Random(7)
    dest = np.zeros(4 << 20, np.uint8)
    want = {}
    pos = 0
    tag = 0
    done = {}
    while tag < 600 or want:
        while tag < 600 and rq.free:
            n = rng.choice([1, 7, 512, 4096, 65536, rng.randint(1, 200000)])
            off = rng.randint(0, len(data) - n)
            if pos + n > dest.size:
                if want:  # keep destinations disjoint while reads are in flight
                    break
                pos = 0
            rq.read(fd, dest[pos:pos + n], off, tag)
            want[tag] = (pos, off, n)
            pos += n
            tag += 1
        for t, nbytes, err, eof in rq.poll(1, timeout=5):
            p, off, n = want.pop(t)
            assert (nbytes, err, eof) == (n, 0, False)
            assert dest[p:p + n].tobytes() == data[off:off + n], t
            done[t] = True
    assert len(done) == 600 and rq.busy == 0


def test_short_read_at_eof(rq, tmp_path):
    p = tmp_path / "short"
    p.write_bytes(b"x" * 50)
    fd = os.open(p, os.O_RDONLY)
    try:
        buf = bytearray(100)
        rq.read(fd, buf, 0, 1)
        rq.read(fd, memoryview(buf)[60:], 40, 2)  # starts inside, ends past EOF
        rq.read(fd, bytearray(10), 500, 3)         # starts past EOF
        got = {t: (n, e, eof) for t, n, e, eof in rq.poll(3, timeout=5)}
        assert got == {1: (50, 0, True), 2: (10, 0, True), 3: (0, 0, True)}
    finally:
        os.close(fd)


def test_short_reads_from_a_pipe_are_continued(rq):
    """A 10-byte read from a pipe fed 3 + 7 bytes finishes with all 10, in order."""
    rfd, wfd = os.pipe()
    try:
        buf = bytearray(10)
        rq.read(rfd, buf, 0, 42)
        rq.submit()
        assert rq.poll(1, timeout=0.05) == []
        os.write(wfd, b"abc")
        assert rq.poll(1, timeout=0.1) == []   # 3 of 10: continued, not reported
        os.write(wfd, b"defghij")
        assert rq.poll(1, timeout=5) == [(42, 10, 0, False)]
        assert bytes(buf) == b"abcdefghij"
        assert rq.stats["short_reads"] >= 1
    finally:
        os.close(rfd)
        os.close(wfd)


def test_read_errors_carry_errno(rq, tmp_path):
    dfd = os.open(tmp_path, os.O_RDONLY)
    try:
        rq.read(dfd, bytearray(16), 0, 5)
        (t, n, err, eof), = rq.poll(1, timeout=5)
        assert (t, n, err) == (5, 0, errno.EISDIR)
    finally:
        os.close(dfd)


def test_read_into_readonly_buffer_is_refused(rq, datafile):
    fd, _ = datafile
    with pytest.raises((IoUringError, BufferError, TypeError)):
        rq.read(fd, b"immutable", 0, 1)


@needs_uring
def test_bad_fd_completes_with_ebadf():
    with _uring.Ring(4) as r, _uring.ReadQueue(r, 4) as q:
        fd = os.open(os.devnull, os.O_RDONLY)
        os.close(fd)  # now stale
        q.read(fd, bytearray(8), 0, 9)
        assert q.poll(1, timeout=5) == [(9, 0, errno.EBADF, False)]


@needs_uring
def test_close_cancels_a_blocked_read():
    rfd, wfd = os.pipe()
    try:
        r = _uring.Ring(4)
        q = _uring.ReadQueue(r, 3)
        q.read(rfd, bytearray(8), 0, 1)
        q.submit()
        t0 = time.monotonic()
        q.close(timeout=5)  # must not hang on the pipe
        assert time.monotonic() - t0 < 5 + 10  # its own bound plus scheduling slack
        r.close()
    finally:
        os.close(rfd)
        os.close(wfd)


# ------------------------------------------------------------------ registration


@needs_uring
def test_fixed_buffers_and_fixed_files(datafile):
    fd, data = datafile
    st = StagingRing(8192, 4)
    try:
        with _uring.Ring(8) as r:
            r.register_buffers([st.array])
            assert r.fixed_buffers == 1
            r.register_files([-1, -1])
            r.update_files(1, [fd])
            assert r.fixed_files == 2
            q = _uring.ReadQueue(r, 7)
            for i in range(4):
                q.read(1, st.read_target(i, 0, 8192), i * 8192, i, fixed_buffer=0, fixed_file=True)
            got = q.poll(4, timeout=5)
            assert sorted(g[:3] for g in got) == [(i, 8192, 0) for i in range(4)]
            for i in range(4):
                assert st.read_target(i, 0, 8192).tobytes() == data[i * 8192:(i + 1) * 8192]
            # a destination outside the registered buffer is refused before submission
            with pytest.raises(IoUringError) as ei:
                q.read(fd, bytearray(16), 0, 9, fixed_buffer=0)
            assert ei.value.errno == errno.EFAULT
            _check_fix(ei.value)
            with pytest.raises(IoUringError) as ei:
                q.read(5, bytearray(16), 0, 9, fixed_file=True)  # no such registered file
            assert ei.value.errno == errno.EBADF
            q.close()
            r.update_files(1, [-1])
            r.unregister_files()
            r.unregister_buffers()
            assert r.fixed_buffers == 0 and r.fixed_files == 0
    finally:
        st.close()


@needs_uring
def test_sqpoll_ring_reads(datafile):
    fd, data = datafile
    try:
        r = _uring.Ring(8, sqpoll=True, sq_thread_idle_ms=1)
    except IoUringError as e:
        pytest.skip(f"SQPOLL refused here: {e}")
    with r:
        assert r.sqpoll
        q = _uring.ReadQueue(r, 8)
        # rounds until a submit found the poller idle and woke it: on a loaded machine the
        # poller thread may take far longer than its 1 ms idle time to go to sleep
        deadline = time.monotonic() + 60
        rounds = 0
        while rounds < 3 or (r.wakeups < 1 and time.monotonic() < deadline):
            rounds += 1
            bufs = [bytearray(1000) for _ in range(8)]
            for i, b in enumerate(bufs):
                q.read(fd, b, i * 1000, i)
            got = q.poll(8, timeout=30)
            assert sorted(g[0] for g in got) == list(range(8))
            assert all(bytes(b) == data[i * 1000:(i + 1) * 1000] for i, b in enumerate(bufs))
            time.sleep(0.01 * min(rounds, 20))  # let the poller go idle: a submit must wake it
        assert r.wakeups >= 1
        q.close()


# ------------------------------------------------------------------ path selection


def test_ingest_mode_env(monkeypatch):
    monkeypatch.delenv("VYRE_INGEST", raising=False)
    assert ingest_mode() == "auto"
    monkeypatch.setenv("VYRE_INGEST", "fallback")
    assert ingest_mode() == "fallback"
    monkeypatch.setenv("VYRE_INGEST", "URING")
    assert ingest_mode() == "uring"
    monkeypatch.setenv("VYRE_INGEST", "bogus")
    with pytest.raises(PipelineError) as ei:
        ingest_mode()
    _check_fix(ei.value)


def test_open_reader_paths(monkeypatch):
    st = StagingRing(4096, 2)
    try:
        monkeypatch.setenv("VYRE_INGEST", "fallback")
        r = open_reader(2, [st.array])
        assert r.path == "fallback" and "VYRE_INGEST" in r.reason
        r.close()
        monkeypatch.delenv("VYRE_INGEST")
        r = open_reader(2, [st.array])
        assert r.path == ("io_uring+fixed" if URING_OK else "fallback")
        r.close()
        if URING_OK:
            monkeypatch.setenv("VYRE_INGEST", "uring")
            r = open_reader(2, [st.array], fixed_buffers=False)
            assert r.path == "io_uring" and "disabled" in r.reason
            r.close()
    finally:
        st.close()


def test_forced_uring_without_io_uring_raises(monkeypatch):
    """VYRE_INGEST=uring never degrades silently: a refused setup is an IoUringError."""
    import vyre.ingest._uring as mod

    class Refused:
        def __init__(self, *a, **k):
            raise IoUringError("io_uring_setup failed: EPERM", "allow io_uring",
                               syscall="io_uring_setup", errno=errno.EPERM)

    monkeypatch.setattr(mod, "Ring", Refused)
    monkeypatch.setenv("VYRE_INGEST", "uring")
    with pytest.raises(IoUringError) as ei:
        open_reader(2)
    assert ei.value.errno == errno.EPERM
    monkeypatch.setenv("VYRE_INGEST", "auto")
    r = open_reader(2)
    assert r.path == "fallback" and "EPERM" in r.reason
    r.close()


# ------------------------------------------------------------------ staging and atomics


def test_staging_layout():
    st = StagingRing(10000, 3, context=100)
    try:
        assert st.host_pointer % PAGE_SIZE == 0
        assert st.stride % PAGE_SIZE == 0 and st.stride >= st.data_offset + 10000
        assert st.data_offset >= 100 and st.data_offset % 64 == 0
        t = st.read_target(2, 100, 10000)
        assert t.size == 10100
        assert t.ctypes.data == st.host_pointer + 2 * st.stride + st.data_offset - 100
        with pytest.raises(PipelineError):
            st.read_target(0, st.data_offset + 1, 10)
        with pytest.raises(IndexError):
            st.slot_offset(3)
    finally:
        st.close()
    assert st.closed


def test_atomics_on_numpy_words():
    a = np.zeros(8, np.uint32)
    assert _uring.atomic_cas_u32(a, 3, 0, 7) == 0 and a[3] == 7
    assert _uring.atomic_cas_u32(a, 3, 0, 9) == 7 and a[3] == 7
    _uring.atomic_store_u32(a, 5, 0xFFFFFFFF)
    assert _uring.atomic_load_u32(a, 5) == 0xFFFFFFFF
    with pytest.raises(IndexError):
        _uring.atomic_load_u32(a, 8)


def test_abi_constants_come_from_the_header():
    abi = _uring.ABI
    assert abi["DFA_ALPHABET"] == 256 and abi["IO_SLOT_WORDS"] == 8
    assert abi["DFA_ACCEPT_BIT"] | abi["DFA_STATE_MASK"] == 0xFFFFFFFF


def test_fallback_reads_in_parallel_threads(tmp_path):
    """The fallback pool releases the GIL: reads from several pipes progress independently."""
    q = FallbackReadQueue(4, threads=4)
    pipes = [os.pipe() for _ in range(3)]
    try:
        bufs = [bytearray(4) for _ in pipes]
        for i, (r, _) in enumerate(pipes):
            q.read(r, bufs[i], 0, i)
        threading.Timer(0.05, lambda: [os.write(w, b"%04d" % i) for i, (_, w) in
                                       enumerate(reversed(pipes))]).start()
        got = q.poll(3, timeout=5)
        assert sorted(g[0] for g in got) == [0, 1, 2]
        assert [bytes(b) for b in bufs] == [b"0002", b"0001", b"0000"]
    finally:
        q.close()
        for r, w in pipes:
            os.close(r)
            os.close(w)


@needs_uring
def test_dropping_ring_and_queue_with_a_read_in_flight_is_safe():
    """No reference cycle between Ring and ReadQueue: the queue (which cancels and waits for
    its reads) is always freed before the ring it points into."""
    import gc

    rfd, wfd = os.pipe()
    try:
        for _ in range(20):
            r = _uring.Ring(4)
            q = _uring.ReadQueue(r, 3)
            q.read(rfd, bytearray(8), 0, 1)
            q.submit()
            del r, q
            gc.collect()
        r = _uring.Ring(4)
        q = _uring.ReadQueue(r, 3)
        q.read(rfd, bytearray(8), 0, 1)
        q.submit()
        r.close()  # closes (cancels) its queue first
        with pytest.raises(IoUringError):
            q.poll(0)
    finally:
        os.close(rfd)
        os.close(wfd)


def _io_workers_for(tid: int) -> int:
    """io-wq worker threads serving thread ``tid`` (named iou-wrk-<tid>, Linux 5.12+)."""
    n = 0
    for t in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{t}/comm") as f:
                n += f.read().strip() == f"iou-wrk-{tid}"
        except OSError:
            pass
    return n


def _read_in_fresh_thread(path: str, size: int, parallel: bool, mode: str = "uring") -> dict:
    """Read all of ``path`` through open_reader, 8 chunks in flight, from a new thread: io-wq
    is per submitting thread, so workers other tests left behind are not counted."""
    out: dict = {}
    chunk, depth = 1 << 16, 8

    def body():
        st = StagingRing(chunk, depth)
        fd = os.open(path, os.O_RDONLY)
        r = open_reader(depth, [st.array], mode=mode, parallel_reads=parallel)
        try:
            got = bytearray()
            for base in range(0, size, depth * chunk):
                offs = [o for o in range(base, base + depth * chunk, chunk) if o < size]
                for i, off in enumerate(offs):
                    r.read(fd, st.read_target(i, 0, chunk), off, i)
                done: list = []
                while len(done) < len(offs):
                    done += r.poll(len(offs) - len(done), timeout=5)
                for tag, nbytes, err, _ in sorted(done):
                    assert err == 0
                    got += st.read_target(tag, 0, nbytes).tobytes()
            out.update(data=bytes(got), stats=r.stats,
                       workers=_io_workers_for(threading.get_native_id()))
        finally:
            r.close()
            os.close(fd)
            st.close()

    def run():
        try:
            body()
        except BaseException as e:  # re-raised in the test's thread
            out["error"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    if "error" in out:
        raise out["error"]
    return out


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        got = tuple(int(x) for x in platform.release().split("-")[0].split(".")[:2])
    except ValueError:
        return False
    return got >= (major, minor)


@needs_uring
@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or not _kernel_at_least(5, 12),
                    reason="io-wq workers are visible as iou-wrk threads from Linux 5.12")
def test_parallel_reads_run_on_io_wq_workers(tmp_path):
    """parallel_reads reaches the SQEs: the reads are executed by io-wq workers. Without it,
    page-cache reads complete inline and no worker is started."""
    size = (3 << 20) + 12345
    data = np.random.default_rng(5).integers(0, 256, size, dtype=np.uint8).tobytes()
    p = tmp_path / "w.bin"
    p.write_bytes(data)
    inline = _read_in_fresh_thread(str(p), size, parallel=False)
    assert inline["data"] == data and inline["stats"]["parallel_reads"] is False
    if inline["workers"]:
        pytest.skip("this filesystem punts every io_uring read to io-wq; nothing to tell apart")
    par = _read_in_fresh_thread(str(p), size, parallel=True)
    assert par["data"] == data and par["stats"]["parallel_reads"] is True
    assert par["stats"]["path"].startswith("io_uring")
    assert par["workers"] >= 1


def test_fallback_reports_parallel_reads(tmp_path):
    data = b"0123456789" * 10000
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    for parallel in (False, True):
        got = _read_in_fresh_thread(str(p), len(data), parallel, mode="fallback")
        assert got["data"] == data
        assert got["stats"]["path"] == "fallback" and got["stats"]["parallel_reads"] is True
