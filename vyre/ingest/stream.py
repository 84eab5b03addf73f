"""Streaming ingest: files → io_uring → GPU-visible staging chunks → slots (docs/ingest.md).

:class:`GpuStream` reads files in chunks into a :class:`~vyre.ingest.staging.StagingRing` that the
megakernel can see (one buffer-table handle), and for every chunk that lands publishes slots
over it: DFA_SCAN for :meth:`GpuStream.scan`, anything for :meth:`GpuStream.ingest`.

Flow control is credit based: the ring has ``depth`` staging slots; a slot is handed to a new
read only after every ticket published over its previous chunk is retired (DONE), so a chunk
is never overwritten while a lane reads it. When all slots are busy and no read is in flight,
the stream waits for the oldest chunk's tickets (a *stall*, counted in telemetry).

Chunk boundaries: each chunk's read starts ``context`` bytes early (the bytes of the file that
precede the chunk land in the slot just before the chunk data), and the DFA_SCAN over it
passes ``a6 = context``: accepts inside those bytes are not counted (the previous chunk
counted them), and the automaton, which depends only on its last ``context`` bytes
(vyre.ingest.dfa), is in the right state when the chunk starts. Chunks are independent of each
other, so they may land and be scanned in any order, and the GPU may split one chunk across
lanes. A file whose size or mtime changes while it is read raises
:class:`FileChangedError`; nothing is silently dropped.

"""
from __future__ import annotations

import errno as _errno
import os
import stat as _stat
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from vyre.errors import (IoUringError, PipelineError, SlotFaultError,
                         WaitTimeoutError)
from vyre.ingest.readers import Reader, open_reader
from vyre.ingest.staging import StagingRing

__all__ = ["GpuStream", "FileChangedError", "SlotFn"]

#: ``slot_fn(chunk_handle, offset_in_buffer, length, file_offset) -> [(opcode, args), ...]``
SlotFn = Callable[[int, int, int, int], Sequence[tuple[int, Sequence[int]]]]


def _abi() -> dict:
    from vyre.protocol import ABI

    return ABI


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


@dataclass
class _Job:
    path: str
    fd: int = -1
    handle: int = -1      # fd, or registered file index
    fixed: bool = False
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
class _Telemetry:
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
    last: dict = field(default_factory=dict)


_SLICE_BYTES = 16 << 10  # default scan slice: long enough that the per-slot cost is noise
_HEAD_BYTES = 4 << 10  # a file's first chunk: bytes scanned alone (without context, one lane)


