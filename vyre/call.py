"""The call path: one op, one request, one answer, no ring slot (docs/call.md).

:class:`CallPath` is what ``Megakernel.call`` / ``acall`` / ``call_future`` / ``future`` /
``wait_async`` use. A blocking call runs in C (``vyre._call.CallPort``): it takes a free lane,
writes the request, spins on the answer with the GIL released and runs the watchdog every
few milliseconds. Asynchronous callers share one poller thread per megakernel (never a
thread per wait): it issues queued calls into free lanes, waits on all lanes in flight at once
(GIL released), watches ring tickets for ``future`` / ``wait_async``, and resolves futures in
batches (one ``call_soon_threadsafe`` per event loop per batch).
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import operator
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from vyre import _call
from vyre.errors import BackendError, PipelineError, WaitTimeoutError
from vyre.protocol import CTRL_SHUTDOWN, SlotStatus

if TYPE_CHECKING:
    from vyre.megakernel import Megakernel

__all__ = ["ABI", "CallPath"]

#: the call path's constants from csrc/vyre_abi.h
ABI = _call.ABI

# how often a blocked call runs the watchdog, and how long the poller waits between looks at
# the ring tickets it watches
_TICK_S = 0.005
_TICKET_TICK_S = 0.0002
_FAULT = int(SlotStatus.FAULT)


def opcode_of(mk: Megakernel, op: Any) -> int:
    """The opcode of ``op`` as ``submit`` resolves it: an int, a registered op's handle or
    name, an ``Opcode`` (user opcodes must be registered, as on the ring)."""
    if type(op) is int:
        return op
    return int(mk._user_opcode(op))


class _Watch:
    """Watchdog of one wait on the call path: kernel alive, beating, and not stopped."""

    __slots__ = ("beat", "beat_at", "mk", "pauses", "started")

    def __init__(self, mk: Megakernel) -> None:
        self.mk = mk
        now = time.monotonic()
        self.started = now
        self.beat = mk.heartbeat
        self.beat_at = now
        self.pauses = mk._backend.pauses

    def __call__(self) -> None:
        mk, now = self.mk, time.monotonic()
        backend = mk._backend
        if backend.paused or backend.pauses != self.pauses:  # quiesce(): answered after it
            self.pauses = backend.pauses
            self.started = self.beat_at = now
            return
        wake = getattr(backend, "wake_for_call", None)
        if wake is not None:  # it may have left between the call's look and its request
            wake()
        backend.check()
        if mk._stopped or not backend.running:
            raise BackendError("the megakernel was shut down with a call unanswered",
                               "make calls between start() and shutdown()")
        if int(mk._control[CTRL_SHUTDOWN]):
            raise BackendError("the workers were stopped by SHUTDOWN with a call unanswered "
                               "(a SHUTDOWN op, or control[SHUTDOWN] written)",
                               "do not publish SHUTDOWN while calls are made; use shutdown()")
        beat = mk.heartbeat
        if beat != self.beat:
            self.beat, self.beat_at = beat, now
        elif now - self.beat_at > mk.heartbeat_timeout:
            raise BackendError(
                f"the {backend.name} backend is not alive: no heartbeat for "
                f"{now - self.beat_at:.1f} s with a call unanswered",
                "a worker is stuck or the kernel died; shut this Megakernel down, or raise "
                "heartbeat_timeout")
        if now - self.started > mk.stall_timeout:
            raise BackendError(f"a call was not answered in {now - self.started:.1f} s",
                               "the op does not finish (an op that spins?): shut this "
                               "Megakernel down and fix the op, or raise stall_timeout")


class CallPath:
    """Calls into one megakernel (created by ``Megakernel`` on first use)."""

    def __init__(self, mk: Megakernel) -> None:
        backend = mk._backend
        area = getattr(backend, "call_area", None)
        lanes = int(getattr(backend, "call_lanes", 0))
        if area is None or lanes == 0:
            raise BackendError(f"the {backend.name} backend of this megakernel has no call path",
                               "create the Megakernel with call_lanes >= 1 (the default)")
        kick_fn, kick_arg = getattr(backend, "call_kick", (0, 0))
        self.mk = mk
        self.port = _call.CallPort(area, lanes, kick_fn, kick_arg)
        self._wake = getattr(backend, "wake_for_call", None)
        # where the backend says its server left on its own, the port checks that word in C
        # and wakes the server only then (not one Python call per call)
        exit_word = getattr(backend, "call_exit_word", None)
        if self._wake is not None and exit_word is not None:
            self.port.wake_when(exit_word[0], exit_word[1], self._wake)
            self._wake = None
        self._poller: _Poller | None = None
        self._poller_lock = threading.Lock()
        # the watchdog factory every blocking call hands the port, made once here: a bound
        # method would be a new object per call (each call still gets a _Watch of its own)
        self._watch = functools.partial(_Watch, mk)

    def _check_started(self) -> None:
        mk = self.mk
        if not mk._started or mk._stopped:
            raise BackendError("the megakernel is not running, so no call is answered",
                               "call start() or use `with Megakernel(...) as mk:`")

    def call(self, op: Any, args: Sequence[int], tenant: int, timeout: float | None,
             words: bool = False) -> Any:
        """See ``Megakernel.call``."""
        mk = self.mk
        if not mk._started or mk._stopped:
            self._check_started()
        code = op if type(op) is int else opcode_of(mk, op)
        if self._wake is not None:  # a kernel that left the GPU on its own comes back
            self._wake()
        return self.port.call(code, args, tenant, -1.0 if timeout is None else timeout,
                              self._watch, _TICK_S, words)

    # ---------------------------------------------------------------- asynchronous
    def poller(self) -> _Poller:
        p = self._poller
        if p is None:
            with self._poller_lock:
                if self._poller is None:
                    self._poller = _Poller(self)
                p = self._poller
        return p

    def close(self, why: BaseException | None = None) -> None:
        """Fail every queued or in-flight asynchronous call and stop the poller."""
        p = self._poller
        if p is not None:
            p.close(why or BackendError("the megakernel was shut down with the call unanswered",
                                        "await calls before shutdown()"))


class _Entry:
    """A queued asynchronous call or ticket watch, and where its outcome goes."""

    __slots__ = (
        "args",
        "deadline",
        "future",
        "lane",
        "loop",
        "opcode",
        "span",
        "tenant",
        "timeout",
    )

    def __init__(self, future: Any, loop: asyncio.AbstractEventLoop | None,
                 deadline: float | None, timeout: float | None) -> None:
        self.future = future
        self.loop = loop
        self.deadline = deadline
        self.timeout = timeout
        self.lane = -1
        self.opcode = 0
        self.args: Sequence[int] = ()
        self.tenant = 0
        self.span: Any = None

    def cancelled(self) -> bool:
        return bool(self.future.cancelled())


def _resolve(items: list) -> None:
    """Set outcomes on the futures' own thread (asyncio futures are not thread-safe)."""
    for fut, value, exc in items:
        if fut.cancelled():
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)


