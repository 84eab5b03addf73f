# Cython declarations of the vyre wire core, for `cimport` by other extensions.
#
# Every wire constant comes from csrc/vyre_abi.h (the single source of truth); they are
# declared `const unsigned int` so that values such as 0xFFFFFFFFu convert to Python ints
# without sign trouble. The few that size C arrays also get `enum` aliases (Cython needs a
# compile-time constant there).
from libc.stdint cimport uint32_t

cdef extern from "vyre_abi.h":
    const unsigned int VYRE_ABI_VERSION
    const unsigned int VYRE_SLOT_WORDS
    const unsigned int VYRE_SLOT_BYTES
    const unsigned int VYRE_SLOT_STATUS
    const unsigned int VYRE_SLOT_OPCODE
    const unsigned int VYRE_SLOT_TENANT
    const unsigned int VYRE_SLOT_PRIORITY
    const unsigned int VYRE_SLOT_ARGS
    const unsigned int VYRE_SLOT_ARG_COUNT
    const unsigned int VYRE_STATUS_EMPTY
    const unsigned int VYRE_STATUS_PUBLISHED
    const unsigned int VYRE_STATUS_CLAIMED
    const unsigned int VYRE_STATUS_DONE
    const unsigned int VYRE_STATUS_WAIT_IO
    const unsigned int VYRE_STATUS_YIELD
    const unsigned int VYRE_STATUS_REQUEUE
    const unsigned int VYRE_STATUS_FAULT
    const unsigned int VYRE_PRIORITY_CRITICAL
    const unsigned int VYRE_PRIORITY_HIGH
    const unsigned int VYRE_PRIORITY_NORMAL
    const unsigned int VYRE_PRIORITY_LOW
    const unsigned int VYRE_PRIORITY_IDLE
    const unsigned int VYRE_PRIORITY_LEVELS
    const unsigned int VYRE_PRIORITY_DEFAULT
    const unsigned int VYRE_STARVATION_LIMIT
    const unsigned int VYRE_CTRL_SHUTDOWN
    const unsigned int VYRE_CTRL_DONE_COUNT
    const unsigned int VYRE_CTRL_TENANT_BASE
    const unsigned int VYRE_TENANT_MASK_BASE
    const unsigned int VYRE_TENANT_MASK_COUNT
    const unsigned int VYRE_CTRL_TENANT_QUOTA_BASE
    const unsigned int VYRE_TENANT_QUOTA_COUNT
    const unsigned int VYRE_DEFAULT_TENANT_QUOTA
    const unsigned int VYRE_CTRL_TENANT_FAIRNESS_BASE
    const unsigned int VYRE_TENANT_FAIRNESS_COUNT
    const unsigned int VYRE_CTRL_METRICS_BASE
    const unsigned int VYRE_METRICS_COUNT
    const unsigned int VYRE_CTRL_EPOCH
    const unsigned int VYRE_CTRL_PRIORITY_OFFSETS_BASE
    const unsigned int VYRE_PRIORITY_OFFSETS_COUNT
    const unsigned int VYRE_CTRL_PRIORITY_STARVATION
    const unsigned int VYRE_CTRL_PRIORITY_FAIRNESS_BASE
    const unsigned int VYRE_CTRL_TENANT_TABLE_LEN
    const unsigned int VYRE_CTRL_FAULT_COUNT
    const unsigned int VYRE_CTRL_HEARTBEAT
    const unsigned int VYRE_CTRL_RESERVED_BASE
    const unsigned int VYRE_CTRL_RESERVED_COUNT
    const unsigned int VYRE_CTRL_OBSERVABLE_BASE
    const unsigned int VYRE_CTRL_HEADER_WORDS
    const unsigned int VYRE_CONTROL_MIN_BYTES
    const unsigned int VYRE_TENANT_MASK_ALLOW
    const unsigned int VYRE_MAX_RING_SLOTS
    const unsigned int VYRE_MAX_OBSERVABLE_SLOTS
    const unsigned int VYRE_MAX_DEBUG_RECORDS
    const unsigned int VYRE_U32_MAX
    const unsigned int VYRE_OP_NOP
    const unsigned int VYRE_OP_STORE_U32
    const unsigned int VYRE_OP_ATOMIC_ADD
    const unsigned int VYRE_OP_LOAD_U32
    const unsigned int VYRE_OP_COMPARE_SWAP
    const unsigned int VYRE_OP_MEMCPY
    const unsigned int VYRE_OP_DFA_STEP
    const unsigned int VYRE_OP_BATCH_FENCE
    const unsigned int VYRE_OP_MAX_PRIMITIVE
    const unsigned int VYRE_OP_DFA_SCAN
    const unsigned int VYRE_OP_BUF_COPY
    const unsigned int VYRE_OP_LOAD_MISS
    const unsigned int VYRE_OP_PRINTF
    const unsigned int VYRE_OP_PACKED_SLOT
    const unsigned int VYRE_OP_SHUTDOWN
    const unsigned int VYRE_SYSTEM_HIGH_BIT
    const unsigned int VYRE_SYSTEM_RANGE_LO
    const unsigned int VYRE_SYSTEM_RANGE_HI
    const unsigned int VYRE_DFA_ALPHABET
    const unsigned int VYRE_DFA_ACCEPT_BIT
    const unsigned int VYRE_DFA_STATE_MASK
    const unsigned int VYRE_DFA_NO_STATE
    const unsigned int VYRE_PACKED_MAX_OPS
    const unsigned int VYRE_PACKED_ARG_WORDS
    const unsigned int VYRE_PACKED_MAX_INNER_OPCODE
    const unsigned int VYRE_MAX_BUFFERS
    const unsigned int VYRE_CONTROL_HANDLE
    const unsigned int VYRE_TENANT_SYSTEM
    const unsigned int VYRE_TENANT_OPCODE_BASE
    const unsigned int VYRE_TENANT_OPCODE_SHIFT
    const unsigned int VYRE_TENANT_OPCODE_WINDOW
    const unsigned int VYRE_WINDOW_REQUIRED
    const unsigned int VYRE_WINDOW_LOOKAHEAD
    const unsigned int VYRE_WINDOW_PREFIX_WORDS
    const unsigned int VYRE_IO_MAX_SLOTS
    const unsigned int VYRE_IO_SLOT_WORDS
    const unsigned int VYRE_IO_OP_TYPE
    const unsigned int VYRE_IO_SRC_HANDLE
    const unsigned int VYRE_IO_DST_HANDLE
    const unsigned int VYRE_IO_OFFSET_LO
    const unsigned int VYRE_IO_OFFSET_HI
    const unsigned int VYRE_IO_BYTE_COUNT
    const unsigned int VYRE_IO_STATUS
    const unsigned int VYRE_IO_TAG
    const unsigned int VYRE_IO_READ
    const unsigned int VYRE_IO_WRITE
    const unsigned int VYRE_IO_FENCE
    const unsigned int VYRE_IO_STATUS_OK
    const unsigned int VYRE_IO_STATUS_ERROR
    const unsigned int VYRE_DEBUG_CURSOR
    const unsigned int VYRE_DEBUG_HEADER_WORDS
    const unsigned int VYRE_DEBUG_RECORD_WORDS
    const unsigned int VYRE_DEBUG_TRAILER_WORDS
    const unsigned int VYRE_RESULT_WORDS
    const unsigned int VYRE_SLOT_RESULT
    const unsigned int VYRE_FAULT_NONE
    const unsigned int VYRE_FAULT_UNAUTHORIZED
    const unsigned int VYRE_FAULT_PROTECTED
    const unsigned int VYRE_FAULT_OUT_OF_BOUNDS
    const unsigned int VYRE_FAULT_IO_ERROR
    const unsigned int VYRE_FAULT_IO_UNAVAILABLE
    const unsigned int VYRE_FAULT_UNKNOWN_OP
    const unsigned int VYRE_FAULT_RAISED
    const unsigned int VYRE_FAULT_MISALIGNED
    const unsigned int VYRE_FAULT_BAD_RESULT
    const unsigned int VYRE_FAULT_REASONS
    # the call path (docs/call.md)
    const unsigned int VYRE_CALL_MAX_LANES
    const unsigned int VYRE_CALL_DEFAULT_LANES
    const unsigned int VYRE_CALL_LANE_WORDS
    const unsigned int VYRE_CALL_REQUEST
    const unsigned int VYRE_CALL_PIECES
    const unsigned int VYRE_CALL_PIECE_WORDS
    const unsigned int VYRE_CALL_SEQ_MASK
    const unsigned int VYRE_CALL_HALF_SHIFT
    const unsigned int VYRE_CALL_ANSWER
    const unsigned int VYRE_CALL_ANSWER_SEQ
    const unsigned int VYRE_CALL_ANSWER_STATUS
    const unsigned int VYRE_CALL_ANSWER_R01
    const unsigned int VYRE_CALL_ANSWER_SEQ2
    const unsigned int VYRE_CALL_ANSWER_R23
    const unsigned int VYRE_FAULT_NOT_CALLABLE

    # compile-time aliases for array dimensions
    enum:
        VYRE_ARGN "VYRE_SLOT_ARG_COUNT"
        VYRE_SLOTW "VYRE_SLOT_WORDS"


