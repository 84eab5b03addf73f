"""The facade as a queue: exactly-once under load, backpressure, watchdog, shutdown, errors."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from vyre import (
    ArgumentError,
    BackendError,
    InvalidValueError,
    Megakernel,
    QueueFullError,
    SlotFaultError,
    WaitTimeoutError,
)
from vyre.backends import _cpu, cuda_available
from vyre.protocol import CTRL_TENANT_BASE, Opcode

OBS = 160
SPIN_OP = _cpu.TEST_OP_SPIN  # the test-hooks build's "never finishes" opcode


def adds(n: int, buckets: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n ATOMIC_ADDs of random small values into `buckets` observables, and the totals."""
    rng = np.random.default_rng(seed)
    vals = rng.integers(1, 1000, size=n, dtype=np.uint32)
    where = rng.integers(0, buckets, size=n, dtype=np.uint32)
    args = np.stack([vals, OBS + where], axis=1).astype(np.uint32)
    totals = np.bincount(where, weights=vals, minlength=buckets).astype(np.uint64) % 2**32
    return np.full(n, Opcode.ATOMIC_ADD, np.uint32), args, totals.astype(np.uint32)


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_million_ops_through_a_small_ring_exactly_once(workers):
    ops, args, totals = adds(1_000_000, 64, seed=workers)
    with Megakernel("cpu", slot_count=256, observable_slots=64, workers=workers) as mk:
        t0 = time.perf_counter()
        tickets = mk.submit_many(ops, args, timeout=60)
        mk.drain(timeout=120)
        elapsed = time.perf_counter() - t0
        assert len(tickets) == 1_000_000
        assert mk.done_count == 1_000_000
        assert np.array_equal(mk.observables[:64], totals)
        assert mk.metrics() == {int(Opcode.ATOMIC_ADD): 1_000_000}
        assert mk.telemetry()["in_flight"] == 0
    assert elapsed < 120


@pytest.mark.gpu
def test_million_ops_on_the_gpu_exactly_once():
    ops, args, totals = adds(1_000_000, 256, seed=9)
    with Megakernel("cuda", slot_count=4096, observable_slots=256) as mk:
        mk.submit_many(ops, args, timeout=60)
        mk.drain(timeout=60)
        assert mk.done_count == 1_000_000
        assert np.array_equal(mk.observables[:256], totals)


