"""Readers for streaming ingest: io_uring, or a preadv thread pool where io_uring is missing.

:func:`open_reader` picks the path and returns a :class:`Reader`; both paths have the same
interface (whole reads identified by a tag, short reads continued, EOF reported) and read into
the same staging buffers, so the stream never branches on which one runs.

Selection, by the environment variable ``VYRE_INGEST``:

* unset / ``auto``: io_uring when it can be set up here, else the fallback (the reason is
  kept in :attr:`Reader.reason` and in the stream telemetry);
* ``uring``: io_uring or an :class:`~vyre.IoUringError` (never silently the fallback);
* ``fallback``: the preadv thread pool.

With io_uring, the staging buffer is registered (READ_FIXED) when the kernel accepts it;
otherwise (RLIMIT_MEMLOCK, ...) plain READ is used and the reason recorded. Files may be
registered in a sparse file table (IOSQE_FIXED_FILE) the same way.

Parallel reads: io_uring completes a page-cache read inline in the thread that submits it,
so by default one thread copies every byte. ``parallel_reads=True`` marks the reads
IOSQE_ASYNC, which hands them to io_uring's worker threads and lets the reads in flight copy
at once. The fallback pool always reads in parallel.
"""
from __future__ import annotations

import errno as _errno
import os
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

from vyre.errors import IoUringError, PipelineError

__all__ = ["Completion", "FallbackReadQueue", "Reader", "ingest_mode", "open_reader"]

ENV = "VYRE_INGEST"
_MODES = {"": "auto", "auto": "auto", "uring": "uring", "io_uring": "uring",
          "fallback": "fallback", "preadv": "fallback"}

#: ``(tag, nbytes, errno, eof)`` of one finished read
Completion = tuple[int, int, int, bool]


def ingest_mode(mode: str | None = None) -> str:
    """The requested path: ``mode`` or ``$VYRE_INGEST``, normalised to auto/uring/fallback."""
    raw = os.environ.get(ENV, "") if mode is None else mode
    key = raw.strip().lower()
    if key not in _MODES:
        raise PipelineError(f"{ENV}={raw!r} is not a known ingest path",
                            f"set {ENV} to auto, uring or fallback (or unset it)")
    return _MODES[key]


