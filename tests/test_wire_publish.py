"""Publishing: single, packed, window, batch, sequence and bulk numpy publishes.

Every error path checks the error type, the `Fix:` hint and that the ring is byte-identical.
"""
from __future__ import annotations

import ctypes
import mmap
import struct

import numpy as np
import pytest

from vyre import wire
from vyre.errors import ArgumentError, InvalidValueError, QueueFullError

EMPTY, PUBLISHED, CLAIMED, DONE, WAIT_IO, YIELD, REQUEUE, FAULT = range(8)
RESERVED = [0xFFF3, 0xFFF4, 0xFFF8, 0xFFFC, 0xFFFF, 0x80000000, 0x80000002, 0x80000003,
            0xC0000000, 0xFFFFFFFE]
BUILTINS = [0, 1, 2, 3, 4, 5, 6, 7, 0xFFF0, 0xFFF1, 0xFFF2, 0xFFFD, 0xFFFE, 0x80000001, 0xFFFFFFFF]
USER = [8, 9, 255, 256, 0xFFEF, 0x10000, 0x40000000, 0x7FFFFFFF]


def snapshot(buf) -> bytes:
    """The buffer's bytes in logical (C) order; works for non-contiguous views too."""
    return memoryview(buf).tobytes()


def words(buf) -> list[int]:
    return np.frombuffer(snapshot(buf), dtype="<u4").tolist()


def set_status(ring, slot: int, status: int) -> None:
    memoryview(ring).cast("B")[64 * slot:64 * slot + 4] = struct.pack("<I", status)


def refused(ring, call, match: str | None = None) -> ArgumentError:
    """`call` must raise ArgumentError with a Fix hint and leave `ring` byte-identical."""
    before = snapshot(ring)
    with pytest.raises((ArgumentError, QueueFullError), match=match) as info:
        call()
    assert str(info.value).split(". Fix: ")[1] == info.value.fix and info.value.fix
    assert snapshot(ring) == before
    return info.value


