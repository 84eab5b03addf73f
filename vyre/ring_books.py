"""The facade's books of the ring: which tickets are published and retired, kept exact
under the facade lock whatever instant an exception (a Ctrl-C's KeyboardInterrupt included)
lands, and the waits that hold that lock (for it, and for room in a full ring).

An exception may land between any two steps of a publish or a retire. Each step leaves a
state from which the next call under the lock recovers: a publish records what it is about
to write (``_publishing``) and either the target slots read EMPTY until written or the
publish stores how far it got into a mark in the same C call as the writes, so ``_settle()``
can tell from the ring or the mark which were; a retire that reset FAULT slots but did not
record them leaves EMPTY slots inside the published span, which ``_retire_locked()``
recognises as those faults. See docs/facade.md "Interrupts, shutdown and fork".
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from vyre import _wire, wire
from vyre.backends.base import Backend
from vyre.errors import (
    BackendError,
    QueueFullError,
)
from vyre.protocol import (
    CTRL_HEARTBEAT,
    SLOT_WORDS,
    SlotStatus,
)
from vyre.watchdog import WATCH_INTERVAL_S, Watch

# the longest one wait for the facade lock lasts: an asynchronous exception aimed at a waiting
# thread is taken between two (see RingBooks._lock_within)
LOCK_SLICE_S = 0.005
# how many faulted tickets wait() remembers (the oldest are forgotten beyond this)
FAULT_MEMORY = 1 << 16
STATUS_EMPTY = int(SlotStatus.EMPTY)
STATUS_DONE = int(SlotStatus.DONE)
STATUS_FAULT = int(SlotStatus.FAULT)


def _note_published(err: BaseException, first: int, end: int) -> None:
    """Tell the caller of a publish that raised which of its tickets are out anyway."""
    if end > first and getattr(err, "published", None) is None:
        try:
            err.published = range(first, end)  # type: ignore[attr-defined]
        except AttributeError:  # an exception type without a __dict__
            pass


class RingBooks:
    """Published/retired tickets, faults, the facade lock and the doorbell of a
    :class:`vyre.Megakernel` (which sets every attribute below in its ``__init__``)."""

    slot_count: int
    observable_slots: int
    stall_timeout: float
    heartbeat_timeout: float
    _backend: Backend
    _ring: np.ndarray
    _control: np.ndarray
    _doorbell: np.ndarray | None
    _lock: Any  # a threading.RLock (see Megakernel.__init__)
    _published: int
    _retired: int
    _faulted: dict[int, None]
    _notified: int
    _faults: tuple[int, int]
    _publishing: tuple[int, int, np.ndarray | memoryview | None] | None
    _mark: memoryview
    _statuses: tuple[np.ndarray, np.ndarray]
    _started: bool
    _stopped: bool
    _stopping: bool
    _unusable: str | None
    _pid: int

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
    def heartbeat(self) -> int:
        """The HEARTBEAT control word: changes while the workers are alive."""
        return int(self._control[CTRL_HEARTBEAT])

    def _notify(self, published: int) -> None:
        # the doorbell first: an interrupt between the two leaves _notified behind (a later
        # notify repeats the store), never ahead of what the workers were told
        if self._doorbell is not None:
            # release: a GPU that sees the count also sees the slots (docs/spec.md §9)
            _wire.store_release(self._doorbell, 0, published)
        self._notified = published
        self._backend.kick()

    def _ring_doorbell_if_behind(self, wait: float = -1) -> None:
        """Tell the workers about every slot published so far, if they were not told (a
        waiter must not wait on such slots: notify=False, or an interrupted publish).
        ``wait``: how long the lock may take (a holder publishing or making room rings it)."""
        if self._notified >= self._published and self._publishing is None:
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
            status[s] = STATUS_EMPTY
        elif s + n <= slots:
            status[s:s + n] = STATUS_EMPTY
        else:
            status[s:] = STATUS_EMPTY
            status[:s + n - slots] = STATUS_EMPTY

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
        if mark is not None:  # publish_many / publish_slot store first + written after writing
            written = min(max(int(mark[0]) - first, 0), n)
        else:  # all-or-nothing writes into slots made EMPTY first (_begin)
            idx = (first + np.arange(n)) % self.slot_count
            wrote = self._status_view()[idx] != STATUS_EMPTY
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
            while not lock.acquire(timeout=LOCK_SLICE_S):
                pass
            return True
        end = time.monotonic() + wait
        while not lock.acquire(timeout=max(0.0, min(LOCK_SLICE_S, end - time.monotonic()))):
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
        watch = Watch(self)
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
            wire.wait_retire(self._ring, self._retired % self.slot_count, 1, WATCH_INTERVAL_S)
            watch.check(self._retired, self._published)

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
            while len(self._faulted) > FAULT_MEMORY:
                del self._faulted[next(iter(self._faulted))]
            self._retired = start + count
            if count == pending or int(status[(start + count) % slots]) != STATUS_EMPTY:
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
