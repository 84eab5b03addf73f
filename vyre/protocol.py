"""Wire constants and opcode classes (docs/spec.md §1-§10), read from ``csrc/vyre_abi.h``.

Every number here comes from the C header through the compiled :mod:`vyre._wire` (its
``ABI`` table); nothing is restated. Closed sets are :class:`enum.IntEnum`; layout words are
plain ``int``. The opcode predicates are the compiled ones the publishers use.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Final

from vyre._wire import (
    ABI,
    is_builtin,
    is_system,
    validate_publish_opcode,
    validate_user_opcode,
)
from vyre.errors import InvalidValueError

__all__ = [
    "ABI",
    "SlotStatus",
    "Priority",
    "Opcode",
    "IoOp",
    "IoStatus",
    "WindowClass",
    "FaultReason",
    "is_system",
    "is_builtin",
    "validate_user_opcode",
    "validate_publish_opcode",
    "tenant_opcode_window",
    "slot_word",
]

_A = ABI


class SlotStatus(IntEnum):
    """Ring slot status word (docs/spec.md §1)."""

    EMPTY = _A["STATUS_EMPTY"]
    PUBLISHED = _A["STATUS_PUBLISHED"]
    CLAIMED = _A["STATUS_CLAIMED"]
    DONE = _A["STATUS_DONE"]
    WAIT_IO = _A["STATUS_WAIT_IO"]
    YIELD = _A["STATUS_YIELD"]
    REQUEUE = _A["STATUS_REQUEUE"]
    FAULT = _A["STATUS_FAULT"]


class Priority(IntEnum):
    """Slot priority (docs/spec.md §6); NORMAL is the default."""

    CRITICAL = _A["PRIORITY_CRITICAL"]
    HIGH = _A["PRIORITY_HIGH"]
    NORMAL = _A["PRIORITY_NORMAL"]
    LOW = _A["PRIORITY_LOW"]
    IDLE = _A["PRIORITY_IDLE"]


class Opcode(IntEnum):
    """The built-in opcodes (docs/spec.md §3), including this runtime's extensions."""

    NOP = _A["OP_NOP"]
    STORE_U32 = _A["OP_STORE_U32"]
    ATOMIC_ADD = _A["OP_ATOMIC_ADD"]
    LOAD_U32 = _A["OP_LOAD_U32"]
    COMPARE_SWAP = _A["OP_COMPARE_SWAP"]
    MEMCPY = _A["OP_MEMCPY"]
    DFA_STEP = _A["OP_DFA_STEP"]
    BATCH_FENCE = _A["OP_BATCH_FENCE"]
    DFA_SCAN = _A["OP_DFA_SCAN"]
    BUF_COPY = _A["OP_BUF_COPY"]
    DFA_MATCH = _A["OP_DFA_MATCH"]
    LOAD_MISS = _A["OP_LOAD_MISS"]
    PRINTF = _A["OP_PRINTF"]
    PACKED_SLOT = _A["OP_PACKED_SLOT"]
    SHUTDOWN = _A["OP_SHUTDOWN"]


class IoOp(IntEnum):
    """IO queue request type (docs/spec.md §8, word ``IO_OP_TYPE``)."""

    READ = _A["IO_READ"]
    WRITE = _A["IO_WRITE"]
    FENCE = _A["IO_FENCE"]


class IoStatus(IntEnum):
    """IO queue slot status (docs/spec.md §8): the slot values it uses plus OK / ERROR."""

    EMPTY = _A["STATUS_EMPTY"]
    PUBLISHED = _A["STATUS_PUBLISHED"]
    CLAIMED = _A["STATUS_CLAIMED"]
    OK = _A["IO_STATUS_OK"]
    ERROR = _A["IO_STATUS_ERROR"]


