/* vyre wire ABI: the one place every wire constant of the protocol is written.
 *
 * Byte-compatible with vyre-runtime 0.6 (slot, control, debug-log and io-queue layouts,
 * opcode numbers). Python reads these through Cython (`cdef extern`), the megakernel and the
 * CPU worker through #include. Never restate one of these numbers elsewhere.
 *
 * Plain C89-compatible preprocessor constants so that gcc, nvcc and Cython all accept them.
 */
#ifndef VYRE_ABI_H
#define VYRE_ABI_H

#define VYRE_ABI_VERSION 1u

/* ---- ring slot (docs/spec.md §1): 16 little-endian u32 words = 64 bytes ---- */
#define VYRE_SLOT_WORDS 16u
#define VYRE_SLOT_BYTES 64u
#define VYRE_SLOT_STATUS 0u
#define VYRE_SLOT_OPCODE 1u
#define VYRE_SLOT_TENANT 2u
#define VYRE_SLOT_PRIORITY 3u
#define VYRE_SLOT_ARGS 4u
#define VYRE_SLOT_ARG_COUNT 12u

/* slot status values */
#define VYRE_STATUS_EMPTY 0u
#define VYRE_STATUS_PUBLISHED 1u
#define VYRE_STATUS_CLAIMED 2u
#define VYRE_STATUS_DONE 3u
#define VYRE_STATUS_WAIT_IO 4u
#define VYRE_STATUS_YIELD 5u
#define VYRE_STATUS_REQUEUE 6u
#define VYRE_STATUS_FAULT 7u

/* priorities (docs/spec.md §6) */
#define VYRE_PRIORITY_CRITICAL 0u
#define VYRE_PRIORITY_HIGH 1u
#define VYRE_PRIORITY_NORMAL 2u
#define VYRE_PRIORITY_LOW 3u
#define VYRE_PRIORITY_IDLE 4u
#define VYRE_PRIORITY_LEVELS 5u
#define VYRE_PRIORITY_DEFAULT VYRE_PRIORITY_NORMAL
#define VYRE_STARVATION_LIMIT 16u

/* ---- control buffer (docs/spec.md §2), word indices ---- */
#define VYRE_CTRL_SHUTDOWN 0u
#define VYRE_CTRL_DONE_COUNT 1u
#define VYRE_CTRL_TENANT_BASE 2u
#define VYRE_TENANT_MASK_BASE 3u          /* value the encoder writes into TENANT_BASE */
#define VYRE_TENANT_MASK_COUNT 29u
#define VYRE_CTRL_TENANT_QUOTA_BASE 32u
#define VYRE_TENANT_QUOTA_COUNT 32u
#define VYRE_DEFAULT_TENANT_QUOTA 1000000u
#define VYRE_CTRL_TENANT_FAIRNESS_BASE 64u
#define VYRE_TENANT_FAIRNESS_COUNT 32u
#define VYRE_CTRL_METRICS_BASE 96u
#define VYRE_METRICS_COUNT 32u
#define VYRE_CTRL_EPOCH 128u
#define VYRE_CTRL_PRIORITY_OFFSETS_BASE 129u /* 5 starts + sentinel = 6 words */
#define VYRE_PRIORITY_OFFSETS_COUNT 6u
#define VYRE_CTRL_PRIORITY_STARVATION 135u
#define VYRE_CTRL_PRIORITY_FAIRNESS_BASE 136u
#define VYRE_CTRL_TENANT_TABLE_LEN 141u   /* [fix] valid tenant-mask entries */
#define VYRE_CTRL_FAULT_COUNT 142u        /* [fix] slots that ended in FAULT */
#define VYRE_CTRL_HEARTBEAT 143u          /* [fix] bumped by the kernel while alive */
#define VYRE_CTRL_RESERVED_BASE 144u
#define VYRE_CTRL_RESERVED_COUNT 16u
#define VYRE_CTRL_OBSERVABLE_BASE 160u
#define VYRE_CTRL_HEADER_WORDS 160u
#define VYRE_CONTROL_MIN_BYTES 640u
#define VYRE_TENANT_MASK_ALLOW 0xFFFFFFFFu

/* ---- caps (docs/spec.md §2) ---- */
#define VYRE_MAX_RING_SLOTS 1048576u
#define VYRE_MAX_OBSERVABLE_SLOTS 1048576u
#define VYRE_MAX_DEBUG_RECORDS 1048576u
#define VYRE_U32_MAX 0xFFFFFFFFu

