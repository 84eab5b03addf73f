"""The chunk pipeline behind :meth:`GpuStream.scan` / :meth:`GpuStream.ingest` (docs/ingest.md).

:class:`ScanPipeline` runs one call: it walks the sources in order, hands each chunk a free
staging slot, reads it (through the stream's reader, or, for a *direct* source, in the
calling thread), optionally copies it to the device mirror, publishes its slots and retires
them. Every staging slot is in exactly one of the containers below at any time, which is
what the credit logic relies on (a slot is refilled only once its slots retired)::

    free -> reading -> [landed -> copying ->] scanning -> free

Sources (:class:`Job`): a regular file whose size the kernel reports is read by the reader
(io_uring or the preadv pool), up to ``depth`` chunks at once. A file that reports no size or
no blocks (``/proc``, ``/sys``: their ``st_size`` is 0 or a page whatever they hold) is read
to end of file in the calling thread with ``preadv``, one chunk after the other, and an
in-memory source is copied into the staging slot; both then take the same path as file
chunks, so the counts are those of the bytes a reader sees.
"""
from __future__ import annotations

import errno as _errno
import fcntl
import os
import stat as _stat
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vyre.errors import IoUringError, PipelineError, SlotFaultError

if TYPE_CHECKING:
    from vyre.ingest.readers import Reader
    from vyre.ingest.stream import GpuStream

__all__ = ["FileChangedError", "Job", "ScanPipeline", "Telemetry"]

#: a size no file reaches: the size of a source read to end of file until it ends
_UNSIZED = 1 << 62


class FileChangedError(PipelineError, RuntimeError):
    """A file changed size (or was rewritten) while the stream read it.

    ``path``, ``expected`` (size at open) and ``actual`` (size seen afterwards, or the bytes a
    read returned) say what happened.
    """

    def __init__(self, message: str, fix: str, path: str = "", expected: int = -1,
                 actual: int = -1) -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(message, fix)


_CHANGE_FIX = ("do not modify files while they are scanned: scan a snapshot (copy, or a "
               "filesystem snapshot) or retry once the writer finished")


def _open_error(path: str, err: OSError) -> IoUringError:
    e = err.errno or _errno.EIO
    fixes = {
        _errno.ENOENT: "check the path exists (and is spelled right) before scanning it",
        _errno.EACCES: "make the file readable by this user (chmod / chown) or drop it from "
                       "the list",
        _errno.EPERM: "make the file readable by this user or drop it from the list",
        _errno.EISDIR: "pass regular files; expand directories first (os.walk / glob)",
        _errno.EMFILE: "raise the open-file limit (ulimit -n) or lower the stream depth",
    }
    return IoUringError(f"cannot open {path!r}: {os.strerror(e)}",
                        fixes.get(e, "check the file can be opened for reading"),
                        syscall="open", errno=e)


def _system_error(err: OSError) -> bool:
    """An OSError a system call returned (it has an errno), not one a signal handler raised
    (``TimeoutError()`` from an alarm has none): only the former becomes an IoUringError."""
    return err.errno is not None


@dataclass
class Job:
    """One source of a call: a path, or in-memory bytes (``memory``)."""

    path: str
    memory: memoryview | None = None
    fd: int = -1
    handle: int = -1      # fd, or registered file index
    fixed: bool = False
    direct: bool = False  # filled by the calling thread (memory, or a file read to EOF)
    sized: bool = True    # ``size`` is known (False: read until a read comes back short)
    size: int = 0
    st: Any = None
    next_off: int = 0
    issued: int = 0
    landed: int = 0
    retired: int = 0
    count: int = 0
    read_done: bool = False
    failed: bool = False
    tickets: int = 0


@dataclass
class Telemetry:
    """Counters of a stream, summed over its calls (see :meth:`GpuStream.telemetry`)."""

    bytes: int = 0            # new file bytes landed (each once)
    context_bytes: int = 0    # bytes re-read as context
    chunks: int = 0
    files: int = 0
    slots: int = 0            # slots published
    stalls: int = 0           # waits for a staging slot's tickets (backpressure)
    stall_s: float = 0.0
    io_waits: int = 0         # blocking waits for reads
    copy_waits: int = 0       # blocking waits for a device copy (device_copy)
    max_in_flight: int = 0
    seconds: float = 0.0
    errors: int = 0
    last: dict[str, float] = field(default_factory=dict)