class _Poller:
    """One thread per megakernel serving every asynchronous call and ticket watch."""

    def __init__(self, path: CallPath) -> None:
        self.path = path
        self.port = path.port
        self.mk = path.mk
        self._cv = threading.Condition(threading.Lock())
        self._pending: collections.deque[_Entry] = collections.deque()
        self._tickets: list[_Entry] = []
        self._inflight: dict[int, _Entry] = {}
        self._idle = False  # the thread waits on _cv (nothing queued or in flight)
        self._closed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vyre-call-poller", daemon=True)
        self._thread.start()

    # ---- submitting (any thread)
    def _put(self, entry: _Entry, tickets: bool = False) -> None:
        with self._cv:
            if self._closed is not None:
                raise self._closed
            (self._tickets.append if tickets else self._pending.append)(entry)
            if self._idle:
                self._cv.notify()
            else:
                self.port.wake()

    def submit_call(self, code: int, args: Sequence[int], tenant: int, timeout: float | None,
                    loop: asyncio.AbstractEventLoop | None) -> Any:
        fut: Any = loop.create_future() if loop is not None else concurrent.futures.Future()
        entry = _Entry(fut, loop, None if timeout is None else time.monotonic() + timeout, timeout)
        entry.opcode, entry.args, entry.tenant = code, args, tenant
        self._put(entry)
        return fut

    def submit_tickets(self, span: Any, timeout: float | None,
                       loop: asyncio.AbstractEventLoop | None) -> Any:
        fut: Any = loop.create_future() if loop is not None else concurrent.futures.Future()
        entry = _Entry(fut, loop, None if timeout is None else time.monotonic() + timeout, timeout)
        entry.span = span
        self._put(entry, tickets=True)
        return fut

    def close(self, why: BaseException) -> None:
        with self._cv:
            if self._closed is not None:
                return
            self._closed = why
            self._cv.notify()
            self.port.wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)

    # ---- the thread
    def _run(self) -> None:
        port, inflight = self.port, self._inflight
        done: dict[Any, list] = {}
        watch: _Watch | None = None
        watch_at = 0.0
        while True:
            with self._cv:
                while (not self._pending and not inflight and not self._tickets
                       and self._closed is None):
                    self._idle = True
                    watch = None
                    self._cv.wait()
                self._idle = False
                closed = self._closed
                if closed is None:
                    while self._pending:  # issue queued calls into free lanes
                        entry = self._pending[0]
                        if entry.cancelled():
                            self._pending.popleft()
                            continue
                        lane = port.take()
                        if lane < 0:
                            break
                        self._pending.popleft()
                        try:
                            port.issue(lane, entry.opcode, entry.args, entry.tenant)
                        except PipelineError as err:  # a bad argument: that call's error
                            port.give(lane)
                            self._finish(done, entry, None, err)
                            continue
                        entry.lane = lane
                        inflight[lane] = entry
                tickets = list(self._tickets) if self._tickets else None
            if closed is not None:
                self._fail_all(done, closed)
                self._flush(done)
                return
            mask = 0
            for lane in inflight:
                mask |= 1 << lane
            tick = _TICKET_TICK_S if tickets else _TICK_S
            answers = port.wait_any(mask, tick)
            for lane, status, result in answers:
                entry = inflight.pop(lane)
                port.give(lane)
                if status == _FAULT:
                    self._finish(done, entry, None,
                                 port.fault_error(entry.opcode, entry.tenant, status, result))
                else:
                    self._finish(done, entry, result[0], None)
            if tickets:
                self._check_tickets(done, tickets)
            now = time.monotonic()
            self._expire(done, now)
            if inflight or tickets:  # the watchdog, every tick of waiting
                if watch is not None and (answers or not inflight):
                    watch.started = now  # progress: the stall clock restarts
                if watch is None:
                    watch, watch_at = _Watch(self.mk), now
                elif now - watch_at >= _TICK_S:
                    watch_at = now
                    try:
                        watch()
                    except PipelineError as err:
                        self._fail_all(done, err)
            else:
                watch = None
            self._flush(done)

    def _finish(self, done: dict, entry: _Entry, value: Any, exc: BaseException | None) -> None:
        if entry.loop is None:
            fut = entry.future
            if fut.set_running_or_notify_cancel():
                if exc is not None:
                    fut.set_exception(exc)
                else:
                    fut.set_result(value)
            return
        done.setdefault(entry.loop, []).append((entry.future, value, exc))

    def _flush(self, done: dict) -> None:
        for loop, items in done.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:  # the loop was closed: nobody awaits these any more
                pass
        done.clear()

    def _check_tickets(self, done: dict, tickets: list[_Entry]) -> None:
        finished = []
        for entry in tickets:
            if entry.cancelled():
                finished.append(entry)
                continue
            try:
                if self.mk.finished(entry.span):
                    self._finish(done, entry, None, None)
                    finished.append(entry)
            except PipelineError as err:
                self._finish(done, entry, None, err)
                finished.append(entry)
        if finished:
            with self._cv:
                for entry in finished:
                    self._tickets.remove(entry)

    def _expire(self, done: dict, now: float) -> None:
        """Calls and watches past their timeout: a WaitTimeoutError each (an in-flight call's
        lane is abandoned: reused once its answer comes)."""
        for lane, entry in list(self._inflight.items()):
            if entry.deadline is not None and now >= entry.deadline:
                del self._inflight[lane]
                self.port.abandon(lane)
                self._finish(done, entry, None, WaitTimeoutError(
                    f"call of opcode {entry.opcode:#x} not answered after {entry.timeout} s",
                    "raise the timeout, or check the op finishes"))
        with self._cv:
            for queue in (self._pending, self._tickets):
                late = [e for e in queue if e.deadline is not None and now >= e.deadline]
                for entry in late:
                    queue.remove(entry)
                    what = (f"call of opcode {entry.opcode:#x} found no free lane"
                            if queue is self._pending else "tickets not finished")
                    self._finish(done, entry, None, WaitTimeoutError(
                        f"{what} after {entry.timeout} s",
                        "raise the timeout, or check telemetry() for a stalled slot"))

    def _fail_all(self, done: dict, err: BaseException) -> None:
        for lane, entry in list(self._inflight.items()):
            self.port.abandon(lane)
            self._finish(done, entry, None, err)
        self._inflight.clear()
        with self._cv:
            for entry in list(self._pending) + self._tickets:
                self._finish(done, entry, None, err)
            self._pending.clear()
            self._tickets.clear()



