"""Typed, immutable slot descriptors (docs/spec.md §10).

A descriptor is validated when it is built, so an invalid one never exists; publishing it
hands every byte to :mod:`vyre.wire` (the only code that writes slots). Multi-slot
descriptors are all-or-nothing: every item and every target slot is checked before the
first byte is written.
"""
from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, SupportsIndex, Union

from vyre import wire
from vyre.errors import InvalidTypeError, InvalidValueError
from vyre.protocol import PRIORITY_DEFAULT, IoOp, IoStatus, Opcode, WindowClass

__all__ = [
    "BuiltinOpcode",
    "SlotOpcode",
    "BuiltinSlotOpcode",
    "CustomSlotOpcode",
    "PackedOpDescriptor",
    "SlotDescriptor",
    "BatchDescriptor",
    "WindowClass",
    "WindowDescriptor",
    "IoOp",
    "IoStatus",
]

#: The built-in opcodes (the same enum as :class:`vyre.protocol.Opcode`).
BuiltinOpcode = Opcode

Words = tuple[int, ...]
OpcodeLike = Union["SlotOpcode", SupportsIndex]


def _words(values: Iterable[SupportsIndex], what: str) -> Words:
    """A tuple of plain ints; ranges are checked by vyre.wire, types here."""
    if isinstance(values, (str, bytes, bytearray)):
        raise InvalidTypeError(
            f"{what} must be a sequence of integers, got {type(values).__name__}",
            "pass a tuple or list of ints")
    try:
        return tuple(operator.index(v) for v in values)
    except TypeError:
        raise InvalidTypeError(f"{what} must be a sequence of integers, got {values!r}",
                             "pass a tuple or list of ints") from None


def _index(value: SupportsIndex, what: str) -> int:
    try:
        result = operator.index(value)
    except TypeError:
        raise InvalidTypeError(f"{what} must be an integer, got {value!r}",
                             "pass a non-negative Python int") from None
    if result < 0:
        raise InvalidValueError(f"{what} = {result} is negative", "pass a non-negative Python int")
    return result


