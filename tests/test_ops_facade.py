"""User ops through the facade on the CPU backend: registering, submitting by handle, name and
SlotOpcode, results, lanes, errors, typed descriptors, and registering while running."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from test_interp_rig import DONE, FAULT, Rig

from vyre import (
    BatchDescriptor,
    InvalidTypeError,
    InvalidValueError,
    Megakernel,
    SlotDescriptor,
    SlotFaultError,
    SlotOpcode,
    WindowDescriptor,
)
from vyre.ops import FaultReason, Op, OpBuildError, fault_of
from vyre.protocol import OBSERVABLE_BASE, Opcode

ADD = r"""
VYRE_OP(obs_add) {               /* lane 0: obs[a0] += a1; returns the new value and a2 */
    if (op->lane != 0) return;
    vyre_op_result(op, 0, vyre_obs_add(op, op->args[0], op->args[1]) + op->args[1]);
    vyre_op_result(op, 1, op->args[2]);
}
"""
LANES = r"""
VYRE_OP(lanes) {                 /* every lane writes r0 = its lane; lane 5 faults when a0 != 0 */
    vyre_op_result(op, 0, op->lane + 1000u);
    if (op->lane == 5 && op->args[0]) (void)vyre_load_u32(op, 77, 0);
    if (op->lane == 6) vyre_op_result(op, 1, (uint32_t)vyre_op_failed(op));
    if (op->lane == 31) vyre_op_result(op, 2, op->lanes);
}
"""


def make(**kw) -> Megakernel:
    kw.setdefault("slot_count", 64)
    kw.setdefault("observable_slots", 32)
    kw.setdefault("workers", 2)
    return Megakernel("cpu", **kw).start()


def test_register_submit_by_handle_name_opcode_and_slotopcode():
    with make() as mk:
        op = mk.register_op("obs_add", ADD)
        assert isinstance(op, Op) and op.opcode == 0x100 and mk.ops["obs_add"] is op
        assert mk.result(mk.submit(op, [3, 5, 9])) == (5, 9, 0, 0)
        assert mk.result(mk.submit("obs_add", [3, 5])) == (10, 0, 0, 0)
        assert mk.result(mk.submit(0x100, [3, 5])) == (15, 0, 0, 0)
        assert mk.result(mk.submit(SlotOpcode.Custom(op), [3, 5])) == (20, 0, 0, 0)
        assert mk.observables[3] == 20
        assert mk.register_op("obs_add", ADD) is op  # the same op again: no rebuild
        tel = mk.telemetry()["ops"]
        assert tel["registered"] == {"obs_add": 0x100}
        assert tel["cache"]["misses"] + tel["cache"]["hits_disk"] + tel["cache"]["hits_memory"] >= 1


def test_lanes_run_in_order_and_the_lowest_lane_keeps_a_result():
    with make() as mk:
        mk.register_op("lanes", LANES)
        assert mk.result(mk.submit("lanes", [0])) == (1000, 0, 32, 0)
        with pytest.raises(SlotFaultError) as err:  # lane 5's fault; lane 6 did not see it
            mk.result(mk.submit("lanes", [1]))
        assert err.value.reason == FaultReason.OUT_OF_BOUNDS
        assert err.value.details == (77, 0, 5)  # handle 77, word 0, lane 5
        assert fault_of(err.value.words).reason == FaultReason.OUT_OF_BOUNDS


def test_a_compile_error_names_the_op_and_changes_nothing():
    with make() as mk:
        mk.register_op("obs_add", ADD)
        bad = "VYRE_OP(bad) {\n    int x = ;\n}\n"
        with pytest.raises(OpBuildError) as err:
            mk.register_op("bad", bad)
        assert "op:bad:2" in err.value.log and "Fix:" in str(err.value)
        assert list(mk.ops) == ["obs_add"]
        assert mk.result(mk.submit("obs_add", [0, 1])) == (1, 0, 0, 0)
        with pytest.raises(InvalidValueError, match="not handled"):
            mk.submit(0x101, [])


def test_a_missing_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/vyre-cc")
    with make() as mk:
        with pytest.raises(OpBuildError, match="no C compiler") as err:
            mk.register_op("obs_add", ADD + "/* new key */")
        assert "CC" in err.value.fix


@pytest.mark.parametrize("name,source,opcode,exc", [
    ("1abc", "VYRE_OP(1abc) {}", None, InvalidValueError),
    ("int", "VYRE_OP(int) {}", None, InvalidValueError),
    (5, "VYRE_OP(x) {}", None, InvalidTypeError),
    ("x", "VYRE_OP(y) {}", None, InvalidValueError),      # no VYRE_OP(x) in the source
    ("x", b"VYRE_OP(x) {}", None, InvalidTypeError),
    ("x", "VYRE_OP(x) {}", 3, InvalidValueError),          # a built-in opcode
    ("x", "VYRE_OP(x) {}", 0xFFF3, InvalidValueError),     # the reserved range
    ("x", "VYRE_OP(x) {}", 1.5, InvalidTypeError),
])
def test_bad_ops_are_refused(name, source, opcode, exc):
    with pytest.raises(exc, match="Fix:"):
        Op(name, source, opcode)


def test_taken_names_and_opcodes_are_refused():
    with make() as mk:
        mk.register_op("obs_add", ADD, opcode=0x300)
        with pytest.raises(InvalidValueError, match="already op"):
            mk.register_op("lanes", LANES, opcode=0x300)
        with pytest.raises(InvalidValueError, match="already registered"):
            mk.register_op("obs_add", ADD + "\n", opcode=0x301)
        with pytest.raises(InvalidValueError, match="window"):
            mk.register_op(Op("lanes", LANES, 0x400, tenant=1))
        assert mk.register_op(Op("lanes", LANES, tenant=2)).opcode == 0x40100000


def test_result_errors():
    with make(slot_count=8) as mk:
        mk.register_op("obs_add", ADD)
        t = mk.submit("obs_add", [0, 1])
        with pytest.raises(InvalidValueError, match="never published"):
            mk.result(t + 1)
        with pytest.raises(InvalidTypeError):
            mk.result("0")  # type: ignore[arg-type]
        for _ in range(8):
            mk.submit(Opcode.NOP)
        mk.drain()
        with pytest.raises(InvalidValueError, match="reused") as err:
            mk.result(t)
        assert "slot_count" in err.value.fix


def test_builtins_return_values():
    with make() as mk:
        assert mk.result(mk.submit(Opcode.ATOMIC_ADD, [5, OBSERVABLE_BASE + 1])) == (5, 0, 0, 0)
        assert mk.result(mk.submit(Opcode.ATOMIC_ADD, [7, OBSERVABLE_BASE + 1])) == (12, 0, 0, 0)
        assert mk.result(mk.submit(Opcode.LOAD_U32, [OBSERVABLE_BASE + 1, 2])) == (12, 0, 0, 0)
        cas = Opcode.COMPARE_SWAP
        assert mk.result(mk.submit(cas, [OBSERVABLE_BASE + 1, 12, 40])) == (12, 0, 0, 0)
        assert mk.result(mk.submit(cas, [OBSERVABLE_BASE + 1, 12, 50])) == (40, 0, 0, 0)
        e = mk.epoch
        assert mk.result(mk.submit(Opcode.BATCH_FENCE, [0, 9])) == (e + 1, 0, 0, 0)
        assert mk.result(mk.submit(Opcode.STORE_U32, [1, OBSERVABLE_BASE])) == (0, 0, 0, 0)
        assert mk.result(mk.submit(Opcode.ATOMIC_ADD, [1, 10 ** 6])) == (0, 0, 0, 0)  # past the end


def test_typed_descriptors_are_first_class():
    with make(tenants=2) as mk:
        mk.register_op("obs_add", ADD, opcode=0x20)
        t = mk.submit(SlotDescriptor.single(0, 0x20, [4, 2]))
        assert mk.result(t) == (2, 0, 0, 0)
        inner = [(0x20, [4, 3]), (int(Opcode.ATOMIC_ADD), [1, OBSERVABLE_BASE + 4])]
        t = mk.submit(SlotDescriptor.packed(0, inner))
        assert mk.result(t) == (6, 0, 0, 0)  # the last inner op's result
        batch = BatchDescriptor(0, (
            SlotDescriptor.single(0, 0x20, [5, 1]),
            SlotDescriptor.single(1, Opcode.ATOMIC_ADD, [2, OBSERVABLE_BASE + 6])))
        r = mk.submit(batch)
        assert isinstance(r, range) and [mk.result(x) for x in r] == [(1, 0, 0, 0), (2, 0, 0, 0)]
        r = mk.submit_batch(batch, tag=0xAB)
        mk.wait(r)
        assert len(r) == 3 and mk.observables[0] == 0xAB
        assert (mk.observables[5], mk.observables[6]) == (2, 4)
        w = mk.submit(WindowDescriptor(0, 0, 0x20, 7, ((6, 1),), ((6, 2),)))
        # args [ticket, class, *payload]: obs[7] += class, returns a2 = the payload's first word
        required, lookahead = (mk.result(x) for x in w)
        # two workers may run the two slots in either order: obs[7] ends at 1 either way
        assert lookahead == (1, 6, 0, 0) and required in ((0, 6, 0, 0), (1, 6, 0, 0))
        assert mk.observables[7] == 1
        published = mk.published
        bad = BatchDescriptor(0, (SlotDescriptor.single(0, Opcode.NOP, []),
                                  SlotDescriptor.single(0, 0x999, [])))
        with pytest.raises(InvalidValueError, match="not handled"):
            mk.submit(bad)  # all or nothing
        with pytest.raises(InvalidValueError, match="not handled"):
            mk.submit(SlotDescriptor.packed(0, [(0x21, [])]))
        with pytest.raises(InvalidValueError, match="descriptor"):
            mk.submit(SlotDescriptor.single(0, Opcode.NOP, []), [1])
        assert mk.published == published


def test_submit_many_refuses_unregistered_user_opcodes_all_or_nothing():
    with make() as mk:
        op = mk.register_op("obs_add", ADD)
        ops = np.array([op.opcode] * 10 + [int(Opcode.ATOMIC_ADD)] * 10, np.uint32)
        args = np.array([[0, 1]] * 10 + [[1, OBSERVABLE_BASE]] * 10, np.uint32)  # obs[0] += 1
        mk.submit_many(ops, args)
        mk.drain()
        assert mk.observables[0] == 20
        published = mk.published
        ops[3] = 0x5555
        with pytest.raises(InvalidValueError, match="0x5555"):
            mk.submit_many(ops, args)
        with pytest.raises(InvalidValueError, match="0x5555"):
            mk.submit_many(np.full(4, 0x5555, np.uint32))
        assert mk.published == published


def test_registering_on_a_running_megakernel_loses_and_repeats_nothing():
    with make(slot_count=128, workers=2) as mk:
        mk.register_op("obs_add", ADD)
        stop = threading.Event()
        sent = [0]

        def producer():
            while not stop.is_set():
                mk.submit_many(np.full(64, 0x100, np.uint32),
                               np.tile(np.array([[1, 1]], np.uint32), (64, 1)))
                sent[0] += 64

        th = threading.Thread(target=producer)
        th.start()
        try:
            for i in range(3):
                mk.register_op(f"more{i}", ADD.replace("VYRE_OP(obs_add)", f"VYRE_OP(more{i})"))
                mk.wait(mk.submit(f"more{i}", [2, 1]))
        finally:
            stop.set()
            th.join(30)
        mk.drain()
        assert mk.observables[1] == sent[0] and mk.observables[2] == 3
        assert mk.fault_count == 0 and mk.done_count == mk.published


def test_raw_wire_unknown_user_opcode_faults_only_where_ops_are_loaded():
    rig = Rig()
    try:
        assert rig.run(0x999, []) == DONE  # no ops loaded: 0.6 behaviour
        rig.be.load_ops([Op("obs_add", ADD, 0x100)])
        assert rig.run(0x999, []) == FAULT
        row = rig.ring[(rig.ticket - 1) % rig.n]
        assert list(row[12:16]) == [int(FaultReason.UNKNOWN_OP), 0x999, 0, 0]
        assert rig.run(0x100, [0, 4]) == DONE
        assert rig.obs[0] == 4
    finally:
        rig.be.close()


def test_packed_inner_user_op_fault_names_the_inner_op():
    src = "VYRE_OP(oops) { if (op->lane == 0) vyre_op_fault(op, op->args[0]); }"
    with make() as mk:
        mk.register_op("oops", src, opcode=0x30)
        t = mk.submit_packed([(int(Opcode.ATOMIC_ADD), [1, OBSERVABLE_BASE]), (0x30, [42]),
                              (int(Opcode.ATOMIC_ADD), [1, OBSERVABLE_BASE])])
        with pytest.raises(SlotFaultError) as err:
            mk.result(t)
        assert err.value.reason == FaultReason.RAISED and err.value.details == (42, 0, 1)
        assert mk.observables[0] == 1  # the inner ops after the fault did not run
        with pytest.raises(InvalidValueError, match="inner op"):
            mk.register_op("big", ADD.replace("VYRE_OP(obs_add)", "VYRE_OP(big)"), opcode=0x1000)
            mk.submit_packed([(0x1000, [])])


def test_register_ops_is_one_build_all_or_nothing():
    lanes = Op("lanes", LANES)
    with make() as mk:
        got = mk.register_ops([Op("obs_add", ADD), lanes])
        assert [o.name for o in got] == ["obs_add", "lanes"] and got[1].opcode == 0x101
        first = mk.telemetry()["ops"]["last_build"]
        assert first["source"] in ("build", "disk", "memory")
        with pytest.raises(InvalidValueError, match="already op"):
            mk.register_ops([
                Op("third", ADD.replace("VYRE_OP(obs_add)", "VYRE_OP(third)")),
                Op("fourth", ADD.replace("VYRE_OP(obs_add)", "VYRE_OP(fourth)"), 0x100)])
        assert sorted(mk.ops) == ["lanes", "obs_add"]  # neither of the refused pair
        assert mk.register_ops([lanes]) == [got[1]]
