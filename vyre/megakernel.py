"""The :class:`Megakernel` facade: one ring, one backend, tickets, backpressure, watchdog.

The facade owns the ring as a circular queue. Ticket ``t`` (a plain int) is published into
slot ``t % slot_count``, strictly in ticket order; a slot is reused only after the host has
*retired* the ticket that last used it (seen it DONE or FAULT). Workers on either backend
take tickets in the same order and poll exactly their ticket's slot, so every published slot
executes exactly once. See docs/facade.md.
"""
from __future__ import annotations

import operator
import os
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from vyre import _wire, argcheck, wire
from vyre.backends import BACKENDS, make_backend
from vyre.backends.base import Backend
from vyre.call import CallMixin
from vyre.descriptors import BatchDescriptor, SlotDescriptor, SlotOpcode, WindowDescriptor
from vyre.errors import (
    BackendError,
    InvalidTypeError,
    InvalidValueError,
    PipelineError,
    QueueFullError,
    SlotFaultError,
    WaitTimeoutError,
)
from vyre.ops import Op, fault_of
from vyre.ops.registry import OpRegistry
from vyre.protocol import (
    CTRL_DONE_COUNT,
    CTRL_EPOCH,
    CTRL_FAULT_COUNT,
    CTRL_HEARTBEAT,
    CTRL_SHUTDOWN,
    OBSERVABLE_BASE,
    OP_MAX_PRIMITIVE,
    PACKED_MAX_INNER_OPCODE,
    RESULT_WORDS,
    SLOT_OPCODE,
    SLOT_RESULT,
    SLOT_STATUS,
    SLOT_WORDS,
    TENANT_MASK_COUNT,
    U32_MAX,
    FaultReason,
    Opcode,
    SlotStatus,
)

Ticket = int

# wait granularity: how often a blocked caller looks at the watchdog (heartbeat, progress)
_WATCH_INTERVAL_S = 0.005
# the longest one wait for the facade lock lasts: an asynchronous exception aimed at a waiting
# thread is taken between two (see Megakernel._lock_within)
_LOCK_SLICE_S = 0.005
# how many faulted tickets wait() remembers (the oldest are forgotten beyond this)
_FAULT_MEMORY = 1 << 16
_LIVE: weakref.WeakSet[Megakernel] = weakref.WeakSet()
# submit_many rings the doorbell every this many slots while it writes, so a GPU starts
# draining a large batch before the host has written all of it (8192 slots = 512 KiB)
_DOORBELL_EVERY = 8192
_EMPTY, _DONE, _FAULT = int(SlotStatus.EMPTY), int(SlotStatus.DONE), int(SlotStatus.FAULT)


def _note_published(err: BaseException, first: int, end: int) -> None:
    """Tell the caller of a publish that raised which of its tickets are out anyway."""
    if end > first and getattr(err, "published", None) is None:
        try:
            err.published = range(first, end)  # type: ignore[attr-defined]
        except AttributeError:  # an exception type without a __dict__
            pass


def _lock_wait(seconds: float) -> float:
    """A ``Lock.acquire`` timeout for ``seconds`` left: clamped to 0..TIMEOUT_MAX (an
    infinite or huge deadline means no limit, -1)."""
    if seconds >= threading.TIMEOUT_MAX:
        return -1.0
    return max(0.0, seconds)