/* ---- opcodes (docs/spec.md §3) ---- */
#define VYRE_OP_NOP 0u
#define VYRE_OP_STORE_U32 1u
#define VYRE_OP_ATOMIC_ADD 2u
#define VYRE_OP_LOAD_U32 3u
#define VYRE_OP_COMPARE_SWAP 4u
#define VYRE_OP_MEMCPY 5u
#define VYRE_OP_DFA_STEP 6u
#define VYRE_OP_BATCH_FENCE 7u
#define VYRE_OP_MAX_PRIMITIVE 7u
#define VYRE_OP_DFA_SCAN 0xFFF0u          /* extension, reserved range, built-in here */
#define VYRE_OP_BUF_COPY 0xFFF1u          /* extension, reserved range, built-in here */
#define VYRE_OP_DFA_MATCH 0xFFF2u         /* extension: DFA_SCAN with per-pattern counts and
                                             match records (docs/spec.md §3.2) */
#define VYRE_OP_LOAD_MISS 0xFFFDu
#define VYRE_OP_PRINTF 0xFFFEu
#define VYRE_OP_PACKED_SLOT 0x80000001u
#define VYRE_OP_SHUTDOWN 0xFFFFFFFFu

/* system range: high bit set, or [0xFFF0, 0xFFFF], or <= 7 */
#define VYRE_SYSTEM_HIGH_BIT 0x80000000u
#define VYRE_SYSTEM_RANGE_LO 0xFFF0u
#define VYRE_SYSTEM_RANGE_HI 0xFFFFu

/* DFA tables: `states * 256` u32 entries, entry = next_state | accept << 31 */
#define VYRE_DFA_ALPHABET 256u
#define VYRE_DFA_ACCEPT_BIT 0x80000000u
#define VYRE_DFA_STATE_MASK 0x7FFFFFFFu
#define VYRE_DFA_NO_STATE 0xFFFFFFFFu     /* DFA_SCAN a4: start at 0, store nothing back */
/* DFA_MATCH pattern-id table: `patterns` words same_next[id], then per state [own_id, dict_link];
 * a record is [pattern id, end offset from a2] */
#define VYRE_DFA_NO_ID 0xFFFFFFFFu        /* no pattern id / no state in the id table */
#define VYRE_DFA_RECORD_WORDS 2u
#define VYRE_DFA_LANE_PARTS 32u          /* DFA_MATCH: lane-parts of a slot's range (docs/spec.md §3.2) */

/* ---- packed slot payload (docs/spec.md §4.2) ---- */
#define VYRE_PACKED_MAX_OPS 255u
#define VYRE_PACKED_ARG_WORDS 12u
#define VYRE_PACKED_MAX_INNER_OPCODE 255u

/* ---- buffer table (docs/spec.md §4.1) ---- */
#define VYRE_MAX_BUFFERS 256u
#define VYRE_CONTROL_HANDLE 0u

/* ---- tenant registry (docs/spec.md §5) ---- */
#define VYRE_TENANT_SYSTEM 0u
#define VYRE_TENANT_OPCODE_BASE 0x40000000u
#define VYRE_TENANT_OPCODE_SHIFT 20u      /* window of tenant id: BASE + ((id-1) << 20) */
#define VYRE_TENANT_OPCODE_WINDOW 0x100000u

/* ---- batch / window descriptors (docs/spec.md §10) ---- */
#define VYRE_WINDOW_REQUIRED 0u
#define VYRE_WINDOW_LOOKAHEAD 1u
#define VYRE_WINDOW_PREFIX_WORDS 2u       /* [ticket, class] */

/* ---- per-op results (docs/ops.md, "Results") ----
 * When a slot finishes (DONE or FAULT) its words 12..15 (args a8..a11) are overwritten with
 * VYRE_RESULT_WORDS result words before the status is stored with release order. DONE: the
 * op's results (0 where it returned none). FAULT: word 12 = a VYRE_FAULT_* reason, words
 * 13..15 = its details (d0, d1, d2 below). A slot parked in WAIT_IO keeps its args. */
#define VYRE_RESULT_WORDS 4u
#define VYRE_SLOT_RESULT 12u              /* slot word of result 0 */

/* fault reasons (result word 0 of a FAULT slot). d2 is the lane for a user op, the inner op's
 * index for an inner op of a packed slot, else 0. */
#define VYRE_FAULT_NONE 0u                /* never stored in a FAULT slot */
#define VYRE_FAULT_UNAUTHORIZED 1u        /* tenant refused (docs/spec.md §5): d0 = tenant */
#define VYRE_FAULT_PROTECTED 2u           /* write below OBSERVABLE_BASE by a tenant != 0:
                                             d0 = handle (0), d1 = first protected word aimed at */
#define VYRE_FAULT_OUT_OF_BOUNDS 3u       /* d0 = handle, d1 = word index (u32 access) or byte
                                             offset (byte range), clamped to 0xFFFFFFFF */
