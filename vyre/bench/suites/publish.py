"""Host-side wire costs: what publishing a slot costs the Python caller.

No backend runs: slots are published into a detached ring of ``S`` slots in ordinary host
memory (S = 4096, 256 KiB; 1024 in ``--quick``). A sample publishes every slot once; the
ring is restored to all-EMPTY between samples, outside the timed region, so every sample does
identical work. Per-slot cost = sample time / slots published (``batch``). Timing: host
``perf_counter_ns`` around the loop or call.

Methods:
* ``empty_loop``: ``for i in range(S): pass`` -- the loop overhead contained in every
  per-call number below (reported, not subtracted);
* ``publish_slot``: one ``vyre.wire.publish_slot`` call per slot (ATOMIC_ADD, 2 args);
* ``python_struct``: the pure-Python reference, one call per slot: check the status is
  publishable, ``struct.pack_into`` the body (opcode, tenant, priority, 12 zero-filled args),
  then the status -- the same bytes in the same order, but without publish_slot's opcode /
  range validation, so it does *less* work (ratios against it are conservative);
* ``publish_packed``: one PACKED_SLOT with 2 inner ops per call (per slot);
* ``publish_window``: windows of 4 required + 4 lookahead payloads (per slot published);
* ``publish_many``: one bulk call for all S slots from numpy arrays;
* ``numpy_bulk``: the vectorised pure-numpy reference of publish_many (status check, body
  columns, then the status column).
Every method's final ring is checked (``verified``): byte for byte against publish_slot's
where the content is the same (so the references provably write what vyre writes), and
all-PUBLISHED for packed and window. The methods are measured paired (alternating rounds);
the baselines of the ratios (``python_struct``, ``numpy_bulk``, ``publish_slot``) are
cross-checked against the same calls timed by a bare loop.
"""
from __future__ import annotations

import struct

import numpy as np

from vyre.bench.checks import Check, loop_reference
from vyre.bench.runner import Method, host_timed
from vyre.bench.suites._common import atomic_add_ops, need

NAME = "publish"
DESCRIPTION = "host wire costs: publish_slot/packed/window/many vs pure-Python references"


def python_publisher(p):
    """A pure-Python ``publish_slot(buf, slot, tenant, opcode, args, priority)`` built from
    the protocol's layout constants (body words opcode..args are consecutive)."""
    status = struct.Struct("<I")
    body = struct.Struct(f"<{p.SLOT_WORDS - p.SLOT_OPCODE}I")
    slot_bytes, body_off, nargs = p.SLOT_BYTES, 4 * p.SLOT_OPCODE, p.SLOT_ARG_COUNT
    publishable = (int(p.SlotStatus.EMPTY), int(p.SlotStatus.DONE))
    published = int(p.SlotStatus.PUBLISHED)
    zeros = (0,) * nargs

    def publish(buf, slot, tenant, opcode, args, priority=p.PRIORITY_DEFAULT):
        off = slot * slot_bytes
        if status.unpack_from(buf, off)[0] not in publishable:
            raise ValueError(f"slot {slot} is not publishable")
        if len(args) > nargs:
            raise ValueError("too many args")
        body.pack_into(buf, off + body_off, opcode, tenant, priority, *args, *zeros[len(args):])
        status.pack_into(buf, off, published)  # status last, as the protocol requires

    return publish


def numpy_publisher(p, slot_count: int):
    """A vectorised pure-numpy ``publish_many(ring_u32, opcodes, args)`` from slot 0."""
    empty, done = int(p.SlotStatus.EMPTY), int(p.SlotStatus.DONE)
    published = int(p.SlotStatus.PUBLISHED)

    def publish(ring, opcodes, args):
        v = ring.reshape(slot_count, p.SLOT_WORDS)
        st = v[:, p.SLOT_STATUS]
        if not np.all((st == empty) | (st == done)):
            raise ValueError("a slot is not publishable")
        k = args.shape[1]
        v[:, p.SLOT_OPCODE] = opcodes
        v[:, p.SLOT_TENANT] = 0
        v[:, p.SLOT_PRIORITY] = p.PRIORITY_DEFAULT
        v[:, p.SLOT_ARGS:p.SLOT_ARGS + k] = args
        v[:, p.SLOT_ARGS + k:] = 0
        v[:, p.SLOT_STATUS] = published  # every body before any status

    return publish


