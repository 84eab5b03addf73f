"""Readers (control, debug log, ring), retire, wait_slot / wait_retire, LOAD_MISS args."""
from __future__ import annotations

import struct
import threading
import time

import numpy as np
import pytest

from vyre import wire
from vyre.errors import ArgumentError, InvalidValueError, ProtocolError

EMPTY, PUBLISHED, CLAIMED, DONE, WAIT_IO, YIELD, REQUEUE, FAULT = range(8)


def control(obs: int = 4) -> np.ndarray:
    return np.frombuffer(wire.encode_control(False, 1, obs), np.uint32).copy()


def ring_with(statuses: list[int]) -> np.ndarray:
    ring = np.zeros((len(statuses), 16), np.uint32)
    ring[:, 0] = statuses
    return ring


# ---- control readers ---------------------------------------------------------------------------

def test_control_word_readers():
    c = control()
    c[[1, 128, 142, 143]] = [11, 22, 33, 0xFFFFFFFF]
    assert wire.read_done_count(c) == 11
    assert wire.read_epoch(c) == 22
    assert wire.read_fault_count(c) == 33
    assert wire.read_heartbeat(c) == 0xFFFFFFFF


@pytest.mark.parametrize("make", [bytes, bytearray, memoryview,
                                  lambda b: np.frombuffer(b, np.uint8)])
def test_readers_accept_read_only_and_any_kind(make):
    raw = bytearray(wire.encode_control(False, 1, 2))
    struct.pack_into("<I", raw, 4 * 161, 99)
    struct.pack_into("<I", raw, 4, 5)
    buf = make(bytes(raw))
    assert wire.read_observable(buf, 1) == 99
    assert wire.read_done_count(buf) == 5


def test_read_observable_range():
    c = control(3)
    c[160:163] = [7, 8, 9]
    assert [wire.read_observable(c, i) for i in range(3)] == [7, 8, 9]
    for bad in (3, 100):
        with pytest.raises(ProtocolError, match="out of range.*Fix: "):
            wire.read_observable(c, bad)
    with pytest.raises(ProtocolError, match="negative"):
        wire.read_observable(c, -1)
    with pytest.raises(ProtocolError, match="observable_slots > 0"):
        wire.read_observable(control(0), 0)


def test_read_metrics_non_zero_only():
    c = control()
    assert wire.read_metrics(c) == {}
    c[96 + 1] = 4
    c[96 + 7] = 1
    c[96 + 31] = 0xFFFFFFFF
    c[95] = c[128] = 5  # neighbours are not metrics
    assert wire.read_metrics(c) == {1: 4, 7: 1, 31: 0xFFFFFFFF}


@pytest.mark.parametrize("nbytes", [0, 636, 639, 642, 645])
def test_malformed_control_raises_protocol_error(nbytes):
    buf = bytearray(nbytes)
    for reader in (wire.read_done_count, wire.read_epoch, wire.read_fault_count,
                   wire.read_heartbeat, wire.read_metrics):
        with pytest.raises(ProtocolError, match="Fix: "):
            reader(buf)
    with pytest.raises(ProtocolError):
        wire.read_observable(buf, 0)


def test_non_contiguous_control_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="contiguous"):
        wire.read_done_count(np.zeros(400, np.uint32)[::2])
    with pytest.raises(ProtocolError, match="usable buffer"):
        wire.read_done_count([0] * 160)


# ---- debug log ---------------------------------------------------------------------------------

def debug_log(records: int, entries: list[list[int]], overflow: int = 0) -> np.ndarray:
    d = np.frombuffer(wire.encode_empty_debug_log(records), np.uint32).copy()
    d[0] = 4 * len(entries)
    for i, rec in enumerate(entries):
        d[1 + 4 * i:5 + 4 * i] = rec
    d[-1] = overflow
    return d


def test_read_debug_log_records_and_overflow():
    d = debug_log(3, [[10, 1, 2, 5], [11, 3, 4, 6]], overflow=7)
    recs = wire.read_debug_log(d)
    assert recs == [(10, (1, 2, 5)), (11, (3, 4, 6))]
    assert recs[0].fmt_id == 10 and recs[1].args == (3, 4, 6)
    assert isinstance(recs[0], wire.DebugRecord)
    assert wire.read_debug_overflow(d) == 7


def test_full_and_empty_debug_logs():
    assert wire.read_debug_log(debug_log(2, [])) == []
    full = debug_log(2, [[1, 2, 3, 4], [5, 6, 7, 8]], overflow=3)
    assert len(wire.read_debug_log(full)) == 2 and wire.read_debug_overflow(full) == 3
    assert wire.read_debug_log(wire.encode_empty_debug_log(0)) == []