#define VYRE_FAULT_IO_ERROR 4u            /* LOAD_MISS answered ERROR: d0 = resource id */
#define VYRE_FAULT_IO_UNAVAILABLE 5u      /* LOAD_MISS not served: no io queue (d1 = 0), not
                                             picked up in time (d1 = 1), SHUTDOWN (d1 = 2);
                                             d0 = resource id */
#define VYRE_FAULT_UNKNOWN_OP 6u          /* user opcode no loaded op handles: d0 = opcode */
#define VYRE_FAULT_RAISED 7u              /* vyre_op_fault() by the op itself: d0 = its code */
#define VYRE_FAULT_MISALIGNED 8u          /* u32 access to a buffer not 4-byte aligned:
                                             d0 = handle, d1 = word index */
#define VYRE_FAULT_BAD_RESULT 9u          /* vyre_op_result() index >= VYRE_RESULT_WORDS: d0 = index */
#define VYRE_FAULT_REASONS 10u            /* reasons are below this */

/* ---- IO queue (docs/spec.md §8): up to 64 slots of 8 words ---- */
#define VYRE_IO_MAX_SLOTS 64u
#define VYRE_IO_SLOT_WORDS 8u
#define VYRE_IO_OP_TYPE 0u
#define VYRE_IO_SRC_HANDLE 1u
#define VYRE_IO_DST_HANDLE 2u
#define VYRE_IO_OFFSET_LO 3u
#define VYRE_IO_OFFSET_HI 4u
#define VYRE_IO_BYTE_COUNT 5u
#define VYRE_IO_STATUS 6u
#define VYRE_IO_TAG 7u
#define VYRE_IO_READ 1u
#define VYRE_IO_WRITE 2u
#define VYRE_IO_FENCE 3u
#define VYRE_IO_STATUS_OK 0x10u
#define VYRE_IO_STATUS_ERROR 0x11u

/* ---- debug log (docs/spec.md §9) ---- */
#define VYRE_DEBUG_CURSOR 0u              /* words written after the header */
#define VYRE_DEBUG_HEADER_WORDS 1u
#define VYRE_DEBUG_RECORD_WORDS 4u
/* [fix] records that did not fit are counted here. The 0.6 layout has a one-word header;
 * the overflow counter lives one word past the last record so the record area keeps its
 * 0.6 offsets. Debug-log byte length = 4 * (1 + 4*records + 1). */
#define VYRE_DEBUG_TRAILER_WORDS 1u

/* ---- call path (docs/call.md, spec §12): request/answer records beside the ring ----
 * A call area is `lanes` records of 32 words (128 bytes) in memory both sides reach (mapped
 * host memory on the GPU). Words 0..15 of a lane: the request, four 16-byte pieces that the
 * caller writes with one 16-byte store each; word 0 of every piece is
 * `seq | half << 16` (the 16-bit sequence number of the request and 16 bits of the header:
 * piece 0 opcode bits 0..15, piece 1 opcode bits 16..31, piece 2 tenant bits 0..15, piece 3
 * tenant bits 16..31), words 1..3 of piece k are args 3k..3k+2. A reader that sees four equal
 * sequence numbers holds one whole request; unequal ones are a torn read, read again.
 * Words 16..23: the answer, two 16-byte pieces {seq, status, result0, result1} and
 * {seq, result2, result3, 0}, stored by the server with release order. Sequence 0 is never
 * used (a zeroed area holds no request). */
#define VYRE_CALL_MAX_LANES 32u
#define VYRE_CALL_DEFAULT_LANES 8u
#define VYRE_CALL_LANE_WORDS 32u
#define VYRE_CALL_REQUEST 0u              /* word offset of the request in a lane */
#define VYRE_CALL_PIECES 4u
#define VYRE_CALL_PIECE_WORDS 4u
#define VYRE_CALL_SEQ_MASK 0xFFFFu
#define VYRE_CALL_HALF_SHIFT 16u
#define VYRE_CALL_ANSWER 16u              /* word offset of the answer: its own 64-byte line */
#define VYRE_CALL_ANSWER_SEQ 0u           /* answer words, relative to VYRE_CALL_ANSWER */
#define VYRE_CALL_ANSWER_STATUS 1u        /* VYRE_STATUS_DONE or VYRE_STATUS_FAULT */
#define VYRE_CALL_ANSWER_R01 2u           /* result words 0, 1 */
#define VYRE_CALL_ANSWER_SEQ2 4u          /* the second piece's copy of the sequence */
#define VYRE_CALL_ANSWER_R23 5u           /* result words 2, 3 */
/* a call whose op needs a ring slot (LOAD_MISS parks its slot; an op that leaves its status
 * to a handler) faults with this reason in result word 0 */
#define VYRE_FAULT_NOT_CALLABLE 0x100u

#endif /* VYRE_ABI_H */