def run(ctx) -> None:
    """Measure each method over the same S slots; ratios vs the pure-Python references."""
    wire = need("vyre.wire")
    p = need("vyre.protocol")
    s = 1024 if ctx.options.quick else 4096
    ctx.note("slots_per_sample", s)
    add_op, word = int(p.Opcode.ATOMIC_ADD), p.OBSERVABLE_BASE
    pristine = np.frombuffer(bytes(wire.encode_empty_ring(s)), dtype=np.uint32)
    ring = pristine.copy()
    raw = memoryview(ring).cast("B")

    def reset() -> None:
        np.copyto(ring, pristine)

    args = (1, word)
    reset()
    for i in range(s):
        wire.publish_slot(ring, i, 0, add_op, args)
    expected = ring.copy()

    def same_as(reference):
        return lambda: (bool(np.array_equal(ring, reference)), "ring bytes differ from the "
                        "reference publication")

    published = int(p.SlotStatus.PUBLISHED)

    def all_published():
        st = ring.reshape(s, p.SLOT_WORDS)[:, p.SLOT_STATUS]
        return bool(np.all(st == published)), f"{int(np.sum(st != published))} slots not published"

    methods: list[Method] = []

    def method(name, fn, verify=None, reference: str | None = None, **kw) -> None:
        check = None
        if reference:
            check = Check(reference, loop_reference(fn, per_call=s, setup=reset, samples=15))
        methods.append(Method(name, host_timed(fn, reset), batch=s, params={"slots": s},
                              verify=verify, check=check, **kw))

    def empty_loop():
        for _ in range(s):
            pass

    method("empty_loop", empty_loop, notes="loop overhead included in every per-call method")

    publish_slot = wire.publish_slot

    def slot_loop():
        for i in range(s):
            publish_slot(ring, i, 0, add_op, args)

    method("publish_slot", slot_loop, verify=same_as(expected),
           reference=f"the same {s} publish_slot calls timed bare")

    py_publish = python_publisher(p)

    def py_loop():
        for i in range(s):
            py_publish(raw, i, 0, add_op, args)

    method("python_struct", py_loop, verify=same_as(expected),
           reference=f"the same {s} struct.pack_into publications timed bare",
           notes="pure-Python struct.pack_into reference (no opcode validation)")

    store_op = int(p.Opcode.STORE_U32)
    ops = [(store_op, [10, word]), (add_op, [1, word + 1])]
    publish_packed = wire.publish_packed

    def packed_loop():
        for i in range(s):
            publish_packed(ring, i, 0, ops)

    method("publish_packed", packed_loop, verify=all_published,
           notes="per slot; 2 inner ops per slot")

    required, lookahead = [[1, word]] * 4, [[2, word]] * 4
    per_window = len(required) + len(lookahead)
    publish_window = wire.publish_window
    nop = int(p.Opcode.NOP)

    def window_loop():
        for j in range(0, s, per_window):
            publish_window(ring, j, 0, nop, j, required, lookahead)

    method("publish_window", window_loop, verify=all_published,
           notes=f"per slot; windows of {len(required)} required + {len(lookahead)} lookahead")

    opcodes, args2d = atomic_add_ops(s, add_op, word)
    publish_many = wire.publish_many
    method("publish_many", lambda: publish_many(ring, 0, 0, opcodes, args2d),
           verify=same_as(expected), notes="one call for all slots")

    np_publish = numpy_publisher(p, s)
    method("numpy_bulk", lambda: np_publish(ring, opcodes, args2d), verify=same_as(expected),
           reference=f"the same numpy publication of {s} slots timed bare",
           notes="vectorised pure-numpy reference")

    res = ctx.paired(methods)
    r_slot, r_py, r_many, r_np = (res["publish_slot"], res["python_struct"],
                                  res["publish_many"], res["numpy_bulk"])
    ctx.compare(r_slot, r_py)
    ctx.compare(r_many, r_py)
    ctx.compare(r_many, r_np)
    ctx.compare(r_many, r_slot)
