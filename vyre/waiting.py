"""Waiting on tickets: :meth:`~vyre.Megakernel.wait`, ``finished`` and ``drain``.

A wait spins on the ring outside the facade lock (the GIL released) and takes the lock only
to retire what it saw finish, for no longer than its deadline allows; the watchdog
(vyre/watchdog.py) judges every tick that passes without progress. See docs/facade.md.
"""
from __future__ import annotations

import operator
import threading
import time
from collections.abc import Iterable, Sequence

import numpy as np

from vyre import argcheck, wire
from vyre.errors import (
    BackendError,
    InvalidTypeError,
    InvalidValueError,
    SlotFaultError,
    WaitTimeoutError,
)
from vyre.protocol import (
    RESULT_WORDS,
    SLOT_RESULT,
    SLOT_STATUS,
    SLOT_WORDS,
    FaultReason,
    SlotStatus,
)
from vyre.ring_books import STATUS_EMPTY, RingBooks
from vyre.watchdog import WATCH_INTERVAL_S, Watch

Ticket = int


def _lock_wait(seconds: float) -> float:
    """A ``Lock.acquire`` timeout for ``seconds`` left: clamped to 0..TIMEOUT_MAX (an
    infinite or huge deadline means no limit, -1)."""
    if seconds >= threading.TIMEOUT_MAX:
        return -1.0
    return max(0.0, seconds)


class Waiting(RingBooks):
    """The waits of :class:`vyre.Megakernel` (docs/facade.md)."""

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
        watch: Watch | None = None  # made after the first tick: a quick wait never pays for it
        n = self.slot_count
        while True:
            self._check_running()
            start = self._retired
            if start >= upto:
                return
            # spin outside the lock (GIL released) until the span is finished or a tick passes
            tick = WATCH_INTERVAL_S
            if deadline is not None:
                tick = max(0.0, min(tick, deadline - time.monotonic()))
            reached, fault = wire.wait_finished(self._ring, start % n, upto - start, tick)
            # (an EMPTY slot there is a FAULT an interrupted retire reset: the walk records it)
            if reached > 0 or int(self._status_view()[(start + reached) % n]) == STATUS_EMPTY:
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
                watch = Watch(self)
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