class FaultReason(IntEnum):
    """Why a slot ended in FAULT: result word 0 of the slot (docs/ops.md, "Results"; the details
    d0..d2 in words 1..3 are listed in docs/ops.md)."""

    NONE = _A["FAULT_NONE"]
    UNAUTHORIZED = _A["FAULT_UNAUTHORIZED"]
    PROTECTED = _A["FAULT_PROTECTED"]
    OUT_OF_BOUNDS = _A["FAULT_OUT_OF_BOUNDS"]
    IO_ERROR = _A["FAULT_IO_ERROR"]
    IO_UNAVAILABLE = _A["FAULT_IO_UNAVAILABLE"]
    UNKNOWN_OP = _A["FAULT_UNKNOWN_OP"]
    RAISED = _A["FAULT_RAISED"]
    MISALIGNED = _A["FAULT_MISALIGNED"]
    BAD_RESULT = _A["FAULT_BAD_RESULT"]
    NOT_CALLABLE = _A["FAULT_NOT_CALLABLE"]  # the call path only (docs/call.md)


class WindowClass(IntEnum):
    """Class word of a window slot (docs/spec.md §10): required payloads first, then lookahead."""

    REQUIRED = _A["WINDOW_REQUIRED"]
    LOOKAHEAD = _A["WINDOW_LOOKAHEAD"]


def tenant_opcode_window(tenant_id: int) -> range:
    """The user opcodes of registered tenant ``tenant_id`` >= 1 (docs/spec.md §5)."""
    if not isinstance(tenant_id, int) or tenant_id < 1:
        raise InvalidValueError(f"tenant {tenant_id!r} has no opcode window",
                             "registered tenants have ids >= 1 (0 is the system tenant)")
    base = TENANT_OPCODE_BASE + ((tenant_id - 1) << TENANT_OPCODE_SHIFT)
    if base + TENANT_OPCODE_WINDOW - 1 > U32_MAX or is_system(base + TENANT_OPCODE_WINDOW - 1):
        raise InvalidValueError(f"tenant {tenant_id} has no opcode window inside the user range",
                             "use a smaller tenant id")
    return range(base, base + TENANT_OPCODE_WINDOW)


def slot_word(slot: int, word: int) -> int:
    """Index, in a ring viewed as u32 words, of ``word`` of ``slot``."""
    return slot * SLOT_WORDS + word


# ---- layout words and limits (names as in vyre_abi.h without the VYRE_ prefix) ----
ABI_VERSION: Final[int] = _A["ABI_VERSION"]
U32_MAX: Final[int] = _A["U32_MAX"]

SLOT_WORDS: Final[int] = _A["SLOT_WORDS"]
SLOT_BYTES: Final[int] = _A["SLOT_BYTES"]
SLOT_STATUS: Final[int] = _A["SLOT_STATUS"]
SLOT_OPCODE: Final[int] = _A["SLOT_OPCODE"]
SLOT_TENANT: Final[int] = _A["SLOT_TENANT"]
SLOT_PRIORITY: Final[int] = _A["SLOT_PRIORITY"]
SLOT_ARGS: Final[int] = _A["SLOT_ARGS"]
SLOT_ARG_COUNT: Final[int] = _A["SLOT_ARG_COUNT"]

PRIORITY_LEVELS: Final[int] = _A["PRIORITY_LEVELS"]
PRIORITY_DEFAULT: Final[int] = _A["PRIORITY_DEFAULT"]
STARVATION_LIMIT: Final[int] = _A["STARVATION_LIMIT"]