class SlotOpcode:
    """The opcode of a slot: ``SlotOpcode.Builtin(op)`` or ``SlotOpcode.Custom(op)``."""

    __slots__ = ()
    Builtin: ClassVar[type[BuiltinSlotOpcode]]
    Custom: ClassVar[type[CustomSlotOpcode]]

    def into_wire(self) -> int:
        """The u32 opcode word written into the slot."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class BuiltinSlotOpcode(SlotOpcode):
    """A built-in opcode (primitive, system built-in or extension)."""

    op: BuiltinOpcode

    def __post_init__(self) -> None:
        value = _index(self.op, "opcode")
        if not wire.is_builtin(value):
            raise InvalidValueError(f"opcode {value:#x} is not a built-in",
                                 "use a member of vyre.Opcode, or SlotOpcode.Custom for user "
                                 "opcodes")
        object.__setattr__(self, "op", BuiltinOpcode(value))

    def into_wire(self) -> int:
        """The u32 opcode word written into the slot."""
        return int(self.op)


@dataclass(frozen=True, slots=True)
class CustomSlotOpcode(SlotOpcode):
    """A user opcode: any u32 outside the system range."""

    op: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "op", wire.validate_user_opcode(self.op))

    def into_wire(self) -> int:
        """The u32 opcode word written into the slot."""
        return self.op


SlotOpcode.Builtin = BuiltinSlotOpcode
SlotOpcode.Custom = CustomSlotOpcode


def _wire_opcode(opcode: OpcodeLike) -> int:
    if isinstance(opcode, SlotOpcode):
        return opcode.into_wire()
    return wire.validate_publish_opcode(_index(opcode, "opcode"))


@dataclass(frozen=True, slots=True)
class PackedOpDescriptor:
    """One inner op of a packed slot: a u8 opcode and its u32 args (docs/spec.md §4.2)."""

    opcode: int
    args: Words = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "opcode", _index(self.opcode, "inner opcode"))
        object.__setattr__(self, "args", _words(self.args, "inner op args"))
        wire.pack_ops([(self.opcode, self.args)])  # u8 opcode, u32 args, fits one slot


def _packed_op(op: PackedOpDescriptor | tuple[SupportsIndex, Sequence[SupportsIndex]],
               i: int) -> PackedOpDescriptor:
    if isinstance(op, PackedOpDescriptor):
        return op
    try:
        opcode, args = op
    except (TypeError, ValueError):
        raise InvalidTypeError(f"ops[{i}] must be a PackedOpDescriptor or an (opcode, args) pair, "
                             f"got {op!r}", "pass ops as [(u8 opcode, [args...]), ...]") from None
    return PackedOpDescriptor(operator.index(opcode), _words(args, f"ops[{i}] args"))


@dataclass(frozen=True, slots=True)
class SlotDescriptor:
    """The contents of one ring slot; build with :meth:`single` or :meth:`packed`.

    ``ops`` holds the inner ops of a packed slot (empty otherwise); ``args`` are always the
    12-or-fewer words written into the slot.
    """

    tenant: int
    opcode: int
    args: Words = ()
    priority: int = PRIORITY_DEFAULT
    ops: tuple[PackedOpDescriptor, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "tenant", _index(self.tenant, "tenant"))
        object.__setattr__(self, "opcode", _wire_opcode(self.opcode))
        object.__setattr__(self, "args", _words(self.args, "args"))
        object.__setattr__(self, "priority", _index(self.priority, "priority"))
        object.__setattr__(self, "ops", tuple(self.ops))
        wire.validate_slot(self.tenant, self.opcode, self.args, self.priority)

    @classmethod
    def single(cls, tenant: SupportsIndex, opcode: OpcodeLike,
               args: Sequence[SupportsIndex] = (),
               priority: SupportsIndex = PRIORITY_DEFAULT) -> SlotDescriptor:
        """A slot running one opcode with up to 12 args."""
        return cls(operator.index(tenant), _wire_opcode(opcode), _words(args, "args"),
                   operator.index(priority))

    @classmethod
    def packed(cls, tenant: SupportsIndex,
               ops: Sequence[PackedOpDescriptor | tuple[SupportsIndex, Sequence[SupportsIndex]]],
               priority: SupportsIndex = PRIORITY_DEFAULT) -> SlotDescriptor:
        """A PACKED_SLOT running ``ops`` in order (docs/spec.md §4.2)."""
        inner = tuple(_packed_op(op, i) for i, op in enumerate(ops))
        words = wire.pack_ops([(op.opcode, op.args) for op in inner])
        return cls(operator.index(tenant), int(Opcode.PACKED_SLOT), tuple(words),
                   operator.index(priority), inner)

    @property
    def is_packed(self) -> bool:
        """True for a slot built by :meth:`packed`."""
        return bool(self.ops)

    def as_entry(self) -> tuple[int, int, Words, int]:
        """``(tenant, opcode, args, priority)``: an entry of :func:`vyre.wire.publish_sequence`."""
        return (self.tenant, self.opcode, self.args, self.priority)

    def publish_into(self, ring: Any, slot_idx: SupportsIndex) -> None:
        """Publish into ``ring`` slot ``slot_idx`` (EMPTY or DONE), status last."""
        wire.publish_slot(ring, slot_idx, self.tenant, self.opcode, self.args, self.priority)


@dataclass(frozen=True, slots=True)
class BatchDescriptor:
    """Slots published at consecutive ring slots from ``start_slot`` (wrapping), all or nothing."""

    start_slot: int
    items: tuple[SlotDescriptor, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "start_slot", _index(self.start_slot, "start_slot"))
        items = tuple(self.items)
        for i, item in enumerate(items):
            if not isinstance(item, SlotDescriptor):
                raise InvalidTypeError(f"batch item {i} is a {type(item).__name__}, not a "
                                     "SlotDescriptor",
                                     "build items with SlotDescriptor.single / .packed")
        object.__setattr__(self, "items", items)

    def __len__(self) -> int:
        return len(self.items)

    def publish_into(self, ring: Any) -> int:
        """Publish every item; returns the number of slots written."""
        return wire.publish_sequence(ring, self.start_slot, [d.as_entry() for d in self.items])


@dataclass(frozen=True, slots=True)
class WindowDescriptor:
    """A window (docs/spec.md §10): one slot per payload with args ``[ticket, class, *payload]``.

    Required payloads come first (class REQUIRED), then lookahead ones (class LOOKAHEAD);
    each payload holds at most 10 words (12 minus the prefix).
    """

    start_slot: int
    tenant: int
    opcode: int
    ticket: int
    required: tuple[Words, ...]
    lookahead: tuple[Words, ...] = ()
    priority: int = PRIORITY_DEFAULT

    def __post_init__(self) -> None:
        object.__setattr__(self, "start_slot", _index(self.start_slot, "start_slot"))
        object.__setattr__(self, "tenant", _index(self.tenant, "tenant"))
        object.__setattr__(self, "opcode", _wire_opcode(self.opcode))
        object.__setattr__(self, "ticket", _index(self.ticket, "ticket"))
        object.__setattr__(self, "priority", _index(self.priority, "priority"))
        object.__setattr__(self, "required",
                           tuple(_words(p, f"required[{i}]") for i, p in enumerate(self.required)))
        object.__setattr__(self, "lookahead",
                           tuple(_words(p, f"lookahead[{i}]")
                                 for i, p in enumerate(self.lookahead)))
        wire.validate_slot(self.tenant, self.opcode, (), self.priority)
        wire.window_items(self.opcode, self.ticket, self.required, self.lookahead)

    def __len__(self) -> int:
        return len(self.required) + len(self.lookahead)

    def publish_into(self, ring: Any) -> int:
        """Publish every window slot; returns the number of slots written."""
        return wire.publish_window(ring, self.start_slot, self.tenant, self.opcode, self.ticket,
                                   self.required, self.lookahead, self.priority)

    def try_into_batch(self) -> BatchDescriptor:
        """The equivalent :class:`BatchDescriptor`; raises InvalidValueError if one cannot be built.

        A constructed window is already valid, so this succeeds; it re-validates so that the
        conversion never produces slots that differ from :meth:`publish_into`.
        """
        items = wire.window_items(self.opcode, self.ticket, self.required, self.lookahead)
        return BatchDescriptor(self.start_slot,
                               tuple(SlotDescriptor(self.tenant, op, tuple(args), self.priority)
                                     for op, args in items))

    def into_batch(self) -> BatchDescriptor:
        """The equivalent :class:`BatchDescriptor` (same slots, same order)."""
        return self.try_into_batch()