#: ``publish(scan_slot, offset_in_buffer, context, length, file_offset, job) -> tickets``
Publish = Callable[[int, int, int, int, int, Job], list[int]]
#: ``retire(scan_slot, job)``: the chunk's tickets are DONE
Retire = Callable[[int, Job], None]
#: ``copy(staging_slot, mirror_slot, context, length)``: starts a device copy, returns a token
#: with ``done()`` and ``wait()``
Copy = Callable[[int, int, int, int], Any]


def open_job(job: Job, reader: Reader) -> None:
    """Open ``job``'s file and decide how it is read (see the module docstring).

    ``O_NONBLOCK`` keeps the open of a FIFO or a device from waiting for a writer; anything
    but a regular file is then refused, and the flag is cleared again, since io_uring answers
    ``EAGAIN`` instead of reading for a file that carries it.
    """
    if job.memory is not None:
        job.direct, job.size = True, len(job.memory)
        return
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(job.path, flags)
    except OSError as err:
        if not _system_error(err):
            raise
        raise _open_error(job.path, err) from None
    try:
        st = os.fstat(fd)
        if not _stat.S_ISREG(st.st_mode):
            isdir = _stat.S_ISDIR(st.st_mode)
            kind = "a directory" if isdir else "not a regular file (a FIFO, socket or device)"
            raise IoUringError(f"cannot scan {job.path!r}: it is {kind}",
                               "pass regular files; expand directories first (os.walk / glob), "
                               "and read pipes or devices into bytes or a file and scan that",
                               syscall="open", errno=_errno.EISDIR if isdir else _errno.EINVAL)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except OSError as err:
        os.close(fd)
        if not _system_error(err) or isinstance(err, PipelineError):
            raise
        raise _open_error(job.path, err) from None
    except BaseException:
        os.close(fd)
        raise
    job.fd, job.st = fd, st
    if st.st_size == 0 or getattr(st, "st_blocks", 1) == 0:
        # procfs / sysfs report 0 or a page, not what a read returns: read to end of file
        job.direct, job.sized, job.size = True, False, _UNSIZED
        job.handle = fd
    else:
        job.size = int(st.st_size)
        job.handle, job.fixed = reader.attach_file(fd)


def fill_direct(job: Job, target: Any, offset: int) -> int:
    """Fill ``target`` with the source's bytes from ``offset`` on; returns the bytes filled
    (fewer than ``len(target)`` only at the end of the source)."""
    mv = memoryview(target).cast("B")
    if job.memory is not None:
        n = max(0, min(len(mv), len(job.memory) - offset))
        mv[:n] = job.memory[offset:offset + n]
        return n
    done = 0
    while done < len(mv):
        got = os.preadv(job.fd, [mv[done:]], offset + done)
        if got == 0:
            break
        done += got
    return done


def close_job(job: Job, reader: Reader | None) -> None:
    """Release the job's fd (and its registered file slot)."""
    if job.fd >= 0:
        if reader is not None and job.fixed:
            try:
                reader.detach_file(job.handle, job.fixed)
            except IoUringError:
                pass  # the slot is overwritten by the next attach; the fd closes regardless
        os.close(job.fd)
        job.fd = -1


def finish_read(job: Job, reader: Reader | None) -> PipelineError | None:
    """Every chunk landed: check the file did not change, release the fd."""
    job.read_done = True
    err: PipelineError | None = None
    if job.fd >= 0:
        try:
            st = os.fstat(job.fd)
            if job.sized and st.st_size != job.size:  # an unsized file's size says nothing
                verb = "grew" if st.st_size > job.size else "shrank"
                err = FileChangedError(
                    f"{job.path!r} {verb} from {job.size} to {st.st_size} bytes while it was "
                    f"scanned; the result would not describe any version of the file",
                    _CHANGE_FIX, path=job.path, expected=job.size, actual=int(st.st_size))
            elif st.st_mtime_ns != job.st.st_mtime_ns:
                err = FileChangedError(
                    f"{job.path!r} was modified while it was scanned (mtime changed)",
                    _CHANGE_FIX, path=job.path, expected=job.size, actual=int(st.st_size))
        except OSError as e:
            if not _system_error(e):
                raise
            err = _open_error(job.path, e)
    close_job(job, reader)
    return err