class FallbackReadQueue:
    """The io_uring ReadQueue interface on a pool of threads doing ``os.preadv``.

    ``read`` hands a read to the pool; ``poll`` returns finished ones as
    ``(tag, nbytes, errno, eof)``. preadv releases the GIL, so the threads read in parallel;
    short reads are continued, EINTR is retried (PEP 475), 0 bytes is end of file.
    """

    def __init__(self, capacity: int, threads: int | None = None) -> None:
        if capacity <= 0:
            raise PipelineError(f"capacity {capacity} must be positive", "use capacity >= 1")
        self.capacity = int(capacity)
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._busy = 0
        self._lock = threading.Lock()
        self._closed = False
        self.n_short = 0
        self.n_reads = 0
        n = threads or min(self.capacity, max(2, (os.cpu_count() or 2)))
        self._threads = [threading.Thread(target=self._work, name=f"vyre-preadv-{i}", daemon=True)
                         for i in range(n)]
        for t in self._threads:
            t.start()

    @property
    def free(self) -> int:
        return self.capacity - self._busy

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def in_flight(self) -> int:
        return self._busy

    @property
    def stats(self) -> dict[str, int]:
        return {"short_reads": self.n_short, "retries": 0, "sqes": 0, "cqes": 0, "enters": 0,
                "reads": self.n_reads, "threads": len(self._threads)}

    def read(self, fd: int, buf: Any, offset: int, tag: int, **_: Any) -> None:
        """Queue a read of ``len(buf)`` bytes of ``fd`` at ``offset`` into ``buf``."""
        if self._closed:
            raise IoUringError("the reader is closed", "create a new reader",
                               syscall="preadv", errno=_errno.EBADF)
        if self._busy >= self.capacity:
            raise IoUringError("every request of the reader is in use", "poll() completions first",
                               syscall="preadv", errno=_errno.EBUSY)
        mv = memoryview(buf).cast("B")
        if mv.readonly:
            raise IoUringError("the read destination is read-only", "pass a writable buffer",
                               syscall="preadv", errno=_errno.EFAULT)
        with self._lock:
            self._busy += 1
        self._todo.put((int(fd), mv, int(offset), int(tag)))

    def submit(self) -> None:
        """Reads start as soon as they are queued; nothing to do."""

    def _work(self) -> None:
        preadv = getattr(os, "preadv", None)
        while True:
            item = self._todo.get()
            if item is None:
                return
            fd, mv, offset, tag = item
            done, err, eof = 0, 0, False
            stream = False  # pipes / sockets: no offsets (io_uring ignores them there too)
            try:
                while done < len(mv):
                    if stream:
                        n = os.readv(fd, [mv[done:]])
                    elif preadv is not None:
                        try:
                            n = preadv(fd, [mv[done:]], offset + done)
                        except OSError as e:
                            if e.errno != _errno.ESPIPE:
                                raise
                            stream = True
                            continue
                    else:  # pragma: no cover - platforms without preadv
                        data = os.pread(fd, len(mv) - done, offset + done)
                        n = len(data)
                        mv[done:done + n] = data
                    if n == 0:
                        eof = True
                        break
                    if done + n < len(mv):
                        self.n_short += 1
                    done += n
            except OSError as e:
                err = e.errno or _errno.EIO
            self.n_reads += 1
            mv.release()
            self._done.put((tag, done, err, eof))

    def poll(self, min_done: int = 1, timeout: float | None = None) -> list[Completion]:
        """Finished reads; blocks until ``min_done`` finished (or none left, or timeout)."""
        out: list[Completion] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                item = self._done.get_nowait()
            except queue.Empty:
                if len(out) >= min_done or self._busy == 0:
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                try:
                    item = self._done.get(timeout=left)
                except queue.Empty:
                    break
            out.append(item)
            with self._lock:
                self._busy -= 1
        return out

    def close(self, timeout: float = 5.0) -> None:
        """Wait for reads in flight (their buffers stay in use until then), stop the threads."""
        if self._closed:
            return
        deadline = time.monotonic() + timeout
        while self._busy and time.monotonic() < deadline:
            self.poll(1, timeout=max(0.0, deadline - time.monotonic()))
        self._closed = True
        for _ in self._threads:
            self._todo.put(None)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))


class Reader:
    """The reader a stream uses: :attr:`path` says which one runs.

    ``path`` is ``"io_uring+fixed"`` (registered staging buffer, READ_FIXED),
    ``"io_uring"`` (plain READ) or ``"fallback"`` (preadv thread pool). ``reason`` explains
    a fallback or a missing registration. ``parallel_reads`` says whether the reads in flight
    copy concurrently (io_uring with IOSQE_ASYNC, or the fallback pool).
    """

    def __init__(self, backend: Any, path: str, reason: str, ring: Any = None,
                 fixed_buffer: bool = False, file_slots: int = 0,
                 parallel_reads: bool = False) -> None:
        self._q = backend
        self.path = path
        self.reason = reason
        self.parallel_reads = parallel_reads
        self._ring = ring
        self.fixed_buffer = fixed_buffer
        self._file_slots = file_slots
        self._free_files = list(range(file_slots - 1, -1, -1))

    # ---- files
    @property
    def fixed_files(self) -> bool:
        return self._file_slots > 0

    def attach_file(self, fd: int) -> tuple[int, bool]:
        """Make ``fd`` readable through the reader: ``(fd or registered index, fixed_file)``."""
        if self._file_slots and self._free_files:
            idx = self._free_files.pop()
            try:
                self._ring.update_files(idx, [fd])
                return idx, True
            except IoUringError:
                self._free_files.append(idx)
        return fd, False

    def detach_file(self, handle: int, fixed: bool) -> None:
        """Release a registered file slot (call once its reads finished)."""
        if fixed:
            try:
                self._ring.update_files(handle, [-1])
            finally:
                self._free_files.append(handle)

    # ---- reads
    @property
    def capacity(self) -> int:
        return self._q.capacity

    @property
    def free(self) -> int:
        return self._q.free

    @property
    def busy(self) -> int:
        return self._q.busy

    def read(self, fd: int, buf: Any, offset: int, tag: int, *, fixed_file: bool = False) -> None:
        """Queue a whole read of ``buf`` (READ_FIXED when the staging buffer is registered)."""
        if self._ring is not None:
            self._q.read(fd, buf, offset, tag, fixed_buffer=0 if self.fixed_buffer else -1,
                         fixed_file=fixed_file)
        else:
            self._q.read(fd, buf, offset, tag)

    def submit(self) -> None:
        self._q.submit()

    def poll(self, min_done: int = 1, timeout: float | None = None) -> list[Completion]:
        return self._q.poll(min_done, timeout)

    @property
    def stats(self) -> dict[str, Any]:
        s = dict(self._q.stats)
        s.update(path=self.path, reason=self.reason, fixed_files=self.fixed_files,
                 parallel_reads=self.parallel_reads)
        return s

    def close(self) -> None:
        """Cancel / wait for reads in flight, then release the ring or the threads."""
        try:
            self._q.close()
        finally:
            if self._ring is not None:
                self._ring.close()
                self._ring = None


