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

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from vyre.errors import (
    InvalidTypeError,
    InvalidValueError,
    PipelineError,
    SlotFaultError,
    WaitTimeoutError,
)
from vyre.ingest import device_source
from vyre.ingest.args import check_int, check_timeout
from vyre.ingest.leases import Leases, StagingLease, leases_for
from vyre.ingest.match_scan import MatchOptions, MatchScan, match_options, match_slices
from vyre.ingest.pipeline import FileChangedError, Job, ScanPipeline, Telemetry
from vyre.ingest.readers import Reader, open_reader
from vyre.ingest.sources import Source, jobs_for
from vyre.ingest.staging import StagingRing

__all__ = ["FileChangedError", "GpuStream", "SlotFn", "Source"]

if TYPE_CHECKING:
    from typing_extensions import Self

#: ``slot_fn(chunk_handle, offset_in_buffer, length, file_offset) -> [(opcode, args), ...]``
SlotFn = Callable[[int, int, int, int], Sequence[tuple[int, Sequence[int]]]]

#: what :meth:`GpuStream.scan` reads: a path, bytes-like data, or an open file (``fileno()``)


def _abi() -> dict:
    from vyre.protocol import ABI

    return ABI


#: a file's first chunk: bytes scanned alone (no context before them: one slot on one lane).
#: Only what the next slice re-reads as its context needs to be there; a longer head is a
#: longer one-lane walk per source (docs/decisions.md, "A file's head")
_HEAD_BYTES = 64
_BUSY_FIX = ("give each thread its own GpuStream (streams on one megakernel count into "
             "separate observables), or serialize the calls with a lock of your own")


def _default_slices(mk: Any, chunk_bytes: int) -> int:
    if getattr(getattr(mk, "backend", None), "assist_part_bytes", 0):
        return 1
    return match_slices(chunk_bytes)