class ScanPipeline:
    """One ``scan`` / ``ingest`` call of ``stream`` over ``jobs`` (see the module docstring).

    Without ``copy`` a staging slot goes free -> reading -> scanning -> free, and the scan
    slot is the staging slot. With ``copy`` a landed chunk waits for a free slot of the
    device mirror, is copied there, its staging slot goes free as soon as the copy is done
    (the next read needs no scan to finish), and its scan slots, published then, read the
    mirror slot, which goes free when they retire.
    """

    def __init__(self, stream: GpuStream, jobs: list[Job], context: int, publish: Publish,
                 retire: Retire | None, copy: Copy | None = None) -> None:
        if stream.staging is None or stream.reader is None:
            raise PipelineError("the stream is not open",
                                "use `with GpuStream(mk, ...) as s:` or call open()")
        self.stream = stream
        self.staging = stream.staging
        self.reader: Reader = stream.reader
        self.t: Telemetry = stream._t
        self.trace = stream._trace
        self.traced: dict[int, tuple[str, int]] = {}  # scan slot -> its chunk, while tracing
        self.context = context
        self.publish, self.retire, self.copy = publish, retire, copy
        self.jobs = jobs
        self.todo: deque[Job] = deque(jobs)
        self.current: Job | None = None
        self.free: deque[int] = deque(range(stream.depth))
        self.reading: dict[int, tuple[Job, int, int, int]] = {}
        self.scanning: deque[tuple[int, Job, list[int]]] = deque()
        # device copy: landed chunks waiting for a mirror slot, copies in flight (in order)
        self.mirror_free: deque[int] = deque(range(stream.depth))
        self.landed: deque[tuple[int, Job, int, int, int]] = deque()
        self.copying: deque[tuple[int, int, Job, int, int, int, Any]] = deque()
        # where a retired scan slot goes
        self.scan_free = self.free if copy is None else self.mirror_free
        self.errors: list[BaseException] = []
        self.copy_stuck = False  # a copy's wait raised: the ones behind it are not waited again
        self.blocked_since: float | None = None

    # ------------------------------------------------------------------ steps
    def _mark(self, stage: str, job: Job, off: int) -> None:
        if self.trace is not None:
            self.trace.append((stage, (job.path, off), time.perf_counter()))

    def fail(self, err: BaseException) -> None:
        """Record the call's error: nothing new is read or published after it."""
        self.t.errors += 1
        self.errors.append(err)
        self.todo.clear()
        cur = self.current
        if cur is not None and cur.landed == cur.issued:
            close_job(cur, self.reader)
        self.current = None

    def next_chunk(self) -> tuple[Job, int, int] | None:
        """The next chunk to read, opening the next source when one ends."""
        while not self.errors:
            job = self.current
            if job is None or job.next_off >= job.size:
                if not self.todo:
                    self.current = None
                    return None
                job = self.todo.popleft()
                self.current = job
                try:
                    open_job(job, self.reader)
                except PipelineError as err:
                    job.failed = True
                    self.fail(err)
                    return None
                self.t.files += 1
                if job.size == 0:
                    err2 = finish_read(job, self.reader)
                    if err2 is not None:
                        job.failed = True
                        self.fail(err2)
                        return None
                    continue
            off = job.next_off
            n = min(self.stream.chunk_bytes, job.size - off)
            job.next_off += n
            job.issued += 1
            return job, off, n
        return None

    def emit(self, tag: int, job: Job, c: int, n: int, off: int) -> None:
        """Publish the scan of a chunk in scan slot ``tag`` (staging or mirror)."""
        t = self.t
        try:
            tickets = self.publish(tag, self.staging.data_start(tag), c, n, off, job)
        except BaseException as e:  # noqa: BLE001  # submit failed part way, or Ctrl-C
            self.fail(e)
            out = getattr(e, "published", None) or []
            if out:  # those slots still read the scan slot: reuse it after them
                t.slots += len(out)
                job.tickets += len(out)
                self.scanning.append((tag, job, list(out)))
            else:
                self.scan_free.append(tag)
        else:
            t.bytes += n
            t.context_bytes += c
            t.chunks += 1
            t.slots += len(tickets)
            job.tickets += len(tickets)
            self.scanning.append((tag, job, tickets))
            if self.trace is not None:
                self.traced[tag] = (job.path, off)
                self.trace.append(("published", self.traced[tag], time.perf_counter()))

    def start_copies(self) -> None:
        """Start the device copy of every landed chunk a mirror slot is free for."""
        assert self.copy is not None
        while self.landed and (self.mirror_free or self.errors):
            tag, job, c, n, off = self.landed.popleft()
            if self.errors:  # not scanned any more: nothing to copy
                self.free.append(tag)
                continue
            m = self.mirror_free.popleft()
            self._mark("copying", job, off)
            try:
                self.copying.append((tag, m, job, c, n, off, self.copy(tag, m, c, n)))
            except BaseException as e:  # noqa: BLE001  # recorded, raised at the end
                self.fail(e)
                self.free.append(tag)
                self.mirror_free.append(m)

    def copied(self, block: bool) -> bool:
        """Once the oldest copy is done (copies finish in order): its staging slot goes
        free and its scan is published from the mirror (after an error: not published)."""
        tag, m, job, c, n, off, token = self.copying[0]
        if block:
            self.t.copy_waits += 1
            try:
                token.wait()
            except BaseException:
                self.copy_stuck = True
                raise
        elif not token.done():
            return False
        self.copying.popleft()
        self.free.append(tag)
        self._mark("copied", job, off)
        if self.errors:
            self.mirror_free.append(m)
        else:
            self.emit(m, job, c, n, off)
        return True

    def land(self, tag: int, nbytes: int, err: int, eof: bool) -> None:
        """A read finished: check it, then copy or publish its chunk."""
        job, off, c, n = self.reading.pop(tag)
        job.landed += 1
        self._mark("landed", job, off)
        ok = False
        if err:
            job.failed = True
            self.fail(IoUringError(
                f"reading {job.path!r} ({n + c} bytes at offset {off - c}) failed: "
                f"{_errno.errorcode.get(err, err)} ({os.strerror(err)})",
                "check the file and the device (dmesg); run with VYRE_INGEST=fallback to "
                "rule out io_uring", syscall="read" if self.reader.path == "fallback"
                else "io_uring_enter(READ)", errno=err))
        elif nbytes != c + n and not job.sized:
            # a source read to its end: this chunk ends it
            n = max(0, nbytes - c)
            job.size = job.next_off = off + n
            ok = n > 0
        elif nbytes != c + n:
            job.failed = True
            self.fail(FileChangedError(
                f"{job.path!r} ended early: the read at offset {off - c} returned {nbytes} "
                f"of {c + n} bytes, so the file shrank below the {job.size} bytes it had "
                f"when opened", _CHANGE_FIX, path=job.path, expected=job.size,
                actual=off - c + nbytes))
        else:
            ok = True
        if ok and not self.errors:
            if self.copy is None:
                self.emit(tag, job, c, n, off)
            else:
                self.landed.append((tag, job, c, n, off))
                self.start_copies()
        else:
            self.free.append(tag)
        if job.next_off >= job.size and job.landed == job.issued and not job.read_done:
            # every chunk of the source was issued and has landed
            if job.failed:
                close_job(job, self.reader)
                job.read_done = True
            else:
                e = finish_read(job, self.reader)
                if e is not None:
                    job.failed = True
                    self.fail(e)

    def retire_one(self, block: bool) -> bool:
        """Retire the oldest chunk's tickets (``block``: wait for them)."""
        if not block and not self.stream._is_done(self.scanning[0][2]):
            return False
        slot, job, tk = self.scanning.popleft()
        try:
            if tk:
                self.stream.mk.wait(tk, timeout=self.stream.timeout)
        except SlotFaultError as e:
            job.failed = True
            self.fail(e)
        except BaseException:
            self.scanning.appendleft((slot, job, tk))
            raise
        else:
            if self.retire is not None:
                self.retire(slot, job)
        job.retired += 1
        self.scan_free.append(slot)
        if self.trace is not None and slot in self.traced:
            self.trace.append(("retired", self.traced.pop(slot), time.perf_counter()))
        return True

    def has_more(self) -> bool:
        cur = self.current
        return not self.errors and (bool(self.todo) or (cur is not None
                                                        and cur.next_off < cur.size))

    def issue_reads(self) -> None:
        """Hand every free staging slot a chunk (direct sources land at once)."""
        t = self.t
        while self.free and not self.errors:
            nxt = self.next_chunk()
            if nxt is None:
                break
            job, off, n = nxt
            slot = self.free.popleft()
            if self.blocked_since is not None:
                t.stall_s += time.perf_counter() - self.blocked_since
                self.blocked_since = None
            c = min(self.context, off)
            self.reading[slot] = (job, off, c, n)
            self._mark("read", job, off)
            target = self.staging.read_target(slot, c, n)
            try:
                if job.direct:
                    got = fill_direct(job, target, off - c)
                    self.land(slot, got, 0, got < c + n)
                    continue
                self.reader.read(job.handle, target, off - c, slot, fixed_file=job.fixed)
            except BaseException as e:  # noqa: BLE001  # recorded, raised at the end
                if slot in self.reading:
                    self.reading.pop(slot)
                    job.issued -= 1
                    self.free.append(slot)
                if isinstance(e, OSError) and not isinstance(e, PipelineError) \
                        and _system_error(e):
                    e = IoUringError(f"reading {job.path!r} at offset {off - c} failed: "
                                     f"{os.strerror(e.errno or _errno.EIO)}",
                                     "check the file can be read (cat it)", syscall="preadv",
                                     errno=e.errno or _errno.EIO)
                self.fail(e)
                break

    # ------------------------------------------------------------------ the loop
    def run(self) -> list[Job]:
        """Run the call to the end; raises the first error once nothing is in flight."""
        t = self.t
        t0 = time.perf_counter()
        bytes0 = t.bytes
        try:
            self._loop()
        finally:
            self._settle()
            dt = time.perf_counter() - t0
            t.seconds += dt
            t.last = {"bytes": t.bytes - bytes0, "seconds": dt,
                      "gbps": (t.bytes - bytes0) / dt / 1e9 if dt > 0 else 0.0}
        if self.errors:
            raise self.errors[0]
        return self.jobs

    def _in_flight(self) -> int:
        return len(self.reading) + len(self.landed) + len(self.copying) + len(self.scanning)

    def _loop(self) -> None:
        t, reader = self.t, self.reader
        while True:
            self.issue_reads()
            if self.reading:
                reader.submit()
            if not self.free and self.blocked_since is None and self.has_more():
                # credit exhausted: the next chunk waits for a staging slot to retire
                t.stalls += 1
                self.blocked_since = time.perf_counter()
            self.stream._in_flight = self._in_flight()
            t.max_in_flight = max(t.max_in_flight, self.stream._in_flight)
            if not self.stream._in_flight:
                break
            progressed = False
            if self.reading:
                for comp in reader.poll(0):
                    self.land(*comp)
                    progressed = True
            while self.copying and self.copied(block=False):
                progressed = True
            while self.scanning and self.retire_one(block=False):
                progressed = True
            if self.landed and (self.mirror_free or self.errors):
                self.start_copies()
                progressed = True
            if progressed:
                continue
            if self.copying:  # the oldest copy is at most a chunk's DMA away
                self.copied(block=True)
            elif self.landed and self.scanning:  # a landed chunk waits for a mirror slot
                self.retire_one(block=True)
            elif self.reading:
                t.io_waits += 1
                for comp in reader.poll(1, timeout=0.002 if self.scanning else None):
                    self.land(*comp)
            else:
                # nothing is being read and no slot is free (or nothing left to read):
                # wait for the oldest chunk's tickets
                self.retire_one(block=True)

    def _settle(self) -> None:
        """Leave nothing behind that the next call could trip over."""
        reader = self.reader
        # never leave a read in flight into staging we may reuse, or an fd open
        if self.reading:
            try:
                while self.reading:
                    for comp in reader.poll(1, timeout=5.0) or ():
                        job, *_ = self.reading.pop(comp[0])
                        job.landed += 1
                    if self.reading and not reader.busy:
                        break
            except BaseException:  # noqa: BLE001, S110  # the call's own error is raised
                pass
        # nor a copy still reading staging that the next call may refill (copies run in
        # order on one stream: behind one that timed out, none is waited for again; one
        # the next call starts queues behind them, and scans are published only after
        # their own copy, so a copy left running here can only spoil an unpublished one)
        for *_, token in self.copying if not self.copy_stuck else ():
            try:
                token.wait()
            except BaseException:  # noqa: BLE001  # the call's own error is raised
                break
        self.copying.clear()
        # an exception ends the call with scans still out: the next call waits for them
        # before it refills their buffers or reads the counts (a wait here would hold up
        # a Ctrl-C for as long as the GPU takes)
        orphaned = len(self.scanning)
        for _, _, tks in self.scanning:
            self.stream._orphans.extend(tks)
        self.scanning.clear()
        self.landed.clear()
        for job in self.jobs:
            if job.fd >= 0 and job.landed == job.issued:
                close_job(job, reader)
        self.stream._in_flight = len(self.reading) + orphaned