class Megakernel(CallMixin):
    """A persistent interpreter fed through a ring of 64-byte slots (see docs/facade.md).

    Args:
        backend: ``"auto"`` (CUDA when PyCUDA and a GPU are present, else CPU), ``"cpu"`` or
            ``"cuda"``.
        slot_count: ring slots (1 .. 1 048 576).
        observable_slots: user-visible result words (``observables``).
        tenants: tenants authorized in the control words, 1 .. 29 (tenant 0 is the system
            tenant; the control block has 29 tenant masks).
        workers: CPU worker threads (at most ``vyre.backends.cpu.max_workers()``), or CUDA
            blocks per SM; ``None`` picks a default.
        debug_records: capacity of the PRINTF debug log.
        io_slots: IO-queue slots for LOAD_MISS (0 .. 64).
        stall_timeout: seconds during which nothing may move (no slot finishes, the oldest
            waited-on slot keeps its status, no long slot reports progress) before ``wait``
            raises :class:`BackendError` instead of hanging. Positive and finite.
        heartbeat_timeout: seconds without a HEARTBEAT change (with work pending and no slot
            finishing) after which the backend is declared dead. Positive and finite.
        **backend_options: passed to the backend (e.g. ``test_hooks=True`` on the CPU).

    Every argument is checked for type and range (:class:`InvalidTypeError`,
    :class:`InvalidValueError`) before anything is allocated.
    """

    def __init__(
        self,
        backend: str = "auto",
        slot_count: int = 4096,
        observable_slots: int = 1024,
        tenants: int = 1,
        workers: int | None = None,
        *,
        debug_records: int = 1024,
        io_slots: int = 64,
        stall_timeout: float = 5.0,
        heartbeat_timeout: float = 2.0,
        **backend_options: Any,
    ) -> None:
        if not isinstance(backend, str) or backend not in BACKENDS:
            raise (InvalidValueError if isinstance(backend, str) else InvalidTypeError)(
                f"backend={backend!r} is not a backend name",
                f"pass one of {', '.join(map(repr, BACKENDS))}")
        for name, value in (("slot_count", slot_count), ("observable_slots", observable_slots),
                            ("debug_records", debug_records), ("io_slots", io_slots)):
            argcheck.count(name, value, 0, 1 << 62)  # types here; the encoders own the caps
        tenants = argcheck.count("tenants", tenants, 1, TENANT_MASK_COUNT)
        if workers is not None:
            workers = argcheck.count("workers", workers, 1, 1 << 31)  # the backend caps it
        stall_timeout = argcheck.seconds("stall_timeout", stall_timeout)
        heartbeat_timeout = argcheck.seconds("heartbeat_timeout", heartbeat_timeout)
        # encode first: the encoders own the caps and their error messages
        control = wire.encode_control(False, tenants, observable_slots, slot_count)
        wire.encode_empty_ring(slot_count)
        wire.encode_empty_debug_log(debug_records)
        self._backend: Backend = make_backend(
            backend,
            slot_count=slot_count,
            observable_slots=observable_slots,
            debug_records=debug_records,
            io_slots=io_slots,
            workers=workers,
            **backend_options,
        )
        self._backend.control.view(np.uint8)[:] = np.frombuffer(control, dtype=np.uint8)
        self.slot_count = int(slot_count)
        self.observable_slots = int(observable_slots)
        self.stall_timeout = float(stall_timeout)
        self.heartbeat_timeout = float(heartbeat_timeout)
        self._ring = self._backend.ring
        self._control = self._backend.control
        self._doorbell = getattr(self._backend, "doorbell", None)
        # An RLock because its release() refuses a thread that does not hold it: every taker
        # releases in a `finally` that also runs when an interrupt landed before (or just
        # after) the acquire, and only a non-holder's release may fail there (the facade
        # never takes it twice in one thread)
        self._lock = threading.RLock()
        self._published = 0  # next ticket to hand out
        self._retired = 0  # every ticket below this is DONE or FAULT and seen by the host
        # faulted tickets, the most recent _FAULT_MEMORY of them (dict: insertion-ordered set);
        # every wait() that covers one raises, drain() counts them without raising
        self._faulted: dict[int, None] = {}
        self._notified = 0  # the doorbell as last written
        # (faults counted, ticket after the last counted one): one store updates both, so an
        # interrupted retire that records a fault again cannot count it twice
        self._faults = (0, 0)
        # a publish in progress (first ticket, count, mark): if an exception interrupts it,
        # _settle() finds out from the ring (or the mark) which of its slots were written
        self._publishing: tuple[int, int, np.ndarray | None] | None = None
        # publish_many's own record of what it wrote where no doorbell is passed to it
        self._mark = np.zeros(1, np.uint64)
        self._statuses = (self._ring, self._ring[::SLOT_WORDS])
        self._started = False
        self._stopped = False
        self._init_ops()
        self._calls = None  # vyre.call.CallPath, made by the first call
        self._stopping = False  # shutdown() is stopping the workers (waiters say so)
        self._unusable: str | None = None  # why submits are refused (shut down, forked)
        self._pid = os.getpid()
        _LIVE.add(self)

    # ------------------------------------------------------------------ lifetime
    def start(self) -> Megakernel:
        """Launch the workers. Returns self so ``Megakernel(...).start()`` chains."""
        self._check_usable()
        if self._stopped:
            raise BackendError("this megakernel was shut down", "create a new Megakernel")
        if not self._started:
            self._backend.start()
            self._started = True
        return self

    def __enter__(self) -> Megakernel:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.shutdown(drain=exc_type is None)

    def shutdown(self, drain: bool = True, timeout: float = 10.0) -> None:
        """Stop the workers. With ``drain`` first wait (at most ``timeout``) for every
        published slot; the hard stop itself also waits at most ``timeout``. Idempotent."""
        if self._stopped:
            return
        if self._forked():
            self._stopped = True  # the workers are the parent's: nothing here to stop
            return
        drain_error: BaseException | None = None
        if drain and self._started:
            try:
                self.drain(timeout=timeout)
            except BaseException as err:  # still stop the workers, then report
                drain_error = err
        if self._calls is not None:
            self._calls.close()  # asynchronous calls still queued or in flight fail
        self._unusable = "shut down"  # from now on submits are refused at once
        if self._started:
            self._stopping = True
            self._backend.stop(timeout)  # raises if the workers did not stop: call again
        self._stopped = True
        self._backend.close()
        # where closing replaced the memory by host copies, read those from now on
        self._ring, self._control = self._backend.ring, self._backend.control
        if drain_error is not None:
            raise drain_error

    close = shutdown

    @property
    def backend(self) -> Backend:
        """The backend executing the ring (``.name`` is ``"cpu"`` or ``"cuda"``)."""
        return self._backend

    # ------------------------------------------------------------------ submitting
    def submit(
        self,
        opcode: int,
        args: Sequence[int] = (),
        tenant: int = 0,
        priority: int = 2,
        timeout: float | None = None,
    ) -> Ticket:
        """Publish one slot; returns its ticket. Waits for a free slot when the ring is full.

        ``opcode``: an int, a registered op (its handle or its name), a ``SlotOpcode``; or a
        whole typed descriptor (``SlotDescriptor``: returns its ticket; ``BatchDescriptor``
        / ``WindowDescriptor``: publishes all of it or nothing, returns the ``range`` of
        tickets) with ``args`` and ``tenant`` left out. A user opcode must be a registered op.
        """
        if self._unusable is not None:
            self._check_usable()
        if timeout is not None:
            timeout = argcheck.timeout("timeout", timeout)
        if type(opcode) is not int or opcode > OP_MAX_PRIMITIVE:
            if isinstance(opcode, int):  # IntEnum members, user and extension opcodes
                if OP_MAX_PRIMITIVE < opcode <= U32_MAX and not wire.is_system(opcode):
                    self._check_registered(int(opcode))
            else:
                typed = self._typed_submit(opcode, args, tenant, priority, timeout)
                if typed is not None:
                    return typed
                opcode = self._user_opcode(opcode)
        lock = self._lock
        try:  # not `with`: the lock wait is bounded by the timeout (see _lock_for_publish)
            deadline = None
            if not lock.acquire(False):
                deadline = self._lock_for_publish(timeout)
            if self._publishing is not None:
                self._settle()
            t = self._published
            try:
                if t - self._retired >= self.slot_count:
                    self._make_room(1, timeout, deadline)
                slot = t % self.slot_count
                self._ring[slot * SLOT_WORDS] = _EMPTY  # _begin(t, 1), inlined: per-call cost
                self._publishing = (t, 1, None)
                wire.publish_slot(self._ring, slot, tenant, opcode, args, priority)
                self._published = t + 1
                self._publishing = None
                self._notify(t + 1)
            except BaseException as err:  # Ctrl-C included: account for what was written
                self._abort_publish(err, t)
                raise
        finally:
            try:
                lock.release()
            except RuntimeError:  # not taken: the lock wait timed out or was interrupted
                pass
        return t

    def submit_packed(
        self, ops: Sequence[tuple[int, Sequence[int]]], tenant: int = 0,
        timeout: float | None = None,
    ) -> Ticket:
        """Publish one PACKED_SLOT running ``ops`` (``[(u8 opcode, args), ...]``) in order."""
        if self._unusable is not None:
            self._check_usable()
        if timeout is not None:
            timeout = argcheck.timeout("timeout", timeout)
        ops = self._check_packed(ops)
        lock = self._lock
        try:
            deadline = None
            if not lock.acquire(False):
                deadline = self._lock_for_publish(timeout)
            if self._publishing is not None:
                self._settle()
            t = self._published
            try:
                # pack before waiting for room: packing errors come first (docs/spec.md §4.2)
                wire.pack_ops(ops)
                if t - self._retired >= self.slot_count:
                    self._make_room(1, timeout, deadline)
                self._begin(t, 1)
                wire.publish_packed(self._ring, t % self.slot_count, tenant, ops)
                self._published = t + 1
                self._publishing = None
                self._notify(t + 1)
            except BaseException as err:
                self._abort_publish(err, t)
                raise
        finally:
            try:
                lock.release()
            except RuntimeError:  # not taken: the lock wait timed out or was interrupted
                pass
        return t

    def submit_window(
        self, tenant: int, opcode: int, ticket: int,
        required: Sequence[Sequence[int]], lookahead: Sequence[Sequence[int]],
        timeout: float | None = None,
    ) -> range:
        """Publish a window (docs/spec.md §10): one slot per payload, args
        ``[ticket, class, *payload]``."""
        items = wire.window_items(opcode, ticket, required, lookahead)
        return self._submit_items(items, tenant, timeout)

    def submit_batch(
        self, items: Sequence[tuple[int, Sequence[int]]], tag: int, tenant: int = 0,
        timeout: float | None = None,
    ) -> range:
        """Publish ``items`` then a BATCH_FENCE ``[n, tag]``; returns the n+1 tickets.

        ``items`` may be a :class:`~vyre.descriptors.BatchDescriptor` (its items keep their own
        tenant and priority; its ``start_slot`` is not used, the facade places slots)."""
        if isinstance(items, BatchDescriptor):
            return self._submit_batch_descriptor(items, tag, tenant, timeout)
        items = list(items) + [(int(Opcode.BATCH_FENCE), (len(items), tag))]
        return self._submit_items(items, tenant, timeout)

    def submit_many(
        self, opcodes: np.ndarray, args: np.ndarray | None = None, tenant: int = 0,
        timeout: float | None = None, notify: bool = True,
    ) -> range:
        """Bulk publish from numpy: ``opcodes`` uint32 ``(n,)``, ``args`` uint32 ``(n, k<=12)``.

        Everything is validated before the first slot is written; a call larger than the
        free part of the ring is published in pieces as slots retire. The GPU's doorbell is
        rung every ``_DOORBELL_EVERY`` slots while they are written and after the last one, so
        the kernel starts before the host is done. With ``notify=False`` (and ``n`` fitting
        the free part of the ring) the GPU is not told: :meth:`notify` releases everything
        published so far at once, which is how the kernel's own drain rate is measured. CPU
        workers watch the slots themselves and start at once.
        """
        if self._unusable is not None:
            self._check_usable()
        opcodes = _as_u32(opcodes, "opcodes")
        self._check_many(opcodes)
        n = int(opcodes.shape[0])
        if args is not None:
            args = _as_u32(args, "args")
        if timeout is not None:
            timeout = argcheck.timeout("timeout", timeout)
        lock = self._lock
        try:
            deadline = None
            if not lock.acquire(False):
                deadline = self._lock_for_publish(timeout)
            if self._publishing is not None:
                self._settle()
            first = self._published
            try:
                free = self.slot_count - (first - self._retired)
                if n > free:
                    # published in pieces: validate the whole call first (all-or-nothing)
                    wire.validate_many(tenant, opcodes, args)
                done = 0
                while done < n:
                    free = self.slot_count - (self._published - self._retired)
                    if free <= 0:
                        try:
                            self._make_room(1, timeout, deadline)
                            deadline = None  # each wait for room has the whole timeout
                        except PipelineError as err:  # the first `done` ops are out: say so
                            err.published = range(first, first + done)
                            raise
                        continue
                    k = min(free, n - done)
                    tell = notify or done + k < n
                    early = tell and self._doorbell is not None
                    whole = k == n  # no views to make (a per-call cost for small calls)
                    start = self._published
                    # what publish_many stores last after its writes tells _settle() how many
                    # of them happened if an interrupt lands before the next line is reached
                    mark = self._doorbell if early else self._mark
                    self._publishing = (start, k, mark)
                    wire.publish_many(self._ring, start % self.slot_count, tenant,
                                      opcodes if whole else opcodes[done:done + k],
                                      args if whole or args is None else args[done:done + k],
                                      doorbell=mark, first_ticket=start,
                                      notify_every=_DOORBELL_EVERY,
                                      assume_free=True)  # retired: DONE or EMPTY
                    done += k
                    self._published = start + k
                    self._publishing = None
                    if early:  # publish_many left the doorbell at self._published
                        self._notified = self._published
                        self._backend.kick()
                    elif tell:
                        self._notify(self._published)
            except BaseException as err:
                self._abort_publish(err, first)
                raise
        finally:
            try:
                lock.release()
            except RuntimeError:  # not taken: the lock wait timed out or was interrupted
                pass
        return range(first, first + n)

    def notify(self) -> None:
        """Tell the workers about every slot published so far (see ``submit_many(notify=)``)."""
        if self._unusable is not None:
            self._check_usable()
        lock = self._lock
        try:
            if lock.acquire(False) or self._lock_within(-1.0):
                if self._publishing is not None:
                    self._settle()
                self._notify(self._published)
        finally:
            try:
                lock.release()
            except RuntimeError:  # not taken: interrupted while waiting
                pass

    def _submit_items(self, items, tenant: int, timeout: float | None) -> range:
        if self._unusable is not None:  # before judging the items: say why nothing is taken
            self._check_usable()
        entries = [(tenant, self._user_opcode(op) if type(op) is not int or op > OP_MAX_PRIMITIVE
                    else op, args, 2) for op, args in items]
        return self._submit_entries(entries, timeout)

    def _ring_doorbell_if_behind(self, wait: float = -1) -> None:
        """A waiter must not wait on slots the workers were not told about (notify=False).
        ``wait``: how long the lock may take (a holder publishing or making room rings it)."""
        if self._notified >= self._published:
            return
        lock = self._lock
        try:
            if lock.acquire(False) or (wait != 0 and self._lock_within(wait)):
                if self._publishing is not None:
                    self._settle()
                self._notify(self._published)
        finally:
            try:
                lock.release()
            except RuntimeError:  # not taken: timed out, or interrupted while waiting
                pass

    def _notify(self, published: int) -> None:
        # the doorbell first: an interrupt between the two leaves _notified behind (a later
        # notify repeats the store), never ahead of what the workers were told
        if self._doorbell is not None:
            # release: a GPU that sees the count also sees the slots (docs/spec.md §9)
            _wire.store_release(self._doorbell, 0, published)
        self._notified = published
        self._backend.kick()

    # ------------------------------------------------------------------ interrupt safety
    # An exception (a Ctrl-C's KeyboardInterrupt included) may land between any two steps of
    # a publish or a retire. Each step below leaves a state from which the next call under
    # the lock recovers: a publish records what it is about to write (_publishing) and the
    # target slots read EMPTY until written, so _settle() can tell from the ring which were;
    # a retire that reset FAULT slots but did not record them leaves EMPTY slots inside the
    # published span, which _retire_locked() recognises as those faults (docs/facade.md).
    def _begin(self, first: int, n: int) -> None:
        """Before writing the slots of tickets first..first+n-1 (retired: DONE or EMPTY):
        make them EMPTY, then record the publish, so a written one is recognisable."""
        self._clear_statuses(first, n)
        self._publishing = (first, n, None)

    def _status_view(self) -> np.ndarray:
        """The slots' status words (a strided view of the ring, made again if the ring is
        replaced, as shutdown() does)."""
        ring, view = self._statuses
        if ring is not self._ring:
            view = self._ring[::SLOT_WORDS]
            self._statuses = (self._ring, view)
        return view

    def _clear_statuses(self, first: int, n: int) -> None:
        status, slots = self._status_view(), self.slot_count
        s = first % slots
        if n == 1:
            status[s] = _EMPTY
        elif s + n <= slots:
            status[s:s + n] = _EMPTY
        else:
            status[s:] = _EMPTY
            status[:s + n - slots] = _EMPTY

    def _abort_publish(self, err: BaseException, first: int) -> None:
        """Settle a publish that ``err`` interrupted (lock held) and note on ``err`` the
        tickets from ``first`` on that it did publish."""
        self._settle()
        _note_published(err, first, self._published)

    def _settle(self) -> None:
        """Finish the bookkeeping of a publish an exception interrupted (lock held): count
        the slots it wrote as published. Idempotent, so an interrupt inside it is harmless."""
        pending = self._publishing
        if pending is None:
            return
        first, n, mark = pending
        if mark is not None:  # publish_many stores first + written into it after writing
            written = min(max(int(mark[0]) - first, 0), n)
        else:  # all-or-nothing writes into slots made EMPTY first (_begin)
            idx = (first + np.arange(n)) % self.slot_count
            wrote = self._status_view()[idx] != _EMPTY
            written = n if wrote.all() else int(wrote.argmin())
        self._published = max(self._published, first + written)
        self._publishing = None
        if self._notified < self._published:
            self._notify(self._published)

    def _lock_within(self, wait: float) -> bool:
        """Take the facade lock within ``wait`` s (negative: no limit); False if it stayed
        taken. Called once a non-blocking acquire failed, inside the caller's ``try`` whose
        ``finally`` releases it.

        The wait is made of short slices because a thread blocked in one lock acquire cannot
        take an asynchronous exception aimed at it (PyThreadState_SetAsyncExc: a debugger, a
        thread-interrupting library, an interrupt forwarded to a thread) until the holder
        lets go; and on CPython 3.11 such a pending exception makes every thread that has a
        trace function (coverage, a debugger) spin at its next function entry until its
        target takes it: the holder included, which then never lets go (docs/facade.md).
        """
        lock = self._lock
        if wait < 0:
            while not lock.acquire(timeout=_LOCK_SLICE_S):
                pass
            return True
        end = time.monotonic() + wait
        while not lock.acquire(timeout=max(0.0, min(_LOCK_SLICE_S, end - time.monotonic()))):
            if time.monotonic() >= end:
                return False
        return True

    def _lock_for_publish(self, timeout: float | None) -> float | None:
        """The facade lock for a publish whose non-blocking acquire failed: another thread
        publishes, or waits for room in a full ring. Waits at most ``timeout`` (None: no
        limit), raising QueueFullError then; returns the deadline, which the wait for room
        shares (None without a timeout)."""
        if timeout is None:
            self._lock_within(-1.0)
            return None
        deadline = time.monotonic() + timeout
        if not self._lock_within(timeout):
            raise QueueFullError(
                f"the ring stayed busy for {timeout} s: another thread held it (publishing, or "
                "waiting for room in a full ring)",
                "wait for earlier tickets, raise the timeout, or use a larger slot_count",
                queue="ring")
        return deadline

    def _make_room(self, needed: int, timeout: float | None,
                   deadline: float | None = None) -> None:
        """Retire finished slots until ``needed`` are free (caller holds the lock), by
        ``deadline`` (default: ``timeout`` s from now; neither: no limit)."""
        if not self._started:
            raise BackendError("the ring is full and the megakernel is not running, so no slot "
                               "will free up", "call start() (or use `with Megakernel(...)`) "
                               "before submitting more than slot_count slots")
        if self._notified < self._published:
            self._notify(self._published)  # the caller holds the lock
        if deadline is None and timeout is not None:
            deadline = time.monotonic() + timeout
        watch = _Watch(self)
        while self.slot_count - (self._published - self._retired) < needed:
            self._check_running()
            self._retire_locked()
            if self.slot_count - (self._published - self._retired) >= needed:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise QueueFullError(
                    f"the ring is full: {self._published - self._retired} of {self.slot_count} "
                    f"slots in flight after waiting {timeout} s",
                    "wait for earlier tickets, raise the timeout, or use a larger slot_count",
                    queue="ring")
            wire.wait_retire(self._ring, self._retired % self.slot_count, 1, _WATCH_INTERVAL_S)
            watch.check(self._retired, self._published)

    # ------------------------------------------------------------------ user ops, results,
    # typed descriptors (docs/ops.md)
    def _init_ops(self) -> None:
        self._ops = OpRegistry()
        self._ops_lock = threading.Lock()  # one registration at a time (builds are slow)
        self._ops_telemetry: dict[str, Any] = {}

    def register_op(self, op: Op | str, source: str | None = None, opcode: int | None = None,
                    tenant: int = 0) -> Op:
        """Add a user op: ``register_op(name, source, opcode=None, tenant=0)`` or
        ``register_op(vyre.ops.Op(...))``. Returns the op with its opcode (picked when not
        given: the next free one from ``0x100``, or from the tenant's window).

        The backend compiles every registered op (through the pipeline cache) and switches
        its workers to the result, also while running: nothing published is lost, run twice
        or reordered. Registering the same op again returns it. Raises
        :class:`vyre.ops.OpBuildError` (compile errors, with the compiler's output) and
        :class:`InvalidValueError` (a name or opcode already taken); on error nothing changes.
        """
        if isinstance(op, Op):
            if source is not None or opcode is not None or tenant != 0:
                raise InvalidValueError("register_op(Op) takes no source, opcode or tenant",
                                        "set them on the Op, or call register_op(name, source, "
                                        "opcode=..., tenant=...)")
            wanted = op
        else:
            if source is None:
                raise InvalidValueError(f"register_op({op!r}) needs the op's C source",
                                        "call register_op(name, source) (docs/ops.md)")
            wanted = Op(op, source, opcode, tenant)
        if self._stopped:
            raise BackendError("this megakernel was shut down", "create a new Megakernel")
        with self._ops_lock:
            registry = self._ops.with_op(wanted)
            resolved = registry[wanted.name]
            if len(registry) == len(self._ops):
                return resolved  # already registered
            self._ops_telemetry = dict(self._backend.load_ops(registry.ops()))
            self._ops = registry  # published only once the workers run it
        return resolved

    def register_ops(self, ops: Iterable[Op]) -> list[Op]:
        """Register several :class:`vyre.ops.Op` with one build (all or none); returns them
        with their opcodes, in order. See :meth:`register_op`."""
        wanted = list(ops)
        if self._stopped:
            raise BackendError("this megakernel was shut down", "create a new Megakernel")
        with self._ops_lock:
            registry = self._ops
            for op in wanted:
                registry = registry.with_op(op)
            if len(registry) != len(self._ops):
                self._ops_telemetry = dict(self._backend.load_ops(registry.ops()))
                self._ops = registry
            return [registry[op.name] for op in wanted]

    @property
    def ops(self) -> Mapping[str, Op]:
        """The registered ops by name (read-only)."""
        return self._ops

    def result(self, ticket: Ticket, timeout: float | None = None) -> tuple[int, int, int, int]:
        """The ``RESULT_WORDS`` result words of ``ticket`` (waiting at most ``timeout`` s for
        it to finish): what a user op returned, or a built-in's value (LOAD_U32 the value,
        COMPARE_SWAP prev, ATOMIC_ADD the new value; docs/ops.md).

        Raises :class:`SlotFaultError` (with ``reason``, a :class:`vyre.protocol.FaultReason`,
        and ``details``) when the ticket ended in FAULT, and :class:`InvalidValueError` when
        its slot was reused by a later ticket since (the words are gone).
        """
        try:
            t = operator.index(ticket)
        except TypeError:
            raise InvalidTypeError(f"ticket must be an int, got {ticket!r}",
                                   "pass a ticket returned by submit()") from None
        if not 0 <= t < self._published:
            raise InvalidValueError(f"ticket {t} was never published (tickets are 0 .. "
                                    f"{self._published - 1})", "pass a ticket returned by submit()")
        if self._retired <= t:
            self._wait_retired(t + 1, timeout)
        lock = self._lock
        try:  # publishers hold it: the slot cannot be reused while we read it
            if not lock.acquire(False):
                self._lock_within(-1.0)
            words = self._slot_result(t)
        finally:
            try:
                lock.release()
            except RuntimeError:  # not taken: interrupted while waiting
                pass
        if words is None:
            raise InvalidValueError(
                f"the result of ticket {t} is gone: its slot {t % self.slot_count} was reused "
                f"by ticket {t + self.slot_count} or later",
                "read result(ticket) before slot_count more slots are submitted, or use a "
                "larger slot_count")
        status, res = words
        if status == int(SlotStatus.DONE):
            return res  # type: ignore[return-value]
        err = SlotFaultError(
            f"ticket {t} (slot {t % self.slot_count}) ended in FAULT{self._fault_text(t, res)}",
            "see docs/ops.md for what the reason means", ticket=t, slot=t % self.slot_count)
        fault = fault_of(res)
        err.reason = fault.reason  # type: ignore[attr-defined]
        err.details = (fault.d0, fault.d1, fault.d2)  # type: ignore[attr-defined]
        err.words = res  # type: ignore[attr-defined]
        raise err

    def _slot_result(self, t: int) -> tuple[int, tuple[int, ...]] | None:
        """(status, result words) of retired ticket ``t``'s slot, or None when reused."""
        if t + self.slot_count < self._published:
            return None
        base = (t % self.slot_count) * SLOT_WORDS
        status = int(self._ring[base + SLOT_STATUS])
        if status == int(SlotStatus.EMPTY):  # retiring resets a FAULT slot to EMPTY
            status = int(SlotStatus.FAULT)
        words = self._ring[base + SLOT_RESULT: base + SLOT_RESULT + RESULT_WORDS]
        res = tuple(int(w) for w in words)
        return status, res

    def _fault_text(self, t: int, res: Sequence[int] | None = None) -> str:
        """': <reason> (d0, d1, d2)' of faulted ticket t while its slot holds it, else ''."""
        if res is None:
            got = self._slot_result(t) if self._retired > t else None
            if got is None or got[0] != int(SlotStatus.FAULT):
                return ""
            res = got[1]
        reason = FaultReason(res[0]).name if res[0] in FaultReason._value2member_map_ else res[0]
        return f": {reason} (details {res[1]}, {res[2]}, {res[3]})"

    def _ops_info(self) -> dict[str, Any]:
        """Telemetry of the user ops: names -> opcodes, the latest build (memory / disk /
        build and its seconds) and the pipeline cache's counters."""
        from vyre.ops.cache import default_cache

        info: dict[str, Any] = {"registered": {op.name: op.opcode for op in self._ops.values()},
                                "last_build": dict(self._ops_telemetry)}
        if len(self._ops):
            info["cache"] = default_cache().stats()
        return info

    def _user_opcode(self, opcode: Any) -> int:
        """The u32 of an opcode given as an int, an op, an op's name or a SlotOpcode; a user
        opcode must be one of a registered op (or the backend's own)."""
        if isinstance(opcode, str):
            try:
                return int(self._ops[opcode].opcode)  # type: ignore[arg-type]
            except KeyError as err:
                raise InvalidValueError(str(err.args[0]),
                                        "register it first: mk.register_op(name, source)") from None
        if isinstance(opcode, SlotOpcode):
            value = opcode.into_wire()
        elif isinstance(opcode, Op):
            value = operator.index(opcode)
            mine = self._ops.by_opcode(value)
            if mine is not None and (mine.name, mine.source) != (opcode.name, opcode.source):
                raise InvalidValueError(
                    f"op {opcode.name!r} is not this megakernel's op {value:#x} ({mine.name!r})",
                    "submit the handle register_op() returned on this megakernel")
        else:
            try:
                value = operator.index(opcode)
            except TypeError:
                raise InvalidTypeError(f"opcode must be an integer, op or op name, got {opcode!r}",
                                       "pass a vyre.Opcode, a registered op or its name") from None
        if 0 <= value <= U32_MAX and not wire.is_system(value):
            self._check_registered(value)
        return value

    def _check_registered(self, value: int) -> None:
        if value not in self._ops.opcodes and value not in self._backend.builtin_user_opcodes:
            raise InvalidValueError(
                f"user opcode {value:#x} is not handled by any registered op, so it would do "
                "nothing",
                "register an op for it first (mk.register_op(name, source, opcode=...)); raw "
                "vyre.wire publishers keep the unchecked behaviour")

    def _check_packed(self, ops: Sequence[Any]) -> Sequence[Any]:
        """Inner opcodes of a packed slot that are user opcodes must be registered ops."""
        if isinstance(ops, (str, bytes)) or not isinstance(ops, Iterable):
            return ops  # wire.pack_ops says what is wrong with it
        out = []
        for item in ops:
            opcode = getattr(item, "opcode", None)
            if opcode is None:
                try:
                    opcode, args = item
                except (TypeError, ValueError):
                    out.append(item)  # wire.pack_ops reports it
                    continue
            else:
                args = item.args
            if type(opcode) is not int or opcode > OP_MAX_PRIMITIVE:
                opcode = self._user_opcode(opcode)
                if opcode > PACKED_MAX_INNER_OPCODE:
                    raise InvalidValueError(
                        f"op {opcode:#x} cannot be an inner op of a packed slot (inner opcodes "
                        f"are 0..{PACKED_MAX_INNER_OPCODE})",
                        f"register the op with an opcode of 8..{PACKED_MAX_INNER_OPCODE}, or "
                        "submit it in a slot of its own")
            out.append((opcode, args))
        return out

    def _check_many(self, opcodes: np.ndarray) -> None:
        """Every user opcode of a bulk submit is a registered op (all-or-nothing)."""
        if opcodes.size == 0:
            return
        lo, hi = int(opcodes.min()), int(opcodes.max())
        if hi <= OP_MAX_PRIMITIVE:
            return
        if lo == hi:
            self._user_opcode(lo)
            return
        system = ((opcodes & np.uint32(0x80000000)) != 0) | (opcodes <= OP_MAX_PRIMITIVE) | (
            (opcodes >= np.uint32(0xFFF0)) & (opcodes <= np.uint32(0xFFFF)))
        for value in np.unique(opcodes[~system]):
            self._check_registered(int(value))

    def _typed_submit(self, d: Any, args: Sequence[int], tenant: int, priority: int,
                      timeout: float | None) -> Ticket | range | None:
        """submit() of a typed descriptor, or None when ``d`` is not one."""
        if not isinstance(d, (SlotDescriptor, BatchDescriptor, WindowDescriptor)):
            return None
        if tuple(args) or tenant != 0 or priority != 2:
            raise InvalidValueError(
                f"submit({type(d).__name__}) takes no args, tenant or priority: the descriptor "
                "holds them", "pass the descriptor alone (and timeout= if needed)")
        if isinstance(d, SlotDescriptor):
            if d.is_packed:
                self._check_packed(d.ops)
                opcode = d.opcode
            else:
                opcode = self._user_opcode(d.opcode) if d.opcode > OP_MAX_PRIMITIVE else d.opcode
            return self.submit(opcode, d.args, d.tenant, d.priority, timeout)
        if isinstance(d, BatchDescriptor):
            return self._submit_entries(self._descriptor_entries(d.items), timeout)
        items = wire.window_items(self._user_opcode(d.opcode), d.ticket, d.required, d.lookahead)
        return self._submit_entries([(d.tenant, op, a, d.priority) for op, a in items], timeout)

    def _descriptor_entries(self, items: Sequence[SlotDescriptor]) -> list[tuple]:
        entries = []
        for item in items:
            if item.is_packed:
                self._check_packed(item.ops)
            elif item.opcode > OP_MAX_PRIMITIVE:
                self._user_opcode(item.opcode)
            entries.append(item.as_entry())
        return entries

    def _submit_batch_descriptor(self, d: BatchDescriptor, tag: int, tenant: int,
                                 timeout: float | None) -> range:
        if self._unusable is not None:
            self._check_usable()
        entries = self._descriptor_entries(d.items)
        entries.append((tenant, int(Opcode.BATCH_FENCE), (len(d.items), tag), 2))
        return self._submit_entries(entries, timeout)

    def _submit_entries(self, entries: list[tuple], timeout: float | None) -> range:
        """Publish ``(tenant, opcode, args, priority)`` entries at consecutive tickets, all or
        nothing (validated before waiting for room), with the same interrupt-safe bookkeeping
        as every other publish (:meth:`_begin` / :meth:`_settle`)."""
        if self._unusable is not None:
            self._check_usable()
        if timeout is not None:
            timeout = argcheck.timeout("timeout", timeout)
        n = len(entries)
        if n > self.slot_count:
            raise InvalidValueError(
                f"{n} slots do not fit a ring of {self.slot_count}",
                "submit fewer items at once or create the Megakernel with a larger slot_count")
        for entry in entries:  # before waiting for room: invalid items fail at once
            wire.validate_slot(*entry)
        lock = self._lock
        try:
            deadline = None
            if not lock.acquire(False):
                deadline = self._lock_for_publish(timeout)
            if self._publishing is not None:
                self._settle()
            first = self._published
            try:
                if first + n - self._retired > self.slot_count:
                    self._make_room(n, timeout, deadline)
                self._begin(first, n)
                wire.publish_sequence(self._ring, first % self.slot_count, entries)
                self._published = first + n
                self._publishing = None
                self._notify(self._published)
            except BaseException as err:
                self._abort_publish(err, first)
                raise
        finally:
            try:
                lock.release()
            except RuntimeError:  # not taken: the lock wait timed out or was interrupted
                pass
        return range(first, first + n)

    # ------------------------------------------------------------------ retiring / waiting
    def _check_running(self) -> None:
        if self._unusable == "forked":
            self._check_usable()
        if self._stopped or self._stopping:
            raise BackendError("this megakernel was shut down (shutdown() was called, by "
                               "this or another thread) with the tickets of this call "
                               "unfinished; they will not run",
                               "call shutdown() only once every thread is done with the "
                               "megakernel (shutdown(drain=True) waits for published slots)")

    def _check_usable(self) -> None:
        """Raise if this megakernel can no longer take work (shut down, or a fork's copy)."""
        why = self._unusable
        if why == "forked":
            raise BackendError(
                f"this Megakernel was created by process {self._pid} and is used in a forked "
                f"child (process {os.getpid()}), where its workers do not exist",
                "create a new Megakernel in the child, or start the child with the 'spawn' "
                "method (multiprocessing.get_context('spawn'))")
        if why is not None:
            raise BackendError("this megakernel was shut down, so it takes no more work",
                               "create a new Megakernel (a shut-down one cannot be restarted)")

    def _forked(self) -> bool:
        return self._pid != os.getpid()

    @property
    def _fault_total(self) -> int:
        return self._faults[0]

    def _note_fault(self, t: int) -> None:
        """Record that ticket t ended in FAULT, once however often it is called (a retire
        interrupted after recording it meets it again)."""
        self._faulted[t] = None
        total, upto = self._faults
        if t >= upto:
            self._faults = (total + 1, t + 1)

    def _retire_locked(self) -> None:
        if self._publishing is not None:
            self._settle()
        slots = self.slot_count
        status = self._status_view()
        while True:
            start = self._retired
            pending = self._published - start
            if pending <= 0:
                return
            count, faults = wire.retire(self._ring, start % slots, pending)
            for off in faults:
                self._note_fault(start + off)
            while len(self._faulted) > _FAULT_MEMORY:
                del self._faulted[next(iter(self._faulted))]
            self._retired = start + count
            if count == pending or int(status[(start + count) % slots]) != _EMPTY:
                return
            # a published slot is never EMPTY, except one whose FAULT an interrupted retire
            # reset without recording it: it is that fault
            self._note_fault(start + count)
            self._retired = start + count + 1

    def _retire(self, wait: float = -1.0, clean_to: int = 0) -> None:
        """Retire what has finished, giving up after ``wait`` s without the lock (-1: no
        limit; a submitter waiting for room holds it, and retires meanwhile).

        ``clean_to``: a wait's lock-free walk saw every slot below this ticket finished and
        none FAULT; they are retired without reading their statuses again (on a ring the GPU
        writes each read is a cache miss). Safe although other threads may have retired and
        republished some of them since: a slot is republished only after it is retired, so
        the walk's view of those from ``self._retired`` on is of their current tickets.
        """
        lock = self._lock
        try:
            if lock.acquire(False) or (wait != 0 and self._lock_within(wait)):
                self._retired = max(self._retired, clean_to)
                self._retire_locked()
        finally:
            try:
                lock.release()
            except RuntimeError:  # not taken: timed out, or interrupted while waiting
                pass

    def wait(self, tickets: Ticket | Iterable[Ticket], timeout: float | None = None) -> None:
        """Block until every ticket is retired.

        Raises :class:`SlotFaultError` when one of them ended in FAULT,
        :class:`WaitTimeoutError` after ``timeout`` s, :class:`BackendError` when the backend
        died or a slot stopped making progress (``stall_timeout``). Never hangs. ``timeout``:
        seconds (0 or less: poll once), None or inf for no limit; NaN is refused.
        """
        if timeout is not None:
            timeout = argcheck.timeout("timeout", timeout)
        if type(tickets) is int and 0 <= tickets < self._published:
            # one ticket (the round-trip path): what follows, without its generality
            if self._retired <= tickets:
                self._wait_retired(tickets + 1, timeout)
            if tickets in self._faulted:
                self._raise_faults((tickets,))
            return
        span = self._ticket_span(tickets)
        if span is None:
            return
        wanted, last = span
        self._wait_retired(last + 1, timeout)
        if self._faulted:
            self._raise_faults(wanted)

    def _ticket_span(self, tickets: Ticket | Iterable[Ticket]) -> tuple[Iterable[int], int] | None:
        """(the tickets, the highest) of a wait or poll; None for no tickets. Refuses a
        negative or unpublished ticket."""
        if isinstance(tickets, range):
            if len(tickets) == 0:
                return None
            first, last = min(tickets[0], tickets[-1]), max(tickets[0], tickets[-1])
            wanted: Iterable[int] = tickets
        else:
            if isinstance(tickets, (int, np.integer)):
                tickets = (tickets,)
            try:
                if isinstance(tickets, (str, bytes)):
                    raise TypeError
                wanted = [operator.index(t) for t in tickets]
            except TypeError:
                raise InvalidTypeError(f"tickets={tickets!r} is not a ticket or tickets",
                                       "pass an int ticket, a range, or an iterable of ints "
                                       "as the submit calls return them") from None
            if not wanted:
                return None
            first, last = min(wanted), max(wanted)
        if first < 0 or last >= self._published:
            bad = first if first < 0 else last
            raise InvalidValueError(f"ticket {bad} was never published (tickets are 0 .. "
                                    f"{self._published - 1})",
                                    "wait only for tickets a submit call returned")
        return wanted, last

    def finished(self, tickets: Ticket | Iterable[Ticket]) -> bool:
        """True once every ticket is retired; never blocks (a poll, cheaper than
        ``wait(tickets, timeout=0)``, which raises to say no).

        Raises :class:`SlotFaultError` once they are retired and one of them ended in FAULT,
        :class:`BackendError` when the megakernel was shut down with them unfinished, and
        ``ValueError`` for a ticket never published. It does not run the watchdog (a dead
        kernel just stays unfinished): block with :meth:`wait`, which does.
        """
        span = self._ticket_span(tickets)
        if span is None:
            return True
        wanted, last = span
        if self._retired <= last:
            if self._unusable == "forked":
                self._check_usable()
            self._retire(wait=0)  # never blocks: a submitter waiting for room holds the lock
            if self._retired <= last:
                self._ring_doorbell_if_behind(wait=0)
                self._check_running()
                return False
        if self._faulted:
            self._raise_faults(wanted)
        return True

    def _wait_retired(self, upto: int, timeout: float | None) -> None:
        if self._retired >= upto:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._unusable == "forked":  # before the lock: a parent's thread may have held it
            self._check_usable()
        # (a submitter making room holds the lock, and rings the doorbell itself)
        self._ring_doorbell_if_behind(
            -1.0 if deadline is None else _lock_wait(deadline - time.monotonic()))
        if self._stopped or self._stopping:
            raise BackendError(f"this megakernel was shut down with ticket {upto - 1} "
                               "unfinished; it will not run",
                               "create a new Megakernel and submit the work again (wait for "
                               "tickets before shutdown(), or use shutdown(drain=True))")
        if not self._started:
            raise BackendError("the megakernel is not running, so nothing will retire",
                               "call start() or use `with Megakernel(...) as mk:`")
        watch: _Watch | None = None  # made after the first tick: a quick wait never pays for it
        n = self.slot_count
        while True:
            self._check_running()
            start = self._retired
            if start >= upto:
                return
            # spin outside the lock (GIL released) until the span is finished or a tick passes
            tick = _WATCH_INTERVAL_S
            if deadline is not None:
                tick = max(0.0, min(tick, deadline - time.monotonic()))
            reached, fault = wire.wait_finished(self._ring, start % n, upto - start, tick)
            # (an EMPTY slot there is a FAULT an interrupted retire reset: the walk records it)
            if reached > 0 or int(self._status_view()[(start + reached) % n]) == _EMPTY:
                # the lock only as long as the caller's deadline allows
                hold = -1.0 if deadline is None else _lock_wait(deadline - time.monotonic())
                self._retire(hold, start + reached if fault < 0 else 0)
                if self._retired >= upto:
                    return
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"ticket {upto - 1} not finished after {timeout} s "
                    f"({self._published - self._retired} slots in flight)",
                    "raise the timeout, or check telemetry() for a stalled slot")
            if watch is None:
                watch = _Watch(self)
            watch.check(self._retired, self._published)

    def _raise_faults(self, wanted: Iterable[int]) -> None:
        while True:  # a snapshot without the lock; a retire may resize the dict meanwhile
            try:
                faulted = tuple(self._faulted)
                break
            except RuntimeError:
                continue
        if isinstance(wanted, range):
            hit = sorted(t for t in faulted if t in wanted)
        else:
            hit = sorted(set(wanted).intersection(faulted))
        if hit:
            t = hit[0]
            more = f" (and {len(hit) - 1} more)" if len(hit) > 1 else ""
            raise SlotFaultError(
                f"ticket {t} (slot {t % self.slot_count}) ended in "
                f"FAULT{self._fault_text(t)}{more}",
                "check the tenant is authorized, that non-system tenants write only "
                "observables, and the buffer bounds of the op",
                ticket=t, slot=t % self.slot_count)

    def drain(self, timeout: float | None = None) -> None:
        """Wait until every published slot is retired. Faults are counted, not raised (a
        later ``wait`` on a faulted ticket still raises)."""
        if timeout is not None:
            timeout = argcheck.timeout("timeout", timeout)
        self._wait_retired(self._published, timeout)

    # ------------------------------------------------------------------ reading
    @property
    def observables(self) -> np.ndarray:
        """Live uint32 view of the observable words (``control[OBSERVABLE_BASE:]``)."""
        return self._control[OBSERVABLE_BASE:]

    @property
    def control(self) -> np.ndarray:
        """Live uint32 view of every control word."""
        return self._control

    def _settle_counters(self, timeout: float = 0.1) -> None:
        """Where the backend counts lazily (CUDA), wait until DONE_COUNT + FAULT_COUNT cover
        every retired ticket, so counters read after a wait/drain include those slots."""
        if not self._backend.lazy_counters or not self._started:
            return
        want = self._retired & U32_MAX
        deadline = time.monotonic() + timeout
        c = self._control
        while ((int(c[CTRL_DONE_COUNT]) + int(c[CTRL_FAULT_COUNT]) - want) & U32_MAX) >= 1 << 31:
            if time.monotonic() > deadline:  # a slot overwrote a counter: report what is there
                return
            time.sleep(0)

    @property
    def done_count(self) -> int:
        """Slots executed to DONE (docs/spec.md §2 word 1)."""
        self._settle_counters()
        return int(self._control[CTRL_DONE_COUNT])

    @property
    def fault_count(self) -> int:
        """Slots that ended in FAULT (word 142)."""
        self._settle_counters()
        return int(self._control[CTRL_FAULT_COUNT])

    @property
    def epoch(self) -> int:
        return int(self._control[CTRL_EPOCH])

    @property
    def heartbeat(self) -> int:
        return int(self._control[CTRL_HEARTBEAT])

    @property
    def published(self) -> int:
        """Tickets handed out so far (the next ticket)."""
        return self._published

    def metrics(self) -> dict[int, int]:
        """Non-zero per-opcode execution counters {opcode: count}."""
        self._settle_counters()
        return wire.read_metrics(self._control)

    def debug_log(self) -> list:
        """PRINTF records as ``DebugRecord(fmt_id, (a1, a2, slot_index))``."""
        return wire.read_debug_log(self._backend.debug)

    @property
    def debug_overflow(self) -> int:
        """PRINTF records dropped because the debug log was full."""
        return wire.read_debug_overflow(self._backend.debug)

    def register_buffer(self, array: Any, *, writable: bool = True) -> int:
        """Add a buffer to the buffer table (handle 1..255; handle 0 is control).

        On the CPU any C-contiguous host buffer works; on CUDA also a NumPy array (page-locked
        and mapped for the GPU), a GPUArray, host memory from :meth:`alloc_buffer`, an object
        with ``__cuda_array_interface__`` (CuPy, PyTorch) or a ``__dlpack__`` tensor on the
        GPU. The megakernel keeps a reference until it closes, so a buffer the caller drops is
        never freed under it. :meth:`alloc_buffer` makes one that suits the backend in use.
        A read-only buffer (``bytes``, a read-only array) needs ``writable=False``: it is then
        copied once, since ops such as BUF_COPY cannot be refused a write into it.
        """
        if not isinstance(writable, bool):
            raise InvalidTypeError(f"writable={writable!r} is not a bool",
                                   "pass writable=True or writable=False")
        self._check_usable()
        return self._backend.register_buffer(array, writable=writable)

    def stream_wait(self, stream: Any, ticket: int) -> None:
        """Make a CUDA ``stream`` (CuPy, PyTorch, PyCUDA, or a CUstream int) wait until
        ``ticket`` finished, before the work queued on it after this call.

        On CUDA the wait runs on the GPU (no host round trip): the stream waits on the ticket's
        slot status. A ticket that FAULTs also releases the stream (``wait`` reports the
        fault). On the CPU backend this waits for the ticket on the host. LOAD_MISS tickets
        are refused (their slot passes through WAIT_IO). See docs/facade.md."""
        ticket = operator.index(ticket)
        if not 0 <= ticket < self._published:
            raise InvalidValueError(f"ticket {ticket} was never published",
                                    "pass a ticket returned by submit")
        slot = ticket % self.slot_count
        if self._retired > ticket:
            return  # finished: nothing to wait for
        if int(self._ring[slot * SLOT_WORDS + SLOT_OPCODE]) == int(Opcode.LOAD_MISS):
            raise InvalidValueError("a LOAD_MISS ticket cannot be waited for by a stream",
                                    "wait for it with mk.wait(ticket) before queuing the "
                                    "stream's work")
        self._ring_doorbell_if_behind()
        if not self._backend.stream_wait(stream, slot):
            self.wait(ticket)

    def submit_after(self, stream: Any, opcode: int, args: Sequence[int] = (), tenant: int = 0,
                     timeout: float | None = None) -> int:
        """``submit`` once the work queued on a CUDA ``stream`` so far has finished (its
        results visible to the op). The host waits for the stream (an event, polled): a
        round trip of about one stream synchronize. Raises ``WaitTimeoutError`` after
        ``timeout`` s."""
        self._backend.after_stream(stream, timeout)
        return self.submit(opcode, args, tenant=tenant)

    def paused(self) -> AbstractContextManager[None]:
        """A ``with`` block during which no megakernel of this process runs on the GPU.

        On CUDA, allocating or freeing device or page-locked memory and loading modules wait
        for the device to go idle: for a megakernel to leave the GPU, which it does by itself
        when idle and every ``yield_ms`` when busy (never, with ``idle_exit_ms=0,
        yield_ms=0``). To have such calls wait for nothing, make them inside this block: every
        running megakernel finishes what was published, exits, and is relaunched when the
        block ends; nothing is lost or run twice. Slots published inside the block run after
        it. The megakernel's CUDA context is current inside the block. Re-entrant; a no-op on
        the CPU backend. vyre's own allocations (``alloc_buffer``, ``GpuStream``) do this
        themselves.
        """
        return self._backend.quiesce()

    def alloc_buffer(self, data: np.ndarray | int, *, device: bool = False) -> tuple[int, Any]:
        """Allocate a buffer the workers can reach, fill it, register it: ``(handle, buffer)``.

        ``data`` is an array (copied in as raw bytes) or a byte count (zero-filled). The buffer
        is a host-visible uint8 numpy array, except with ``device=True`` on CUDA, where it is
        device memory (a GPUArray: fastest for tables the kernel reads often).
        """
        self._check_usable()
        if isinstance(data, (int, np.integer)) and not isinstance(data, bool):
            nbytes, payload = argcheck.count("data (a byte count)", data, 0, 1 << 48), None
        elif isinstance(data, (str, bool)) or data is None:
            raise InvalidTypeError(f"alloc_buffer takes an array or a byte count, not "
                                   f"{type(data).__name__}",
                                   "pass a numpy array (copied in as bytes), bytes, or an int "
                                   "byte count; encode text first (s.encode())")
        else:
            if isinstance(data, (bytes, bytearray, memoryview)):
                data = np.frombuffer(data, np.uint8)
            arr = np.ascontiguousarray(data)
            if arr.dtype.hasobject or arr.dtype.kind in "USM":
                raise InvalidTypeError(f"alloc_buffer cannot copy an array of dtype "
                                       f"{arr.dtype} as raw bytes",
                                       "pass a numeric numpy array or bytes")
            payload = arr.view(np.uint8).reshape(-1)
            nbytes = payload.size
        buf = self._backend.alloc_buffer(nbytes, device=device)
        if payload is not None and payload.size:
            self._backend.upload(buf, payload)
        return self._backend.register_buffer(buf), buf

    def telemetry(self) -> dict[str, Any]:
        """A snapshot: slot occupancy by status, in-flight, faults, heartbeat age."""
        statuses = self._ring.reshape(self.slot_count, SLOT_WORDS)[:, SLOT_STATUS]
        counts = np.bincount(np.minimum(statuses, 8), minlength=9)
        names = {s.value: s.name for s in SlotStatus}
        return {
            "backend": self._backend.name,
            "slots": {names.get(i, "OTHER"): int(c) for i, c in enumerate(counts) if c},
            "published": self._published,
            "retired": self._retired,
            "in_flight": self._published - self._retired,
            "faults": self._fault_total,
            "done_count": self.done_count,
            "fault_count": self.fault_count,
            "heartbeat": self.heartbeat,
            "heartbeat_age_s": self._heartbeat_age(),
            "running": self._started and not self._stopped,
            "shutdown_flag": int(self._control[CTRL_SHUTDOWN]),
            "ops": self._ops_info(),
            **{f"device_{k}": v for k, v in self._backend.describe().items()},
        }

    def _heartbeat_age(self) -> float:
        """Seconds since this host last saw HEARTBEAT change (0 when it changed just now)."""
        beat, now = self.heartbeat, time.monotonic()
        seen_beat, seen_at = getattr(self, "_beat_seen", (None, now))
        if beat != seen_beat:
            self._beat_seen = (beat, now)
            return 0.0
        return now - seen_at

    def __repr__(self) -> str:
        return (f"Megakernel(backend={self._backend.name!r}, slot_count={self.slot_count}, "
                f"published={self._published}, retired={self._retired})")