def make_ring(kind: str, slots: int):
    nbytes = 64 * slots
    if kind == "bytearray":
        return bytearray(nbytes)
    if kind == "memoryview":
        return memoryview(bytearray(nbytes))
    if kind == "numpy_u32":
        return np.zeros(nbytes // 4, np.uint32)
    if kind == "numpy_u8":
        return np.zeros(nbytes, np.uint8)
    if kind == "numpy_2d":
        return np.zeros((slots, 16), np.uint32)
    if kind == "mmap":
        return mmap.mmap(-1, nbytes)
    if kind == "ctypes":
        return (ctypes.c_uint32 * (nbytes // 4))()
    raise AssertionError(kind)


BUFFER_KINDS = ["bytearray", "memoryview", "numpy_u32", "numpy_u8", "numpy_2d", "mmap", "ctypes"]


# ---- publish_slot ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", BUFFER_KINDS)
def test_every_buffer_kind_gets_the_same_bytes(kind):
    ring = make_ring(kind, 4)
    wire.publish_slot(ring, 2, 5, 0x1000, (7, 8), 1)
    wire.publish_packed(ring, 0, 0, [(1, [10, 32]), (2, [1, 64])])
    expected = bytearray(256)
    wire.publish_slot(expected, 2, 5, 0x1000, (7, 8), 1)
    wire.publish_packed(expected, 0, 0, [(1, [10, 32]), (2, [1, 64])])
    assert snapshot(ring) == bytes(expected)


def test_numpy_array_sees_the_publish_without_copy():
    ring = np.zeros((4, 16), np.uint32)
    wire.publish_slot(ring, 3, 0, 2, [5, 160])
    assert ring[3, :6].tolist() == [1, 2, 0, 2, 5, 160]


@pytest.mark.parametrize("args", [(1, 2), [1, 2], range(1, 3), np.array([1, 2], np.uint32),
                                  (np.uint32(1), np.int64(2)), iter([1, 2])])
def test_args_any_sequence_of_ints(args):
    ring = bytearray(64)
    wire.publish_slot(ring, 0, 0, 1, args)
    assert words(ring)[4:7] == [1, 2, 0]


@pytest.mark.parametrize("status", [EMPTY, DONE])
def test_publishable_statuses(status):
    ring = bytearray(128)
    set_status(ring, 1, status)
    wire.publish_slot(ring, 1, 0, 1, [])
    assert words(ring)[16] == PUBLISHED


@pytest.mark.parametrize("status", [PUBLISHED, CLAIMED, WAIT_IO, YIELD, REQUEUE, FAULT, 99])
def test_unpublishable_statuses_are_refused(status):
    ring = bytearray(128)
    set_status(ring, 1, status)
    refused(ring, lambda: wire.publish_slot(ring, 1, 0, 1, [1]), "slot is not publishable")


@pytest.mark.parametrize("op", RESERVED)
def test_reserved_opcodes_are_refused(op):
    ring = bytearray(64)
    err = refused(ring, lambda: wire.publish_slot(ring, 0, 0, op, [1]), "reserved")
    assert isinstance(err, InvalidValueError)


@pytest.mark.parametrize("op", BUILTINS + USER)
def test_builtin_and_user_opcodes_are_accepted(op):
    ring = bytearray(64)
    wire.publish_slot(ring, 0, 0, op, [])
    assert words(ring)[:2] == [PUBLISHED, op]


@pytest.mark.parametrize("field", ["opcode", "tenant", "priority", "arg", "slot"])
@pytest.mark.parametrize("bad", [-1, 2**32, 2**64, 2**100, 1.0, "1", None, b"\x01"])
def test_out_of_range_and_non_int_values_are_refused(field, bad):
    ring = bytearray(128)
    call = {
        "opcode": lambda: wire.publish_slot(ring, 0, 0, bad, []),
        "tenant": lambda: wire.publish_slot(ring, 0, bad, 1, []),
        "priority": lambda: wire.publish_slot(ring, 0, 0, 1, [], bad),
        "arg": lambda: wire.publish_slot(ring, 0, 0, 1, [1, bad]),
        "slot": lambda: wire.publish_slot(ring, bad, 0, 1, []),
    }[field]
    if field == "slot" and bad == 2**32:  # a valid index type, just out of range
        refused(ring, call, "outside the ring")
    else:
        refused(ring, call)


def test_u32_max_accepted_where_a_word_is_free():
    ring = bytearray(64)
    wire.publish_slot(ring, 0, 0xFFFFFFFF, 0xFFFFFFFF, [0xFFFFFFFF] * 12)
    assert words(ring) == [1, 0xFFFFFFFF, 0xFFFFFFFF, 2] + [0xFFFFFFFF] * 12


@pytest.mark.parametrize("prio", [5, 6, 0xFFFFFFFF])
def test_priority_outside_levels_refused(prio):
    ring = bytearray(64)
    refused(ring, lambda: wire.publish_slot(ring, 0, 0, 1, [], prio), "priority")


@pytest.mark.parametrize("prio", range(5))
def test_priorities_accepted(prio):
    ring = bytearray(64)
    wire.publish_slot(ring, 0, 0, 1, [], prio)
    assert words(ring)[3] == prio


def test_too_many_args_refused():
    ring = bytearray(64)
    refused(ring, lambda: wire.publish_slot(ring, 0, 0, 1, list(range(13))), "at most 12")
    refused(ring, lambda: wire.publish_slot(ring, 0, 0, 1, tuple(range(13))), "at most 12")


@pytest.mark.parametrize("args", ["ab", 5, {1: 2}, object()])
def test_non_sequence_args_refused(args):
    ring = bytearray(64)
    refused(ring, lambda: wire.publish_slot(ring, 0, 0, 1, args))


def test_slot_index_out_of_range():
    ring = bytearray(128)
    refused(ring, lambda: wire.publish_slot(ring, 2, 0, 1, []), "outside the ring of 2 slots")


@pytest.mark.parametrize("nbytes", [0, 4, 63, 65, 100])
def test_wrong_ring_sizes_refused(nbytes):
    ring = bytearray(nbytes)
    refused(ring, lambda: wire.publish_slot(ring, 0, 0, 1, []), "multiple of 64")


@pytest.mark.parametrize("make", [
    lambda: np.zeros(64, np.uint32)[::2],                       # strided
    lambda: np.zeros((16, 8), np.uint32).T,                     # Fortran order
    lambda: np.zeros((16, 16), np.uint8)[:, :8],
])
def test_non_contiguous_rings_refused(make):
    ring = make()
    err = refused(ring, lambda: wire.publish_slot(ring, 0, 0, 1, []))
    assert "contiguous" in str(err)


def test_unaligned_ring_refused():
    backing = bytearray(129)
    ring = memoryview(backing)[1:]
    refused(ring, lambda: wire.publish_slot(ring, 0, 0, 1, []), "aligned")


@pytest.mark.parametrize("ring", [bytes(64), memoryview(bytes(64)), 123, None, "x" * 64])
def test_read_only_or_non_buffers_refused(ring):
    with pytest.raises((ArgumentError, QueueFullError), match="Fix: "):
        wire.publish_slot(ring, 0, 0, 1, [])


def test_read_only_numpy_refused():
    ring = np.zeros(16, np.uint32)
    ring.flags.writeable = False
    refused(ring, lambda: wire.publish_slot(ring, 0, 0, 1, []), "not a usable buffer")


def test_validation_order_values_before_ring():
    # a bad opcode is reported even though the ring is also unusable
    with pytest.raises((ArgumentError, QueueFullError), match="reserved"):
        wire.publish_slot(bytearray(3), 0, 0, 0xFFF5, [])


def test_validate_slot_writes_nothing_and_checks_like_publish():
    wire.validate_slot(0, 1, [1, 2], 4)
    with pytest.raises((ArgumentError, QueueFullError), match="reserved"):
        wire.validate_slot(0, 0xFFF3, [])
    with pytest.raises((ArgumentError, QueueFullError)):
        wire.validate_slot(-1, 1, [])


# ---- packed ------------------------------------------------------------------------------------

def test_packed_worked_example():
    assert wire.pack_ops([(1, [10, 32]), (2, [1, 64])]) == \
        [0x00010402, 0x00000202, 10, 32, 1, 64, 0, 0, 0, 0, 0, 0]


def test_publish_packed_slot_bytes():
    ring = bytearray(64)
    wire.publish_packed(ring, 0, 3, [(1, [10, 32]), (2, [1, 64])])
    assert words(ring) == [1, 0x80000001, 3, 2, 0x00010402, 0x00000202, 10, 32, 1, 64,
                           0, 0, 0, 0, 0, 0]


def test_packed_byte_stream_with_odd_op_count_and_empty_args():
    # 3 ops: bytes n=3,T=3, (5,0) (0,1) (255,1) -> metadata 2 words, args from word 2
    assert wire.pack_ops([(5, [7]), (0, []), (255, [8, 9])]) == \
        [0x00050303, 0x01FF0100, 7, 8, 9, 0, 0, 0, 0, 0, 0, 0]
    assert wire.pack_ops([]) == [0] * 12


def test_packed_limits_at_the_edges():
    wire.pack_ops([(1, [])] * 23)                    # M = 12, T = 0
    wire.pack_ops([(1, [0] * 11)])                   # M = 1, T = 11
    wire.pack_ops([(1, [0] * 5), (2, [0] * 5)])      # M = 2, T = 10


@pytest.mark.parametrize("ops, match", [
    ([(1, [])] * 256, "255"),
    ([(1, [])] * 24, "metadata exceeds the 12-word budget"),
    ([(1, [0] * 12)], "payload exceeds the 12-word budget"),
    ([(1, [0] * 6), (2, [0] * 5)], "payload exceeds the 12-word budget"),
    ([(256, [])], "u8"),
    ([(-1, [])], "u32"),
    ([(1, [2**32])], "u32"),
    ([(1, [-1])], "u32"),
    ([1], "pair"),
    ([(1, 2, 3)], "pair"),
])
def test_packing_errors(ops, match):
    ring = bytearray(64)
    refused(ring, lambda: wire.pack_ops(ops), match)
    refused(ring, lambda: wire.publish_packed(ring, 0, 0, ops), match)


def test_packing_errors_come_before_ring_errors():
    busy = bytearray(64)
    set_status(busy, 0, PUBLISHED)
    for ring in (busy, bytearray(7)):
        refused(ring, lambda r=ring: wire.publish_packed(r, 0, 0, [(1, [0] * 12)]),
                "payload exceeds")
        refused(ring, lambda r=ring: wire.publish_packed(r, 5, 0, [(1, [])] * 24),
                "metadata exceeds")
    refused(busy, lambda: wire.publish_packed(busy, 0, 0, [(1, [])]), "not publishable")


# ---- batch / window / sequence ------------------------------------------------------------------

def test_batch_publish_items_then_fence():
    ring = bytearray(64 * 4)
    assert wire.batch_publish(ring, 1, 9, [(1, [5, 160]), (0x1000, [])], 0xABC) == 3
    w = words(ring)
    assert w[16:22] == [1, 1, 9, 2, 5, 160]
    assert w[32:36] == [1, 0x1000, 9, 2]
    assert w[48:54] == [1, 7, 9, 2, 2, 0xABC]
    assert w[:16] == [0] * 16


def test_batch_publish_wraps_around_the_ring():
    ring = bytearray(64 * 4)
    assert wire.batch_publish(ring, 3, 0, [(1, [1]), (1, [2])], 5) == 3
    w = words(ring)
    assert [w[16 * s] for s in range(4)] == [1, 1, 0, 1]
    assert (w[48 + 4], w[4], w[16 + 1], w[16 + 4:16 + 6]) == (1, 2, 7, [2, 5])


def test_batch_publish_all_or_nothing():
    ring = bytearray(64 * 8)
    set_status(ring, 3, CLAIMED)
    refused(ring, lambda: wire.batch_publish(ring, 0, 0, [(1, [])] * 3, 1), "slot 3")
    refused(ring, lambda: wire.batch_publish(ring, 4, 0, [(1, []), (0xFFF3, [])], 1),
            "item 1.*reserved")
    refused(ring, lambda: wire.batch_publish(ring, 4, 0, [(1, [])] * 9, 1), "do not fit")
    refused(ring, lambda: wire.batch_publish(ring, 4, 0, [(1, [])], 2**32), "batch_tag")
    refused(ring, lambda: wire.batch_publish(ring, 8, 0, [(1, [])], 1), "start_slot 8")
    refused(ring, lambda: wire.batch_publish(ring, 4, 0, [(1, [0] * 13)], 1), "at most 12")


def test_empty_batch_is_just_the_fence():
    ring = bytearray(64)
    assert wire.batch_publish(ring, 0, 0, [], 42) == 1
    assert words(ring)[:6] == [1, 7, 0, 2, 0, 42]


def test_window_items_and_publish():
    items = wire.window_items(0x1000, 77, [[1, 2], []], [[3]])
    assert items == [(0x1000, [77, 0, 1, 2]), (0x1000, [77, 0]), (0x1000, [77, 1, 3])]
    ring = bytearray(64 * 4)
    assert wire.publish_window(ring, 2, 4, 0x1000, 77, [[1, 2], []], [[3]]) == 3
    w = words(ring)
    assert w[32:40] == [1, 0x1000, 4, 2, 77, 0, 1, 2]
    assert w[48:54] == [1, 0x1000, 4, 2, 77, 0]
    assert w[0:7] == [1, 0x1000, 4, 2, 77, 1, 3]


def test_window_limits_and_all_or_nothing():
    ring = bytearray(64 * 4)
    wire.window_items(0x1000, 0, [[0] * 10], [])
    refused(ring, lambda: wire.publish_window(ring, 0, 0, 0x1000, 0, [[0] * 11], []), "10")
    refused(ring, lambda: wire.publish_window(ring, 0, 0, 0x1000, 0, [[]], [[0] * 11]), "10")
    refused(ring, lambda: wire.publish_window(ring, 0, 0, 0xFFF9, 0, [[]], []), "reserved")
    refused(ring, lambda: wire.publish_window(ring, 0, 0, 0x1000, -1, [[]], []), "ticket")
    set_status(ring, 2, FAULT)
    refused(ring, lambda: wire.publish_window(ring, 0, 0, 0x1000, 0, [[1], [2]], [[3]]),
            "slot 2")
    assert wire.publish_window(ring, 0, 0, 0x1000, 0, [], []) == 0


def test_publish_sequence_mixed_tenants_and_priorities():
    ring = bytearray(64 * 2)
    assert wire.publish_sequence(ring, 1, [(3, 1, [4], 0), (5, 0x2000, (6, 7))]) == 2
    w = words(ring)
    assert w[16:21] == [1, 1, 3, 0, 4] and w[0:6] == [1, 0x2000, 5, 2, 6, 7]
    refused(ring, lambda: wire.publish_sequence(ring, 0, [(1, 1)]), "entries")


# ---- publish_many -------------------------------------------------------------------------------

def test_publish_many_matches_publish_slot_and_wraps():
    ring = np.zeros((8, 16), np.uint32)
    ops = np.array([1, 2, 0x5000, 0x80000001], np.uint32)
    args = np.arange(4 * 3, dtype=np.uint32).reshape(4, 3)
    assert wire.publish_many(ring, 6, 11, ops, args, 1) == 4
    expected = bytearray(64 * 8)
    for i in range(4):
        wire.publish_slot(expected, (6 + i) % 8, 11, int(ops[i]), args[i].tolist(), 1)
    assert snapshot(ring) == bytes(expected)


@pytest.mark.parametrize("args", [None, np.zeros((3, 0), np.uint32)])
def test_publish_many_without_args(args):
    ring = bytearray(64 * 3)
    assert wire.publish_many(ring, 0, 0, np.array([1, 2, 3], np.uint32), args) == 3
    assert words(ring)[16:20] == [1, 2, 0, 2] and words(ring)[20:32] == [0] * 12


def test_publish_many_full_width_args():
    ring = bytearray(64)
    wire.publish_many(ring, 0, 0, np.array([9], np.uint32), np.arange(12, dtype=np.uint32)[None])
    assert words(ring) == [1, 9, 0, 2] + list(range(12))


def test_publish_many_empty():
    ring = bytearray(64)
    assert wire.publish_many(ring, 0, 0, np.zeros(0, np.uint32), None) == 0
    assert snapshot(ring) == bytes(64)


def test_publish_many_all_or_nothing():
    ring = np.zeros((4, 16), np.uint32)
    ops = np.array([1, 2, 0xFFF4, 3], np.uint32)
    refused(ring, lambda: wire.publish_many(ring, 0, 0, ops, None), r"opcodes\[2\] = 0xfff4")
    ring[1, 0] = CLAIMED
    refused(ring, lambda: wire.publish_many(ring, 3, 0, np.ones(3, np.uint32), None), "slot 1")
    refused(ring, lambda: wire.publish_many(ring, 0, 0, np.ones(5, np.uint32), None), "do not fit")
    refused(ring, lambda: wire.publish_many(ring, 4, 0, np.ones(1, np.uint32), None), "start_slot")
    refused(ring, lambda: wire.publish_many(ring, 2, 0, np.ones(1, np.uint32), None, 5), "priority")
    refused(ring, lambda: wire.publish_many(ring, 2, -1, np.ones(1, np.uint32), None), "tenant")


@pytest.mark.parametrize("ops, args, match", [
    (np.array([1, 0xFFF4], np.uint32), None, r"opcodes\[1\] = 0xfff4"),
    (np.ones(2, np.int64), None, "uint32"),
    (np.ones(2, np.uint32), np.ones((3, 1), np.uint32), "shape"),
    (np.ones(2, np.uint32), np.ones((2, 13), np.uint32), "k <= 12"),
])
def test_validate_many_refuses_what_publish_many_refuses(ops, args, match):
    ring = np.zeros((4, 16), np.uint32)
    for call in (lambda: wire.validate_many(0, ops, args),
                 lambda: wire.publish_many(ring, 0, 0, ops, args)):
        with pytest.raises((ArgumentError, QueueFullError), match=match):
            call()
    assert not ring.any()


def test_validate_many_accepts_any_length_and_checks_tenant_and_priority():
    ops = np.ones(100_000, np.uint32)  # longer than any ring: no ring is involved
    assert wire.validate_many(0, ops, np.ones((100_000, 12), np.uint32)) is None
    with pytest.raises((ArgumentError, QueueFullError), match="tenant"):
        wire.validate_many(-1, ops)
    with pytest.raises((ArgumentError, QueueFullError), match="priority"):
        wire.validate_many(0, ops, None, 5)


def test_publish_many_assume_free_skips_only_the_status_walk():
    ring = np.zeros((4, 16), np.uint32)
    ring[1, 0] = CLAIMED
    ops = np.array([7, 8], np.uint32)
    refused(ring, lambda: wire.publish_many(ring, 0, 0, ops, None), "slot 1")
    # the caller vouches for the slots: written, status last, as without the flag
    assert wire.publish_many(ring, 0, 0, ops, None, assume_free=True) == 2
    assert ring[:2, 0].tolist() == [PUBLISHED, PUBLISHED] and ring[:2, 1].tolist() == [7, 8]
    # every other check still runs
    refused(ring, lambda: wire.publish_many(ring, 2, 0, np.array([0xFFF4], np.uint32), None,
                                            assume_free=True), "0xfff4")
    refused(ring, lambda: wire.publish_many(ring, 0, 0, np.ones(5, np.uint32), None,
                                            assume_free=True), "do not fit")


@pytest.mark.parametrize("ops, args, match", [
    (np.ones(2, np.int64), None, "uint32"),
    (np.ones(2, np.int32), None, "uint32"),
    (np.ones(2, np.float32), None, "uint32"),
    (np.ones((2, 1), np.uint32), None, "1-d"),
    (np.ones(4, np.uint32)[::2], None, "contiguous"),
    ([1, 2], None, "usable buffer"),
    (np.ones(2, np.uint32), np.ones((2, 13), np.uint32), "k <= 12"),
    (np.ones(2, np.uint32), np.ones((3, 1), np.uint32), "shape"),
    (np.ones(2, np.uint32), np.ones(2, np.uint32), "2-d"),
    (np.ones(2, np.uint32), np.ones((2, 4), np.uint32)[:, ::2], "contiguous"),
    (np.ones(2, np.uint32), np.ones((2, 2), np.int64), "uint32"),
])
def test_publish_many_bad_arrays(ops, args, match):
    ring = bytearray(64 * 4)
    refused(ring, lambda: wire.publish_many(ring, 0, 0, ops, args), match)


def test_publish_many_big_wrapping_publish():
    n = 4096
    ring = np.zeros((n, 16), np.uint32)
    ring[:, 0] = DONE
    ops = (np.arange(n, dtype=np.uint32) % 100) + 8
    args = np.arange(n * 5, dtype=np.uint32).reshape(n, 5)
    wire.publish_many(ring, 1000, 1, ops, args)
    idx = (1000 + np.arange(n)) % n
    assert (ring[:, 0] == PUBLISHED).all()
    assert (ring[idx, 1] == ops).all() and (ring[idx, 4:9] == args).all()
    assert (ring[:, 9:] == 0).all() and (ring[:, 2] == 1).all() and (ring[:, 3] == 2).all()


# ---- publish_many with a doorbell ---------------------------------------------------------------

@pytest.mark.parametrize("n, every", [(10, 4), (10, 0), (10, 10), (10, 99), (1, 1), (300, 7)])
def test_publish_many_rings_the_doorbell_at_the_end(n, every):
    ring = np.zeros((512, 16), np.uint32)
    bell = np.array([5, 77], np.uint64)
    ops = np.full(n, 8, np.uint32)
    assert wire.publish_many(ring, 500, 0, ops, None, doorbell=bell, first_ticket=1000,
                             notify_every=every) == n
    assert bell.tolist() == [1000 + n, 77]
    assert (ring[(500 + np.arange(n)) % 512, 0] == PUBLISHED).all()


def test_publish_many_without_a_doorbell_ignores_the_ticket_arguments():
    ring = np.zeros((4, 16), np.uint32)
    assert wire.publish_many(ring, 0, 0, np.ones(2, np.uint32), None, 2, None, 50, 1) == 2
    assert ring[:2, 0].tolist() == [PUBLISHED, PUBLISHED]


@pytest.mark.parametrize("row, seen", [(0, 7), (3, 7), (4, 104), (7, 104), (8, 108), (9, 108)])
def test_publish_many_doorbell_steps_never_cover_an_unwritten_slot(row, seen):
    # args row `row` doubles as the doorbell, so slot `row` records the doorbell as it was
    # just before that slot was written: every 4 slots, and never counting the slot itself
    ring = np.zeros((16, 16), np.uint32)
    args = np.zeros((10, 2), np.uint32)
    args[row] = [7, 0]
    bell = args[row].view(np.uint64)
    wire.publish_many(ring, 0, 0, np.full(10, 8, np.uint32), args, doorbell=bell,
                      first_ticket=100, notify_every=4)
    assert ring[row, 4:6].tolist() == [seen, 0]
    assert seen <= 100 + row
    assert bell.tolist() == [110]


def _misaligned_u64():
    raw = np.zeros(3, np.uint64).view(np.uint8)[4:12]
    return raw.view(np.uint64)


@pytest.mark.parametrize("bell, match", [
    (lambda: np.zeros(2, np.uint32), "uint64"),
    (lambda: np.zeros(2, np.int64), "uint64"),
    (lambda: np.zeros(0, np.uint64), "at least one element"),
    (lambda: np.zeros((1, 1), np.uint64), "1-d"),
    (lambda: np.frombuffer(bytes(16), np.uint64), "writable"),
    (_misaligned_u64, "8-byte aligned"),
    (lambda: bytearray(8), "uint64"),
    (lambda: 5, "usable buffer"),
])
def test_publish_many_refuses_a_bad_doorbell(bell, match):
    ring = np.zeros((4, 16), np.uint32)
    bell = bell()
    refused(ring, lambda: wire.publish_many(ring, 0, 0, np.ones(2, np.uint32), None,
                                            doorbell=bell, first_ticket=0, notify_every=1), match)


@pytest.mark.parametrize("first, every, match", [(-1, 0, "first_ticket"), (0, -1, "notify_every"),
                                                  ("1", 0, "first_ticket")])
def test_publish_many_refuses_bad_ticket_arguments(first, every, match):
    ring = np.zeros((4, 16), np.uint32)
    bell = np.array([3], np.uint64)
    refused(ring, lambda: wire.publish_many(ring, 0, 0, np.ones(2, np.uint32), None,
                                            doorbell=bell, first_ticket=first,
                                            notify_every=every), match)
    assert bell.tolist() == [3]


def test_publish_many_failure_leaves_the_doorbell_alone():
    ring = np.zeros((4, 16), np.uint32)
    bell = np.array([3, 0], np.uint64)
    ops = np.array([1, 2, 0xFFF4], np.uint32)
    refused(ring, lambda: wire.publish_many(ring, 0, 0, ops, None, doorbell=bell,
                                            first_ticket=10, notify_every=1), "reserved")
    ring[2, 0] = CLAIMED
    refused(ring, lambda: wire.publish_many(ring, 0, 0, np.ones(3, np.uint32), None,
                                            doorbell=bell, first_ticket=10, notify_every=1),
            "slot 2")
    refused(ring, lambda: wire.publish_many(ring, 0, 0, np.ones(5, np.uint32), None,
                                            doorbell=bell, first_ticket=10), "do not fit")
    assert bell.tolist() == [3, 0]
    assert wire.publish_many(ring, 0, 0, np.zeros(0, np.uint32), None, doorbell=bell,
                             first_ticket=10) == 0
    assert bell.tolist() == [3, 0]


# ---- publish_slot with a doorbell ---------------------------------------------------------------

@pytest.mark.parametrize("bell", [lambda: np.array([5, 77], np.uint64),
                                  lambda: np.array([5, 77], "<u8"),
                                  lambda: memoryview(np.array([5, 77], np.uint64)),
                                  lambda: memoryview(np.array([5, 77], np.uint64)).cast("B")
                                  .cast("Q")])
def test_publish_slot_stores_ticket_plus_one_into_the_doorbell(bell):
    ring = np.zeros((4, 16), np.uint32)
    ring[3, 0] = DONE  # a retired slot, as the facade reuses it
    bell = bell()
    wire.publish_slot(ring, 3, 1, 8, (9, 10), 2, bell, 1 << 40)
    assert list(bell) == [(1 << 40) + 1, 77]
    assert ring[3, :6].tolist() == [PUBLISHED, 8, 1, 2, 9, 10]
    wire.publish_slot(ring, 0, 0, 0, doorbell=bell, ticket=0)
    assert list(bell) == [1, 77]


def test_publish_slot_without_a_doorbell_ignores_the_ticket():
    ring = np.zeros((4, 16), np.uint32)
    wire.publish_slot(ring, 1, 0, 8, (), 2, None, -5)
    assert ring[1, 0] == PUBLISHED


@pytest.mark.parametrize("bell, match", [
    (lambda: np.zeros(2, np.uint32), "uint64"),
    (lambda: np.zeros(2, np.int64), "uint64"),
    (lambda: np.zeros(2, ">u8"), "uint64"),
    (lambda: np.zeros(2, np.float64), "uint64"),
    (lambda: np.zeros(0, np.uint64), "at least one element"),
    (lambda: np.zeros((1, 1), np.uint64), "1-d"),
    (lambda: np.frombuffer(bytes(16), np.uint64), "writable"),
    (_misaligned_u64, "8-byte aligned"),
    (lambda: bytearray(8), "uint64"),
    (lambda: 5, "usable buffer"),
])
def test_publish_slot_refuses_a_bad_doorbell_before_writing(bell, match):
    ring = np.zeros((4, 16), np.uint32)
    bell = bell()
    refused(ring, lambda: wire.publish_slot(ring, 0, 0, 8, (1,), 2, bell, 3), match)


@pytest.mark.parametrize("ticket, match", [(-1, "ticket"), ("1", "ticket"), (1.0, "ticket"),
                                           (None, "ticket")])
def test_publish_slot_refuses_a_bad_ticket(ticket, match):
    ring = np.zeros((4, 16), np.uint32)
    bell = np.array([3], np.uint64)
    refused(ring, lambda: wire.publish_slot(ring, 0, 0, 8, (), 2, bell, ticket), match)
    assert bell.tolist() == [3]


def test_publish_slot_failure_leaves_the_doorbell_alone():
    # the record a caller keeps of an unfinished publish: it moves only with the slot
    ring = np.zeros((4, 16), np.uint32)
    bell = np.array([3, 0], np.uint64)
    refused(ring, lambda: wire.publish_slot(ring, 0, 0, 0xFFF4, (), 2, bell, 10), "reserved")
    refused(ring, lambda: wire.publish_slot(ring, 0, 0, 8, (-1,), 2, bell, 10), "args")
    refused(ring, lambda: wire.publish_slot(ring, 0, 0, 8, (), 9, bell, 10), "priority")
    refused(ring, lambda: wire.publish_slot(ring, 4, 0, 8, (), 2, bell, 10), "slot")
    ring[2, 0] = CLAIMED
    with pytest.raises(QueueFullError):
        wire.publish_slot(ring, 2, 0, 8, (), 2, bell, 10)
    assert bell.tolist() == [3, 0]