# Status codes of the nogil fast paths below (0 = success).
cdef enum WireCode:
    WIRE_OK = 0
    WIRE_BAD_SLOT = 1           # slot index outside the ring
    WIRE_NOT_PUBLISHABLE = 2    # target slot is neither EMPTY nor DONE
    WIRE_RESERVED_OPCODE = 3    # system opcode that is not a built-in
    WIRE_BAD_PRIORITY = 4       # priority outside 0..4
    WIRE_TOO_MANY_ARGS = 5      # more than 12 argument words


cdef inline bint wire_is_system(uint32_t op) noexcept nogil:
    """spec §3: high bit set, or 0xFFF0..0xFFFF, or a primitive (<= 7)."""
    return ((op & VYRE_SYSTEM_HIGH_BIT) != 0
            or (VYRE_SYSTEM_RANGE_LO <= op <= VYRE_SYSTEM_RANGE_HI)
            or op <= VYRE_OP_MAX_PRIMITIVE)


cdef inline bint wire_is_builtin(uint32_t op) noexcept nogil:
    """spec §3: primitives, the system built-ins and this runtime's extension opcodes."""
    return (op <= VYRE_OP_MAX_PRIMITIVE or op == VYRE_OP_PACKED_SLOT or op == VYRE_OP_PRINTF
            or op == VYRE_OP_SHUTDOWN or op == VYRE_OP_LOAD_MISS or op == VYRE_OP_DFA_SCAN
            or op == VYRE_OP_BUF_COPY)


