"""vyre.protocol: enums pinned to the numbers of docs/spec.md, opcode classes, validators."""
from __future__ import annotations

import pytest

from vyre import protocol as p
from vyre.errors import ArgumentError


def test_enums_match_the_spec():
    assert [int(s) for s in p.SlotStatus] == list(range(8))
    assert [s.name for s in p.SlotStatus] == ["EMPTY", "PUBLISHED", "CLAIMED", "DONE", "WAIT_IO",
                                             "YIELD", "REQUEUE", "FAULT"]
    assert [(x.name, int(x)) for x in p.Priority] == [
        ("CRITICAL", 0), ("HIGH", 1), ("NORMAL", 2), ("LOW", 3), ("IDLE", 4)]
    assert {x.name: int(x) for x in p.Opcode} == {
        "NOP": 0, "STORE_U32": 1, "ATOMIC_ADD": 2, "LOAD_U32": 3, "COMPARE_SWAP": 4,
        "MEMCPY": 5, "DFA_STEP": 6, "BATCH_FENCE": 7, "DFA_SCAN": 0xFFF0, "BUF_COPY": 0xFFF1,
        "DFA_MATCH": 0xFFF2,
        "LOAD_MISS": 0xFFFD, "PRINTF": 0xFFFE, "PACKED_SLOT": 0x80000001,
        "SHUTDOWN": 0xFFFFFFFF}
    assert [(x.name, int(x)) for x in p.IoOp] == [("READ", 1), ("WRITE", 2), ("FENCE", 3)]
    assert (p.IoStatus.OK, p.IoStatus.ERROR) == (0x10, 0x11)
    assert (p.WindowClass.REQUIRED, p.WindowClass.LOOKAHEAD) == (0, 1)


def test_layout_words():
    assert (p.CTRL_SHUTDOWN, p.CTRL_DONE_COUNT, p.CTRL_TENANT_BASE) == (0, 1, 2)
    assert (p.CTRL_TENANT_QUOTA_BASE, p.CTRL_TENANT_FAIRNESS_BASE, p.CTRL_METRICS_BASE) == \
        (32, 64, 96)
    assert (p.CTRL_EPOCH, p.CTRL_PRIORITY_OFFSETS_BASE, p.CTRL_PRIORITY_STARVATION) == \
        (128, 129, 135)
    assert (p.CTRL_TENANT_TABLE_LEN, p.CTRL_FAULT_COUNT, p.CTRL_HEARTBEAT) == (141, 142, 143)
    assert p.OBSERVABLE_BASE == p.CTRL_OBSERVABLE_BASE == 160
    assert (p.SLOT_WORDS, p.SLOT_BYTES, p.SLOT_ARGS, p.SLOT_ARG_COUNT) == (16, 64, 4, 12)
    assert p.slot_word(3, p.SLOT_OPCODE) == 49


def test_every_abi_constant_is_reachable_from_protocol():
    enum_values = {f"{prefix}{m.name}": int(m) for prefix, enum in (
        ("STATUS_", p.SlotStatus), ("PRIORITY_", p.Priority), ("OP_", p.Opcode),
        ("IO_", p.IoOp), ("IO_STATUS_", p.IoStatus), ("WINDOW_", p.WindowClass),
        ("FAULT_", p.FaultReason))
        for m in enum}
    for name, value in p.ABI.items():
        assert getattr(p, name, enum_values.get(name)) == value, name
        assert name in p.__all__ or name in enum_values, name


SYSTEM = [0, 7, 0xFFF0, 0xFFF5, 0xFFFF, 0x80000000, 0x80000001, 0xFFFFFFFF]
NOT_SYSTEM = [8, 0xFFEF, 0x10000, 0x40000000, 0x7FFFFFFF]
BUILTIN = [0, 3, 7, 0xFFF0, 0xFFF1, 0xFFF2, 0xFFFD, 0xFFFE, 0x80000001, 0xFFFFFFFF]
RESERVED = [0xFFF3, 0xFFF4, 0xFFF5, 0xFFF6, 0xFFF7, 0xFFF8, 0xFFF9, 0xFFFA, 0xFFFB,
            0xFFFC, 0xFFFF, 0x80000000, 0x80000002, 0xFFFFFFFE]


@pytest.mark.parametrize("op", SYSTEM)
def test_is_system_true(op):
    assert p.is_system(op)


@pytest.mark.parametrize("op", NOT_SYSTEM)
def test_is_system_false(op):
    assert not p.is_system(op) and not p.is_builtin(op)


@pytest.mark.parametrize("op", BUILTIN)
def test_builtins(op):
    assert p.is_builtin(op) and p.is_system(op)
    assert p.validate_publish_opcode(op) == op
    with pytest.raises(ArgumentError, match="system range"):
        p.validate_user_opcode(op)


@pytest.mark.parametrize("op", RESERVED)
def test_reserved_rejected_everywhere(op):
    assert p.is_system(op) and not p.is_builtin(op)
    with pytest.raises(ArgumentError, match="reserved.*Fix: "):
        p.validate_publish_opcode(op)
    with pytest.raises(ArgumentError):
        p.validate_user_opcode(op)


@pytest.mark.parametrize("op", NOT_SYSTEM)
def test_user_opcodes_accepted(op):
    assert p.validate_user_opcode(op) == op
    assert p.validate_publish_opcode(op) == op


@pytest.mark.parametrize("bad", [-1, 2**32, 2**80, "1", 1.0, None])
def test_validators_reject_non_u32(bad):
    for fn in (p.validate_user_opcode, p.validate_publish_opcode, p.is_system, p.is_builtin):
        with pytest.raises(ArgumentError, match="Fix: "):
            fn(bad)


def test_enum_members_are_accepted_and_returned_as_given():
    assert p.validate_publish_opcode(p.Opcode.SHUTDOWN) == 0xFFFFFFFF


def test_tenant_opcode_window():
    assert p.tenant_opcode_window(1) == range(0x40000000, 0x40100000)
    assert p.tenant_opcode_window(3).start == 0x40200000
    for op in (p.tenant_opcode_window(1)[0], p.tenant_opcode_window(1024)[-1]):
        assert p.validate_user_opcode(op) == op
    for bad in (0, -1, 1025):
        with pytest.raises(ArgumentError):
            p.tenant_opcode_window(bad)