def _pow2(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def open_reader(capacity: int, buffers: Sequence[Any] = (), *, mode: str | None = None,
                fixed_buffers: bool = True, file_slots: int = 0, sqpoll: bool = False,
                threads: int | None = None, parallel_reads: bool = False) -> Reader:
    """Open the ingest reader for ``capacity`` concurrent reads.

    Args:
        capacity: reads in flight at once (the staging depth).
        buffers: the staging buffer(s) to register for READ_FIXED (index 0 is used).
        mode: ``auto`` / ``uring`` / ``fallback``; ``None`` reads ``$VYRE_INGEST``.
        fixed_buffers: try to register ``buffers`` (io_uring only).
        file_slots: size of the registered file table to try (0: plain fds).
        sqpoll: ask for a kernel SQ polling thread.
        threads: fallback pool size (default: min(capacity, cores)).
        parallel_reads: io_uring reads run on kernel worker threads (IOSQE_ASYNC) instead
            of inline in the submitting thread; the fallback is parallel either way.
    """
    want = ingest_mode(mode)
    reason = ""
    if want != "fallback":
        try:
            from vyre.ingest import _uring
        except ImportError as err:
            if want == "uring":
                raise IoUringError(f"the io_uring extension vyre.ingest._uring is not built "
                                   f"({err})",
                                   "build it: VYRE_BUILD_ONLY=uring python setup.py build_ext "
                                   "--inplace", syscall="io_uring_setup",
                                   errno=_errno.ENOSYS) from err
            reason = f"vyre.ingest._uring not built ({err})"
        else:
            ring = None
            try:
                entries = _pow2(max(capacity, 1))
                ring = _uring.Ring(entries, cq_entries=2 * entries, sqpoll=sqpoll,
                                   async_reads=parallel_reads)
                q = _uring.ReadQueue(ring, capacity)
            except IoUringError as err:
                if ring is not None:
                    ring.close()
                if want == "uring":
                    raise
                reason = f"io_uring unavailable: {err.message}"
            else:
                fixed, why = False, ""
                if fixed_buffers and buffers:
                    try:
                        ring.register_buffers(list(buffers))
                        fixed = True
                    except IoUringError as err:
                        why = f"buffer registration refused ({err.message}); plain READ"
                elif not fixed_buffers:
                    why = "buffer registration disabled; plain READ"
                slots = 0
                if file_slots > 0:
                    try:
                        ring.register_files([-1] * file_slots)
                        slots = file_slots
                    except IoUringError:
                        slots = 0
                if parallel_reads and not ring.async_reads:
                    why = "; ".join(filter(None, [why, ("IOSQE_ASYNC unsupported by this "
                                                        "kernel; reads stay inline")]))
                return Reader(q, "io_uring+fixed" if fixed else "io_uring", why, ring=ring,
                              fixed_buffer=fixed, file_slots=slots,
                              parallel_reads=ring.async_reads)
    else:
        reason = f"{ENV}=fallback"
    return Reader(FallbackReadQueue(capacity, threads), "fallback", reason, parallel_reads=True)
