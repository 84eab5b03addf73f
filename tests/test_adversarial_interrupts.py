"""Adversarial tests of the facade under interrupts: a Ctrl-C landing at every step of the
publish and retire paths (a tracer injects one at each point), asynchronous exceptions in
producer threads, blocked submits that keep their deadlines, and traced lock holders."""
from __future__ import annotations

import dis
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _adversarial import ADD, NOP, OBS, STALL_OP, cpu_mk

import vyre.buffers_and_streams
import vyre.megakernel as mk_module
import vyre.readout
import vyre.registered_ops
import vyre.ring_books
import vyre.waiting
import vyre.watchdog
from vyre import (
    Megakernel,
    SlotFaultError,
)

# the facade's own modules, where the interrupt sweep injects
FACADE_FILES = frozenset(m.__file__ for m in (
    mk_module, vyre.ring_books, vyre.waiting, vyre.registered_ops, vyre.readout,
    vyre.buffers_and_streams, vyre.watchdog))

# ---------------------------------------------------------------------------------------------
# item 1: an interrupt at any instant of submit / retire leaves the facade consistent
# ---------------------------------------------------------------------------------------------
# CPython raises a pending KeyboardInterrupt where the interpreter checks for signals: after a
# call returns and at backward jumps (the "eval breaker"). The tracer below raises one at the
# n-th such point inside the facade's modules (FACADE_FILES), for n = 0, 1, 2, ... until the
# call completes untouched: every place a real Ctrl-C can land in the facade's own code is
# tried once.
_BREAK_AFTER = {"CALL", "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT", "CALL_FUNCTION_EX"}


class _Injected(KeyboardInterrupt):
    """The injected interrupt (a KeyboardInterrupt, told apart from a real one)."""


def _run_with_interrupt_at(fn: Callable[[], Any], n: int) -> _Injected | None:
    """Run ``fn`` raising ``_Injected`` at the n-th signal-check point of the facade's frames.
    Returns the interrupt when it was injected (and swallowed), None when ``fn`` ran to the
    end."""
    seen = [0]
    last: dict[int, int] = {}

    def local(frame, event, arg):
        if event == "opcode":
            prev = last.get(id(frame))
            last[id(frame)] = frame.f_lasti
            if prev is not None and dis.opname[frame.f_code.co_code[prev]] in _BREAK_AFTER:
                seen[0] += 1
                if seen[0] == n + 1:
                    raise _Injected()
        return local

    def tracer(frame, event, arg):
        if frame.f_code.co_filename not in FACADE_FILES:
            return None
        frame.f_trace_opcodes = True
        last.pop(id(frame), None)  # a new frame (ids of dead frames are reused)
        return local

    outer = sys.gettrace()  # a coverage tracer, say: put back afterwards, not dropped
    sys.settrace(tracer)
    try:
        fn()
    except _Injected as err:
        return err
    finally:
        sys.settrace(outer)
    return None


def _check_consistent(mk: Megakernel, faulty: set[int]) -> None:
    """Every published ticket is known and runs exactly once, faults are reported, and a new
    submit + wait works: ``faulty`` collects the tickets known to FAULT."""
    t = mk.submit(ADD, [1, OBS + 1], timeout=10)
    mk.wait(t, timeout=10)
    mk.drain(timeout=10)
    published = mk.published
    tel = mk.telemetry()
    assert tel["in_flight"] == 0
    # each published slot ran exactly once: DONE + FAULT counts cover every ticket
    assert mk.done_count + mk.fault_count == published, (mk.done_count, mk.fault_count, published)
    # every fault reached the host's bookkeeping (none reset and forgotten)
    assert tel["faults"] == mk.fault_count
    # the ring holds no slot the facade does not know of
    statuses = mk.backend.ring.reshape(-1, 16)[:, 0]
    assert not np.isin(statuses, [1, 2]).any()  # nothing PUBLISHED or CLAIMED is left over
    # the interrupted call let go of the facade lock (a held one blocks every other thread)
    assert not mk._lock._is_owned()
    for bad in sorted(faulty):
        if bad < published:
            with pytest.raises(SlotFaultError):
                mk.wait(bad, timeout=10)