def _as_u32(values: Any, name: str) -> np.ndarray:
    """A C-contiguous uint32 array of ``values``, refusing anything a cast would change."""
    if (type(values) is np.ndarray and values.dtype == np.uint32 and values.ndim
            and values.flags.c_contiguous):
        return values  # the common case, without numpy's conversion calls (per-call cost)
    arr = np.asarray(values)
    if arr.dtype != np.uint32:
        if arr.dtype.kind not in "iub":
            raise InvalidTypeError(f"{name} must hold integers, got dtype {arr.dtype}",
                                 f"pass {name} as a numpy uint32 array")
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > U32_MAX):
            raise InvalidValueError(f"{name} holds values outside u32 (0..0xFFFFFFFF)",
                                 "wire words are unsigned 32-bit: mask or fix the values")
    return np.ascontiguousarray(arr, dtype=np.uint32)


class _Watch:
    """Watchdog state of one blocked caller: is the backend alive and making progress?

    Progress is anything that moves: a ticket retiring, DONE_COUNT or FAULT_COUNT changing
    (a slot finished anywhere), the oldest unretired slot changing status, or the backend's
    progress counter (a long slot at work, CPU). Only when none of them moved for
    ``stall_timeout`` is the oldest slot declared stalled, and only if it is not finished
    (a finished one is the host's to retire, however late a loaded machine lets it run).
    """

    def __init__(self, mk: Megakernel) -> None:
        self.mk = mk
        now = time.monotonic()
        self.progress_at = now
        self.retired = mk._retired
        self.seen = self._progress(mk._retired)
        self.beat = mk.heartbeat
        self.beat_at = now
        self.pauses = mk._backend.pauses

    def _progress(self, retired: int) -> tuple[int, int, int, int]:
        mk = self.mk
        c = mk._control
        return (retired, int(c[CTRL_DONE_COUNT]) + int(c[CTRL_FAULT_COUNT]),
                int(getattr(mk._backend, "progress", 0)),
                int(mk._ring[(retired % mk.slot_count) * SLOT_WORDS]))

    def check(self, retired: int, published: int) -> None:
        mk = self.mk
        now = time.monotonic()
        backend = mk._backend
        if backend.paused or backend.pauses != self.pauses:  # paused by quiesce(): not stalled
            self.pauses = backend.pauses
            self.progress_at = self.beat_at = now
            return
        backend.check()
        mk._check_running()  # shut down by another thread: say so, not "SHUTDOWN published"
        if published > retired and int(mk._control[CTRL_SHUTDOWN]) and retired == self.retired \
                and now - self.progress_at > 0.05:
            raise BackendError(
                f"the workers were stopped by SHUTDOWN with {published - retired} slots in "
                "flight (a SHUTDOWN slot, or control[SHUTDOWN] written)",
                "do not publish SHUTDOWN while work is pending; use shutdown(drain=True)")
        seen = self._progress(retired)
        if seen != self.seen:  # something moved: alive and progressing
            self.seen, self.retired = seen, retired
            self.progress_at = self.beat_at = now
            self.beat = mk.heartbeat
            return
        if seen[3] in (_DONE, _FAULT):  # finished: the host only has not retired it yet
            return
        beat = mk.heartbeat
        if beat != self.beat:
            self.beat, self.beat_at = beat, now
        elif published > retired and now - self.beat_at > mk.heartbeat_timeout:
            raise BackendError(
                f"the {mk._backend.name} backend is not alive: no heartbeat and no slot "
                f"finished for {now - self.beat_at:.1f} s with {published - retired} slots in "
                "flight",
                "a worker is stuck or the kernel died; shut this Megakernel down and check "
                "the workload (a slot that never finishes), or raise heartbeat_timeout")
        if published > retired and now - self.progress_at > mk.stall_timeout:
            slot = retired % mk.slot_count
            status = seen[3]
            name = SlotStatus(status).name if status in SlotStatus._value2member_map_ else status
            if status == int(SlotStatus.CLAIMED):
                what = "a worker took it and has not finished it"
                fix = ("a slot that never finishes blocks the ring; shut this Megakernel down "
                       "(shutdown(drain=False)) and fix the op, or raise stall_timeout")
            else:
                what = "no worker has taken it"
                fix = ("the workers are not taking slots (stuck on other slots, or stopped); "
                       "check telemetry(), shut this Megakernel down, or raise stall_timeout")
            raise BackendError(
                f"no progress for {now - self.progress_at:.1f} s: ticket {retired} (slot "
                f"{slot}) stayed {name} ({what}), no slot finished and no long slot reported "
                "progress", fix)


def _stop_all_at_exit() -> None:
    for mk in list(_LIVE):
        if mk._forked():  # a fork's copy: its workers are the parent's, nothing to stop
            continue
        try:
            mk.shutdown(drain=False, timeout=2.0)
        except Exception:
            pass


def _forked_child() -> None:
    """In a forked child every megakernel is a copy without workers: refuse its use."""
    for mk in list(_LIVE):
        mk._unusable = "forked"


os.register_at_fork(after_in_child=_forked_child)


import atexit  # noqa: E402

atexit.register(_stop_all_at_exit)