def ticket_span(mk: Megakernel, tickets: Any) -> Any:
    """Validate ``tickets`` as ``Megakernel.finished`` takes them (so a bad ticket raises in
    the caller, not in the poller)."""
    span: Any
    if isinstance(tickets, range) or type(tickets) is int:
        span = tickets
    elif isinstance(tickets, Iterable):
        span = [operator.index(t) for t in tickets]
    else:
        span = operator.index(tickets)
    mk._ticket_span(span)  # raises ValueError for a ticket never published
    return span


class CallMixin:
    """The call-path methods of :class:`vyre.Megakernel` (docs/call.md)."""

    _calls: CallPath | None
    _started: bool
    _stopped: bool

    def _callpath(self) -> CallPath:
        path = self._calls
        if path is None:
            path = self._calls = CallPath(self)  # type: ignore[arg-type]
        return path

    def call(self, op: Any, args: Sequence[int] = (), tenant: int = 0,
             timeout: float | None = None) -> int:
        """Run one op and return its result word 0 (LOAD_U32: the value, ATOMIC_ADD: the new
        value, COMPARE_SWAP: the value seen; a user op: what it stored), without a ring slot.

        One request and one answer in mapped memory (about one PCIe round trip on the GPU).
        Thread-safe: concurrent callers use different lanes. Tenant authorization and the
        protected-word rule apply as on the ring. Raises :class:`SlotFaultError` (``.reason``,
        ``.details``) when the op faulted, :class:`WaitTimeoutError` past ``timeout`` s, and
        :class:`BackendError` when the watchdog finds the workers dead or stopped.
        """
        path = self._calls or self._callpath()
        if path._wake is not None or not self._started or self._stopped:
            return path.call(op, args, tenant, timeout)
        # the common case in one frame: the port checks, issues, waits (C) and wakes the
        # server if it left
        return path.port.call(op if type(op) is int else opcode_of(self, op),  # type: ignore[arg-type]
                              args, tenant, -1.0 if timeout is None else timeout, path._watch,
                              _TICK_S)

    def call_words(self, op: Any, args: Sequence[int] = (), tenant: int = 0,
                   timeout: float | None = None) -> tuple[int, int, int, int]:
        """:meth:`call`, returning all result words of the op."""
        path = self._calls or self._callpath()
        return path.call(op, args, tenant, timeout, True)

    def _async_call(self, op: Any, args: Sequence[int], tenant: int, timeout: float | None,
                    loop: asyncio.AbstractEventLoop | None) -> Any:
        path = self._calls or self._callpath()
        path._check_started()
        code = op if type(op) is int else opcode_of(self, op)  # type: ignore[arg-type]
        _call.encode_request(1, code, tenant, args)  # bad arguments raise here, in the caller
        return path.poller().submit_call(code, tuple(args), tenant, timeout, loop)

    async def acall(self, op: Any, args: Sequence[int] = (), tenant: int = 0,
                    timeout: float | None = None) -> int:
        """``await``-able :meth:`call`: many may be in flight from one event loop; one poller
        thread per megakernel serves them all (no thread per call)."""
        return await self._async_call(op, args, tenant, timeout, asyncio.get_running_loop())

    def call_future(self, op: Any, args: Sequence[int] = (), tenant: int = 0,
                    timeout: float | None = None) -> concurrent.futures.Future[int]:
        """:meth:`call` as a ``concurrent.futures.Future`` (resolved by the poller thread)."""
        return self._async_call(op, args, tenant, timeout, None)

    def future(self, tickets: Any, timeout: float | None = None) -> concurrent.futures.Future[None]:
        """A ``concurrent.futures.Future`` that resolves (to None) once every ticket is
        retired, or fails as :meth:`wait` would (:class:`SlotFaultError`, a timeout, the
        watchdog). The poller thread watches it: no thread per wait."""
        path = self._calls or self._callpath()
        path._check_started()
        span = ticket_span(self, tickets)  # type: ignore[arg-type]
        return path.poller().submit_tickets(span, timeout, None)

    async def wait_async(self, tickets: Any, timeout: float | None = None) -> None:
        """``await``-able :meth:`wait`: returns once every ticket is retired."""
        path = self._calls or self._callpath()
        path._check_started()
        span = ticket_span(self, tickets)  # type: ignore[arg-type]
        await path.poller().submit_tickets(span, timeout, asyncio.get_running_loop())