def _sweep(mk: Megakernel, step: Callable[[int], Any], limit: int = 2000) -> int:
    """Inject at every point of ``step`` (called with the attempt number); returns how many
    points there were."""
    faulty: set[int] = set()
    for n in range(limit):
        before = mk.published
        injected = _run_with_interrupt_at(lambda n=n: step(n), n)
        after = mk.published
        out = getattr(injected, "published", None)
        if out is not None:  # what an interrupted call says it published was published
            assert before <= out[0] and out[-1] < after, (out, before, after)
        # the steps publish their faulting ops as tenant 1 (unauthorized): remember those
        for t in range(max(before, after - mk.slot_count), after):  # slots not reused since
            if int(mk.backend.ring[(t % mk.slot_count) * 16 + 2]) == 1:  # tenant 1: FAULT
                faulty.add(t)
        _check_consistent(mk, faulty)
        if injected is None:
            return n
    raise AssertionError(f"{limit} injection points and still not done")


def _many(n: int) -> tuple[np.ndarray, np.ndarray]:
    ops = np.full(n, ADD, np.uint32)
    args = np.tile(np.array([[1, OBS]], np.uint32), (n, 1))
    return ops, args


@pytest.mark.parametrize("what", ["submit", "submit_full_ring", "submit_packed", "submit_batch",
                                  "submit_many", "submit_many_in_pieces", "wait_faults",
                                  "finished", "drain"])
def test_an_interrupt_at_any_step_leaves_the_facade_consistent(what):
    mk = cpu_mk()
    try:
        def step(n: int) -> None:
            if what == "submit":
                mk.submit(ADD, [1, OBS])
                mk.submit(NOP, tenant=1)
            elif what == "submit_full_ring":
                mk.submit_many(*_many(mk.slot_count - (mk.published - mk._retired)))
                mk.submit(ADD, [1, OBS], timeout=10)
                mk.submit(NOP, tenant=1, timeout=10)
            elif what == "submit_packed":
                mk.submit_packed([(ADD, [1, OBS]), (ADD, [1, OBS])])
            elif what == "submit_batch":
                mk.submit_batch([(ADD, [1, OBS]), (NOP, [])], tag=7)
            elif what == "submit_many":
                mk.submit_many(*_many(3))
            elif what == "submit_many_in_pieces":
                mk.submit_many(*_many(3 * mk.slot_count), timeout=10)
            else:
                ts = [mk.submit(ADD, [1, OBS]), mk.submit(NOP, tenant=1),
                      mk.submit(ADD, [1, OBS]), mk.submit(NOP, tenant=1)]
                deadline = time.monotonic() + 10
                # DONE, FAULT, or EMPTY (a FAULT already retired while making room)
                while not all(mk.backend.ring[(t % mk.slot_count) * 16] in (0, 3, 7) for t in ts):
                    assert time.monotonic() < deadline
                    time.sleep(0.0005)
                if what == "wait_faults":
                    with pytest.raises(SlotFaultError):
                        mk.wait(ts, timeout=10)
                elif what == "finished":
                    with pytest.raises(SlotFaultError):
                        mk.finished(ts)
                else:
                    mk.drain(timeout=10)
        points = _sweep(mk, step)
        assert points > 3  # the tracer did reach the facade's code
    finally:
        mk.shutdown(drain=False, timeout=10)


class _WriteSpy(np.ndarray):
    """A view of the ring that records every store made into it from Python."""

    stores: list[Any] = []

    def __setitem__(self, key, value):
        _WriteSpy.stores.append(key)
        super().__setitem__(key, value)


def test_submit_writes_its_slot_in_one_publish_call():
    # the record an interrupted submit is settled by moves in the same C call as the slot:
    # no store into the ring from Python before it (a slot line written twice per submit)
    mk = cpu_mk()
    try:
        mk._ring = mk._ring.view(_WriteSpy)
        _WriteSpy.stores = []
        ts = [mk.submit(ADD, [1, OBS]) for _ in range(3 * mk.slot_count)]  # reuses DONE slots
        mk.wait(ts, timeout=10)
        assert _WriteSpy.stores == []
        assert int(mk.observables[0]) == len(ts) and mk.published == len(ts)
    finally:
        mk.shutdown(drain=False, timeout=10)


