"""vyre.descriptors: validation on construction, immutability, bytes identical to vyre.wire."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vyre import wire
from vyre.descriptors import (
    BatchDescriptor,
    BuiltinOpcode,
    BuiltinSlotOpcode,
    CustomSlotOpcode,
    PackedOpDescriptor,
    SlotDescriptor,
    SlotOpcode,
    WindowClass,
    WindowDescriptor,
)
from vyre.errors import ArgumentError, QueueFullError
from vyre.protocol import Opcode


def words(buf) -> list[int]:
    return np.frombuffer(bytes(buf), dtype="<u4").tolist()


def test_builtin_opcode_is_the_protocol_enum():
    assert BuiltinOpcode is Opcode
    assert WindowClass.LOOKAHEAD == 1


def test_slot_opcode_variants():
    b = SlotOpcode.Builtin(BuiltinOpcode.ATOMIC_ADD)
    c = SlotOpcode.Custom(0x40000001)
    assert isinstance(b, BuiltinSlotOpcode) and isinstance(c, CustomSlotOpcode)
    assert (b.into_wire(), c.into_wire()) == (2, 0x40000001)
    assert SlotOpcode.Builtin(0xFFF0).op is Opcode.DFA_SCAN
    assert b == SlotOpcode.Builtin(2) and b != c


def test_slot_opcode_pattern_matching():
    def kind(op: SlotOpcode) -> str:
        match op:
            case SlotOpcode.Builtin(Opcode.SHUTDOWN):
                return "stop"
            case SlotOpcode.Builtin(x):
                return f"builtin {int(x)}"
            case SlotOpcode.Custom(x):
                return f"custom {x:#x}"
        return "?"

    assert kind(SlotOpcode.Builtin(Opcode.SHUTDOWN)) == "stop"
    assert kind(SlotOpcode.Builtin(1)) == "builtin 1"
    assert kind(SlotOpcode.Custom(0x1234)) == "custom 0x1234"


@pytest.mark.parametrize("make", [
    lambda: SlotOpcode.Builtin(0x1234),
    lambda: SlotOpcode.Builtin(0xFFF3),
    lambda: SlotOpcode.Custom(3),
    lambda: SlotOpcode.Custom(0xFFFC),
    lambda: SlotOpcode.Custom(0x80000005),
    lambda: SlotOpcode.Custom(-1),
    lambda: SlotOpcode.Custom(2**32),
    lambda: SlotOpcode.Custom("x"),
])
def test_slot_opcode_validation(make):
    with pytest.raises((ArgumentError, QueueFullError), match="Fix: "):
        make()


def test_descriptors_are_frozen_and_slotted():
    d = SlotDescriptor.single(0, 1, [1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.tenant = 3  # type: ignore[misc]
    assert not hasattr(d, "__dict__")
    for obj, field in ((PackedOpDescriptor(1, [2]), "opcode"), (SlotOpcode.Custom(9), "op"),
                       (BatchDescriptor(0, [d]), "items"),
                       (WindowDescriptor(0, 0, 9, 0, [[1]]), "ticket")):
        assert not hasattr(obj, "__dict__")
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, field, 1)
        # slots refuse new attributes (CPython <= 3.11 reports it as a TypeError)
        with pytest.raises((AttributeError, TypeError)):
            obj.extra = 1  # type: ignore[attr-defined]
    assert hash(d) == hash(SlotDescriptor.single(0, 1, (1,)))


def test_single_publishes_the_same_bytes_as_wire():
    ring, ref = bytearray(128), bytearray(128)
    d = SlotDescriptor.single(7, SlotOpcode.Custom(0x5000), [1, 2, 3], priority=1)
    assert (d.tenant, d.opcode, d.args, d.priority, d.is_packed) == (7, 0x5000, (1, 2, 3), 1, False)
    d.publish_into(ring, 1)
    wire.publish_slot(ref, 1, 7, 0x5000, [1, 2, 3], 1)
    assert ring == ref
    SlotDescriptor.single(0, Opcode.STORE_U32, np.array([5, 160], np.uint32)).publish_into(ring, 0)
    assert words(ring)[:6] == [1, 1, 0, 2, 5, 160]


def test_packed_descriptor_worked_example():
    d = SlotDescriptor.packed(3, [(1, [10, 32]), PackedOpDescriptor(2, (1, 64))])
    assert d.opcode == Opcode.PACKED_SLOT and d.is_packed
    assert d.args == (0x00010402, 0x00000202, 10, 32, 1, 64, 0, 0, 0, 0, 0, 0)
    assert d.ops == (PackedOpDescriptor(1, (10, 32)), PackedOpDescriptor(2, (1, 64)))
    ring, ref = bytearray(64), bytearray(64)
    d.publish_into(ring, 0)
    wire.publish_packed(ref, 0, 3, [(1, [10, 32]), (2, [1, 64])])
    assert ring == ref


@pytest.mark.parametrize("make, match", [
    (lambda: SlotDescriptor.single(0, 0xFFF7, []), "reserved"),
    (lambda: SlotDescriptor.single(-1, 1, []), "negative"),
    (lambda: SlotDescriptor.single(2**32, 1, []), "u32"),
    (lambda: SlotDescriptor.single(0, 1, [0] * 13), "at most 12"),
    (lambda: SlotDescriptor.single(0, 1, [2**32]), "u32"),
    (lambda: SlotDescriptor.single(0, 1, "ab"), "sequence"),
    (lambda: SlotDescriptor.single(0, 1, [1.5]), "integers"),
    (lambda: SlotDescriptor.single(0, 1, [], priority=5), "priority"),
    (lambda: SlotDescriptor(0, 0x80000002), "reserved"),
    (lambda: SlotDescriptor.packed(0, [(1, [0] * 12)]), "payload exceeds the 12-word budget"),
    (lambda: SlotDescriptor.packed(0, [(1, [])] * 24), "metadata exceeds the 12-word budget"),
    (lambda: SlotDescriptor.packed(0, [(1, [])] * 256), "255"),
    (lambda: SlotDescriptor.packed(0, [5]), "pair"),
    (lambda: PackedOpDescriptor(256), "u8"),
    (lambda: PackedOpDescriptor(1, [0] * 12), "payload exceeds"),
])
def test_construction_validates(make, match):
    with pytest.raises((ArgumentError, QueueFullError), match=match):
        make()


def test_batch_descriptor_all_or_nothing():
    items = [SlotDescriptor.single(1, 1, [i]) for i in range(3)]
    batch = BatchDescriptor(3, items)
    assert isinstance(batch.items, tuple) and len(batch) == 3
    ring = np.zeros((4, 16), np.uint32)
    ring[1, 0] = 2  # CLAIMED: the third item's target
    before = ring.tobytes()
    with pytest.raises((ArgumentError, QueueFullError), match="slot is not publishable"):
        batch.publish_into(ring)
    assert ring.tobytes() == before
    ring[1, 0] = 3
    assert batch.publish_into(ring) == 3
    assert ring[[3, 0, 1], 4].tolist() == [0, 1, 2]
    assert ring[2, 0] == 0
    with pytest.raises((ArgumentError, QueueFullError), match="SlotDescriptor"):
        BatchDescriptor(0, [(1, [2])])  # type: ignore[list-item]
    with pytest.raises((ArgumentError, QueueFullError), match="negative"):
        BatchDescriptor(-1, items)


def test_window_descriptor_publish_and_batch_agree():
    w = WindowDescriptor(2, 5, SlotOpcode.Custom(0x7000), 42, [[1, 2], [3]], [[4]])
    assert w.required == ((1, 2), (3,)) and w.lookahead == ((4,),) and len(w) == 3
    ring, via_batch = bytearray(64 * 4), bytearray(64 * 4)
    assert w.publish_into(ring) == 3
    batch = w.try_into_batch()
    assert batch == w.into_batch()
    assert [d.args for d in batch.items] == [(42, 0, 1, 2), (42, 0, 3), (42, 1, 4)]
    assert batch.publish_into(via_batch) == 3
    assert ring == via_batch
    assert words(ring)[0:7] == [1, 0x7000, 5, 2, 42, 1, 4]  # wrapped to slot 0


@pytest.mark.parametrize("make, match", [
    (lambda: WindowDescriptor(0, 0, 0x7000, 0, [[0] * 11]), "at most 10"),
    (lambda: WindowDescriptor(0, 0, 0x7000, 0, [], [[0] * 11]), "at most 10"),
    (lambda: WindowDescriptor(0, 0, 0xFFF3, 0, [[1]]), "reserved"),
    (lambda: WindowDescriptor(0, 0, 0x7000, 2**32, [[1]]), "ticket"),
    (lambda: WindowDescriptor(0, -1, 0x7000, 0, [[1]]), "negative"),
    (lambda: WindowDescriptor(0, 0, 0x7000, 0, [[1]], priority=9), "priority"),
    (lambda: WindowDescriptor(0, 0, 0x7000, 0, ["ab"]), "sequence"),
])
def test_window_construction_validates(make, match):
    with pytest.raises((ArgumentError, QueueFullError), match=match):
        make()


def test_window_all_or_nothing():
    w = WindowDescriptor(0, 0, 0x7000, 1, [[1], [2]], [[3]])
    ring = np.zeros((3, 16), np.uint32)
    ring[2, 0] = 7  # FAULT
    before = ring.tobytes()
    with pytest.raises((ArgumentError, QueueFullError), match="slot 2"):
        w.publish_into(ring)
    assert ring.tobytes() == before