def test_concurrent_producers(backend):
    n_threads, per_thread = 4, 5_000
    with Megakernel(backend, slot_count=128, observable_slots=8,
                    workers=2 if backend == "cpu" else None) as mk:
        errors: list[BaseException] = []

        def produce(k: int) -> None:
            try:
                for i in range(per_thread):
                    mk.submit(Opcode.ATOMIC_ADD, [1 + (i & 1), OBS + k], timeout=30)
            except BaseException as err:  # surfaced below
                errors.append(err)

        threads = [threading.Thread(target=produce, args=(k,)) for k in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not errors
        mk.drain(timeout=60)
        assert list(mk.observables[:n_threads]) == [per_thread // 2 * 3] * n_threads
        assert mk.done_count == n_threads * per_thread


def test_submit_many_validates_before_writing(backend):
    with Megakernel(backend, slot_count=64, observable_slots=8) as mk:
        ring = mk.backend.ring.copy()
        ops = np.full(200, Opcode.NOP, np.uint32)
        ops[150] = 0xFFF5  # reserved
        with pytest.raises(ArgumentError) as info:
            mk.submit_many(ops)
        assert "reserved" in str(info.value) and "Fix:" in str(info.value)
        assert np.array_equal(mk.backend.ring, ring) and mk.published == 0


def test_wait_rejects_unpublished_tickets(backend):
    with Megakernel(backend, slot_count=16) as mk:
        with pytest.raises(ValueError):
            mk.wait(5)
        mk.wait(mk.submit(Opcode.NOP))


def test_context_manager_drains(backend):
    with Megakernel(backend, slot_count=32, observable_slots=4) as mk:
        for _ in range(100):
            mk.submit(Opcode.ATOMIC_ADD, [1, OBS])
    assert mk.observables[0] == 100  # views stay readable after shutdown
    with pytest.raises(BackendError):
        mk.start()


# ---------------------------------------------------------------- stuck slots (CPU test build)
def spin_mk(**kw) -> Megakernel:
    kw.setdefault("slot_count", 8)
    return Megakernel("cpu", workers=1, test_hooks=True, **kw).start()


def test_watchdog_reports_a_slot_that_never_finishes():
    mk = spin_mk(stall_timeout=0.5, heartbeat_timeout=0.3)
    try:
        t = mk.submit(SPIN_OP)
        t0 = time.monotonic()
        with pytest.raises(BackendError) as info:
            mk.wait(t)  # no timeout given: the watchdog must still end the wait
        assert time.monotonic() - t0 < 30  # ended by the watchdog, not hung
        assert "Fix:" in str(info.value)
    finally:
        t0 = time.monotonic()
        mk.shutdown(drain=False, timeout=5)  # the spin honours SHUTDOWN
        assert time.monotonic() - t0 < 5 + 10


def test_wait_timeout_is_its_own_error():
    mk = spin_mk(stall_timeout=30, heartbeat_timeout=30)
    try:
        t = mk.submit(SPIN_OP)
        with pytest.raises(WaitTimeoutError):
            mk.wait(t, timeout=0.2)
    finally:
        mk.shutdown(drain=False, timeout=5)


def test_full_ring_backpressure_times_out_with_queue_full():
    mk = spin_mk(slot_count=4, stall_timeout=30, heartbeat_timeout=30)
    try:
        mk.submit(SPIN_OP)
        for _ in range(3):
            mk.submit(Opcode.NOP)
        t0 = time.monotonic()
        with pytest.raises(QueueFullError) as info:
            mk.submit(Opcode.NOP, timeout=0.3)
        assert 0.25 < time.monotonic() - t0 < 20  # waited its timeout, then gave up
        assert info.value.queue == "ring" and "Fix:" in str(info.value)
    finally:
        mk.shutdown(drain=False, timeout=5)


SUBMITTER_S = 5.0  # how long the blocked submitter below waits for room


def test_polls_and_short_waits_are_not_held_up_by_a_submitter_waiting_for_room():
    # a submit into a full ring holds the facade's lock while it waits for room; finished()
    # must still answer at once and wait(timeout=) keep its own deadline
    mk = spin_mk(slot_count=4, stall_timeout=30, heartbeat_timeout=30)
    try:
        stuck = mk.submit(SPIN_OP)
        nops = [mk.submit(Opcode.NOP) for _ in range(3)]
        started = threading.Event()

        def submitter():
            started.set()
            _swallow(mk.submit, Opcode.NOP, timeout=SUBMITTER_S)

        th = threading.Thread(target=submitter)
        th.start()
        started.wait()
        time.sleep(0.1)  # it is inside _make_room now, holding the lock
        assert mk.finished(stuck) is False
        assert mk.finished(nops[0]) is False  # behind the spin: not retired, in order
        with pytest.raises(WaitTimeoutError):
            mk.wait(stuck, timeout=0.2)
        # neither call waited for the submitter to give up: it is still waiting for room
        # (a progress check, not a wall-clock guess, so a loaded machine cannot fail it)
        assert th.is_alive()
        th.join(SUBMITTER_S + 30)
        assert not th.is_alive()
    finally:
        mk.shutdown(drain=False, timeout=5)


def test_a_wait_keeps_its_deadline_while_another_thread_holds_the_lock(held_elsewhere):
    with Megakernel("cpu", slot_count=16) as mk:
        t = mk.submit(Opcode.NOP)
        deadline = time.monotonic() + 10
        while mk._ring[(t % 16) * 16] != 3 and time.monotonic() < deadline:  # DONE, unretired
            time.sleep(0.001)
        assert mk._ring[(t % 16) * 16] == 3
        with held_elsewhere(mk._lock):
            t0 = time.monotonic()
            with pytest.raises(WaitTimeoutError):
                mk.wait(t, timeout=0.2)  # finished, but retiring it needs the lock
            # the holder keeps the lock for up to 30 s: far below that is "kept its deadline"
            assert time.monotonic() - t0 < 10
        mk.wait(t, timeout=5)


@pytest.mark.parametrize("timeout", [float("inf"), 1e10])
def test_waits_without_a_practical_limit(backend, timeout):
    with Megakernel(backend, slot_count=16) as mk:
        t = mk.submit(Opcode.NOP)
        mk.wait(t, timeout=timeout)
        mk.submit(Opcode.NOP)
        mk.drain(timeout=timeout)
        mk.shutdown(timeout=timeout)


def test_submit_many_shapes_are_checked_on_every_path(backend):
    with Megakernel(backend, slot_count=8, observable_slots=4) as mk:
        one = mk.submit_many(np.array(int(Opcode.NOP), np.uint32))  # 0-d: one slot
        assert len(one) == 1
        with pytest.raises(ArgumentError, match="args has shape"):
            mk.submit_many(np.full(2, Opcode.NOP, np.uint32), np.ones((3, 1), np.uint32))
        with pytest.raises(ArgumentError, match="args has shape"):  # larger than the ring
            mk.submit_many(np.full(20, Opcode.NOP, np.uint32), np.ones((21, 1), np.uint32))
        mk.drain(timeout=10)
        assert mk.telemetry()["published"] == 1  # nothing of the refused calls went out


def test_shutdown_while_busy_returns_within_timeout():
    ops, args, _ = adds(2_000_000, 16)
    mk = Megakernel("cpu", slot_count=1024, observable_slots=16, workers=2).start()
    feeder = threading.Thread(target=lambda: _swallow(mk.submit_many, ops, args, timeout=5))
    feeder.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    mk.shutdown(drain=False, timeout=5)
    assert time.monotonic() - t0 < 5 + 10  # its own bound plus scheduling slack
    feeder.join(20)
    assert not feeder.is_alive()


def _swallow(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except Exception:
        pass


def test_drain_shutdown_of_a_spinning_slot_raises_but_stops():
    mk = spin_mk(stall_timeout=0.3, heartbeat_timeout=0.3)
    mk.submit(SPIN_OP)
    t0 = time.monotonic()
    with pytest.raises(BackendError):
        mk.shutdown(drain=True, timeout=5)
    assert time.monotonic() - t0 < 8
    assert not mk.backend.running


@pytest.mark.skipif(cuda_available()[0], reason="a GPU is present here")
def test_cuda_backend_unavailable_says_what_to_install():
    with pytest.raises(BackendError) as info:
        Megakernel("cuda")
    assert "Fix:" in str(info.value) and "cuda" in info.value.fix.lower()


def test_unknown_backend_name():
    with pytest.raises(InvalidValueError, match="Fix: pass one of 'auto', 'cpu', 'cuda'"):
        Megakernel("tpu")


def test_submit_many_refuses_values_a_cast_would_change(backend):
    with Megakernel(backend, slot_count=16) as mk:
        with pytest.raises(ArgumentError):
            mk.submit_many(np.zeros(2, np.int64), np.array([[1, -1], [1, 2]], np.int64))
        with pytest.raises(ArgumentError):
            mk.submit_many(np.zeros(2, np.int64), np.array([[1, 2**32], [1, 2]], np.int64))
        with pytest.raises(ArgumentError):
            mk.submit_many(np.zeros(2, np.float32))
        assert mk.published == 0
        mk.submit_many(np.zeros(2, np.int64), np.array([[1, 161], [2, 161]], np.int64))
        mk.drain(timeout=10)
        assert mk.observables[1] == 0  # NOPs: args ignored


@pytest.mark.gpu
def test_two_gpu_megakernels_at_once_and_one_stops_under_the_other():
    """Several megakernels per process: both run; stopping one (which releases its memory)
    must not wait on the other's persistent kernel."""
    a = Megakernel("cuda", slot_count=256, observable_slots=8).start()
    b = Megakernel("cuda", slot_count=256, observable_slots=8).start()
    try:
        ha, _ = a.alloc_buffer(np.arange(64, dtype=np.uint8), device=True)
        ta = a.submit_many(*adds(10_000, 8, seed=1)[:2])
        tb = b.submit_many(*adds(10_000, 8, seed=2)[:2])
        a.wait(ta, timeout=30)
        b.wait(tb, timeout=30)
        assert np.array_equal(a.observables[:8], adds(10_000, 8, seed=1)[2])
        assert np.array_equal(b.observables[:8], adds(10_000, 8, seed=2)[2])
        t0 = time.monotonic()
        a.shutdown(timeout=10)  # frees a's memory while b's kernel runs
        assert time.monotonic() - t0 < 10
        b.wait(b.submit(Opcode.ATOMIC_ADD, [1, OBS]), timeout=30)
    finally:
        a.shutdown(drain=False, timeout=10)
        b.shutdown(drain=False, timeout=10)


def test_faults_are_not_lost_to_drain_or_a_first_wait(backend):
    with Megakernel(backend, slot_count=16, tenants=1) as mk:
        bad = mk.submit(Opcode.NOP, tenant=3)  # unauthorized
        ok = mk.submit(Opcode.NOP)
        mk.drain(timeout=10)  # counts, does not raise
        for _ in range(2):  # every wait covering it raises, not just the first
            with pytest.raises(SlotFaultError):
                mk.wait(bad, timeout=10)
        with pytest.raises(SlotFaultError):
            mk.wait(range(bad, ok + 1), timeout=10)
        mk.wait(ok, timeout=10)


def test_a_fault_among_many_done_slots_is_found_by_wait_and_drain(backend):
    # a wait whose walk saw only DONE slots retires them without a second walk; one that saw
    # a FAULT must fall back to the walk that records it
    ops, args, totals = adds(300, 8)
    with Megakernel(backend, slot_count=1024, observable_slots=8, tenants=1) as mk:
        first = mk.submit_many(ops, args)
        bad = mk.submit(Opcode.NOP, tenant=3)  # unauthorized
        last = mk.submit_many(ops, args)
        with pytest.raises(SlotFaultError, match=f"ticket {bad} "):
            mk.wait(range(first[0], last[-1] + 1), timeout=10)
        mk.wait(first, timeout=10)
        mk.wait(last, timeout=10)
        assert mk.fault_count == 1 and mk.done_count == 600
        again = mk.submit_many(ops, args)
        mk.drain(timeout=10)
        with pytest.raises(SlotFaultError):
            mk.wait(bad, timeout=10)
        mk.wait(again, timeout=10)
        want = (totals.astype(np.uint64) * 3 % 2**32).astype(np.uint32)
        assert np.array_equal(mk.observables[:8], want)


def test_a_clean_wait_does_not_walk_its_slots_twice(backend, monkeypatch):
    from vyre import wire
    walked = []
    real = wire.retire

    def spy(ring, start, count):
        got = real(ring, start, count)
        walked.append(got[0])
        return got

    monkeypatch.setattr(wire, "retire", spy)
    with Megakernel(backend, slot_count=4096, observable_slots=4) as mk:
        ops, args, totals = adds(4000, 4)
        mk.submit_many(ops, args)
        mk.drain(timeout=10)
        assert np.array_equal(mk.observables[:4], totals)
        assert mk.telemetry()["in_flight"] == 0
    # the wait's walk retired what it saw finished; the retire walk only took what it had not
    # reached yet (everything, twice over, without the shortcut)
    assert sum(walked) < 4000


def test_tenant_table_edits_apply_to_the_next_slot(backend):
    # the GPU mirrors the table one poller pass behind the doorbell: a slot published right
    # after a host edit must still be judged by the edited table, both ways, every time
    with Megakernel(backend, slot_count=32, observable_slots=4, tenants=2) as mk:
        mask = int(mk.control[CTRL_TENANT_BASE]) + 1  # tenant 1's word
        for _ in range(40):
            mk.control[mask] = 0
            with pytest.raises(SlotFaultError):
                mk.wait(mk.submit(Opcode.NOP, tenant=1), timeout=10)
            mk.control[mask] = 0xFFFFFFFF
            mk.wait(mk.submit(Opcode.NOP, tenant=1), timeout=10)


def test_tickets_are_any_integer_and_never_negative(backend):
    with Megakernel(backend, slot_count=16) as mk:
        t = mk.submit(Opcode.NOP)
        mk.wait(np.int64(t), timeout=10)
        mk.wait([np.uint32(t)], timeout=10)
        with pytest.raises(ValueError):
            mk.wait([t, -1])
        with pytest.raises(ValueError):
            mk.wait(range(-2, 1))
        for bad in (-1, t + 1, t + 1000):  # one plain int takes a shorter path: same checks
            with pytest.raises(ValueError, match="never published"):
                mk.wait(bad)


def test_held_back_doorbell_is_rung_by_a_waiter(backend):
    with Megakernel(backend, slot_count=64, observable_slots=4) as mk:
        ops, args, totals = adds(64, 4)
        mk.submit_many(ops, args, notify=False)
        mk.drain(timeout=10)  # must not wait on slots the workers were never told about
        assert np.array_equal(mk.observables[:4], totals)
        mk.submit_many(ops, args, notify=False)
        mk.submit(Opcode.NOP, timeout=10)  # a full ring: room needs the held-back slots run
        mk.drain(timeout=10)
        assert np.array_equal(mk.observables[:4], 2 * totals)


def test_submit_many_rings_a_doorbell_while_it_writes(monkeypatch):
    # the CPU backend has no doorbell: a fake one shows what a GPU would be told
    from vyre import megakernel
    calls, kicks = [], []
    real = megakernel.wire.publish_many

    def spy(*a, **kw):
        rung = kw["doorbell"] is bell  # (the facade's own write mark is passed otherwise)
        calls.append((len(a[3]), rung, kw["first_ticket"]))
        if rung:
            steps.append(kw["notify_every"])
        return real(*a, **kw)
    steps: list[int] = []
    monkeypatch.setattr(megakernel.wire, "publish_many", spy)
    monkeypatch.setattr(megakernel, "_DOORBELL_EVERY", 16)  # so 40 ops ring it part-way
    bell = np.zeros(2, np.uint64)
    with Megakernel("cpu", slot_count=64, observable_slots=4) as mk:
        mk._doorbell = bell
        real_kick = mk.backend.kick
        monkeypatch.setattr(mk.backend, "kick", lambda: (kicks.append(1), real_kick())[1])
        ops, args, _ = adds(40, 4)
        assert mk.submit_many(ops, args) == range(0, 40)
        assert calls == [(40, True, 0)] and len(kicks) == 1
        assert bell.tolist() == [40, 0] and mk._notified == 40
        mk.drain(timeout=10)
        calls.clear()
        mk.submit_many(ops[:8], args[:8], notify=False)  # held back: no doorbell write
        assert calls == [(8, False, 40)] and bell.tolist() == [40, 0] and mk._notified == 40
        mk.notify()
        assert bell.tolist() == [48, 0] and mk._notified == 48
        mk.drain(timeout=10)
        calls.clear()
        ops2, args2, _ = adds(1000, 4, seed=3)  # in pieces: more than the ring holds
        assert mk.submit_many(ops2, args2, timeout=10) == range(48, 1048)
        sizes = [c[0] for c in calls]
        assert len(calls) > 1 and sum(sizes) == 1000 and all(c[1] for c in calls)
        assert [c[2] for c in calls] == [48 + sum(sizes[:i]) for i in range(len(calls))]
        assert bell.tolist() == [1048, 0] and mk._notified == 1048
        assert steps and set(steps) == {16}  # the writer steps the doorbell (test_wire_publish)
        mk.drain(timeout=10)
        expected = np.zeros(4, np.uint64)
        for rows in (args, args[:8], args2):
            np.add.at(expected, rows[:, 1] - OBS, rows[:, 0])
        assert np.array_equal(mk.observables[:4], (expected % 2**32).astype(np.uint32))
        assert mk.done_count == 1048


def test_a_full_ring_before_start_fails_at_once():
    mk = Megakernel("cpu", slot_count=4)
    for _ in range(4):
        mk.submit(Opcode.NOP)
    t0 = time.monotonic()
    with pytest.raises(BackendError) as info:
        mk.submit(Opcode.NOP)
    assert time.monotonic() - t0 < 10 and "start()" in info.value.fix  # no wait for room
    mk.start()
    mk.shutdown(timeout=10)


def test_work_stranded_by_a_shutdown_slot_is_reported(backend):
    mk = Megakernel(backend, slot_count=64, stall_timeout=30, heartbeat_timeout=30).start()
    try:
        mk.wait(mk.submit(Opcode.SHUTDOWN), timeout=10)
        time.sleep(0.1)  # the workers leave
        t = mk.submit(Opcode.NOP)
        t0 = time.monotonic()
        with pytest.raises(BackendError) as info:
            mk.wait(t, timeout=20)
        assert "SHUTDOWN" in str(info.value) and time.monotonic() - t0 < 15  # wait had 20
    finally:
        mk.shutdown(drain=False, timeout=10)


def test_a_long_slot_keeps_the_heartbeat_alive():
    """One worker busy in a long DFA_SCAN is alive: the watchdog must not call it hung.

    The scan is sized from this machine's measured scan rate to outlast the heartbeat timeout
    several times, so the test means the same on a fast idle machine and a slow loaded one,
    and the timeout is generous enough that a descheduled worker is not taken for a dead one.
    """
    hb = 2.0
    with Megakernel("cpu", slot_count=8, observable_slots=8, workers=1,
                    heartbeat_timeout=hb, stall_timeout=600) as mk:
        table = np.zeros(256, np.uint32)  # one state, never accepts
        h_tab, _ = mk.alloc_buffer(table)
        cap = 6 << 30  # zero pages: address space only, never touched memory
        h_dat, _ = mk.alloc_buffer(cap)
        probe = 64 << 20
        t0 = time.monotonic()
        mk.wait(mk.submit(Opcode.DFA_SCAN, [h_tab, h_dat, 0, probe, 0xFFFFFFFF, 0, 0]),
                timeout=600)
        rate = probe / max(time.monotonic() - t0, 1e-6)
        size = int(min(cap, max(probe, rate * 4 * hb)))
        t0 = time.monotonic()
        mk.wait(mk.submit(Opcode.DFA_SCAN, [h_tab, h_dat, 0, size, 0xFFFFFFFF, 0, 0]),
                timeout=600)
        took = time.monotonic() - t0
        assert took > hb, f"precondition: the scan ({size >> 20} MiB) outlasts the timeout"


def test_paused_block_is_reentrant_and_work_runs_after_it(backend):
    with Megakernel(backend, slot_count=64) as mk:
        with mk.paused():
            with mk.paused():
                t = mk.submit(Opcode.ATOMIC_ADD, [2, OBS])
        mk.wait(t, timeout=10)
        assert mk.observables[0] == 2


def test_finished_polls_without_blocking_or_raising_for_no(backend):
    """finished(): False while a ticket is out, True once retired, the fault of a faulted
    ticket raised as wait() raises it, a ticket never published refused, and a megakernel
    shut down under a pending ticket reported instead of a False forever."""
    mk = Megakernel(backend, slot_count=16, tenants=1)
    try:
        a = mk.submit(Opcode.NOP)  # not started: stays pending
        t0 = time.perf_counter()
        assert mk.finished(a) is False and mk.finished([a]) is False
        assert time.perf_counter() - t0 < 2  # a poll: far below any watchdog or wait bound
        assert mk.finished([]) is True and mk.finished(range(0)) is True
        with pytest.raises(ValueError, match="never published"):
            mk.finished(a + 1)
        mk.start()
        bad = mk.submit(Opcode.NOP, tenant=3)  # unauthorized: FAULT
        deadline = time.monotonic() + 10
        while not mk.finished(range(a, a + 1)):
            assert time.monotonic() < deadline
        with pytest.raises(SlotFaultError):
            while not mk.finished([a, bad]):
                assert time.monotonic() < deadline
        assert mk.finished(np.int64(a)) is True
    finally:
        mk.shutdown(drain=False, timeout=10)
    never = Megakernel(backend, slot_count=16)
    pending = never.submit(Opcode.NOP)
    never.shutdown(drain=False)  # never started: the slot will not run
    with pytest.raises(BackendError, match="shut down"):
        never.finished(pending)