CTRL_SHUTDOWN: Final[int] = _A["CTRL_SHUTDOWN"]
CTRL_DONE_COUNT: Final[int] = _A["CTRL_DONE_COUNT"]
CTRL_TENANT_BASE: Final[int] = _A["CTRL_TENANT_BASE"]
TENANT_MASK_BASE: Final[int] = _A["TENANT_MASK_BASE"]
TENANT_MASK_COUNT: Final[int] = _A["TENANT_MASK_COUNT"]
TENANT_MASK_ALLOW: Final[int] = _A["TENANT_MASK_ALLOW"]
CTRL_TENANT_QUOTA_BASE: Final[int] = _A["CTRL_TENANT_QUOTA_BASE"]
TENANT_QUOTA_COUNT: Final[int] = _A["TENANT_QUOTA_COUNT"]
DEFAULT_TENANT_QUOTA: Final[int] = _A["DEFAULT_TENANT_QUOTA"]
CTRL_TENANT_FAIRNESS_BASE: Final[int] = _A["CTRL_TENANT_FAIRNESS_BASE"]
TENANT_FAIRNESS_COUNT: Final[int] = _A["TENANT_FAIRNESS_COUNT"]
CTRL_METRICS_BASE: Final[int] = _A["CTRL_METRICS_BASE"]
METRICS_COUNT: Final[int] = _A["METRICS_COUNT"]
CTRL_EPOCH: Final[int] = _A["CTRL_EPOCH"]
CTRL_PRIORITY_OFFSETS_BASE: Final[int] = _A["CTRL_PRIORITY_OFFSETS_BASE"]
PRIORITY_OFFSETS_COUNT: Final[int] = _A["PRIORITY_OFFSETS_COUNT"]
CTRL_PRIORITY_STARVATION: Final[int] = _A["CTRL_PRIORITY_STARVATION"]
CTRL_PRIORITY_FAIRNESS_BASE: Final[int] = _A["CTRL_PRIORITY_FAIRNESS_BASE"]
CTRL_TENANT_TABLE_LEN: Final[int] = _A["CTRL_TENANT_TABLE_LEN"]
CTRL_FAULT_COUNT: Final[int] = _A["CTRL_FAULT_COUNT"]
CTRL_HEARTBEAT: Final[int] = _A["CTRL_HEARTBEAT"]
CTRL_RESERVED_BASE: Final[int] = _A["CTRL_RESERVED_BASE"]
CTRL_RESERVED_COUNT: Final[int] = _A["CTRL_RESERVED_COUNT"]
CTRL_OBSERVABLE_BASE: Final[int] = _A["CTRL_OBSERVABLE_BASE"]
OBSERVABLE_BASE: Final[int] = CTRL_OBSERVABLE_BASE
CTRL_HEADER_WORDS: Final[int] = _A["CTRL_HEADER_WORDS"]
CONTROL_MIN_BYTES: Final[int] = _A["CONTROL_MIN_BYTES"]

MAX_RING_SLOTS: Final[int] = _A["MAX_RING_SLOTS"]
MAX_OBSERVABLE_SLOTS: Final[int] = _A["MAX_OBSERVABLE_SLOTS"]
MAX_DEBUG_RECORDS: Final[int] = _A["MAX_DEBUG_RECORDS"]

OP_MAX_PRIMITIVE: Final[int] = _A["OP_MAX_PRIMITIVE"]
SYSTEM_HIGH_BIT: Final[int] = _A["SYSTEM_HIGH_BIT"]
SYSTEM_RANGE_LO: Final[int] = _A["SYSTEM_RANGE_LO"]
SYSTEM_RANGE_HI: Final[int] = _A["SYSTEM_RANGE_HI"]

DFA_ALPHABET: Final[int] = _A["DFA_ALPHABET"]
DFA_ACCEPT_BIT: Final[int] = _A["DFA_ACCEPT_BIT"]
DFA_STATE_MASK: Final[int] = _A["DFA_STATE_MASK"]
DFA_NO_STATE: Final[int] = _A["DFA_NO_STATE"]
DFA_NO_ID: Final[int] = _A["DFA_NO_ID"]
DFA_RECORD_WORDS: Final[int] = _A["DFA_RECORD_WORDS"]
DFA_LANE_PARTS: Final[int] = _A["DFA_LANE_PARTS"]