def _default_slices(mk: Any, chunk_bytes: int) -> int:
    if getattr(getattr(mk, "backend", None), "assist_part_bytes", 0):
        return 1
    return max(1, min(64, chunk_bytes // _SLICE_BYTES))


def _submit_each(mk: Any, ops: list[tuple[int, list[int]]], tenant: int,
                 timeout: float | None) -> list[int]:
    """Submit ``ops`` one by one; on failure the tickets already out ride on the exception
    (``published``, as :class:`~vyre.PipelineError` declares it), so the caller keeps their staging slot until they finish."""
    tickets: list[int] = []
    try:
        for opcode, args in ops:
            tickets.append(mk.submit(opcode, args, tenant=tenant, timeout=timeout))
    except BaseException as e:
        e.published = tickets  # type: ignore[attr-defined]  # any exception, Ctrl-C too
        raise
    return tickets


class GpuStream:
    """Stream files through io_uring into GPU-visible staging and publish slots over them.

    ``with GpuStream(mk, chunk_bytes=1 << 20, depth=8) as s:`` then :meth:`scan` or
    :meth:`ingest`.

    Args:
        mk: a started :class:`vyre.Megakernel` (any backend).
        chunk_bytes: file bytes per chunk (one staging slot).
        depth: staging slots = chunks in flight (reading or being processed).
        max_context: largest context (bytes before each chunk) a scan may need; the
            default covers patterns up to 1 KiB.
        obs_base: first of the ``depth`` observables the scan counts into (one per staging
            slot); default: the last ``depth`` observables of ``mk``.
        mode: ``auto`` / ``uring`` / ``fallback``; ``None`` reads ``$VYRE_INGEST``.
        fixed_buffers: register the staging memory with io_uring (READ_FIXED).
        fixed_files: register opened files with io_uring (IOSQE_FIXED_FILE).
        sqpoll: use a kernel SQ polling thread.
        parallel_reads: mark io_uring reads IOSQE_ASYNC (default) so the ``depth`` reads in
            flight are copied by kernel worker threads in parallel; with ``False`` a
            page-cache read completes inline and one thread copies every byte (measured on a
            16-core GPU host: 7.8 vs 44 GB/s, bench/RESULTS.md). :meth:`telemetry` reports
            whether reads run in parallel (the fallback always does).
        device_copy: in :meth:`scan`, copy each landed chunk (and its context) into a device
            mirror of the staging ring with the copy engine and scan it there; the GPU's SMs
            read host memory far slower than the copy engine does. ``None`` (default): on
            where the backend has device memory (CUDA); ``True`` elsewhere raises.
            :meth:`ingest` always hands ``slot_fn`` the staging buffer.
        tenant: tenant of the published slots.
        timeout: seconds a wait for one chunk's tickets may take before raising.
        slices: DFA_SCAN slots per chunk in :meth:`scan` (each re-reads the DFA's context
            before its slice, so the counts stay exact). Default: one per chunk where the
            backend cuts a long scan into parts that idle warps help with (CUDA,
            ``assist_part_bytes`` > 0), which keeps the slots to publish few; elsewhere
            ``chunk_bytes // 16 KiB`` (1..64), so a chunk spreads over the worker threads
            (and over warps when the CUDA assist is off: consecutive tickets go to one warp).
    """

    def __init__(self, mk: Any, chunk_bytes: int = 1 << 20, depth: int = 8, *,
                 max_context: int = 1024, obs_base: int | None = None, mode: str | None = None,
                 fixed_buffers: bool = True, fixed_files: bool = True, sqpoll: bool = False,
                 tenant: int = 0, timeout: float | None = 60.0,
                 slices: int | None = None, parallel_reads: bool = True,
                 device_copy: bool | None = None) -> None:
        if int(depth) <= 0 or int(chunk_bytes) <= 0:
            raise PipelineError(f"invalid stream geometry chunk_bytes={chunk_bytes} depth={depth}",
                                "use chunk_bytes > 0 and depth > 0")
        self.mk = mk
        self.chunk_bytes = int(chunk_bytes)
        self.depth = int(depth)
        self.max_context = int(max_context)
        self.tenant = int(tenant)
        self.timeout = timeout
        self.slices = _default_slices(mk, self.chunk_bytes) if slices is None else int(slices)
        if self.slices <= 0:
            raise PipelineError(f"invalid slices={slices}", "use slices >= 1 (or None)")
        self._mode = mode
        self._fixed_buffers = fixed_buffers
        self._fixed_files = fixed_files
        self._sqpoll = sqpoll
        self._parallel_reads = bool(parallel_reads)
        nobs = int(getattr(mk, "observable_slots", len(mk.observables)))
        self.obs_base = nobs - self.depth if obs_base is None else int(obs_base)
        if self.obs_base < 0 or self.obs_base + self.depth > nobs:
            raise PipelineError(
                f"the stream needs observables {self.obs_base}..{self.obs_base + self.depth - 1} "
                f"but the megakernel has {nobs}",
                "create the Megakernel with more observable_slots, lower depth, or pass obs_base")
        self.staging: StagingRing | None = None
        self.reader: Reader | None = None
        self.handle = -1
        can_copy = hasattr(getattr(mk, "backend", None), "copy_to_device_async")
        if device_copy and not can_copy:
            raise PipelineError("device_copy needs a backend with device memory (CUDA)",
                                "use device_copy=None or False on this backend")
        self._device_copy = can_copy and device_copy is not False
        # device mirror of the staging ring and its handle (device_copy), kept across reopens
        self._dev: tuple[int, Any] | None = None
        self._scan_handle = -1  # what scan slots read: the staging or its device mirror
        self._tables: dict[int, tuple[int, Any, Any]] = {}
        self._t = _Telemetry()
        self._in_flight = 0
        # tickets of scan slots left in flight by a call that an exception ended (they still
        # read the staging / mirror slots and add to the observables): settled by the next call
        self._orphans: list[int] = []
        self._lock = threading.Lock()
        # profiling hook: (stage, (path, offset), perf_counter) per transition, when a list
        self._trace: list[tuple[str, tuple[str, int], float]] | None = None

    # ------------------------------------------------------------------ lifetime
    def open(self) -> "GpuStream":
        """Allocate and register the staging ring and open the reader (``with`` does this)."""
        if self.staging is not None:
            return self
        backend = getattr(self.mk, "backend", None)
        cuda = getattr(backend, "name", "cpu") == "cuda"
        self.staging = StagingRing(self.chunk_bytes, self.depth, context=self.max_context,
                                   cuda=cuda, activate=getattr(backend, "_active", None))
        try:
            self.handle = self._scan_handle = int(self.mk.register_buffer(self.staging.array))
            if self._device_copy:
                if self._dev is None:
                    h, buf = self.mk.alloc_buffer(self.staging.array.nbytes, device=True)
                    self._dev = (int(h), buf)
                self._scan_handle = self._dev[0]
            self.reader = open_reader(self.depth, [self.staging._host], mode=self._mode,
                                      fixed_buffers=self._fixed_buffers,
                                      file_slots=self.depth if self._fixed_files else 0,
                                      sqpoll=self._sqpoll,
                                      parallel_reads=self._parallel_reads)
        except BaseException:
            self.staging.close()
            self.staging = None
            raise
        return self

    def close(self) -> None:
        """Close the reader (in-flight reads are cancelled and waited for) and the staging.

        The staging handle stays in the megakernel's buffer table (handles are not reused);
        the memory stays mapped while the megakernel references it.
        """
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        # the buffer table still points at the staging memory: keep it mapped (not freed)
        # until the megakernel goes; dropping our reference lets GC unmap it after that.
        self.staging = None

    def __enter__(self) -> "GpuStream":
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def path(self) -> str:
        """The read path in use: ``io_uring+fixed``, ``io_uring`` or ``fallback``."""
        self._require_open()
        return self.reader.path

    def _require_open(self) -> None:
        if self.staging is None or self.reader is None:
            raise PipelineError("the stream is not open",
                                "use `with GpuStream(mk, ...) as s:` or call open()")

    def _settle_orphans(self) -> None:
        """Wait (``timeout``) for the slots an interrupted call left in flight, before this
        call reuses the buffers they read and reads the counts they add to."""
        if not self._orphans:
            return
        try:
            self.mk.wait(self._orphans, timeout=self.timeout)
        except SlotFaultError:
            pass  # retired all the same (its call already raised, or was interrupted)
        except Exception as err:  # a Ctrl-C stays a KeyboardInterrupt (they stay orphans)
            raise PipelineError(
                f"{len(self._orphans)} scan slots of an earlier interrupted call are still in "
                f"flight, reading this stream's buffers ({err})",
                "retry once they finish, or shut the megakernel down and open a new stream"
            ) from err
        self._orphans = []
        self._in_flight = 0

    # ------------------------------------------------------------------ public work
    def scan(self, paths: str | os.PathLike | Iterable[str | os.PathLike], dfa: Any) -> dict[str, int]:
        """Count pattern matches of ``dfa`` (a :class:`vyre.ingest.dfa.Dfa`) in each file.

        Returns ``{path: count}`` (paths as given, each once): the number of byte positions
        where at least one pattern ends, exactly as if the whole file were scanned at once.
        Raises :class:`IoUringError` (open / read failures), :class:`FileChangedError`,
        :class:`SlotFaultError` or :class:`BackendError`, after draining what is in flight.
        """
        self._require_open()
        self._settle_orphans()
        ctx = int(dfa.context)
        if ctx > self.staging.data_offset:
            raise PipelineError(
                f"the DFA needs {ctx} context bytes but the stream reserves {self.staging.data_offset}",
                f"create the GpuStream with max_context={ctx} (or more)")
        if ctx > self.chunk_bytes:
            raise PipelineError(
                f"the DFA's context ({ctx} bytes) is longer than a chunk ({self.chunk_bytes})",
                f"use chunk_bytes >= {ctx}: a chunk's re-read context must cover the longest "
                "pattern")
        table = self._table_handle(dfa)
        abi = _abi()
        op = abi["OP_DFA_SCAN"]
        no_state = abi["DFA_NO_STATE"]
        obs_word = self.obs_base
        observables = self.mk.observables
        last = [int(observables[obs_word + i]) for i in range(self.depth)]

        def publish(slot: int, buf_off: int, c: int, n: int, file_off: int, job: _Job) -> list[int]:
            # slice j counts [s_j, s_{j+1}) of the chunk, after re-reading up to `ctx` bytes
            # before it (the chunk's own bytes, or its context c)
            k = max(1, min(self.slices, n // max(ctx, 1)))
            if c == 0 and ctx and n > _HEAD_BYTES + ctx:
                # a file's first chunk has no context before it: as one slot (a6 = 0) it could
                # not be split over lanes or warps. A short head goes alone; the rest re-reads
                # its context from the head.
                head = max(ctx, _HEAD_BYTES)
                bounds = [0] + [head + (n - head) * j // k for j in range(k + 1)]
            else:
                bounds = [n * j // k for j in range(k + 1)]
            rows = []
            for j in range(len(bounds) - 1):
                lo, hi = bounds[j], bounds[j + 1]
                cj = c if j == 0 else min(ctx, lo + c)
                rows.append([table, self._scan_handle, buf_off + lo - cj, cj + hi - lo, no_state,
                             obs_word + slot, cj])
            if len(rows) > 1 and hasattr(self.mk, "submit_many"):
                try:
                    return list(self.mk.submit_many(np.full(len(rows), op, np.uint32),
                                                    np.array(rows, np.uint32),
                                                    tenant=self.tenant, timeout=self.timeout))
                except BaseException as e:  # the slices already out still read the slot
                    e.published = list(getattr(e, "published", None) or ())  # type: ignore[attr-defined]
                    raise
            return _submit_each(self.mk, [(op, r) for r in rows], self.tenant, self.timeout)

        def retire(slot: int, job: _Job) -> None:
            v = int(observables[obs_word + slot])
            job.count += (v - last[slot]) & 0xFFFFFFFF  # one chunk adds < 2**32
            last[slot] = v

        copy = self._copy_chunk if self._scan_handle != self.handle else None
        jobs = self._run(_unique(paths), ctx, publish, retire, copy)
        return {j.path: j.count for j in jobs}

    def ingest(self, paths: str | os.PathLike | Iterable[str | os.PathLike], slot_fn: SlotFn, *,
               context: int = 0) -> dict[str, Any]:
        """Stream file(s) and publish ``slot_fn(handle, offset_in_buffer, length, file_offset)``
        for every chunk that lands.

        ``slot_fn`` returns ``[(opcode, args), ...]`` to publish over the chunk: the chunk's
        ``length`` bytes sit at ``offset_in_buffer`` of buffer ``handle``, and with
        ``context > 0`` the ``min(context, file_offset)`` file bytes before the chunk sit just
        before it. The staging slot is reused only once all those tickets are DONE.
        Returns ``{"bytes", "chunks", "tickets", "files"}``.
        """
        self._require_open()
        self._settle_orphans()
        if context < 0 or context > self.staging.data_offset:
            raise PipelineError(f"context {context} is outside 0..{self.staging.data_offset}",
                                f"create the GpuStream with max_context={context} (or more)")

        def publish(slot: int, buf_off: int, c: int, n: int, file_off: int, job: _Job) -> list[int]:
            ops = slot_fn(self.handle, buf_off, n, file_off)
            return _submit_each(self.mk, [(int(o), list(a)) for o, a in ops or ()],
                                self.tenant, self.timeout)

        paths = _unique(paths)
        before = (self._t.bytes, self._t.chunks, self._t.slots)
        self._run(paths, int(context), publish, None)
        return {"bytes": self._t.bytes - before[0], "chunks": self._t.chunks - before[1],
                "tickets": self._t.slots - before[2], "files": len(paths)}

    # ------------------------------------------------------------------ telemetry
    def telemetry(self) -> dict[str, Any]:
        """Counters since the stream opened, and the read path.

        ``bytes`` (file bytes landed, each once), ``context_bytes`` (re-read before chunks),
        ``chunks``, ``files``, ``slots`` published, ``in_flight`` chunks now (being read,
        copied or scanned: up to ``depth``, or ``2 * depth`` with the device copy, where a
        chunk's staging slot goes free once it is in the mirror), ``max_in_flight``,
        ``stalls`` / ``stall_s`` (waits for a free staging slot), ``io_waits``,
        ``copy_waits`` (blocking waits for a chunk's device copy), ``seconds`` busy, ``gbps``
        (bytes / seconds / 1e9), ``path`` (io_uring+fixed / io_uring / fallback),
        ``parallel_reads`` (the reads in flight copy concurrently), ``device_copy`` (scans
        read a device copy of each chunk), ``reason`` and the reader's counters.
        """
        t = self._t
        out = {
            "bytes": t.bytes, "context_bytes": t.context_bytes, "chunks": t.chunks,
            "files": t.files, "slots": t.slots, "in_flight": self._in_flight,
            "max_in_flight": t.max_in_flight, "stalls": t.stalls, "stall_s": t.stall_s,
            "io_waits": t.io_waits, "copy_waits": t.copy_waits, "seconds": t.seconds,
            "errors": t.errors,
            "gbps": (t.bytes / t.seconds / 1e9) if t.seconds > 0 else 0.0,
            "chunk_bytes": self.chunk_bytes, "depth": self.depth,
            "device_copy": self._scan_handle != self.handle,
            "last": dict(t.last),
        }
        if self.reader is not None:
            rs = self.reader.stats
            out["path"] = rs.pop("path")
            out["reason"] = rs.pop("reason")
            out["parallel_reads"] = rs.pop("parallel_reads")
            out["reader"] = rs
        return out

    # ------------------------------------------------------------------ engine
    def _table_handle(self, dfa: Any) -> int:
        key = id(dfa)
        hit = self._tables.get(key)
        if hit is not None and hit[2] is dfa:
            return hit[0]
        cuda = getattr(getattr(self.mk, "backend", None), "name", "cpu") == "cuda"
        if hasattr(self.mk, "alloc_buffer"):
            handle, buf = self.mk.alloc_buffer(dfa.table, device=cuda)
        else:
            buf = np.ascontiguousarray(dfa.table)
            handle = self.mk.register_buffer(buf)
        self._tables[key] = (int(handle), buf, dfa)
        return int(handle)

    def _open_job(self, job: _Job) -> None:
        try:
            fd = os.open(job.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as err:
            raise _open_error(job.path, err) from None
        try:
            st = os.fstat(fd)
            if not _stat.S_ISREG(st.st_mode):
                kind = "a directory" if _stat.S_ISDIR(st.st_mode) else "not a regular file"
                raise IoUringError(f"cannot scan {job.path!r}: it is {kind}",
                                   "pass regular files; expand directories first "
                                   "(os.walk / glob) and read pipes into a file",
                                   syscall="fstat",
                                   errno=_errno.EISDIR if _stat.S_ISDIR(st.st_mode) else _errno.EINVAL)
        except BaseException:
            os.close(fd)
            raise
        job.fd, job.st, job.size = fd, st, int(st.st_size)
        job.handle, job.fixed = self.reader.attach_file(fd)

    def _finish_read(self, job: _Job) -> PipelineError | None:
        """Every chunk landed: check the file did not change, release the fd."""
        job.read_done = True
        err = None
        try:
            st = os.fstat(job.fd)
            if st.st_size != job.size:
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
            err = _open_error(job.path, e)
        self._close_job(job)
        return err

    def _close_job(self, job: _Job) -> None:
        if job.fd >= 0:
            try:
                self.reader.detach_file(job.handle, job.fixed)
            except IoUringError:
                pass
            os.close(job.fd)
            job.fd = -1

    def _is_done(self, tickets: list[int]) -> bool:
        if not tickets:
            return True
        finished = getattr(self.mk, "finished", None)
        if finished is not None:
            try:
                return bool(finished(tickets))
            except SlotFaultError:
                return True  # retired: retire_one's wait raises it and records the fault
        try:
            self.mk.wait(tickets, timeout=0)
            return True
        except WaitTimeoutError:
            return False

    def _copy_chunk(self, tag: int, mirror: int, c: int, n: int) -> Any:
        """Start the device copy of staging slot ``tag`` (its context and bytes) into slot
        ``mirror`` of the device mirror (the staging's layout), which the scan slots read."""
        at = self.staging.data_start(tag) - c
        return self.mk.backend.copy_to_device_async(
            self._dev[1], self.staging.data_start(mirror) - c, self.staging.array[at:at + c + n])

    def _run(self, paths: list[str], context: int,
             publish: Callable[[int, int, int, int, int, _Job], list[int]],
             retire: Callable[[int, _Job], None] | None,
             copy: Callable[[int, int, int, int], Any] | None = None) -> list[_Job]:
        """The pipeline. Without ``copy`` a staging slot goes free -> reading -> scanning ->
        free, and the scan slot is the staging slot. With ``copy`` a landed chunk waits for a
        free slot of the device mirror, is copied there (``copy(tag, mirror_slot, c, n)``
        starts it and returns something with ``done()`` / ``wait()``), its staging slot goes
        free as soon as the copy is done (the next read needs no scan to finish), and its
        scan slots, published then, read the mirror slot, which goes free when they retire."""
        staging, reader = self.staging, self.reader
        t = self._t
        trace = self._trace
        traced: dict[int, tuple[str, int]] = {}  # scan slot -> its chunk, while tracing
        jobs = [_Job(p) for p in paths]
        todo = deque(jobs)
        current: list[_Job | None] = [None]
        free = deque(range(self.depth))
        reading: dict[int, tuple[_Job, int, int, int]] = {}
        scanning: deque[tuple[int, _Job, list[int]]] = deque()
        # device copy: landed chunks waiting for a mirror slot, copies in flight (in order)
        mirror_free = deque(range(self.depth))
        landed: deque[tuple[int, _Job, int, int, int]] = deque()
        copying: deque[tuple[int, int, _Job, int, int, int, Any]] = deque()
        scan_free = free if copy is None else mirror_free  # where a retired scan slot goes
        errors: list[BaseException] = []
        t0 = time.perf_counter()
        bytes0 = t.bytes

        def fail(err: BaseException) -> None:
            t.errors += 1
            errors.append(err)
            todo.clear()
            cur = current[0]
            if cur is not None and cur.landed == cur.issued:
                self._close_job(cur)
            current[0] = None

        def next_chunk() -> tuple[_Job, int, int] | None:
            while not errors:
                job = current[0]
                if job is None or job.next_off >= job.size:
                    if not todo:
                        current[0] = None
                        return None
                    job = todo.popleft()
                    current[0] = job
                    try:
                        self._open_job(job)
                    except PipelineError as err:
                        job.failed = True
                        fail(err)
                        return None
                    t.files += 1
                    if job.size == 0:
                        err = self._finish_read(job)
                        if err is not None:
                            job.failed = True
                            fail(err)
                            return None
                        continue
                off = job.next_off
                n = min(self.chunk_bytes, job.size - off)
                job.next_off += n
                job.issued += 1
                return job, off, n
            return None

        def emit(tag: int, job: _Job, c: int, n: int, off: int) -> None:
            """Publish the scan of a chunk in scan slot ``tag`` (staging or mirror)."""
            try:
                tickets = publish(tag, staging.data_start(tag), c, n, off, job)
            except BaseException as e:  # submit failed part way (or before the first)
                fail(e)
                out = getattr(e, "published", None) or []
                if out:  # those slots still read the scan slot: reuse it after them
                    t.slots += len(out)
                    job.tickets += len(out)
                    scanning.append((tag, job, out))
                else:
                    scan_free.append(tag)
            else:
                t.bytes += n
                t.context_bytes += c
                t.chunks += 1
                t.slots += len(tickets)
                job.tickets += len(tickets)
                scanning.append((tag, job, tickets))
                if trace is not None:
                    traced[tag] = (job.path, off)
                    trace.append(("published", traced[tag], time.perf_counter()))

        def start_copies() -> None:
            while landed and (mirror_free or errors):
                tag, job, c, n, off = landed.popleft()
                if errors:  # not scanned any more: nothing to copy
                    free.append(tag)
                    continue
                m = mirror_free.popleft()
                try:
                    copying.append((tag, m, job, c, n, off, copy(tag, m, c, n)))
                except BaseException as e:
                    fail(e)
                    free.append(tag)
                    mirror_free.append(m)

        copy_stuck = [False]  # a copy's wait raised: the ones behind it are not waited again

        def copied(block: bool) -> bool:
            """Once the oldest copy is done (copies finish in order): its staging slot goes
            free and its scan is published from the mirror (after an error: not published)."""
            tag, m, job, c, n, off, token = copying[0]
            if block:
                t.copy_waits += 1
                try:
                    token.wait()
                except BaseException:
                    copy_stuck[0] = True
                    raise
            elif not token.done():
                return False
            copying.popleft()
            free.append(tag)
            if trace is not None:
                trace.append(("copied", (job.path, off), time.perf_counter()))
            if errors:
                mirror_free.append(m)
            else:
                emit(m, job, c, n, off)
            return True

        def land(tag: int, nbytes: int, err: int, eof: bool) -> None:
            job, off, c, n = reading.pop(tag)
            job.landed += 1
            if trace is not None:
                trace.append(("landed", (job.path, off), time.perf_counter()))
            ok = False
            if err:
                job.failed = True
                fail(IoUringError(
                    f"reading {job.path!r} ({n + c} bytes at offset {off - c}) failed: "
                    f"{_errno.errorcode.get(err, err)} ({os.strerror(err)})",
                    "check the file and the device (dmesg); run with VYRE_INGEST=fallback to "
                    "rule out io_uring", syscall="read" if reader.path == "fallback"
                    else "io_uring_enter(READ)", errno=err))
            elif nbytes != c + n:
                job.failed = True
                fail(FileChangedError(
                    f"{job.path!r} ended early: the read at offset {off - c} returned {nbytes} "
                    f"of {c + n} bytes, so the file shrank below the {job.size} bytes it had "
                    f"when opened", _CHANGE_FIX, path=job.path, expected=job.size,
                    actual=off - c + nbytes))
            else:
                ok = True
            if ok and not errors:
                if copy is None:
                    emit(tag, job, c, n, off)
                else:
                    landed.append((tag, job, c, n, off))
                    start_copies()
            else:
                free.append(tag)
            if job.next_off >= job.size and job.landed == job.issued and not job.read_done:
                # every chunk of the file was issued and has landed
                if job.failed:
                    self._close_job(job)
                    job.read_done = True
                else:
                    e = self._finish_read(job)
                    if e is not None:
                        job.failed = True
                        fail(e)

        def retire_one(tickets: list[int], block: bool) -> bool:
            if not block and not self._is_done(tickets):
                return False
            slot, job, tk = scanning.popleft()
            try:
                if tk:
                    self.mk.wait(tk, timeout=self.timeout)
            except SlotFaultError as e:
                job.failed = True
                fail(e)
            except BaseException:
                scanning.appendleft((slot, job, tk))
                raise
            else:
                if retire is not None:
                    retire(slot, job)
            job.retired += 1
            scan_free.append(slot)
            if trace is not None and slot in traced:
                trace.append(("retired", traced.pop(slot), time.perf_counter()))
            return True

        blocked_since: list[float | None] = [None]

        def has_more() -> bool:
            cur = current[0]
            return not errors and (bool(todo) or (cur is not None and cur.next_off < cur.size))

        try:
            while True:
                while free and not errors:
                    nxt = next_chunk()
                    if nxt is None:
                        break
                    job, off, n = nxt
                    slot = free.popleft()
                    if blocked_since[0] is not None:
                        t.stall_s += time.perf_counter() - blocked_since[0]
                        blocked_since[0] = None
                    c = min(context, off)
                    reading[slot] = (job, off, c, n)
                    if trace is not None:
                        trace.append(("read", (job.path, off), time.perf_counter()))
                    try:
                        reader.read(job.handle, staging.read_target(slot, c, n), off - c, slot,
                                    fixed_file=job.fixed)
                    except BaseException as e:
                        reading.pop(slot)
                        job.issued -= 1
                        free.append(slot)
                        fail(e)
                        break
                if reading:
                    reader.submit()
                if not free and blocked_since[0] is None and has_more():
                    # credit exhausted: the next chunk waits for a staging slot to retire
                    t.stalls += 1
                    blocked_since[0] = time.perf_counter()
                self._in_flight = len(reading) + len(landed) + len(copying) + len(scanning)
                t.max_in_flight = max(t.max_in_flight, self._in_flight)
                if not reading and not landed and not copying and not scanning:
                    break
                progressed = False
                if reading:
                    for comp in reader.poll(0):
                        land(*comp)
                        progressed = True
                while copying and copied(block=False):
                    progressed = True
                while scanning and retire_one(scanning[0][2], block=False):
                    progressed = True
                if landed and (mirror_free or errors):
                    start_copies()
                    progressed = True
                if progressed:
                    continue
                if copying:  # the oldest copy is at most a chunk's DMA away
                    copied(block=True)
                elif landed and scanning:  # a landed chunk waits for a mirror slot
                    retire_one(scanning[0][2], block=True)
                elif reading:
                    t.io_waits += 1
                    for comp in reader.poll(1, timeout=0.002 if scanning else None):
                        land(*comp)
                else:
                    # nothing is being read and no slot is free (or nothing left to read):
                    # wait for the oldest chunk's tickets
                    retire_one(scanning[0][2], block=True)
        finally:
            # never leave a read in flight into staging we may reuse, or an fd open
            if reading:
                try:
                    while reading:
                        for comp in reader.poll(1, timeout=5.0) or ():
                            job, *_ = reading.pop(comp[0])
                            job.landed += 1
                        if reading and not reader.busy:
                            break
                except BaseException:
                    pass
            # nor a copy still reading staging that the next call may refill (copies run in
            # order on one stream: behind one that timed out, none is waited for again; one
            # the next call starts queues behind them, and scans are published only after
            # their own copy, so a copy left running here can only spoil an unpublished one)
            for *_, token in copying if not copy_stuck[0] else ():
                try:
                    token.wait()
                except BaseException:
                    break
            copying.clear()
            # an exception ends the call with scans still out: the next call waits for them
            # before it refills their buffers or reads the counts (a wait here would hold up
            # a Ctrl-C for as long as the GPU takes)
            orphaned = len(scanning)
            for _, _, tks in scanning:
                self._orphans.extend(tks)
            scanning.clear()
            landed.clear()
            for job in jobs:
                if job.fd >= 0 and job.landed == job.issued:
                    self._close_job(job)
            self._in_flight = len(reading) + orphaned
            dt = time.perf_counter() - t0
            t.seconds += dt
            t.last = {"bytes": t.bytes - bytes0, "seconds": dt,
                      "gbps": (t.bytes - bytes0) / dt / 1e9 if dt > 0 else 0.0}
        if errors:
            raise errors[0]
        return jobs


def _unique(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    out: dict[str, None] = {}
    for p in paths:
        out.setdefault(os.fspath(p) if not isinstance(p, bytes) else os.fsdecode(p), None)
    return list(out)