@pytest.mark.parametrize("cursor", [12, 1, 3, 0xFFFFFFFC])
def test_debug_cursor_beyond_capacity_or_misaligned(cursor):
    d = debug_log(2, [])
    d[0] = cursor
    with pytest.raises(ProtocolError, match="cursor.*Fix: "):
        wire.read_debug_log(d)


@pytest.mark.parametrize("nbytes", [0, 4, 12, 20, 26])
def test_malformed_debug_log_length(nbytes):
    with pytest.raises(ProtocolError, match="4\\*\\(1 \\+ 4\\*records \\+ 1\\)"):
        wire.read_debug_log(bytearray(nbytes))
    with pytest.raises(ProtocolError):
        wire.read_debug_overflow(bytearray(nbytes))


# ---- ring readers ------------------------------------------------------------------------------

def test_slot_status_and_count_done():
    ring = ring_with([DONE, PUBLISHED, DONE, FAULT, DONE])
    assert [wire.slot_status(ring, i) for i in range(5)] == [DONE, PUBLISHED, DONE, FAULT, DONE]
    assert wire.count_done_slots(ring, 5) == 3
    assert wire.count_done_slots(ring, 2) == 1
    assert wire.count_done_slots(ring, 0) == 0
    assert wire.slot_status(bytes(ring.tobytes()), 3) == FAULT
    with pytest.raises(ProtocolError, match="outside the ring"):
        wire.slot_status(ring, 5)
    with pytest.raises(ProtocolError, match="cap"):
        wire.count_done_slots(ring, 6)
    with pytest.raises(ProtocolError, match="multiple of 64"):
        wire.slot_status(bytearray(65), 0)


# ---- retire ------------------------------------------------------------------------------------

def test_retire_counts_done_and_fault_and_resets_faults():
    ring = ring_with([DONE, FAULT, DONE, FAULT, PUBLISHED, DONE])
    ring[1, 1:] = 9  # a FAULT slot's body is left alone, only its status is reset
    assert wire.retire(ring, 0, 10) == (4, [1, 3])
    assert ring[:, 0].tolist() == [DONE, EMPTY, DONE, EMPTY, PUBLISHED, DONE]
    assert (ring[1, 1:] == 9).all()
    assert wire.retire(ring, 0, 10) == (1, [])  # the reset (EMPTY) slot 1 stops the walk


def test_retire_wraps_and_respects_max_count():
    ring = ring_with([FAULT, DONE, CLAIMED, DONE])
    assert wire.retire(ring, 3, 1) == (1, [])
    assert wire.retire(ring, 3, 3) == (3, [1])
    assert wire.retire(ring, 3, 4) == (1, [])  # slot 0 was reset to EMPTY
    assert ring[:, 0].tolist() == [EMPTY, DONE, CLAIMED, DONE]


def test_retire_caps_at_the_ring_size():
    ring = ring_with([DONE] * 4)
    assert wire.retire(ring, 2, 100) == (4, [])


@pytest.mark.parametrize("status", [PUBLISHED, CLAIMED, WAIT_IO, YIELD, REQUEUE, EMPTY])
def test_retire_stops_at_unfinished(status):
    ring = ring_with([DONE, status, DONE])
    assert wire.retire(ring, 0, 3) == (1, [])


def test_retire_bad_arguments_leave_ring_unchanged():
    ring = ring_with([FAULT, DONE])
    before = ring.tobytes()
    for call in (lambda: wire.retire(ring, 2, 1), lambda: wire.retire(ring, 0, -1),
                 lambda: wire.retire(ring.tobytes(), 0, 1), lambda: wire.retire(ring[:, :8], 0, 1)):
        with pytest.raises(ArgumentError, match="Fix: "):
            call()
    assert ring.tobytes() == before


def test_retire_large_ring_without_gil():
    ring = ring_with([DONE, FAULT] * 1000)
    count, faults = wire.retire(ring, 0, 2000)
    assert count == 2000 and faults == list(range(1, 2000, 2))


# ---- waiting -----------------------------------------------------------------------------------

def later(delay: float, fn) -> threading.Thread:
    t = threading.Thread(target=lambda: (time.sleep(delay), fn()))
    t.start()
    return t