PACKED_MAX_OPS: Final[int] = _A["PACKED_MAX_OPS"]
PACKED_ARG_WORDS: Final[int] = _A["PACKED_ARG_WORDS"]
PACKED_MAX_INNER_OPCODE: Final[int] = _A["PACKED_MAX_INNER_OPCODE"]

MAX_BUFFERS: Final[int] = _A["MAX_BUFFERS"]
CONTROL_HANDLE: Final[int] = _A["CONTROL_HANDLE"]

TENANT_SYSTEM: Final[int] = _A["TENANT_SYSTEM"]
TENANT_OPCODE_BASE: Final[int] = _A["TENANT_OPCODE_BASE"]
TENANT_OPCODE_SHIFT: Final[int] = _A["TENANT_OPCODE_SHIFT"]
TENANT_OPCODE_WINDOW: Final[int] = _A["TENANT_OPCODE_WINDOW"]

WINDOW_PREFIX_WORDS: Final[int] = _A["WINDOW_PREFIX_WORDS"]

IO_MAX_SLOTS: Final[int] = _A["IO_MAX_SLOTS"]
IO_SLOT_WORDS: Final[int] = _A["IO_SLOT_WORDS"]
IO_OP_TYPE: Final[int] = _A["IO_OP_TYPE"]
IO_SRC_HANDLE: Final[int] = _A["IO_SRC_HANDLE"]
IO_DST_HANDLE: Final[int] = _A["IO_DST_HANDLE"]
IO_OFFSET_LO: Final[int] = _A["IO_OFFSET_LO"]
IO_OFFSET_HI: Final[int] = _A["IO_OFFSET_HI"]
IO_BYTE_COUNT: Final[int] = _A["IO_BYTE_COUNT"]
IO_STATUS: Final[int] = _A["IO_STATUS"]
IO_TAG: Final[int] = _A["IO_TAG"]

DEBUG_CURSOR: Final[int] = _A["DEBUG_CURSOR"]
DEBUG_HEADER_WORDS: Final[int] = _A["DEBUG_HEADER_WORDS"]
DEBUG_RECORD_WORDS: Final[int] = _A["DEBUG_RECORD_WORDS"]
DEBUG_TRAILER_WORDS: Final[int] = _A["DEBUG_TRAILER_WORDS"]

RESULT_WORDS: Final[int] = _A["RESULT_WORDS"]
SLOT_RESULT: Final[int] = _A["SLOT_RESULT"]
# the call path's records (docs/call.md)
CALL_MAX_LANES: Final[int] = _A["CALL_MAX_LANES"]
CALL_DEFAULT_LANES: Final[int] = _A["CALL_DEFAULT_LANES"]
CALL_LANE_WORDS: Final[int] = _A["CALL_LANE_WORDS"]
CALL_REQUEST: Final[int] = _A["CALL_REQUEST"]
CALL_PIECES: Final[int] = _A["CALL_PIECES"]
CALL_PIECE_WORDS: Final[int] = _A["CALL_PIECE_WORDS"]
CALL_SEQ_MASK: Final[int] = _A["CALL_SEQ_MASK"]
CALL_HALF_SHIFT: Final[int] = _A["CALL_HALF_SHIFT"]
CALL_ANSWER: Final[int] = _A["CALL_ANSWER"]
CALL_ANSWER_SEQ: Final[int] = _A["CALL_ANSWER_SEQ"]
CALL_ANSWER_STATUS: Final[int] = _A["CALL_ANSWER_STATUS"]
CALL_ANSWER_R01: Final[int] = _A["CALL_ANSWER_R01"]
CALL_ANSWER_SEQ2: Final[int] = _A["CALL_ANSWER_SEQ2"]
CALL_ANSWER_R23: Final[int] = _A["CALL_ANSWER_R23"]
FAULT_REASONS: Final[int] = _A["FAULT_REASONS"]

__all__ += [name for name in list(globals()) if name.isupper() and name != "ABI"]
