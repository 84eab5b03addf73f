"""A small pure-Python model of the wire layer, written from docs/spec.md with `struct`.

Property tests run random sequences against both this model and the compiled vyre.wire and
compare bytes, results and whether an error was raised. bench/bench_wire.py also uses
:func:`publish_slot` here as its pure-Python baseline (same validation, struct.pack_into).

Layout numbers come from vyre.protocol (i.e. csrc/vyre_abi.h); the logic is independent.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence

from vyre.errors import ArgumentError
from vyre.protocol import (
    OP_MAX_PRIMITIVE,
    PACKED_ARG_WORDS,
    PACKED_MAX_INNER_OPCODE,
    PACKED_MAX_OPS,
    PRIORITY_LEVELS,
    SLOT_ARG_COUNT,
    SLOT_BYTES,
    SYSTEM_HIGH_BIT,
    SYSTEM_RANGE_HI,
    SYSTEM_RANGE_LO,
    U32_MAX,
    WINDOW_PREFIX_WORDS,
    Opcode,
    SlotStatus,
    WindowClass,
)

_BODY = struct.Struct("<3I12I")  # opcode, tenant, priority, 12 args
_WORD = struct.Struct("<I")
# plain ints (not IntEnum members): the model doubles as the benchmark's pure-Python
# baseline, which should not pay for enum hashing
_EXTENSIONS = frozenset(int(op) for op in (Opcode.PACKED_SLOT, Opcode.PRINTF, Opcode.SHUTDOWN,
                                           Opcode.LOAD_MISS, Opcode.DFA_SCAN, Opcode.BUF_COPY,
                                           Opcode.DFA_MATCH))
_PUBLISHABLE = (int(SlotStatus.EMPTY), int(SlotStatus.DONE))
_PUBLISHED = int(SlotStatus.PUBLISHED)


def _fail(what: str) -> None:
    raise ArgumentError(what, "model")


def is_system(op: int) -> bool:
    return bool(op & SYSTEM_HIGH_BIT) or SYSTEM_RANGE_LO <= op <= SYSTEM_RANGE_HI \
        or op <= OP_MAX_PRIMITIVE


def is_builtin(op: int) -> bool:
    return op <= OP_MAX_PRIMITIVE or op in _EXTENSIONS


def u32(v: object, what: str = "value") -> int:
    if not isinstance(v, int):
        _fail(f"{what} not int")
    if not 0 <= v <= U32_MAX:  # type: ignore[operator]
        _fail(f"{what} out of u32")
    return int(v)  # type: ignore[arg-type]


def publish_opcode(op: object) -> int:
    op = u32(op, "opcode")
    if is_system(op) and not is_builtin(op):
        _fail("reserved opcode")
    return op


def slot_args(args: Sequence[object], room: int = SLOT_ARG_COUNT) -> list[int]:
    if len(args) > room:
        _fail("too many args")
    words = [u32(a, "arg") for a in args]
    return words + [0] * (SLOT_ARG_COUNT - len(words))


def priority(p: object) -> int:
    p = u32(p, "priority")
    if p >= PRIORITY_LEVELS:
        _fail("priority")
    return p


def slot_count(ring: bytearray) -> int:
    if len(ring) == 0 or len(ring) % SLOT_BYTES:
        _fail("ring size")
    return len(ring) // SLOT_BYTES


def status(ring: bytearray, slot: int) -> int:
    return _WORD.unpack_from(ring, slot * SLOT_BYTES)[0]


def set_status(ring: bytearray, slot: int, value: int) -> None:
    _WORD.pack_into(ring, slot * SLOT_BYTES, value)


def _publishable(ring: bytearray, slot: int) -> bool:
    return status(ring, slot) in _PUBLISHABLE


def _write(ring: bytearray, slot: int, opcode: int, tenant: int, prio: int,
           words: list[int]) -> None:
    _BODY.pack_into(ring, slot * SLOT_BYTES + 4, opcode, tenant, prio, *words)
    set_status(ring, slot, _PUBLISHED)  # status last


def publish_slot(ring: bytearray, slot: int, tenant: int, opcode: int,
                 args: Sequence[int] = (), prio: int = 2) -> None:
    """docs/spec.md §1 publish, validated completely before any byte is written."""
    opcode = publish_opcode(opcode)
    tenant = u32(tenant, "tenant")
    prio = priority(prio)
    words = slot_args(args)
    n = slot_count(ring)
    if not isinstance(slot, int) or not 0 <= slot < n:
        _fail("slot index")
    if not _publishable(ring, slot):
        _fail("slot is not publishable")
    _write(ring, slot, opcode, tenant, prio, words)


def pack_ops(ops: Sequence[tuple[int, Sequence[int]]]) -> list[int]:
    """docs/spec.md §4.2 packed payload as 12 words."""
    n = len(ops)
    if n > PACKED_MAX_OPS:
        _fail("255")
    meta = -(-(2 + 2 * n) // 4)
    if meta > PACKED_ARG_WORDS:
        _fail("metadata exceeds the 12-word budget")
    for op, args in ops:
        if u32(op, "inner opcode") > PACKED_MAX_INNER_OPCODE:
            _fail("inner opcode")
        for a in args:
            u32(a)
    total = sum(len(args) for _, args in ops)
    if meta + total > PACKED_ARG_WORDS:
        _fail("payload exceeds the 12-word budget")
    stream = bytearray(4 * PACKED_ARG_WORDS)
    stream[0], stream[1] = n, total
    offset = 0
    flat: list[int] = []
    for i, (op, args) in enumerate(ops):
        stream[2 + 2 * i], stream[3 + 2 * i] = op, offset
        offset += len(args)
        flat.extend(args)
    words = list(struct.unpack("<12I", stream))
    words[meta:meta + total] = flat
    return words


def publish_packed(ring: bytearray, slot: int, tenant: int, ops, prio: int = 2) -> None:
    publish_slot(ring, slot, tenant, Opcode.PACKED_SLOT, pack_ops(ops), prio)


def publish_sequence(ring: bytearray, start: int, entries) -> int:
    """All-or-nothing publish of (tenant, opcode, args, priority) at start, start+1, ... (mod n)."""
    bodies = [(publish_opcode(op), u32(t), priority(p), slot_args(a)) for t, op, a, p in entries]
    n = slot_count(ring)
    if not 0 <= start < n or len(bodies) > n:
        _fail("range")
    targets = [(start + i) % n for i in range(len(bodies))]
    if not all(_publishable(ring, s) for s in targets):
        _fail("slot is not publishable")
    for s, (op, t, p, words) in zip(targets, bodies, strict=True):
        _write(ring, s, op, t, p, words)
    return len(bodies)


def batch_publish(ring: bytearray, start: int, tenant: int, items, tag: int) -> int:
    u32(tenant)
    u32(tag)
    entries = [(tenant, op, args, 2) for op, args in items]
    entries.append((tenant, Opcode.BATCH_FENCE, [len(items), tag], 2))
    return publish_sequence(ring, start, entries)


def window_items(opcode: int, ticket: int, required, lookahead) -> list[tuple[int, list[int]]]:
    publish_opcode(opcode)
    u32(ticket)
    out = []
    for cls, payloads in ((WindowClass.REQUIRED, required), (WindowClass.LOOKAHEAD, lookahead)):
        for payload in payloads:
            slot_args(payload, SLOT_ARG_COUNT - WINDOW_PREFIX_WORDS)
            out.append((opcode, [ticket, int(cls), *payload]))
    return out


def publish_window(ring: bytearray, start: int, tenant: int, opcode: int, ticket: int,
                   required, lookahead) -> int:
    u32(tenant)
    items = window_items(opcode, ticket, required, lookahead)
    return publish_sequence(ring, start, [(tenant, op, a, 2) for op, a in items])


def publish_many(ring: bytearray, start: int, tenant: int, opcodes: Sequence[int],
                 args: Sequence[Sequence[int]] | None, prio: int = 2) -> int:
    u32(tenant)
    priority(prio)
    rows = args if args is not None else [()] * len(opcodes)
    items = [(tenant, op, a, prio) for op, a in zip(opcodes, rows, strict=False)]
    return publish_sequence(ring, start, items)


def retire(ring: bytearray, start: int, max_count: int) -> tuple[int, list[int]]:
    n = slot_count(ring)
    count, faults = 0, []
    while count < min(max_count, n):
        s = (start + count) % n
        st = status(ring, s)
        if st == SlotStatus.FAULT:
            set_status(ring, s, SlotStatus.EMPTY)
            faults.append(count)
        elif st != SlotStatus.DONE:
            break
        count += 1
    return count, faults
