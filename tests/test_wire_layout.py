"""Wire layout pinned to the bytes of docs/spec.md: ABI table, slot words, encoders, caps."""
from __future__ import annotations

import pathlib
import re
import struct

import numpy as np
import pytest

from vyre import wire
from vyre._wire import ABI
from vyre.errors import ArgumentError, InvalidValueError

HEADER = pathlib.Path(__file__).resolve().parents[1] / "csrc" / "vyre_abi.h"


def words(buf) -> list[int]:
    return list(np.frombuffer(bytes(buf), dtype="<u4"))


def _header_defines() -> dict[str, int]:
    """Evaluate every `#define VYRE_X value` of vyre_abi.h (numbers or earlier names)."""
    out: dict[str, int] = {}
    for name, value in re.findall(r"^#define VYRE_(\w+)[ \t]+(\S+)", HEADER.read_text(), re.M):
        value = value.rstrip("uU")
        out[name] = out[value[5:]] if value.startswith("VYRE_") else int(value, 0)
    return out


def test_abi_table_is_the_header_exactly():
    assert _header_defines() == ABI


def test_abi_values_match_the_spec():
    assert (ABI["SLOT_WORDS"], ABI["SLOT_BYTES"], ABI["SLOT_ARG_COUNT"]) == (16, 64, 12)
    assert ABI["CTRL_OBSERVABLE_BASE"] == 160
    assert ABI["OP_PACKED_SLOT"] == 0x80000001
    assert ABI["OP_SHUTDOWN"] == 0xFFFFFFFF  # unsigned, not -1


def test_slot_layout_word_by_word():
    ring = wire.encode_empty_ring(4)
    wire.publish_slot(ring, 1, 7, 0x1234, [1, 2, 3], 3)
    w = words(ring)
    assert w[16:32] == [1, 0x1234, 7, 3, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert w[:16] == [0] * 16 and w[32:] == [0] * 32
    assert bytes(ring[64:72]) == b"\x01\x00\x00\x00\x34\x12\x00\x00"  # little-endian


def test_slot_layout_full_args_and_default_priority():
    ring = wire.encode_empty_ring(1)
    wire.publish_slot(ring, 0, 0xFFFFFFFF, 0x40000000, list(range(100, 112)))
    assert words(ring) == [1, 0x40000000, 0xFFFFFFFF, 2] + list(range(100, 112))


def test_republish_over_done_zero_fills_old_args():
    ring = wire.encode_empty_ring(1)
    wire.publish_slot(ring, 0, 0, 1, list(range(1, 13)))
    struct.pack_into("<I", ring, 0, 3)  # DONE
    wire.publish_slot(ring, 0, 0, 2, [9])
    assert words(ring) == [1, 2, 0, 2, 9] + [0] * 11


@pytest.mark.parametrize("obs, expected", [(0, 640), (1, 644), (1024, 4736)])
def test_control_byte_len(obs, expected):
    assert wire.control_byte_len(obs) == expected


def test_byte_len_helpers_return_none_past_u32():
    assert wire.control_byte_len(0xFFFFFFFF - 160) == 4 * 0xFFFFFFFF
    assert wire.control_byte_len(0xFFFFFFFF - 159) is None
    assert wire.ring_byte_len(0xFFFFFFFF // 16) == 64 * (0xFFFFFFFF // 16)
    assert wire.ring_byte_len(0xFFFFFFFF // 16 + 1) is None
    assert wire.debug_log_byte_len(0xFFFFFFFF // 4) == 4 * (2 + 4 * (0xFFFFFFFF // 4))
    assert wire.debug_log_byte_len(0xFFFFFFFF // 4 + 1) is None
    assert wire.ring_byte_len(0) == 0 and wire.ring_byte_len(3) == 192


@pytest.mark.parametrize("records, expected", [(0, 8), (1, 24), (3, 56), (1024, 16392)])
def test_debug_log_byte_len(records, expected):
    assert wire.debug_log_byte_len(records) == expected


@pytest.mark.parametrize("fn", [wire.control_byte_len, wire.ring_byte_len, wire.debug_log_byte_len])
@pytest.mark.parametrize("bad", [-1, 1.5, "3", None])
def test_byte_len_helpers_reject_bad_counts(fn, bad):
    with pytest.raises(ArgumentError, match="Fix: "):
        fn(bad)


def test_encode_control_contents():
    ctrl = wire.encode_control(False, 2, 4)
    assert isinstance(ctrl, bytearray) and len(ctrl) == 4 * 164
    w = words(ctrl)
    expected = [0] * 164
    expected[2] = 3
    expected[3:5] = [0xFFFFFFFF] * 2
    expected[32:34] = [1_000_000] * 2
    expected[141] = 29
    assert w == expected


def test_encode_control_shutdown_and_tenant_caps():
    w = words(wire.encode_control(True, 40, 0))
    assert w[0] == 1
    assert w[3:32] == [0xFFFFFFFF] * 29
    assert w[32:64] == [1_000_000] * 32
    assert w[64:129] == [0] * 65
    assert w[141] == 29 and len(w) == 160


def test_encode_control_priority_offsets_default_partition():
    w = words(wire.encode_control(False, 1, 0, slot_count=1024))
    assert w[129:135] == [0, 204, 408, 616, 820, 1024]
    assert words(wire.encode_control(False, 1, 0, slot_count=7))[129:135] == [0, 1, 2, 5, 6, 7]
    assert words(wire.encode_control(False, 1, 0))[129:135] == [0] * 6


def test_default_priority_offsets():
    assert wire.default_priority_offsets(1024) == [0, 204, 408, 616, 820, 1024]
    assert wire.default_priority_offsets(4) == [0, 0, 0, 4, 4, 4]


def test_encode_empty_ring_and_debug_log():
    assert wire.encode_empty_ring(3) == bytearray(192)
    assert wire.encode_empty_debug_log(2) == bytearray(40)
    assert wire.encode_empty_debug_log(0) == bytearray(8)


def test_caps_are_inclusive():
    assert len(wire.encode_control(False, 1, 1_048_576)) == 4 * (160 + 1_048_576)
    assert len(wire.encode_empty_debug_log(1_048_576)) == 4 * (2 + 4 * 1_048_576)
    assert len(wire.encode_empty_ring(1_048_576)) == 64 * 1_048_576


@pytest.mark.parametrize("call, queue", [
    (lambda: wire.encode_empty_ring(1_048_577), "ring"),
    (lambda: wire.encode_empty_ring(0), "ring"),
    (lambda: wire.encode_empty_ring(-1), "ring"),
    (lambda: wire.encode_control(False, 1, 1_048_577), "control"),
    (lambda: wire.encode_control(False, 1, 0, slot_count=1_048_577), "ring"),
    (lambda: wire.encode_control(False, 1, 0, slot_count=0), "ring"),
    (lambda: wire.encode_control(False, -1, 0), "control"),
    (lambda: wire.encode_empty_debug_log(1_048_577), "debug"),
])
def test_encoder_caps_raise_with_fix(call, queue):
    with pytest.raises(ArgumentError) as info:
        call()
    assert "Fix: " in str(info.value) and info.value.fix
    assert isinstance(info.value, InvalidValueError) and queue
