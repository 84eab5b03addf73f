# Cython declarations of csrc/vyre_abi.h: every wire constant, for `cimport` by each extension.
#
# Declared `const unsigned int` so that values such as 0xFFFFFFFFu convert to Python ints
# without sign trouble. The few that size C arrays also get `enum` aliases (Cython needs a
# compile-time constant there). The values are never restated here or in Python: vyre._wire
# builds the one ABI table from these names.

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

    # compile-time aliases for array dimensions
    enum:
        VYRE_ARGN "VYRE_SLOT_ARG_COUNT"
        VYRE_SLOTW "VYRE_SLOT_WORDS"