@pytest.mark.parametrize("status", [DONE, FAULT, EMPTY, WAIT_IO])
def test_wait_slot_returns_at_once_when_not_in_flight(status):
    ring = ring_with([status])
    assert wire.wait_slot(ring, 0, 0) == status
    assert wire.wait_slot(ring, 0, 1.0) == status


@pytest.mark.parametrize("timeout", [0, 0.0, -1, 0.05])
def test_wait_slot_times_out(timeout):
    ring = ring_with([CLAIMED])
    t0 = time.monotonic()
    assert wire.wait_slot(ring, 0, timeout) == -1
    elapsed = time.monotonic() - t0
    # a bounded wait, not a hang; scheduling on a loaded machine may add a few seconds
    assert elapsed < max(timeout, 0) + 10
    if isinstance(timeout, float) and timeout > 0:
        assert elapsed >= timeout * 0.95


def test_wait_slot_refuses_a_nan_timeout():
    # NaN is neither "poll once" nor "no limit": refused, as the facade's wait() refuses it
    with pytest.raises(InvalidValueError, match="NaN"):
        wire.wait_slot(ring_with([CLAIMED]), 0, float("nan"))


def test_wait_slot_sees_a_completion_from_another_thread():
    ring = ring_with([PUBLISHED, PUBLISHED])
    t = later(0.02, lambda: ring.__setitem__((1, 0), DONE))
    t0 = time.monotonic()
    assert wire.wait_slot(ring, 1, None) == DONE
    assert time.monotonic() - t0 < 10  # seen, not hung
    t.join()


def test_wait_slot_releases_the_gil():
    ring = ring_with([PUBLISHED])
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    try:
        assert wire.wait_slot(ring, 0, 0.2) == -1
        assert wire.wait_retire(ring, 0, 1, 0.2) == 0
    finally:
        stop.set()
        t.join()
    assert len(ticks) > 20


def test_wait_retire_progress_and_timeout():
    ring = ring_with([PUBLISHED] * 4)
    ring[3, 0] = DONE
    assert wire.wait_retire(ring, 3, 4, 0.02) == 1  # slot 3 then stuck at slot 0
    ring[0, 0] = FAULT
    assert wire.wait_retire(ring, 3, 4, 0) == 2

    def finish():
        for s in (1, 2):
            time.sleep(0.01)
            ring[s, 0] = DONE

    t = later(0, finish)
    assert wire.wait_retire(ring, 3, 4, 5.0) == 4
    t.join()
    assert ring[0, 0] == FAULT  # wait_retire modifies nothing


def test_wait_finished_says_where_the_first_fault_is():
    ring = ring_with([DONE, DONE, FAULT, DONE, FAULT, PUBLISHED])
    assert wire.wait_finished(ring, 0, 2, 0) == (2, -1)
    assert wire.wait_finished(ring, 0, 6, 0) == (5, 2)  # stops at the PUBLISHED slot
    assert wire.wait_finished(ring, 3, 2, 0) == (2, 1)
    ring[5, 0] = DONE
    assert wire.wait_finished(ring, 5, 2, 0) == (2, -1)  # wraps: slots 5, 0
    assert ring[2, 0] == FAULT and ring[4, 0] == FAULT  # modifies nothing
    with pytest.raises(ArgumentError, match="start_slot"):
        wire.wait_finished(ring, 6, 1, 0)


def test_wait_retire_caps_count_and_validates():
    ring = ring_with([DONE] * 3)
    assert wire.wait_retire(ring, 1, 10, 0) == 3
    with pytest.raises(ArgumentError, match="start_slot"):
        wire.wait_retire(ring, 3, 1, 0)
    with pytest.raises(ArgumentError, match="timeout_s"):
        wire.wait_retire(ring, 0, 1, "soon")
    with pytest.raises(ArgumentError, match="slot_idx"):
        wire.wait_slot(ring, 3, 0)


# ---- LOAD_MISS ---------------------------------------------------------------------------------

def test_load_miss_round_trip():
    assert wire.encode_load_miss(7, 1) == [7, 1]
    assert wire.decode_load_miss([7, 1]) == (7, 1)
    assert wire.decode_load_miss([7, 1] + [0] * 10) == (7, 1)
    assert wire.decode_load_miss([9]) == (9, 0)
    assert wire.decode_load_miss(np.array([0xFFFFFFFF, 2], np.uint32)) == (0xFFFFFFFF, 2)
    with pytest.raises(ArgumentError):
        wire.encode_load_miss(-1, 0)
    with pytest.raises(ProtocolError):
        wire.decode_load_miss([0] * 13)
    with pytest.raises(ProtocolError):
        wire.decode_load_miss([2**32])
