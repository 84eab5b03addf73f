"""The CPU backend itself: worker threads, ticket claiming under load, idle behaviour,
heartbeat, stop with a timeout, LOAD_MISS against a host io service, the test hooks."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from test_interp_rig import (
    ATOMIC_ADD,
    CLAIMED,
    DONE,
    DONE_COUNT,
    EMPTY,
    FAULT,
    FAULT_COUNT,
    HEARTBEAT,
    IO_ERROR,
    IO_OK,
    IO_READ,
    LOAD_MISS,
    M32,
    NOP,
    OBS,
    PUBLISHED,
    SHUTDOWN,
    STORE_U32,
    Rig,
)

from vyre.backends import _cpu
from vyre.backends.cpu import CpuBackend, max_workers
from vyre.errors import BackendError, InvalidTypeError, InvalidValueError, PipelineError

# upper bounds on calls that should return "at once": generous, so that a loaded machine
# (scheduling delays of a second or more) cannot fail them; hangs still fail
SLACK_S = 10.0
SPIN_OP = _cpu.TEST_OP_SPIN    # test-hooks build: spins until SHUTDOWN
STALL_OP = _cpu.TEST_OP_STALL  # test-hooks build: busy a0 ms, ignoring SHUTDOWN


def pump(be: CpuBackend, body: np.ndarray, total: int, timeout: float = 30.0) -> float:
    """Publish ``total`` slots (the ``(chunk, 15)`` body repeated) through the ring in
    ticket order, a chunk at a time, each slot only after its previous use retired; wait
    until all are done. Returns the seconds it took."""
    n = be.slot_count
    chunk = body.shape[0]
    assert n % chunk == 0 and total % chunk == 0
    ring = be.ring.reshape(n, 16)
    t0 = time.monotonic()
    deadline = t0 + timeout
    for t in range(0, total, chunk):
        s = t % n
        status = ring[s:s + chunk, 0]
        spins = 0
        while not np.all((status == DONE) | (status == EMPTY)):
            spins += 1
            if spins > 50:
                time.sleep(0)
                assert time.monotonic() < deadline, "ring did not drain: deadlock?"
        ring[s:s + chunk, 1:] = body
        ring[s:s + chunk, 0] = PUBLISHED  # status last
        be.kick()
    while int(be.control[DONE_COUNT]) < total:
        assert time.monotonic() < deadline, (
            f"only {int(be.control[DONE_COUNT])} of {total} done: deadlock?")
        time.sleep(0.0005)
    return time.monotonic() - t0


def adds_body(chunk: int, targets: int) -> np.ndarray:
    body = np.zeros((chunk, 15), dtype=np.uint32)
    body[:, 0] = ATOMIC_ADD
    body[:, 2] = 2
    i = np.arange(chunk, dtype=np.uint64)
    body[:, 3] = ((i * 2654435761 + 12345) & 0xFFFFFFFF).astype(np.uint32)  # large: wraps
    body[:, 4] = OBS + (i % targets).astype(np.uint32)
    return body


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_million_atomic_adds_exact(workers):
    total, chunk, targets = 1 << 20, 256, 8
    with Rig(slot_count=1024, observable_slots=16, workers=workers) as r:
        body = adds_body(chunk, targets)
        took = pump(r.be, body, total)
        want = [0] * targets
        for row in body:
            want[int(row[4]) - OBS] += int(row[3])
        rounds = total // chunk
        want = [(w * rounds) & M32 for w in want]
        assert [int(x) for x in r.obs[:targets]] == want
        assert int(r.ctl[DONE_COUNT]) == total
        assert int(r.ctl[FAULT_COUNT]) == 0
        assert r.metrics()[ATOMIC_ADD] == total
        assert r.be.pool.stats()["executed"] == total
        assert (r.ring[:, 0] == DONE).all()
        print(f"{workers} workers: {total / took / 1e6:.2f} M ops/s")


def test_mixed_tenants_and_faults_under_load():
    """Concurrent FAULTs and DONEs are each counted exactly once."""
    chunk, total = 128, 128 * 400
    with Rig(slot_count=512, observable_slots=16, workers=3) as r:
        body = adds_body(chunk, 4)
        body[1::4, 1] = 30          # unauthorized tenant -> FAULT
        body[2::4, 1] = 1           # tenant 1 writing a protected word -> FAULT
        body[2::4, 4] = DONE_COUNT
        faults_per_chunk = len(body[1::4]) + len(body[2::4])
        n = r.be.slot_count
        ring = r.ring
        deadline = time.monotonic() + 30
        for t in range(0, total, chunk):
            s = t % n
            st = ring[s:s + chunk, 0]
            while not np.all((st == DONE) | (st == EMPTY) | (st == FAULT)):
                time.sleep(0)
                assert time.monotonic() < deadline
            ring[s:s + chunk, 1:] = body
            ring[s:s + chunk, 0] = PUBLISHED
            r.be.kick()
        rounds = total // chunk
        while int(r.ctl[DONE_COUNT]) + int(r.ctl[FAULT_COUNT]) < total:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert int(r.ctl[FAULT_COUNT]) == faults_per_chunk * rounds
        assert int(r.ctl[DONE_COUNT]) == total - faults_per_chunk * rounds
        ok = np.ones(chunk, bool)
        ok[1::4] = ok[2::4] = False
        want = [0] * 4
        for row in body[ok]:
            want[int(row[4]) - OBS] += int(row[3])
        assert [int(x) for x in r.obs[:4]] == [(w * rounds) & M32 for w in want]


def test_stop_while_busy_returns_within_timeout():
    with Rig(slot_count=4096, observable_slots=16, workers=2) as r:
        body = adds_body(4096, 4)
        r.ring[:, 1:] = body
        r.ring[:, 0] = PUBLISHED
        r.be.kick()
        t0 = time.monotonic()
        r.be.stop(2.0)
        assert time.monotonic() - t0 < 2.0 + SLACK_S
        assert not r.be.running and r.be.pool.alive == 0
        done = int(r.ctl[DONE_COUNT])
        assert done == int((r.ring[:, 0] == DONE).sum())  # hard stop: no slot half-counted
        assert int((r.ring[:, 0] == CLAIMED).sum()) == 0


def test_idle_workers_do_not_burn_cpu_and_keep_beating():
    with Rig(workers=2) as r:
        time.sleep(0.05)  # let them reach the sleeping phase
        beat0 = int(r.ctl[HEARTBEAT])
        cpu0, wall0 = time.process_time(), time.monotonic()
        time.sleep(0.4)
        cpu = time.process_time() - cpu0
        wall = time.monotonic() - wall0
        beats = int(r.ctl[HEARTBEAT]) - beat0
        assert cpu < 0.25 * wall, f"idle workers used {cpu:.3f}s CPU in {wall:.3f}s"
        assert beats >= 20, f"only {beats} heartbeats in {wall:.2f}s while idle"
        assert r.be.pool.stats()["sleeps"] > 0
        # a kick after a long sleep wakes the sleepers and gets the slot done promptly
        wakes0 = r.be.pool.stats()["wakes"]
        t0 = time.monotonic()
        assert r.run(STORE_U32, [1, OBS]) == DONE
        assert time.monotonic() - t0 < SLACK_S
        assert r.be.pool.stats()["wakes"] > wakes0


def test_heartbeat_moves_while_busy():
    with Rig(slot_count=1024, observable_slots=16, workers=2) as r:
        beat0 = int(r.ctl[HEARTBEAT])
        took = pump(r.be, adds_body(256, 4), 1 << 17)
        beats = int(r.ctl[HEARTBEAT]) - beat0
        assert beats >= max(1, int(took / 0.002 * 0.3)), (beats, took)


def test_restart_continues_with_the_next_ticket():
    with Rig(workers=2) as r:
        for _ in range(5):
            assert r.run(ATOMIC_ADD, [1, OBS]) == DONE
        r.be.stop(2.0)
        assert r.be.pool.next_ticket == 5  # tickets taken but never claimed are given back
        r.be.start()
        for _ in range(20):
            assert r.run(ATOMIC_ADD, [1, OBS]) == DONE
        assert r.obs[0] == 25 and int(r.ctl[DONE_COUNT]) == 25


def test_execute_one_without_threads():
    with Rig(start=False) as r:
        r.publish(STORE_U32, [7, OBS + 1])
        assert r.be.pool.execute_one(0) == DONE
        assert r.obs[1] == 7
        assert r.be.pool.execute_one(0) == -1  # not PUBLISHED any more
        r.publish(STORE_U32, [1, 0], tenant=2)
        assert r.be.pool.execute_one(1) == FAULT
        assert int(r.ctl[FAULT_COUNT]) == 1 and int(r.ctl[DONE_COUNT]) == 1


# ------------------------------------------------------------------------ LOAD_MISS (§8)
class IoService(threading.Thread):
    """A host io service: claims PUBLISHED requests (CAS), completes them OK (or ERROR for
    odd resource ids), records what it saw."""

    def __init__(self, be: CpuBackend, cas) -> None:
        super().__init__(daemon=True)
        self.be, self.cas = be, cas
        self.seen: list[list[int]] = []
        self.halt = False

    def run(self) -> None:
        ioq = self.be.ioq
        while not self.halt:
            for i in range(len(ioq) // 8):
                status = 8 * i + 6
                if (ioq[status] == PUBLISHED
                        and self.cas(ioq, status, PUBLISHED, CLAIMED) == PUBLISHED):
                    req = [int(x) for x in ioq[8 * i:8 * i + 8]]
                    self.seen.append(req)
                    ioq[8 * i + 6] = IO_ERROR if req[1] % 2 else IO_OK
            time.sleep(0.0002)


@pytest.mark.parametrize("io_slots", [1, 4])
def test_load_miss_served_ok_and_error(io_slots):
    with Rig(slot_count=32, io_slots=io_slots, workers=2) as r:
        from vyre.backends import _cpu
        svc = IoService(r.be, _cpu.atomic_cas_u32)
        svc.start()
        try:
            ts = [r.publish(LOAD_MISS, [rid, 4096 + rid, 3, rid * 10, 1]) for rid in range(12)]
            sts = [r.wait(t) for t in ts]
        finally:
            svc.halt = True
            svc.join()
        assert sts == [DONE if rid % 2 == 0 else FAULT for rid in range(12)]
        assert int(r.ctl[DONE_COUNT]) == 6 and int(r.ctl[FAULT_COUNT]) == 6
        assert sorted(req[1] for req in svc.seen) == list(range(12))
        for req in svc.seen:
            rid = req[1]
            # [op_type, src=resource id, dst handle=a2, offset lo=a3, hi=a4, bytes=a1, status, tag]
            assert req[0] == IO_READ and req[2] == 3 and req[3] == rid * 10 and req[4] == 1
            assert req[5] == 4096 + rid and req[7] == ts[rid] % r.n
        assert (r.be.ioq[6::8] == EMPTY).all()  # every io slot recycled


def test_load_miss_many_slots_few_io_slots_all_complete():
    """More concurrent LOAD_MISS slots than io slots: some park in WAIT_IO and are retried."""
    with Rig(slot_count=64, io_slots=1, workers=4) as r:
        from vyre.backends import _cpu
        svc = IoService(r.be, _cpu.atomic_cas_u32)
        svc.start()
        try:
            ts = [r.publish(LOAD_MISS, [2 * i, 8, 0, 0, 0]) for i in range(40)]
            assert [r.wait(t, timeout=10) for t in ts] == [DONE] * 40
        finally:
            svc.halt = True
            svc.join()
        assert int(r.ctl[DONE_COUNT]) == 40 and len(svc.seen) == 40


def test_load_miss_without_io_queue_faults():
    with Rig(io_slots=0, workers=1) as r:
        assert r.run(LOAD_MISS, [1, 2]) == FAULT
        assert int(r.ctl[FAULT_COUNT]) == 1


def test_load_miss_unserved_request_is_withdrawn():
    """Nobody services the io queue: after the bounded wait (short in the test build) the
    request is withdrawn (io slot EMPTY again) and the slot ends in FAULT."""
    with Rig(io_slots=2, workers=1, test_hooks=True) as r:
        t0 = time.monotonic()
        assert r.run(LOAD_MISS, [1, 2], timeout=10) == FAULT
        assert time.monotonic() - t0 < 5
        assert (r.be.ioq[6::8] == EMPTY).all()


def test_load_miss_wait_honours_shutdown():
    with Rig(io_slots=2, workers=1) as r:  # release build: the wait bound is ~2 s
        t = r.publish(LOAD_MISS, [1, 2])
        deadline = time.monotonic() + 2
        while int(r.be.ioq[6]) != PUBLISHED and int(r.be.ioq[14]) != PUBLISHED:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        t0 = time.monotonic()
        r.be.stop(2.0)
        # the io wait bound is ~2 s of backoff rounds, which only grow under load: a stop
        # that returns before it has honoured SHUTDOWN, not the bound
        assert time.monotonic() - t0 < 1.9
        assert r.status(t) == FAULT and (r.be.ioq[6::8] == EMPTY).all()


# ------------------------------------------------------------------------ test hooks, stop
def test_spinning_slot_keeps_a_worker_busy_but_stop_returns():
    with Rig(workers=2, test_hooks=True) as r:
        t = r.publish(SPIN_OP)
        r.wait(t, until=(CLAIMED,))
        time.sleep(0.05)
        assert r.status(t) == CLAIMED
        # the other worker keeps serving slots and the heartbeat
        beat0 = int(r.ctl[HEARTBEAT])
        for _ in range(10):
            assert r.run(ATOMIC_ADD, [1, OBS]) == DONE
        time.sleep(0.05)
        assert int(r.ctl[HEARTBEAT]) > beat0
        r.be.stop(30.0)  # the spin honours SHUTDOWN (else stop raises BackendError)
        assert not r.be.running
        assert r.status(t) == CLAIMED  # a hard stop leaves the unfinished slot as it was
        assert int(r.ctl[DONE_COUNT]) == 10


def test_single_spinning_worker_stops_the_heartbeat():
    with Rig(workers=1, test_hooks=True) as r:
        r.wait(r.publish(SPIN_OP), until=(CLAIMED,))
        time.sleep(0.01)
        beat0 = int(r.ctl[HEARTBEAT])
        time.sleep(0.1)
        assert int(r.ctl[HEARTBEAT]) == beat0  # nobody alive to beat: the host can tell
        r.be.stop(2.0)


def test_stop_timeout_when_a_worker_ignores_shutdown():
    with Rig(workers=2, test_hooks=True) as r:
        t = r.publish(STALL_OP, [600])
        r.wait(t, until=(CLAIMED,))
        t0 = time.monotonic()
        with pytest.raises(BackendError) as info:
            r.be.stop(0.1)
        assert 0.09 < time.monotonic() - t0 < 0.1 + SLACK_S
        assert "Fix:" in str(info.value) and "did not exit" in str(info.value)
        assert r.be.running and r.be.pool.alive == 1
        r.be.stop(5.0)  # keeps waiting; the stall ends and the worker exits
        assert not r.be.running and r.be.pool.alive == 0
        assert r.status(t) == DONE


def test_release_build_has_no_test_opcodes():
    with Rig(workers=1) as r:
        from vyre.backends import _cpu
        assert not _cpu.TEST_HOOKS
        assert r.run(SPIN_OP) == DONE  # an ordinary unknown user opcode here
        assert r.run(STALL_OP, [10_000]) == DONE


# ------------------------------------------------------------------------ construction, buffers
def test_allocation_layout():
    be = CpuBackend(slot_count=10, observable_slots=7, debug_records=3, io_slots=5, workers=1)
    try:
        assert be.ring.shape == (160,) and be.ring.dtype == np.uint32
        assert be.control.shape == (167,) and be.debug.shape == (14,) and be.ioq.shape == (40,)
        assert not any(a.any() for a in (be.ring, be.control, be.debug, be.ioq))
        assert be.name == "cpu" and not be.running
        d = be.describe()
        assert d["workers"] == 1 and "memory" in d
        assert CpuBackend(slot_count=1, observable_slots=0, debug_records=0, io_slots=0,
                          workers=None).workers == (os.cpu_count() or 1)
    finally:
        be.close()
        be.close()  # twice is fine


@pytest.mark.parametrize("kw, error", [
    ({"slot_count": 0}, InvalidValueError), ({"slot_count": (1 << 20) + 1}, InvalidValueError),
    ({"observable_slots": -1}, InvalidValueError), ({"io_slots": 65}, InvalidValueError),
    ({"workers": 0}, InvalidValueError), ({"workers": max_workers() + 1}, InvalidValueError),
    ({"bogus": 1}, BackendError), ({"slot_count": "x"}, InvalidTypeError),
    ({"workers": 1.5}, InvalidTypeError), ({"workers": "64"}, InvalidTypeError),
    ({"io_slots": True}, InvalidTypeError)])
def test_bad_configuration_is_refused_with_a_typed_error(kw, error):
    args = {"slot_count": 8, "observable_slots": 4, "debug_records": 1, "io_slots": 1,
            "workers": 1}
    args.update(kw)
    with pytest.raises(error) as info:
        CpuBackend(**args)
    assert isinstance(info.value, PipelineError) and info.value.fix


def test_register_buffer_handles_and_errors():
    be = CpuBackend(slot_count=4, observable_slots=4, debug_records=1, io_slots=0, workers=1)
    try:
        a = np.arange(10, dtype=np.uint32)
        h = be.register_buffer(a)
        assert h == 1
        assert int(be.buffer_table[1, 0]) == a.ctypes.data and int(be.buffer_table[1, 1]) == 40
        assert int(be.buffer_table[0, 0]) == be.control.ctypes.data
        assert be.register_buffer(bytearray(3)) == 2
        ro = be.register_buffer(b"xyz", writable=False)  # copied: never hand out immutable memory
        assert bytes(be.buffer(ro)) == b"xyz"
        with pytest.raises(InvalidValueError, match=r"register_buffer\(\.\.\., writable=False\)"):
            be.register_buffer(b"xyz")
        with pytest.raises(InvalidValueError):
            be.register_buffer(np.zeros((4, 4), np.uint32)[:, 1])
        with pytest.raises(InvalidTypeError):
            be.register_buffer(12)
        for _ in range(255 - 3):
            be.register_buffer(bytearray(1))
        with pytest.raises(BackendError) as info:
            be.register_buffer(bytearray(1))
        assert "full" in str(info.value)
    finally:
        be.close()


def test_buffers_are_used_in_place():
    with Rig(workers=1) as r:
        data = np.zeros(4, np.uint32)
        h = r.be.register_buffer(data)
        table = np.arange(256, dtype=np.uint32)
        th = r.be.register_buffer(table)
        assert r.run(0xFFF1, [0, 4 * OBS, h, 4, 4]) == DONE  # BUF_COPY obs[0] -> data[1]
        r.obs[0] = 0x01020304
        assert r.run(0xFFF1, [0, 4 * OBS, h, 8, 4]) == DONE
        assert list(data) == [0, 0, 0x01020304, 0]
        table[17] = 4242  # the workers see later host writes to a registered buffer
        assert r.run(6, [0, 17, 2, th]) == DONE and r.obs[2] == 4242


def test_missing_extension_is_reported_with_a_fix(monkeypatch):
    import importlib

    import vyre.backends.cpu as cpu

    real = importlib.import_module

    def fake(name, *a, **k):
        if name.startswith("vyre.backends._cpu"):
            raise ImportError("not built")
        return real(name, *a, **k)

    monkeypatch.setattr(cpu.importlib, "import_module", fake)
    with pytest.raises(BackendError) as info:
        CpuBackend(slot_count=4, observable_slots=1, debug_records=1, io_slots=0)
    assert "build_ext" in info.value.fix


def test_shutdown_word_set_by_host_stops_workers():
    with Rig(workers=3) as r:
        r.ctl[SHUTDOWN] = 1
        deadline = time.monotonic() + 2
        while r.be.pool.alive:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        r.be.stop(1.0)
        assert not r.be.running
        # nothing published meanwhile was claimed
        r.publish(NOP)
        time.sleep(0.02)
        assert r.status(0) == PUBLISHED


def test_concurrent_stops_join_once():
    with Rig(workers=3, test_hooks=True) as r:
        t = r.publish(STALL_OP, [200])
        r.wait(t, until=(CLAIMED,))
        results: list[bool] = []
        threads = [threading.Thread(target=lambda: results.append(r.be.pool.stop(5.0)))
                   for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(10)
        assert results == [True] * 4
        assert not r.be.running and r.be.pool.alive == 0
        r.be.start()  # and the pool can run again
        assert r.be.running
