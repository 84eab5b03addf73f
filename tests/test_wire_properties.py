"""Property tests: random publish/retire sequences on vyre.wire against tests/wire_model.py.

After every action both rings must hold the same bytes, return the same value, and agree on
whether the action was refused (ArgumentError) -- refused actions change nothing.
"""
from __future__ import annotations

import struct

import numpy as np
import wire_model as model
from hypothesis import event, given, settings
from hypothesis import strategies as st

from vyre import wire
from vyre.errors import ArgumentError, QueueFullError

U32 = 2**32 - 1
SPECIAL_OPS = [0, 1, 2, 7, 8, 255, 0xFFEF, 0xFFF0, 0xFFF1, 0xFFF2, 0xFFFC, 0xFFFD, 0xFFFE, 0xFFFF,
               0x40000000, 0x7FFFFFFF, 0x80000000, 0x80000001, 0x80000002, 0xFFFFFFFF]


def mostly(valid: st.SearchStrategy, bad: list) -> st.SearchStrategy:
    """`valid` about 9 times in 10, otherwise one of the `bad` values (so that sequences of
    several fields still mostly succeed and reach the interesting slot-state interplay)."""
    bad_strategy = st.sampled_from(bad)
    return st.sampled_from(range(10)).flatmap(lambda k: bad_strategy if k == 5 else valid)


u32 = st.one_of(st.integers(0, 16), st.integers(0, U32))
word = mostly(u32, [-1, 2**32])
opcode_u32 = st.one_of(st.sampled_from(SPECIAL_OPS), st.integers(8, 0xFFEF),
                       st.integers(0, U32))
opcode = mostly(opcode_u32, [-1, 2**32])
priority = mostly(st.integers(0, 4), [5, -1])
args = mostly(st.lists(u32, max_size=12), [[-1], [1, 2**32], [0] * 13, [2**64]])
inner_opcode = mostly(st.integers(0, 255), [256, -1])
inner_ops = st.one_of(st.lists(st.tuples(inner_opcode, st.lists(u32, max_size=4)), max_size=4),
                      st.lists(st.tuples(inner_opcode, st.lists(u32, max_size=6)), max_size=26))
payload = mostly(st.lists(u32, max_size=10), [[0] * 11, [-1]])


def actions(slots: int) -> st.SearchStrategy:
    slot = st.integers(0, slots + 1)
    return st.one_of(
        st.tuples(st.just("publish"), slot, word, opcode, args, priority),
        st.tuples(st.just("packed"), slot, word, inner_ops),
        st.tuples(st.just("batch"), slot, word, st.lists(st.tuples(opcode, args), max_size=4),
                  word),
        st.tuples(st.just("window"), slot, word, opcode, word,
                  st.lists(payload, max_size=3), st.lists(payload, max_size=3)),
        st.tuples(st.just("many"), slot, word, st.lists(opcode_u32, max_size=slots + 1),
                  st.integers(0, 12), priority),
        st.tuples(st.just("status"), st.integers(0, slots - 1), st.integers(0, 7)),
        st.tuples(st.just("complete"), st.sampled_from([3, 7])),
        st.tuples(st.just("retire"), st.integers(0, slots - 1), st.integers(0, slots + 2)),
    )


def apply(lib, ring, action):
    kind, *a = action
    if kind == "publish":
        s, tenant, op, arg, prio = a
        return lib.publish_slot(ring, s, tenant, op, arg, prio)
    if kind == "packed":
        s, tenant, ops = a
        return lib.publish_packed(ring, s, tenant, ops)
    if kind == "batch":
        return lib.batch_publish(ring, *a)
    if kind == "window":
        return lib.publish_window(ring, *a)
    if kind == "many":
        s, tenant, ops, k, prio = a
        rows = np.arange(len(ops) * k, dtype=np.uint32).reshape(len(ops), k)
        if lib is wire:
            return wire.publish_many(ring, s, tenant, np.array(ops, np.uint32), rows, prio)
        return model.publish_many(ring, s, tenant, ops, rows.tolist(), prio)
    if kind == "retire":
        return lib.retire(ring, *a)
    raise AssertionError(kind)


def outcome(lib, ring, action):
    try:
        return "ok", apply(lib, ring, action)
    except (ArgumentError, QueueFullError):
        return "refused", None


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 6).flatmap(
    lambda n: st.tuples(st.just(n), st.lists(actions(n), max_size=25))),
       st.booleans())
def test_random_sequences_match_the_model(case, as_numpy):
    slots, steps = case
    real = np.zeros(slots * 16, np.uint32) if as_numpy else bytearray(64 * slots)
    ref = bytearray(64 * slots)
    for action in steps:
        if action[0] in ("status", "complete"):  # the consumer side: GPU lanes at work
            if action[0] == "status":
                targets, value = [action[1]], action[2]
            else:  # every PUBLISHED slot ends DONE or FAULT
                targets = [s for s in range(slots) if model.status(ref, s) == 1]
                value = action[1]
            for s in targets:
                model.set_status(ref, s, value)
                memoryview(real).cast("B")[64 * s:64 * s + 4] = struct.pack("<I", value)
            continue
        before = memoryview(real).tobytes()
        got, want = outcome(wire, real, action), outcome(model, ref, action)
        assert got == want, action
        event(f"{action[0]}: {got[0]}")
        if got[0] == "refused":
            assert memoryview(real).tobytes() == before, action
        assert memoryview(real).tobytes() == bytes(ref), action


def decode_packed(words: list[int]) -> list[tuple[int, list[int]]]:
    """An independent docs/spec.md §4.2 decoder (what the executor does)."""
    b = struct.pack("<12I", *words)
    n, total = b[0], b[1]
    meta = -(-(2 + 2 * n) // 4)
    offsets = [b[3 + 2 * i] for i in range(n)] + [total]
    return [(b[2 + 2 * i], list(words[meta + offsets[i]:meta + offsets[i + 1]])) for i in range(n)]


@settings(max_examples=500, deadline=None)
@given(inner_ops)
def test_pack_ops_round_trips_and_matches_model(ops):
    try:
        want = model.pack_ops(ops)
    except (ArgumentError, QueueFullError):
        try:
            wire.pack_ops(ops)
        except (ArgumentError, QueueFullError):
            return
        raise AssertionError(f"wire accepted what the model refused: {ops}") from None
    assert wire.pack_ops(ops) == want
    assert decode_packed(want) == [(op, list(a)) for op, a in ops]


@settings(max_examples=300, deadline=None)
@given(opcode_u32)
def test_opcode_classes_match_the_model(op):
    assert wire.is_system(op) == model.is_system(op)
    assert wire.is_builtin(op) == model.is_builtin(op)
    publishable = model.is_builtin(op) or not model.is_system(op)
    try:
        wire.validate_publish_opcode(op)
        assert publishable
    except (ArgumentError, QueueFullError):
        assert not publishable


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.data())
def test_window_items_match_the_model(n_unused, data):
    op = data.draw(opcode)
    ticket = data.draw(word)
    req = data.draw(st.lists(payload, max_size=3))
    look = data.draw(st.lists(payload, max_size=3))
    try:
        want = ("ok", model.window_items(op, ticket, req, look))
    except (ArgumentError, QueueFullError):
        want = ("refused", None)
    try:
        got = ("ok", wire.window_items(op, ticket, req, look))
    except (ArgumentError, QueueFullError):
        got = ("refused", None)
    assert got == want