def test_a_submit_interrupted_before_its_publish_counts_nothing():
    # the instant between recording the publish and making it, on a slot still DONE from its
    # last ticket: the books must not count the new ticket (its slot was never written)
    mk = cpu_mk()
    try:
        ts = [mk.submit(NOP) for _ in range(mk.slot_count)]
        mk.wait(ts, timeout=10)
        t = mk.published
        assert int(mk.backend.ring[(t % mk.slot_count) * 16]) == 3  # DONE, from ticket t - 8
        stop = _Injected()

        def publish_slot(*args, **kw):
            raise stop  # lands after _publishing is recorded, before the slot is written

        real = mk_module.wire.publish_slot
        mk_module.wire.publish_slot = publish_slot
        try:
            with pytest.raises(_Injected):
                mk.submit(ADD, [1, OBS])
        finally:
            mk_module.wire.publish_slot = real
        assert getattr(stop, "published", None) is None
        assert mk.published == t
        _check_consistent(mk, set())
        assert int(mk.observables[1]) == 1  # _check_consistent's op ran once
        assert int(mk.observables[0]) == 0  # the interrupted one never did
    finally:
        mk.shutdown(drain=False, timeout=10)


# ---------------------------------------------------------------------------------------------
# item 8: Ctrl-C (a hard stop) during a long CPU slot
# ---------------------------------------------------------------------------------------------
# a child interpreter finds the test-hooks worker the way the suite does (tests/_testhooks.py)


class _Async(Exception):
    """Raised asynchronously in a producer thread, where CPython delivers a Ctrl-C."""