def _submit_each(mk: Any, ops: list[tuple[int, list[int]]], tenant: int,
                 timeout: float | None) -> list[int]:
    """Submit ``ops`` one by one; on failure the tickets already out ride on the exception
    (``published``, as :class:`~vyre.PipelineError` declares it), so the caller keeps their
    staging slot until they finish."""
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
            Scans with per-pattern counts or match records (DFA_MATCH) slice the same way:
            DFA_MATCH splits over lanes and assisting warps as DFA_SCAN does.
        match_records: match records one chunk may hold in a scan with ``matches=True``
            (shared out over its slots); matches past it are counted in ``dropped``.
    """

    def __init__(self, mk: Any, chunk_bytes: int = 1 << 20, depth: int = 8, *,
                 max_context: int = 1024, obs_base: int | None = None, mode: str | None = None,
                 fixed_buffers: bool = True, fixed_files: bool = True, sqpoll: bool = False,
                 tenant: int = 0, timeout: float | None = 60.0,
                 slices: int | None = None, parallel_reads: bool = True,
                 device_copy: bool | None = None, match_records: int = 1 << 16) -> None:
        if mk is None or not all(hasattr(mk, a) for a in ("submit", "wait", "observables")):
            raise InvalidTypeError(f"mk must be a started vyre.Megakernel, not "
                                   f"{type(mk).__name__}",
                                   "pass the megakernel: GpuStream(Megakernel().start(), ...)")
        self.mk = mk
        self.chunk_bytes = check_int("chunk_bytes", chunk_bytes, 1, (1 << 32) - 1)
        self.depth = check_int("depth", depth, 1, 1 << 16)
        self.max_context = check_int("max_context", max_context, 0, (1 << 31) - 1)
        self.tenant = check_int("tenant", tenant, 0)
        self.timeout = check_timeout("timeout", timeout)
        self.slices = (_default_slices(mk, self.chunk_bytes) if slices is None
                       else check_int("slices", slices, 1))
        self.match_records = check_int("match_records", match_records, 1, 1 << 28)
        self._mode = mode
        self._fixed_buffers = fixed_buffers
        self._fixed_files = fixed_files
        self._sqpoll = sqpoll
        self._parallel_reads = bool(parallel_reads)
        nobs = int(getattr(mk, "observable_slots", len(mk.observables)))
        self._nobs = nobs
        if obs_base is not None:
            obs_base = check_int("obs_base", obs_base, 0)
        low = nobs - self.depth if obs_base is None else obs_base
        if low < 0 or low + self.depth > nobs:
            raise InvalidValueError(
                f"the stream needs observables {low}..{low + self.depth - 1} "
                f"but the megakernel has {nobs}",
                "create the Megakernel with more observable_slots, lower depth, or pass obs_base")
        #: first of the ``depth`` observables the scan counts into (leased on open)
        self.obs_base = low
        self._told_obs = obs_base is not None
        self._obs_token: int | None = None
        self.staging: StagingRing | None = None
        self.reader: Reader | None = None
        self.handle = -1
        can_copy = hasattr(getattr(mk, "backend", None), "copy_to_device_async")
        if device_copy and not can_copy:
            raise PipelineError("device_copy needs a backend with device memory (CUDA)",
                                "use device_copy=None or False on this backend")
        self._device_copy = can_copy and device_copy is not False
        # device mirror of the staging ring and its handle (device_copy)
        self._dev: tuple[int, Any] | None = None
        self._scan_handle = -1  # what scan slots read: the staging or its device mirror
        self._lease: StagingLease | None = None
        # the Dfas whose tables slots of this stream may still read (kept from reuse)
        self._dfas: dict[int, Any] = {}
        self._t = Telemetry()
        self._in_flight = 0
        # tickets of scan slots left in flight by a call that an exception ended (they still
        # read the staging / mirror slots and add to the observables): settled by the next call
        self._orphans: list[int] = []
        self._lock = threading.Lock()
        self._owner: int | None = None  # thread id of the call in progress
        # profiling hook: (stage, (path, offset), perf_counter) per transition, when a list
        self._trace: list[tuple[str, tuple[str, int], float]] | None = None

    # ------------------------------------------------------------------ lifetime
    @property
    def _leases(self) -> Leases:
        return leases_for(self.mk, self._nobs)

    @contextmanager
    def _exclusive(self, what: str) -> Iterator[None]:
        """One call at a time: the pipeline's state (staging slots, reader, counts) is not
        shared between threads, so a second caller is refused instead of corrupting it."""
        if not self._lock.acquire(blocking=False):
            if self._owner == threading.get_ident():
                raise PipelineError(f"GpuStream.{what} was called from inside a call on the "
                                    f"same stream (a slot_fn re-entered it)",
                                    "call the stream again after the running call returned")
            raise PipelineError(f"GpuStream.{what} was called while another thread is in a "
                                f"call on the same stream (used from two threads at once)",
                                _BUSY_FIX)
        self._owner = threading.get_ident()
        try:
            yield
        finally:
            self._owner = None
            self._lock.release()

    def open(self) -> Self:
        """Lease observables and a staging ring, open the reader (``with`` does this)."""
        with self._exclusive("open"):
            if self.staging is None:
                self._open()
        return self

    def _open(self) -> None:
        backend = getattr(self.mk, "backend", None)
        cuda = getattr(backend, "name", "cpu") == "cuda"
        leases = self._leases
        if self._told_obs:
            self._obs_token = leases.told_observables(self.obs_base, self.depth)
        else:
            self._obs_token, self.obs_base = leases.take_observables(self.depth)
        key = (self.chunk_bytes, self.depth, self.max_context, int(cuda), int(self._device_copy))
        lease = leases.take_staging(key)
        try:
            if lease is None:
                staging = StagingRing(self.chunk_bytes, self.depth, context=self.max_context,
                                      cuda=cuda, activate=getattr(backend, "_active", None))
                try:
                    handle = int(self.mk.register_buffer(staging.array))
                    dev = None
                    if self._device_copy:
                        h, buf = self.mk.alloc_buffer(staging.array.nbytes, device=True)
                        dev = (int(h), buf)
                except BaseException:
                    staging.close()
                    raise
                lease = StagingLease(key, staging, handle, dev)
            self.staging, self.handle, self._dev = lease.staging, lease.handle, lease.dev
            self._scan_handle = self._dev[0] if self._dev is not None else self.handle
            self.reader = open_reader(self.depth, [lease.staging._host], mode=self._mode,
                                      fixed_buffers=self._fixed_buffers,
                                      file_slots=self.depth if self._fixed_files else 0,
                                      sqpoll=self._sqpoll,
                                      parallel_reads=self._parallel_reads)
        except BaseException:
            if lease is not None:
                leases.give_staging(lease)  # registered and unused: the next stream takes it
            self.staging = None
            leases.release_observables(self._obs_token)
            self._obs_token = None
            raise
        self._lease = lease

    def close(self) -> None:
        """Close the reader (in-flight reads are cancelled and waited for) and give the
        staging ring, its buffer-table handles and the observables back to the megakernel's
        streams (vyre.ingest.leases). Scan slots that an interrupted call left running are
        waited for (``timeout``) first; if they do not finish, the stream's buffers are
        never reused."""
        with self._exclusive("close"):
            if self.reader is not None:
                self.reader.close()
                self.reader = None
            if self.staging is None:
                return
            leases = self._leases
            settled = False
            try:
                self._settle_orphans()
                settled = True
            except Exception:  # noqa: BLE001, S110  # still running: never reused (below)
                pass
            finally:  # a Ctrl-C during the wait gives nothing back either
                if settled:
                    if self._lease is not None:
                        leases.give_staging(self._lease)
                    if self._obs_token is not None:
                        leases.release_observables(self._obs_token)
                else:
                    leases.keep(self._lease, dict(self._dfas))
                self._lease = None
                self._obs_token = None
                self._dfas.clear()
                self.staging = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> str:
        """The read path in use: ``io_uring+fixed``, ``io_uring`` or ``fallback``."""
        return self._require_open()[1].path

    def _require_open(self) -> tuple[StagingRing, Reader]:
        if self.staging is None or self.reader is None:
            raise PipelineError("the stream is not open",
                                "use `with GpuStream(mk, ...) as s:` or call open()")
        return self.staging, self.reader

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
        self._dfas.clear()

    # ------------------------------------------------------------------ public work
    def scan(self, sources: Source | Iterable[Source], dfa: Any, *, per_pattern: bool = False,
             matches: bool = False, max_matches: int | None = None,
             first_per_pattern: int | None = None) -> dict[Any, Any]:
        """Count pattern matches of ``dfa`` (a :class:`vyre.ingest.dfa.Dfa`) in each source.

        ``sources``: a path or a list of them; bytes-like data (``bytes``, ``bytearray``,
        ``memoryview``, a NumPy array: its raw bytes in C order, ``io.BytesIO``: its buffer)
        and open files (anything with ``fileno()``, read whole from offset 0) go through the
        same staging path. Device arrays (CuPy, PyTorch CUDA tensors: anything with
        ``__cuda_array_interface__`` or a CUDA ``__dlpack__``; their raw bytes in C order,
        which must be contiguous) are scanned in place on the GPU, without a host copy
        (vyre.ingest.device_source); on the CPU backend they are refused
        (:class:`InvalidValueError`). A DLPack object in host memory (a CPU tensor) is read
        as host data.
        Returns ``{key: count}``: the key of a path is the path as given (each path once),
        of any other source its position in ``sources``. The count is the number of byte
        positions where at least one pattern ends, exactly as if the whole source were
        scanned at once.

        With ``per_pattern=True`` or ``matches=True`` the same pass (DFA_MATCH slots) also
        counts every pattern and returns ``{key: ScanResult}``: ``positions`` (the count
        above), ``per_pattern`` (``uint64``, one per pattern id: every occurrence, overlapping
        ones too), and with ``matches=True`` the records ``(pattern, offset)`` (``offset`` =
        one past the match's last byte, 64-bit) sorted by offset then pattern, at most
        ``first_per_pattern`` per pattern and ``max_matches`` in all (the earliest), and
        ``dropped``: the matches not returned (those caps, or a chunk's ``match_records``
        filled). A match across a chunk or slice boundary is counted and recorded once.
        Raises :class:`IoUringError` (open / read failures),
        :class:`FileChangedError`, :class:`SlotFaultError` or :class:`BackendError`, after
        draining what is in flight; :class:`PipelineError` when another thread is in a call
        on this stream.
        """
        from vyre.ingest.dfa import Dfa

        if not isinstance(dfa, Dfa):
            raise InvalidTypeError(f"dfa must be a vyre.ingest.dfa.Dfa, not {type(dfa).__name__}",
                                   "compile the patterns first: dfa = build_dfa([b'needle'])")
        opts = match_options(per_pattern, matches, max_matches, first_per_pattern)
        jobs, keys = jobs_for(sources)
        with self._exclusive("scan"):
            staging, _ = self._require_open()
            self._settle_orphans()
            return self._scan(staging, jobs, keys, dfa, opts)

    def _scan(self, staging: StagingRing, jobs: list[Job], keys: list[Any],
              dfa: Any, opts: MatchOptions | None = None) -> dict[Any, Any]:
        ctx = int(dfa.context)
        if ctx > staging.data_offset:
            raise InvalidValueError(
                f"the DFA needs {ctx} context bytes but the stream reserves "
                f"{staging.data_offset}", f"create the GpuStream with max_context={ctx} (or more)")
        if ctx > self.chunk_bytes:
            raise InvalidValueError(
                f"the DFA's context ({ctx} bytes) is longer than a chunk ({self.chunk_bytes})",
                f"use chunk_bytes >= {ctx}: a chunk's re-read context must cover the longest "
                "pattern")
        # before the call takes a match buffer (only its end gives one back)
        device_source.check_backend(self.mk, jobs)
        table = self._table_handle(dfa)
        abi = _abi()
        op = abi["OP_DFA_SCAN"]
        slices = self.slices
        ms: MatchScan | None = None
        if opts is not None:
            ids = self._table_handle(dfa, "ids")
            cap = MatchScan.slice_cap(opts, slices, self.match_records)
            size = MatchScan.nbytes(self.depth, len(dfa.patterns), slices, cap,
                                    abi["DFA_RECORD_WORDS"])
            ms = MatchScan(self, abi, dfa, opts, slices, self.match_records, table, ids,
                           self._leases.take_match_buffer(
                               self.mk, size, device=hasattr(getattr(self.mk, "backend", None),
                                                             "copy_from_device")))
            op = abi["OP_DFA_MATCH"]
        no_state = abi["DFA_NO_STATE"]
        u32_max = abi["U32_MAX"]
        obs_word = self.obs_base
        observables = self.mk.observables
        last = [int(observables[obs_word + i]) for i in range(self.depth)]

        def publish(slot: int, buf_off: int, c: int, n: int, file_off: int, job: Job) -> list[int]:
            # slice j counts [s_j, s_{j+1}) of the chunk, after re-reading up to `ctx` bytes
            # before it (the chunk's own bytes, or its context c)
            head = max(ctx, _HEAD_BYTES)
            if c == 0 and ctx and n > head + ctx:
                # a file's first chunk has no context before it: as one slot (a6 = 0) it could
                # not be split over lanes or warps. A short head goes alone; the rest re-reads
                # its context from the head.
                k = max(1, min(slices, (n - head) // ctx))
                bounds = [0] + [head + (n - head) * j // k for j in range(k + 1)]
            else:
                k = max(1, min(slices, n // max(ctx, 1)))
                bounds = [n * j // k for j in range(k + 1)]
            rows = []
            for j in range(len(bounds) - 1):
                lo, hi = bounds[j], bounds[j + 1]
                cj = c if j == 0 else min(ctx, lo + c)
                rows.append([table, self._scan_handle, buf_off + lo - cj, cj + hi - lo, no_state,
                             obs_word + slot, cj])
            if ms is not None:  # DFA_MATCH over the same rows; record offsets from each a2
                counters = ms.published(slot, [file_off + bounds[j] - rows[j][6]
                                               for j in range(len(rows))], job, n)
                rows = [ms.args(slot, j, r, counters) for j, r in enumerate(rows)]
            if len(rows) > 1 and hasattr(self.mk, "submit_many"):
                try:
                    return list(self.mk.submit_many(np.full(len(rows), op, np.uint32),
                                                    np.array(rows, np.uint32),
                                                    tenant=self.tenant, timeout=self.timeout))
                except BaseException as e:  # the slices already out still read the slot
                    e.published = list(getattr(e, "published", None) or ())  # type: ignore[attr-defined]
                    raise
            return _submit_each(self.mk, [(op, r) for r in rows], self.tenant, self.timeout)

        def retire(slot: int, job: Job) -> None:
            v = int(observables[obs_word + slot])
            job.count += (v - last[slot]) & u32_max  # one chunk adds < 2**32
            last[slot] = v
            if ms is not None:
                ms.retire(slot, job)

        copy = self._copy_chunk if self._scan_handle != self.handle else None
        on_device = [j for j in jobs if isinstance(j, device_source.DeviceJob)]
        try:
            ScanPipeline(self, [j for j in jobs if j not in on_device], ctx, publish, retire,
                         copy).run()
            device_source.scan_in_place(self, on_device, ctx, publish, retire)
        finally:
            if not self._orphans:  # no slot reads the table any more: it may be reused
                self._dfas.pop(id(dfa), None)
            if ms is not None:  # slots left running still write it: never reused then
                if self._orphans:
                    self._leases.keep((ms.out_handle, ms.raw))
                else:
                    self._leases.give_match_buffer((ms.out_handle, ms.raw))
        if ms is not None:
            return {key: ms.result(job, job.count) for key, job in zip(keys, jobs, strict=True)}
        return {key: job.count for key, job in zip(keys, jobs, strict=True)}

    def ingest(self, paths: Source | Iterable[Source], slot_fn: SlotFn, *,
               context: int = 0) -> dict[str, Any]:
        """Stream source(s) and publish ``slot_fn(handle, offset_in_buffer, length,
        file_offset)`` for every chunk that lands.

        ``slot_fn`` returns ``[(opcode, args), ...]`` to publish over the chunk: the chunk's
        ``length`` bytes sit at ``offset_in_buffer`` of buffer ``handle``, and with
        ``context > 0`` the ``min(context, file_offset)`` file bytes before the chunk sit just
        before it. The staging slot is reused only once all those tickets are DONE.
        Sources are those of :meth:`scan`.
        Returns ``{"bytes", "chunks", "tickets", "files"}``.
        """
        if not callable(slot_fn):
            raise InvalidTypeError(f"slot_fn must be callable, not {type(slot_fn).__name__}",
                                   "pass a function (handle, offset, length, file_offset) -> "
                                   "[(opcode, args), ...]")
        context = check_int("context", context, 0)
        jobs, _ = jobs_for(paths)
        if any(isinstance(j, device_source.DeviceJob) for j in jobs):
            raise InvalidValueError("ingest reads sources into host staging; device arrays "
                                    "are scanned in place by scan() only",
                                    "copy the array to the host (cupy.asnumpy(x), "
                                    "x.cpu().numpy()) to ingest it, or use scan()")
        with self._exclusive("ingest"):
            staging, _ = self._require_open()
            self._settle_orphans()
            if context > staging.data_offset:
                raise InvalidValueError(
                    f"context {context} is outside 0..{staging.data_offset}",
                    f"create the GpuStream with max_context={context} (or more)")

            def publish(slot: int, buf_off: int, c: int, n: int, file_off: int,
                        job: Job) -> list[int]:
                ops = slot_fn(self.handle, buf_off, n, file_off)
                return _submit_each(self.mk, [(int(o), list(a)) for o, a in ops or ()],
                                    self.tenant, self.timeout)

            before = (self._t.bytes, self._t.chunks, self._t.slots)
            ScanPipeline(self, jobs, context, publish, None).run()
            return {"bytes": self._t.bytes - before[0], "chunks": self._t.chunks - before[1],
                    "tickets": self._t.slots - before[2], "files": len(jobs)}

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
    def _table_handle(self, dfa: Any, part: str = "table") -> int:
        cuda = getattr(getattr(self.mk, "backend", None), "name", "cpu") == "cuda"
        handle = self._leases.table_handle(self.mk, dfa, cuda, part)
        self._dfas[id(dfa)] = dfa  # its table is not reused while this call's slots run
        return handle

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
        staging, _ = self._require_open()
        assert self._dev is not None  # only set as the copy of scans with a device mirror
        at = staging.data_start(tag) - c
        return self.mk.backend.copy_to_device_async(
            self._dev[1], staging.data_start(mirror) - c, staging.array[at:at + c + n])