cdef inline bint wire_publishable_opcode(uint32_t op) noexcept nogil:
    """A publish accepts built-ins and every non-system (user) opcode."""
    return wire_is_builtin(op) or not wire_is_system(op)


# Publish one slot into `ring` (slot_count slots of 16 words) without the GIL: validates
# the slot index, opcode, priority and arg count, checks the slot is EMPTY or DONE, writes
# the body (args zero-filled) and then PUBLISHED with release order. Returns a WireCode;
# on failure nothing was written.
cdef int wire_publish(uint32_t *ring, Py_ssize_t slot_count, Py_ssize_t slot, uint32_t tenant,
                      uint32_t opcode, const uint32_t *args, Py_ssize_t nargs,
                      uint32_t priority) noexcept nogil

# Count consecutive finished (DONE/FAULT) slots from `start` (wrapping), at most max_count;
# FAULT slots among them are reset to EMPTY and, when `faults` is not NULL, their offsets
# from `start` are stored there (room for max_count entries). Returns the count; the number
# of faults goes to n_faults.
cdef Py_ssize_t wire_retire(uint32_t *ring, Py_ssize_t slot_count, Py_ssize_t start,
                            Py_ssize_t max_count, Py_ssize_t *faults,
                            Py_ssize_t *n_faults) noexcept nogil
