"""The :class:`Megakernel` facade: one ring, one backend, tickets, backpressure, watchdog.

The facade owns the ring as a circular queue. Ticket ``t`` (a plain int) is published into
slot ``t % slot_count``, strictly in ticket order; a slot is reused only after the host has
*retired* the ticket that last used it (seen it DONE or FAULT). Workers on either backend
take tickets in the same order and poll exactly their ticket's slot, so every published slot
executes exactly once. See docs/facade.md.

This module holds the class, its lifetime and its publish paths (the per-op hot path); the
rest of it comes from one base class per job, each building on the one before:
vyre/ring_books.py (the ticket books, the facade lock, room in a full ring),
vyre/waiting.py (wait, finished, drain), vyre/registered_ops.py (user ops, results),
vyre/readout.py (counters, telemetry) and vyre/buffers_and_streams.py; the watchdog of every
blocked call is vyre/watchdog.py.
"""
from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from vyre import argcheck, wire
from vyre.backends import BACKENDS, make_backend
from vyre.backends.base import Backend
from vyre.buffers_and_streams import BuffersAndStreams
from vyre.call import CallMixin
from vyre.descriptors import BatchDescriptor, SlotDescriptor, WindowDescriptor
from vyre.errors import (
    BackendError,
    InvalidTypeError,
    InvalidValueError,
    PipelineError,
)
from vyre.protocol import (
    OP_MAX_PRIMITIVE,
    SLOT_WORDS,
    TENANT_MASK_COUNT,
    U32_MAX,
    Opcode,
)
from vyre.waiting import Ticket

_LIVE: weakref.WeakSet[Megakernel] = weakref.WeakSet()
# submit_many rings the doorbell every this many slots while it writes, so a GPU starts
# draining a large batch before the host has written all of it (8192 slots = 512 KiB)
_DOORBELL_EVERY = 8192


class Megakernel(BuffersAndStreams, CallMixin):
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
        self._publishing: tuple[int, int, np.ndarray | memoryview | None] | None = None
        # where publish_many and publish_slot record what they wrote (as first ticket + count)
        # when no doorbell is passed to them; it never exceeds _published. A memoryview: its
        # buffer is cheaper to take than an ndarray's, once per submit
        self._mark = np.zeros(1, np.uint64).data
        self._statuses = (self._ring, self._ring[::SLOT_WORDS])
        self._started = False
        self._stopped = False
        self._init_ops()
        self._calls = None  # vyre.call.CallPath, made by the first call
        self._stopping = False  # shutdown() is stopping the workers (waiters say so)
        self._unusable: str | None = None  # why submits are refused (shut down, forked)
        self._pid = os.getpid()
        _LIVE.add(self)

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
                # the publish stores t + 1 into the mark in the same C call that writes the
                # slot: an interrupt before it leaves the mark <= t, after it t + 1, so
                # _settle() can tell (the slot, DONE from its last ticket, could not)
                mark = self._mark
                self._publishing = (t, 1, mark)
                wire.publish_slot(self._ring, t % self.slot_count, tenant, opcode, args,
                                  priority, mark, t)
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
        self._ring_doorbell_if_behind()

    def submit_after(self, stream: Any, opcode: int, args: Sequence[int] = (), tenant: int = 0,
                     timeout: float | None = None) -> int:
        """``submit`` once the work queued on a CUDA ``stream`` so far has finished (its
        results visible to the op). The host waits for the stream (an event, polled): a
        round trip of about one stream synchronize. Raises ``WaitTimeoutError`` after
        ``timeout`` s."""
        self._backend.after_stream(stream, timeout)
        return self.submit(opcode, args, tenant=tenant)

    def _submit_items(self, items, tenant: int, timeout: float | None) -> range:
        if self._unusable is not None:  # before judging the items: say why nothing is taken
            self._check_usable()
        entries = [(tenant, self._user_opcode(op) if type(op) is not int or op > OP_MAX_PRIMITIVE
                    else op, args, 2) for op, args in items]
        return self._submit_entries(entries, timeout)

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