def _raise_in(thread: threading.Thread, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` asynchronously in ``thread`` (None withdraws a pending one)."""
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), None if exc is None else ctypes.py_object(exc))


class _Flush(Exception):
    """Taken by the test's own thread to clear CPython's async-exception flag."""


def _withdraw_async(idents: list[int]) -> None:
    """Withdraw any asynchronous exception not yet delivered to the threads ``idents``, then
    take one here. CPython 3.11 keeps an interpreter-wide "an async exception is pending" flag
    set until some thread takes one, and withdrawing one (NULL) sets it too; while it is set,
    every thread with a trace function (coverage) spins at its next function entry. So no
    Python-level call is made between the withdrawals and the exception taken here."""
    import ctypes

    try:
        for ident in idents:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()),
                                                   ctypes.py_object(_Flush))
        while True:  # taken at the first check: a call's return or a backward jump
            time.sleep(0)
    except _Flush:
        pass


def test_a_submit_blocked_behind_another_thread_keeps_its_deadline_and_takes_interrupts():
    # another producer holds the facade lock (as one waiting for room in a full ring does): a
    # submit with a timeout must give up by its deadline, and one without must still take an
    # interrupt aimed at its thread, not sit in the lock until the holder lets go
    from vyre import QueueFullError

    mk = cpu_mk()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with mk._lock:
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert held.wait(10)
    outcome: dict[str, BaseException | None] = {}

    def call(name: str, **kw: Any) -> None:
        try:
            mk.submit(ADD, [1, OBS], **kw)
            outcome[name] = None
        except BaseException as err:  # noqa: BLE001 (asserted below)
            outcome[name] = err

    try:
        timed = threading.Thread(target=call, args=("timed",), kwargs={"timeout": 0.2},
                                 daemon=True)
        blocked = threading.Thread(target=call, args=("blocked",), daemon=True)
        timed.start()
        blocked.start()
        timed.join(20)
        assert not timed.is_alive(), "submit(timeout=0.2) waited past its deadline"
        err = outcome["timed"]
        assert isinstance(err, QueueFullError) and "Fix: " in str(err), err
        time.sleep(0.1)  # let the other one block on the lock
        _raise_in(blocked, _Async)
        blocked.join(20)
        assert not blocked.is_alive(), "an interrupt never reached a submit blocked on the lock"
        assert isinstance(outcome["blocked"], _Async)
        assert holder.is_alive()  # all of that while the lock stayed taken
    finally:
        release.set()
        holder.join(20)
    assert mk.published == 0
    _check_consistent(mk, set())
    mk.shutdown(drain=False, timeout=10)


def test_an_interrupt_aimed_at_a_blocked_submit_does_not_freeze_a_traced_holder():
    # The hang of the random-interrupt test under coverage, made deterministic: a producer
    # with a trace function (coverage's) holds the facade lock waiting for room; another is
    # blocked on the lock; an asynchronous exception is aimed at the blocked one. On CPython
    # 3.11 that pending exception freezes every traced thread at its next function entry
    # until its target takes it: a target that can only take it once it has the lock never
    # does, and the holder never reaches its deadline. Both must finish.
    mk = Megakernel("cpu", slot_count=4, observable_slots=4, tenants=1, workers=1,
                    test_hooks=True, stall_timeout=30, heartbeat_timeout=30).start()
    outcome: dict[str, BaseException | None] = {}
    making_room = threading.Event()

    def holder_call() -> None:
        sys.settrace(lambda *a: None)  # what coverage does in every thread
        try:
            making_room.set()
            mk.submit(ADD, [1, OBS], timeout=30)  # the ring is full: waits for the STALL
            outcome["holder"] = None
        except BaseException as err:  # noqa: BLE001 (asserted below)
            outcome["holder"] = err
        finally:
            sys.settrace(None)

    def blocked_call() -> None:
        try:
            mk.submit(ADD, [1, OBS])
            outcome["blocked"] = None
        except BaseException as err:  # noqa: BLE001 (asserted below)
            outcome["blocked"] = err

    try:
        mk.submit(STALL_OP, [1500])
        mk.submit_many(*_many(3))  # the ring is full until the STALL ends
        holder = threading.Thread(target=holder_call, daemon=True)
        holder.start()
        assert making_room.wait(10)
        time.sleep(0.1)  # the holder is inside _make_room, with the lock
        blocked = threading.Thread(target=blocked_call, daemon=True)
        blocked.start()
        time.sleep(0.1)  # and this one waits for the lock
        _raise_in(blocked, _Async)
        holder.join(30)
        blocked.join(30)
        stuck = [th.name for th in (holder, blocked) if th.is_alive()]
        if stuck:
            _withdraw_async([])  # unfreeze them, so the failure does not hang the suite
        assert not stuck, f"{stuck} never returned"
        assert outcome["holder"] is None
        assert isinstance(outcome["blocked"], _Async) or outcome["blocked"] is None
        _check_consistent(mk, set())
    finally:
        mk.shutdown(drain=False, timeout=10)


def test_producers_interrupted_at_random_keep_the_books_exact():
    # three threads submit, wait and poll while the main thread raises exceptions in them at
    # random instants (PyThreadState_SetAsyncExc: delivered where a signal would be). Every
    # published ADD must run exactly once, every FAULT be counted, nothing be left behind.
    import ctypes
    import random

    mk = Megakernel("cpu", slot_count=16, observable_slots=4, tenants=1, workers=2,
                    stall_timeout=30, heartbeat_timeout=30).start()
    stop = threading.Event()
    broken: list[BaseException] = []

    def produce(seed: int) -> None:
        while True:  # an interrupt can land anywhere, the loop's own lines included
            try:
                produce_until_stopped(seed)
                return
            except _Async:
                continue

    def produce_until_stopped(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            try:
                k = rng.randrange(6)
                if k == 0:
                    mk.submit_many(*_many(rng.randrange(1, 40)), timeout=30)
                elif k == 1:
                    mk.submit(NOP, tenant=1, timeout=30)  # FAULT
                elif k == 2:
                    mk.drain(timeout=30)
                elif k == 3:
                    mk.finished(max(mk.published - 1, 0)) if mk.published else None
                else:
                    mk.submit(ADD, [1, OBS], timeout=30)
            except (_Async, SlotFaultError):
                pass
            except BaseException as err:  # noqa: BLE001 (reported below)
                broken.append(err)
                return

    threads = [threading.Thread(target=produce, args=(k,), daemon=True) for k in range(3)]
    for th in threads:
        th.start()
    rng = random.Random(1)
    deadline = time.monotonic() + 3.0
    shots = 0
    while time.monotonic() < deadline and not broken:
        th = rng.choice(threads)
        if th.ident is not None and th.is_alive():
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(th.ident),
                                                       ctypes.py_object(_Async))
            shots += 1
        time.sleep(rng.random() * 0.002)
    _withdraw_async([th.ident for th in threads if th.ident is not None])
    stop.set()
    for th in threads:
        th.join(60)
    # a producer still blocked here is the defect this test hunts: fail, do not hang the suite
    assert not [th for th in threads if th.is_alive()], "a producer never returned"
    try:
        assert not broken, broken
        assert shots > 100
        mk.wait(mk.submit(ADD, [1, OBS + 1], timeout=30), timeout=30)
        mk.drain(timeout=30)
        published = mk.published
        assert mk.done_count + mk.fault_count == published
        assert mk.telemetry()["faults"] == mk.fault_count and mk.telemetry()["in_flight"] == 0
        assert int(mk.observables[0]) + int(mk.observables[1]) == mk.done_count
    finally:
        mk.shutdown(drain=False, timeout=10)
