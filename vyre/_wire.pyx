# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""vyre wire core: byte-exact encoders, readers and publishers of the ring/control/debug buffers.

Every function takes any C-contiguous buffer (bytearray, memoryview, numpy array, mmap,
pinned host memory) through the buffer protocol and never copies it. Words are little-endian
u32 (enforced at import). Buffers must be 4-byte aligned: slot status words are accessed with
atomics, which need natural alignment.

Errors: invalid arguments raise :class:`vyre.InvalidValueError` / :class:`vyre.InvalidTypeError`
(both :class:`vyre.ArgumentError`), a slot that is not publishable :class:`vyre.QueueFullError`,
malformed buffers handed to a decoder :class:`vyre.ProtocolError`; both end with ``Fix: ...``. Everything is
validated before the first byte is written, so a failed call leaves every buffer unchanged.

One module of some 1 600 lines on purpose: the publishers, retire and wait walks share the
inline C slot helpers and the argument converters at the top, and they must stay inlined into
each nogil loop (a slot costs ~10 ns; a call across extension modules would cost more than
the slot). Sections: C helpers, ABI table, converters, encoders and readers, publishers,
descriptors, retire and wait walks, LOAD_MISS, word atomics.
"""
import collections
import math
import sys

from cpython.buffer cimport (
    PyBUF_ANY_CONTIGUOUS,
    PyBUF_FORMAT,
    PyBUF_STRIDES,
    PyBUF_WRITABLE,
    PyBuffer_IsContiguous,
    PyBuffer_Release,
    PyObject_GetBuffer,
)
from cpython.exc cimport PyErr_CheckSignals
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcpy, memset

from vyre.includes.interp cimport VYRE_CAS_ACQ, VYRE_LD_ACQ, VYRE_ST_REL

from vyre.errors import (ArgumentError, InvalidTypeError, InvalidValueError, ProtocolError,
                         QueueFullError)

if sys.byteorder != "little":  # the wire is little-endian and we write native words
    raise ImportError("vyre.wire needs a little-endian host (the wire format is little-endian u32)")


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #include <time.h>
    #include <sched.h>
    #include "vyre_interp.h" /* the wire constants and the host atomics VYRE_LD_ACQ, ... */
    #include "vyre_wait.h"   /* the wait policy, shared with the call path */

    static inline void vyre_store_release_u64(uint64_t *p, uint64_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    static inline uint64_t vyre_load_acquire_u64(const uint64_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline int vyre_publishable(uint32_t s) {
        return s == VYRE_STATUS_EMPTY || s == VYRE_STATUS_DONE;
    }
    static inline int vyre_finished(uint32_t s) {
        return s == VYRE_STATUS_DONE || s == VYRE_STATUS_FAULT;
    }
    static inline int vyre_in_flight(uint32_t s) {
        return s == VYRE_STATUS_PUBLISHED || s == VYRE_STATUS_CLAIMED;
    }

    /* docs/spec.md §1: body (k <= 12 args from a packed row, the rest zero), release, status
     * PUBLISHED last. Written in place: a zeroed temp plus memcpy cost up to ~4 ns/slot more
     * in bulk publishing. */
    static inline void vyre_write_slot_k(uint32_t *slot, uint32_t opcode, uint32_t tenant,
                                         uint32_t priority, const uint32_t *args, size_t k) {
        uint32_t *out = slot + VYRE_SLOT_ARGS;
        size_t j;
        slot[VYRE_SLOT_OPCODE] = opcode;
        slot[VYRE_SLOT_TENANT] = tenant;
        slot[VYRE_SLOT_PRIORITY] = priority;
        for (j = 0; j < k; j++) out[j] = args[j];
        for (; j < VYRE_SLOT_ARG_COUNT; j++) out[j] = 0;
        VYRE_ST_REL(slot + VYRE_SLOT_STATUS, VYRE_STATUS_PUBLISHED);
    }

    static inline void vyre_write_slot(uint32_t *slot, uint32_t opcode, uint32_t tenant,
                                       uint32_t priority, const uint32_t *args12) {
        vyre_write_slot_k(slot, opcode, tenant, priority, args12, VYRE_SLOT_ARG_COUNT);
    }

    static inline uint32_t vyre_read_u32(const void *p) {
        uint32_t v;
        memcpy(&v, p, sizeof v);
        return v;
    }

    /* `count` rows (ops[i], args[i*k .. i*k+k)) into ring slots from `idx` on, wrapping at
     * `slots`; returns the next index. */
    static Py_ssize_t vyre_write_run(uint32_t *ring, Py_ssize_t slots, Py_ssize_t idx,
                                     const unsigned char *ops, const uint32_t *args, size_t k,
                                     uint32_t tenant, uint32_t priority, Py_ssize_t count) {
        Py_ssize_t i;
        for (i = 0; i < count; i++) {
            vyre_write_slot_k(ring + (size_t)idx * VYRE_SLOT_WORDS,
                              vyre_read_u32(ops + (size_t)i * sizeof(uint32_t)), tenant,
                              priority, k ? args + (size_t)i * k : args, k);
            if (++idx == slots) idx = 0;
        }
        return idx;
    }

    /* Status of a slot once it is neither PUBLISHED nor CLAIMED, or -1 at w->deadline. */
    static int64_t vyre_wait_status(const uint32_t *status, vyre_wait_t *w) {
        for (;;) {
            uint32_t s = VYRE_LD_ACQ(status);
            if (!vyre_in_flight(s)) return (int64_t)s;
            if (!vyre_wait_pause(w)) return -1;
        }
    }

    /* Consecutive finished slots from `start` (wrapping), resuming at `done`, up to `count`;
     * the offset of the first FAULT among them goes to *first_fault (left alone if none). */
    static Py_ssize_t vyre_wait_finished(const uint32_t *ring, Py_ssize_t slots,
                                         Py_ssize_t start, Py_ssize_t count, Py_ssize_t done,
                                         vyre_wait_t *w, Py_ssize_t *first_fault) {
        Py_ssize_t idx = (start + done) % slots;
        uint32_t s;
        while (done < count) {
            s = VYRE_LD_ACQ(ring + (size_t)idx * VYRE_SLOT_WORDS);
            if (vyre_finished(s)) {
                if (s == VYRE_STATUS_FAULT && *first_fault < 0) *first_fault = done;
                done++;
                if (++idx == slots) idx = 0;
            } else if (!vyre_wait_pause(w)) {
                break;
            }
        }
        return done;
    }

    /* Turns a pending Python error (set by an unchecked C-API call) into a Cython raise. */
    static int vyre_pending_error(void) { return -1; }
    """
    void vyre_store_release_u64(uint64_t *p, uint64_t v) noexcept nogil
    uint64_t vyre_load_acquire_u64(const uint64_t *p) noexcept nogil
    bint vyre_publishable(uint32_t s) noexcept nogil
    bint vyre_finished(uint32_t s) noexcept nogil
    void vyre_write_slot(uint32_t *slot, uint32_t opcode, uint32_t tenant, uint32_t priority,
                         const uint32_t *args12) noexcept nogil
    uint32_t vyre_read_u32(const void *p) noexcept nogil
    Py_ssize_t vyre_write_run(uint32_t *ring, Py_ssize_t slots, Py_ssize_t idx,
                              const unsigned char *ops, const uint32_t *args, size_t k,
                              uint32_t tenant, uint32_t priority, Py_ssize_t count) noexcept nogil
    uint64_t vyre_now_ns() noexcept nogil
    ctypedef struct vyre_wait_t:
        uint64_t started
        uint64_t deadline
    void vyre_wait_init(vyre_wait_t *w, uint64_t started) noexcept nogil
    int64_t vyre_wait_status(const uint32_t *status, vyre_wait_t *w) noexcept nogil
    Py_ssize_t vyre_wait_finished(const uint32_t *ring, Py_ssize_t slots, Py_ssize_t start,
                                  Py_ssize_t count, Py_ssize_t done, vyre_wait_t *w,
                                  Py_ssize_t *first_fault) noexcept nogil
    int vyre_pending_error() except -1
    # unchecked on purpose: failures are re-raised as vyre errors by _buffer_error
    int vyre_get_buffer "PyObject_GetBuffer"(object obj, Py_buffer *view, int flags)
    bint PyTuple_CheckExact(object o)
    bint PyList_CheckExact(object o)
    const Py_ssize_t PY_SSIZE_T_MAX


# ---------------------------------------------------------------------------------------------
# ABI constants (names without the VYRE_ prefix), for vyre.protocol
# ---------------------------------------------------------------------------------------------

ABI = {
    "ABI_VERSION": VYRE_ABI_VERSION,
    "SLOT_WORDS": VYRE_SLOT_WORDS,
    "SLOT_BYTES": VYRE_SLOT_BYTES,
    "SLOT_STATUS": VYRE_SLOT_STATUS,
    "SLOT_OPCODE": VYRE_SLOT_OPCODE,
    "SLOT_TENANT": VYRE_SLOT_TENANT,
    "SLOT_PRIORITY": VYRE_SLOT_PRIORITY,
    "SLOT_ARGS": VYRE_SLOT_ARGS,
    "SLOT_ARG_COUNT": VYRE_SLOT_ARG_COUNT,
    "STATUS_EMPTY": VYRE_STATUS_EMPTY,
    "STATUS_PUBLISHED": VYRE_STATUS_PUBLISHED,
    "STATUS_CLAIMED": VYRE_STATUS_CLAIMED,
    "STATUS_DONE": VYRE_STATUS_DONE,
    "STATUS_WAIT_IO": VYRE_STATUS_WAIT_IO,
    "STATUS_YIELD": VYRE_STATUS_YIELD,
    "STATUS_REQUEUE": VYRE_STATUS_REQUEUE,
    "STATUS_FAULT": VYRE_STATUS_FAULT,
    "PRIORITY_CRITICAL": VYRE_PRIORITY_CRITICAL,
    "PRIORITY_HIGH": VYRE_PRIORITY_HIGH,
    "PRIORITY_NORMAL": VYRE_PRIORITY_NORMAL,
    "PRIORITY_LOW": VYRE_PRIORITY_LOW,
    "PRIORITY_IDLE": VYRE_PRIORITY_IDLE,
    "PRIORITY_LEVELS": VYRE_PRIORITY_LEVELS,
    "PRIORITY_DEFAULT": VYRE_PRIORITY_DEFAULT,
    "STARVATION_LIMIT": VYRE_STARVATION_LIMIT,
    "CTRL_SHUTDOWN": VYRE_CTRL_SHUTDOWN,
    "CTRL_DONE_COUNT": VYRE_CTRL_DONE_COUNT,
    "CTRL_TENANT_BASE": VYRE_CTRL_TENANT_BASE,
    "TENANT_MASK_BASE": VYRE_TENANT_MASK_BASE,
    "TENANT_MASK_COUNT": VYRE_TENANT_MASK_COUNT,
    "CTRL_TENANT_QUOTA_BASE": VYRE_CTRL_TENANT_QUOTA_BASE,
    "TENANT_QUOTA_COUNT": VYRE_TENANT_QUOTA_COUNT,
    "DEFAULT_TENANT_QUOTA": VYRE_DEFAULT_TENANT_QUOTA,
    "CTRL_TENANT_FAIRNESS_BASE": VYRE_CTRL_TENANT_FAIRNESS_BASE,
    "TENANT_FAIRNESS_COUNT": VYRE_TENANT_FAIRNESS_COUNT,
    "CTRL_METRICS_BASE": VYRE_CTRL_METRICS_BASE,
    "METRICS_COUNT": VYRE_METRICS_COUNT,
    "CTRL_EPOCH": VYRE_CTRL_EPOCH,
    "CTRL_PRIORITY_OFFSETS_BASE": VYRE_CTRL_PRIORITY_OFFSETS_BASE,
    "PRIORITY_OFFSETS_COUNT": VYRE_PRIORITY_OFFSETS_COUNT,
    "CTRL_PRIORITY_STARVATION": VYRE_CTRL_PRIORITY_STARVATION,
    "CTRL_PRIORITY_FAIRNESS_BASE": VYRE_CTRL_PRIORITY_FAIRNESS_BASE,
    "CTRL_TENANT_TABLE_LEN": VYRE_CTRL_TENANT_TABLE_LEN,
    "CTRL_FAULT_COUNT": VYRE_CTRL_FAULT_COUNT,
    "CTRL_HEARTBEAT": VYRE_CTRL_HEARTBEAT,
    "CTRL_RESERVED_BASE": VYRE_CTRL_RESERVED_BASE,
    "CTRL_RESERVED_COUNT": VYRE_CTRL_RESERVED_COUNT,
    "CTRL_OBSERVABLE_BASE": VYRE_CTRL_OBSERVABLE_BASE,
    "CTRL_HEADER_WORDS": VYRE_CTRL_HEADER_WORDS,
    "CONTROL_MIN_BYTES": VYRE_CONTROL_MIN_BYTES,
    "TENANT_MASK_ALLOW": VYRE_TENANT_MASK_ALLOW,
    "MAX_RING_SLOTS": VYRE_MAX_RING_SLOTS,
    "MAX_OBSERVABLE_SLOTS": VYRE_MAX_OBSERVABLE_SLOTS,
    "MAX_DEBUG_RECORDS": VYRE_MAX_DEBUG_RECORDS,
    "U32_MAX": VYRE_U32_MAX,
    "OP_NOP": VYRE_OP_NOP,
    "OP_STORE_U32": VYRE_OP_STORE_U32,
    "OP_ATOMIC_ADD": VYRE_OP_ATOMIC_ADD,
    "OP_LOAD_U32": VYRE_OP_LOAD_U32,
    "OP_COMPARE_SWAP": VYRE_OP_COMPARE_SWAP,
    "OP_MEMCPY": VYRE_OP_MEMCPY,
    "OP_DFA_STEP": VYRE_OP_DFA_STEP,
    "OP_BATCH_FENCE": VYRE_OP_BATCH_FENCE,
    "OP_MAX_PRIMITIVE": VYRE_OP_MAX_PRIMITIVE,
    "OP_DFA_SCAN": VYRE_OP_DFA_SCAN,
    "OP_BUF_COPY": VYRE_OP_BUF_COPY,
    "OP_DFA_MATCH": VYRE_OP_DFA_MATCH,
    "OP_LOAD_MISS": VYRE_OP_LOAD_MISS,
    "OP_PRINTF": VYRE_OP_PRINTF,
    "OP_PACKED_SLOT": VYRE_OP_PACKED_SLOT,
    "OP_SHUTDOWN": VYRE_OP_SHUTDOWN,
    "SYSTEM_HIGH_BIT": VYRE_SYSTEM_HIGH_BIT,
    "SYSTEM_RANGE_LO": VYRE_SYSTEM_RANGE_LO,
    "SYSTEM_RANGE_HI": VYRE_SYSTEM_RANGE_HI,
    "DFA_ALPHABET": VYRE_DFA_ALPHABET,
    "DFA_ACCEPT_BIT": VYRE_DFA_ACCEPT_BIT,
    "DFA_STATE_MASK": VYRE_DFA_STATE_MASK,
    "DFA_NO_STATE": VYRE_DFA_NO_STATE,
    "DFA_NO_ID": VYRE_DFA_NO_ID,
    "DFA_RECORD_WORDS": VYRE_DFA_RECORD_WORDS,
    "DFA_LANE_PARTS": VYRE_DFA_LANE_PARTS,
    "PACKED_MAX_OPS": VYRE_PACKED_MAX_OPS,
    "PACKED_ARG_WORDS": VYRE_PACKED_ARG_WORDS,
    "PACKED_MAX_INNER_OPCODE": VYRE_PACKED_MAX_INNER_OPCODE,
    "MAX_BUFFERS": VYRE_MAX_BUFFERS,
    "CONTROL_HANDLE": VYRE_CONTROL_HANDLE,
    "TENANT_SYSTEM": VYRE_TENANT_SYSTEM,
    "TENANT_OPCODE_BASE": VYRE_TENANT_OPCODE_BASE,
    "TENANT_OPCODE_SHIFT": VYRE_TENANT_OPCODE_SHIFT,
    "TENANT_OPCODE_WINDOW": VYRE_TENANT_OPCODE_WINDOW,
    "WINDOW_REQUIRED": VYRE_WINDOW_REQUIRED,
    "WINDOW_LOOKAHEAD": VYRE_WINDOW_LOOKAHEAD,
    "WINDOW_PREFIX_WORDS": VYRE_WINDOW_PREFIX_WORDS,
    "IO_MAX_SLOTS": VYRE_IO_MAX_SLOTS,
    "IO_SLOT_WORDS": VYRE_IO_SLOT_WORDS,
    "IO_OP_TYPE": VYRE_IO_OP_TYPE,
    "IO_SRC_HANDLE": VYRE_IO_SRC_HANDLE,
    "IO_DST_HANDLE": VYRE_IO_DST_HANDLE,
    "IO_OFFSET_LO": VYRE_IO_OFFSET_LO,
    "IO_OFFSET_HI": VYRE_IO_OFFSET_HI,
    "IO_BYTE_COUNT": VYRE_IO_BYTE_COUNT,
    "IO_STATUS": VYRE_IO_STATUS,
    "IO_TAG": VYRE_IO_TAG,
    "IO_READ": VYRE_IO_READ,
    "IO_WRITE": VYRE_IO_WRITE,
    "IO_FENCE": VYRE_IO_FENCE,
    "IO_STATUS_OK": VYRE_IO_STATUS_OK,
    "IO_STATUS_ERROR": VYRE_IO_STATUS_ERROR,
    "DEBUG_CURSOR": VYRE_DEBUG_CURSOR,
    "DEBUG_HEADER_WORDS": VYRE_DEBUG_HEADER_WORDS,
    "DEBUG_RECORD_WORDS": VYRE_DEBUG_RECORD_WORDS,
    "DEBUG_TRAILER_WORDS": VYRE_DEBUG_TRAILER_WORDS,
    "RESULT_WORDS": VYRE_RESULT_WORDS,
    "SLOT_RESULT": VYRE_SLOT_RESULT,
    "FAULT_NONE": VYRE_FAULT_NONE,
    "FAULT_UNAUTHORIZED": VYRE_FAULT_UNAUTHORIZED,
    "FAULT_PROTECTED": VYRE_FAULT_PROTECTED,
    "FAULT_OUT_OF_BOUNDS": VYRE_FAULT_OUT_OF_BOUNDS,
    "FAULT_IO_ERROR": VYRE_FAULT_IO_ERROR,
    "FAULT_IO_UNAVAILABLE": VYRE_FAULT_IO_UNAVAILABLE,
    "FAULT_UNKNOWN_OP": VYRE_FAULT_UNKNOWN_OP,
    "FAULT_RAISED": VYRE_FAULT_RAISED,
    "FAULT_MISALIGNED": VYRE_FAULT_MISALIGNED,
    "FAULT_BAD_RESULT": VYRE_FAULT_BAD_RESULT,
    "FAULT_REASONS": VYRE_FAULT_REASONS,
    "CALL_MAX_LANES": VYRE_CALL_MAX_LANES,
    "CALL_DEFAULT_LANES": VYRE_CALL_DEFAULT_LANES,
    "CALL_LANE_WORDS": VYRE_CALL_LANE_WORDS,
    "CALL_REQUEST": VYRE_CALL_REQUEST,
    "CALL_PIECES": VYRE_CALL_PIECES,
    "CALL_PIECE_WORDS": VYRE_CALL_PIECE_WORDS,
    "CALL_SEQ_MASK": VYRE_CALL_SEQ_MASK,
    "CALL_HALF_SHIFT": VYRE_CALL_HALF_SHIFT,
    "CALL_ANSWER": VYRE_CALL_ANSWER,
    "CALL_ANSWER_SEQ": VYRE_CALL_ANSWER_SEQ,
    "CALL_ANSWER_STATUS": VYRE_CALL_ANSWER_STATUS,
    "CALL_ANSWER_R01": VYRE_CALL_ANSWER_R01,
    "CALL_ANSWER_SEQ2": VYRE_CALL_ANSWER_SEQ2,
    "CALL_ANSWER_R23": VYRE_CALL_ANSWER_R23,
    "FAULT_NOT_CALLABLE": VYRE_FAULT_NOT_CALLABLE,
}

DebugRecord = collections.namedtuple("DebugRecord", ["fmt_id", "args"])
DebugRecord.__doc__ = "One PRINTF record: ``fmt_id`` (a0) and ``args`` = (a1, a2, slot_index)."
DebugRecord.__module__ = "vyre.wire"

_STATUS_NAMES = {
    VYRE_STATUS_EMPTY: "EMPTY",
    VYRE_STATUS_PUBLISHED: "PUBLISHED",
    VYRE_STATUS_CLAIMED: "CLAIMED",
    VYRE_STATUS_DONE: "DONE",
    VYRE_STATUS_WAIT_IO: "WAIT_IO",
    VYRE_STATUS_YIELD: "YIELD",
    VYRE_STATUS_REQUEUE: "REQUEUE",
    VYRE_STATUS_FAULT: "FAULT",
}

cdef Py_ssize_t SLOT_BYTES = VYRE_SLOT_BYTES
cdef Py_ssize_t SLOT_WORDS = VYRE_SLOT_WORDS
cdef Py_ssize_t ARG_WORDS = VYRE_SLOT_ARG_COUNT
cdef Py_ssize_t WORD = sizeof(uint32_t)


cdef struct SlotBody:
    uint32_t opcode
    uint32_t tenant
    uint32_t priority
    uint32_t nargs      # words given (window_items reports them)
    uint32_t args[VYRE_ARGN]


# ---------------------------------------------------------------------------------------------
# errors and scalar validation
# ---------------------------------------------------------------------------------------------

cdef str _status_name(uint32_t s):
    return _STATUS_NAMES.get(s, f"{s:#x}")


cdef object _full(str message, str fix, str queue="ring"):
    return QueueFullError(message, fix, queue)


cdef object _inval(str message, str fix, str queue="ring"):
    return InvalidValueError(message, fix)


cdef object _badtype(str message, str fix, str queue="ring"):
    return InvalidTypeError(message, fix)


cdef str _label(str what, Py_ssize_t idx):
    return what if idx < 0 else f"{what}[{idx}]"


cdef int _u32_slow(object o, uint32_t *out, str what, Py_ssize_t idx) except -1:
    cdef object v
    try:
        v = o.__index__() if not isinstance(o, int) else int(o)
    except (TypeError, AttributeError):
        raise _badtype(f"{_label(what, idx)} must be an integer, got {type(o).__name__} {o!r}",
                   f"pass a Python int (or numpy integer) in 0..{VYRE_U32_MAX:#x}") from None
    if v < 0 or v > VYRE_U32_MAX:
        raise _inval(f"{_label(what, idx)} = {v} does not fit a u32 word",
                   f"pass a value in 0..{VYRE_U32_MAX:#x}; vyre never truncates")
    out[0] = <uint32_t>v
    return 0


# _u32, the exact-int fast path in front of _u32_slow, is inline in _wire.pxd


cdef Py_ssize_t _count(object o, str what, Py_ssize_t limit, str queue) except -1:
    """A non-negative count/index argument, at most `limit` (-1: no limit)."""
    cdef object v
    try:
        v = o.__index__()
    except (TypeError, AttributeError):
        raise _badtype(f"{what} must be an integer, got {type(o).__name__} {o!r}",
                   "pass a non-negative Python int", queue) from None
    if v < 0:
        raise _inval(f"{what} = {v} is negative", "pass a non-negative Python int", queue)
    if v > PY_SSIZE_T_MAX:
        raise _inval(f"{what} = {v} is far too large", "pass a realistic size or index", queue)
    if limit >= 0 and v > limit:
        raise _inval(f"{what} = {v} exceeds the cap of {limit}",
                   f"use at most {limit} (docs/spec.md §2 caps), or split the work", queue)
    return <Py_ssize_t>v


cdef inline Py_ssize_t _index(object o, str what) except -1:
    cdef int overflow = 0
    cdef long long v
    if PyLong_CheckExact(o):
        v = vyre_as_ll(o, &overflow)
        if overflow == 0 and v >= 0:
            return <Py_ssize_t>v
    return _count(o, what, -1, "ring")


cdef str _RESERVED_FIX = (
    "use a built-in opcode (vyre.Opcode) or a user opcode outside the system range, e.g. one "
    "from the tenant's window (vyre.protocol.tenant_opcode_window)"
)


cdef inline int _publish_opcode(object o, uint32_t *out) except -1:
    _u32(o, out, "opcode", -1)
    if not wire_publishable_opcode(out[0]):
        raise _inval(f"opcode {out[0]:#x} is reserved (system range, not a built-in)",
                   _RESERVED_FIX)
    return 0


cdef inline int _priority(object o, uint32_t *out) except -1:
    _u32(o, out, "priority", -1)
    if out[0] >= VYRE_PRIORITY_LEVELS:
        raise _inval(f"priority {out[0]} is not a priority level",
                   f"use 0 (critical) .. {VYRE_PRIORITY_LEVELS - 1} (idle); "
                   f"{VYRE_PRIORITY_DEFAULT} is normal")
    return 0


cdef object _as_seq(object o, str what):
    """A tuple or list view of `o` (no copy when it already is one)."""
    if PyTuple_CheckExact(o) or PyList_CheckExact(o):
        return o
    if o is None:
        return ()
    if isinstance(o, (str, bytes, bytearray, dict, set, frozenset)):
        raise _badtype(f"{what} must be a sequence of integers, got {type(o).__name__}",
                   "pass a tuple or list of ints")
    try:
        return tuple(o)
    except TypeError:
        raise _badtype(f"{what} must be a sequence, got {type(o).__name__} {o!r}",
                   "pass a tuple or list of ints") from None


cdef Py_ssize_t _args(object args, uint32_t *out, Py_ssize_t room, str what) except -1:
    """Validate up to `room` u32 words into out[0:room] (zero-filled). Returns the count."""
    cdef Py_ssize_t n, i
    memset(out, 0, room * sizeof(uint32_t))
    if PyTuple_CheckExact(args):
        n = PyTuple_GET_SIZE(args)
        if n > room:
            _too_many(what, n, room)
        for i in range(n):
            _u32(<object>PyTuple_GET_ITEM(args, i), &out[i], what, i)
        return n
    if PyList_CheckExact(args):
        n = PyList_GET_SIZE(args)
        if n > room:
            _too_many(what, n, room)
        for i in range(n):
            _u32(<object>PyList_GET_ITEM(args, i), &out[i], what, i)
        return n
    return _args(_as_seq(args, what), out, room, what)


cdef int _too_many(str what, Py_ssize_t n, Py_ssize_t room) except -1:
    raise _inval(f"{what} has {n} words; a slot holds at most {room} here",
               f"pass at most {room} argument words (a slot has {VYRE_SLOT_ARG_COUNT} arg words)")


# ---------------------------------------------------------------------------------------------
# buffers
# ---------------------------------------------------------------------------------------------

cdef int _buffer_error(object obj, str role, bint writable, bint decode) except -1:
    fix = (f"pass a {'writable ' if writable else ''}C-contiguous buffer (bytearray, numpy "
           f"uint32 array, memoryview, mmap) as {role}")
    try:
        vyre_pending_error()
    except Exception as exc:
        msg = f"{role} is not a usable buffer ({type(obj).__name__}: {exc})"
        if decode:
            raise ProtocolError(msg, fix) from exc
        raise _inval(msg, fix) from exc
    return -1


cdef int _acquire(object obj, Py_buffer *view, bint writable, str role, bint decode,
                  int extra_flags=0) except -1:
    """Get a C-contiguous, 4-byte aligned buffer; the caller must release it."""
    cdef int flags = PyBUF_STRIDES | extra_flags | (PyBUF_WRITABLE if writable else 0)
    cdef bint contiguous
    if vyre_get_buffer(obj, view, flags) != 0:
        _buffer_error(obj, role, writable, decode)
    if view.ndim <= 1:
        contiguous = view.strides == NULL or view.ndim == 0 or view.strides[0] == view.itemsize
    else:
        contiguous = PyBuffer_IsContiguous(view, b'C')
    if contiguous and (view.len == 0 or (<uintptr_t>view.buf & (WORD - 1)) == 0):
        return 0
    PyBuffer_Release(view)
    fix = f"pass a C-contiguous, 4-byte aligned buffer as {role} (e.g. numpy.ascontiguousarray)"
    msg = (f"{role} is not C-contiguous" if not contiguous
           else f"{role} is not 4-byte aligned (its words are accessed atomically)")
    if decode:
        raise ProtocolError(msg, fix)
    raise _inval(msg, fix)


cdef Py_ssize_t _ring(object obj, Py_buffer *view, bint writable, bint decode) except -1:
    """Acquire a ring buffer and return its slot count."""
    _acquire(obj, view, writable, "ring", decode)
    if view.len > 0 and view.len % SLOT_BYTES == 0:
        return view.len // SLOT_BYTES
    cdef Py_ssize_t n = view.len
    PyBuffer_Release(view)
    msg = f"ring buffer has {n} bytes, not a positive multiple of {SLOT_BYTES} (one slot)"
    fix = "allocate the ring with encode_empty_ring(slot_count) or ring_byte_len(slot_count)"
    if decode:
        raise ProtocolError(msg, fix)
    raise _inval(msg, fix)


cdef Py_ssize_t _control(object obj, Py_buffer *view) except -1:
    """Acquire a control buffer (read-only is fine) and return its word count."""
    _acquire(obj, view, False, "control", True)
    if view.len >= <Py_ssize_t>VYRE_CONTROL_MIN_BYTES and view.len % WORD == 0:
        return view.len // WORD
    cdef Py_ssize_t n = view.len
    PyBuffer_Release(view)
    raise ProtocolError(
        f"control buffer has {n} bytes; it needs a multiple of {WORD} and at least "
        f"{VYRE_CONTROL_MIN_BYTES}",
        "allocate it with encode_control(...) or control_byte_len(observable_slots)")


cdef int _not_publishable(Py_ssize_t slot, uint32_t status) except -1:
    raise _full(f"slot is not publishable: ring slot {slot} has status {_status_name(status)}",
               "publish only into EMPTY or DONE slots: wait for the slot to retire "
               "(or retire FAULT slots) first")


cdef int _slot_range(Py_ssize_t slot, Py_ssize_t slots, str what) except -1:
    if slot >= slots:
        raise _inval(f"{what} {slot} is outside the ring of {slots} slots",
                   f"use a slot index in 0..{slots - 1}")
    return 0


cdef int _fits_ring(Py_ssize_t n, Py_ssize_t slots) except -1:
    if n > slots:
        raise _inval(f"{n} slots do not fit a ring of {slots} slots",
                   "publish at most slot_count slots per call (split the work)")
    return 0


# ---------------------------------------------------------------------------------------------
# public cdef fast paths (declared in _wire.pxd)
# ---------------------------------------------------------------------------------------------

cdef int wire_publish(uint32_t *ring, Py_ssize_t slot_count, Py_ssize_t slot, uint32_t tenant,
                      uint32_t opcode, const uint32_t *args, Py_ssize_t nargs,
                      uint32_t priority) noexcept nogil:
    cdef uint32_t tmp[VYRE_ARGN]
    if slot < 0 or slot >= slot_count:
        return WIRE_BAD_SLOT
    if not wire_publishable_opcode(opcode):
        return WIRE_RESERVED_OPCODE
    if priority >= VYRE_PRIORITY_LEVELS:
        return WIRE_BAD_PRIORITY
    if nargs < 0 or nargs > ARG_WORDS:
        return WIRE_TOO_MANY_ARGS
    cdef uint32_t *w = ring + slot * SLOT_WORDS
    if not vyre_publishable(VYRE_LD_ACQ(w)):
        return WIRE_NOT_PUBLISHABLE
    memset(tmp, 0, sizeof(tmp))
    if nargs:
        memcpy(tmp, args, nargs * sizeof(uint32_t))
    vyre_write_slot(w, opcode, tenant, priority, tmp)
    return WIRE_OK


cdef Py_ssize_t wire_retire(uint32_t *ring, Py_ssize_t slot_count, Py_ssize_t start,
                            Py_ssize_t max_count, Py_ssize_t *faults,
                            Py_ssize_t *n_faults) noexcept nogil:
    cdef Py_ssize_t k = 0, nf = 0, idx = start
    cdef uint32_t s
    cdef uint32_t *w
    while k < max_count:
        w = ring + idx * SLOT_WORDS
        s = VYRE_LD_ACQ(w)
        if s == VYRE_STATUS_FAULT:
            VYRE_ST_REL(w, VYRE_STATUS_EMPTY)
            if faults != NULL:
                faults[nf] = k
            nf += 1
        elif s != VYRE_STATUS_DONE:
            break
        k += 1
        idx += 1
        if idx == slot_count:
            idx = 0
    n_faults[0] = nf
    return k


cdef Py_ssize_t _first_unpublishable(const uint32_t *ring, Py_ssize_t slots, Py_ssize_t start,
                                     Py_ssize_t n, uint32_t *status) noexcept nogil:
    cdef Py_ssize_t i, idx = start
    cdef uint32_t s
    for i in range(n):
        s = VYRE_LD_ACQ(ring + idx * SLOT_WORDS)
        if not vyre_publishable(s):
            status[0] = s
            return i
        idx += 1
        if idx == slots:
            idx = 0
    return -1


# ---------------------------------------------------------------------------------------------
# opcode classes (docs/spec.md §3)
# ---------------------------------------------------------------------------------------------

def is_system(op):
    """True when ``op`` is in the system range (high bit, 0xFFF0..0xFFFF, or <= 7)."""
    cdef uint32_t v
    _u32(op, &v, "opcode", -1)
    return wire_is_system(v)


def is_builtin(op):
    """True when ``op`` is a built-in: a primitive (<= 7), a system built-in or an extension."""
    cdef uint32_t v
    _u32(op, &v, "opcode", -1)
    return wire_is_builtin(v)


def validate_user_opcode(op):
    """Return ``op`` when it is a user (non-system) u32 opcode; raise InvalidValueError otherwise."""
    cdef uint32_t v
    _u32(op, &v, "opcode", -1)
    if wire_is_system(v):
        raise _inval(f"opcode {v:#x} is in the system range, not a user opcode",
                   "use an opcode outside the system range, e.g. one from the tenant's window "
                   "(vyre.protocol.tenant_opcode_window)")
    return int(op)


def validate_publish_opcode(op):
    """Return ``op`` when a publish may use it (built-in or user); raise InvalidValueError if reserved."""
    cdef uint32_t v
    _publish_opcode(op, &v)
    return int(op)


# ---------------------------------------------------------------------------------------------
# byte lengths and encoders (docs/spec.md §2, §9)
# ---------------------------------------------------------------------------------------------

def control_byte_len(observable_slots):
    """Control buffer bytes for ``observable_slots`` (None past the u32 ABI)."""
    cdef Py_ssize_t n = _count(observable_slots, "observable_slots", -1, "control")
    if n > <Py_ssize_t>(VYRE_U32_MAX - VYRE_CTRL_HEADER_WORDS):
        return None
    return WORD * (VYRE_CTRL_HEADER_WORDS + n)


def ring_byte_len(slot_count):
    """Ring bytes for ``slot_count`` slots (None past the u32 ABI)."""
    cdef Py_ssize_t n = _count(slot_count, "slot_count", -1, "ring")
    if n > <Py_ssize_t>(VYRE_U32_MAX // VYRE_SLOT_WORDS):
        return None
    return SLOT_BYTES * n


def debug_log_byte_len(records):
    """Debug-log bytes for ``records`` records: cursor, records, overflow word (None past u32)."""
    cdef Py_ssize_t n = _count(records, "records", -1, "debug")
    if n > <Py_ssize_t>(VYRE_U32_MAX // VYRE_DEBUG_RECORD_WORDS):
        return None
    return WORD * (VYRE_DEBUG_HEADER_WORDS + VYRE_DEBUG_RECORD_WORDS * n
                   + VYRE_DEBUG_TRAILER_WORDS)


cdef inline void _put(unsigned char *buf, Py_ssize_t word, uint32_t value) noexcept:
    memcpy(buf + word * WORD, &value, WORD)


def default_priority_offsets(slot_count):
    """docs/spec.md §6 default partition of ``slot_count`` slots: 5 starts plus the sentinel."""
    cdef Py_ssize_t n = _count(slot_count, "slot_count", VYRE_MAX_RING_SLOTS, "ring")
    cdef Py_ssize_t base = n // VYRE_PRIORITY_LEVELS
    cdef Py_ssize_t p, at = 0
    out = [0]
    for p in range(VYRE_PRIORITY_LEVELS):
        at += base + (n % VYRE_PRIORITY_LEVELS if p == VYRE_PRIORITY_NORMAL else 0)
        out.append(at)
    return out


def encode_control(shutdown, tenant_count, observable_slots, slot_count=None):
    """A fresh control buffer (docs/spec.md §2): bytearray of ``control_byte_len(observable_slots)``.

    ``slot_count`` (when given) fills the priority offsets with the default partition (§6).
    """
    cdef Py_ssize_t tenants = _count(tenant_count, "tenant_count", -1, "control")
    cdef Py_ssize_t obs = _count(observable_slots, "observable_slots",
                                 VYRE_MAX_OBSERVABLE_SLOTS, "control")
    cdef Py_ssize_t i
    offsets = None
    if slot_count is not None:
        if _count(slot_count, "slot_count", VYRE_MAX_RING_SLOTS, "ring") == 0:
            raise _inval("slot_count = 0: a ring needs at least one slot",
                       "pass slot_count >= 1 (or None to leave the priority offsets zero)")
        offsets = default_priority_offsets(slot_count)
    out = bytearray(control_byte_len(obs))
    cdef unsigned char *p = out
    _put(p, VYRE_CTRL_SHUTDOWN, 1 if shutdown else 0)
    _put(p, VYRE_CTRL_TENANT_BASE, VYRE_TENANT_MASK_BASE)
    for i in range(min(tenants, <Py_ssize_t>VYRE_TENANT_MASK_COUNT)):
        _put(p, VYRE_TENANT_MASK_BASE + i, VYRE_TENANT_MASK_ALLOW)
    for i in range(min(tenants, <Py_ssize_t>VYRE_TENANT_QUOTA_COUNT)):
        _put(p, VYRE_CTRL_TENANT_QUOTA_BASE + i, VYRE_DEFAULT_TENANT_QUOTA)
    _put(p, VYRE_CTRL_TENANT_TABLE_LEN, VYRE_TENANT_MASK_COUNT)
    if offsets is not None:
        for i in range(VYRE_PRIORITY_OFFSETS_COUNT):
            _put(p, VYRE_CTRL_PRIORITY_OFFSETS_BASE + i, offsets[i])
    return out


def encode_empty_ring(slot_count):
    """A zeroed ring (every slot EMPTY) of ``slot_count`` slots, 1..1 048 576."""
    cdef Py_ssize_t n = _count(slot_count, "slot_count", VYRE_MAX_RING_SLOTS, "ring")
    if n == 0:
        raise _inval("slot_count = 0: a ring needs at least one slot", "pass slot_count >= 1")
    return bytearray(ring_byte_len(n))


def encode_empty_debug_log(records):
    """A zeroed debug log with room for ``records`` records (cursor 0, overflow 0)."""
    cdef Py_ssize_t n = _count(records, "records", VYRE_MAX_DEBUG_RECORDS, "debug")
    return bytearray(debug_log_byte_len(n))


# ---------------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------------

cdef object _control_word(object control, Py_ssize_t word):
    cdef Py_buffer view
    _control(control, &view)
    try:
        return VYRE_LD_ACQ(<const uint32_t *>view.buf + word)
    finally:
        PyBuffer_Release(&view)


def read_done_count(control):
    """DONE_COUNT: slots executed so far (a packed slot counts once)."""
    return _control_word(control, VYRE_CTRL_DONE_COUNT)


def read_epoch(control):
    """EPOCH: number of executed BATCH_FENCE slots."""
    return _control_word(control, VYRE_CTRL_EPOCH)


def read_fault_count(control):
    """FAULT_COUNT: slots that ended in FAULT."""
    return _control_word(control, VYRE_CTRL_FAULT_COUNT)


def read_heartbeat(control):
    """HEARTBEAT: bumped by a live kernel (watchdog)."""
    return _control_word(control, VYRE_CTRL_HEARTBEAT)


def read_observable(control, i):
    """Observable word ``i`` (``control[160 + i]``); ProtocolError when out of range."""
    cdef Py_buffer view
    cdef Py_ssize_t words = _control(control, &view)
    cdef Py_ssize_t obs = words - VYRE_CTRL_OBSERVABLE_BASE
    cdef Py_ssize_t idx
    try:
        try:
            idx = _count(i, "observable index", -1, "control")
        except ArgumentError as exc:
            raise ProtocolError(exc.message, exc.fix) from None
        if idx >= obs:
            raise ProtocolError(f"observable index {idx} is out of range: the control buffer "
                                f"holds {obs} observable words",
                                f"read an index in 0..{obs - 1}" if obs else
                                "encode the control buffer with observable_slots > 0")
        return VYRE_LD_ACQ(<const uint32_t *>view.buf + VYRE_CTRL_OBSERVABLE_BASE + idx)
    finally:
        PyBuffer_Release(&view)


def read_metrics(control):
    """Per-opcode execution counters as ``{opcode: count}``, non-zero entries only."""
    cdef Py_buffer view
    cdef Py_ssize_t op
    cdef uint32_t v
    _control(control, &view)
    out = {}
    try:
        for op in range(VYRE_METRICS_COUNT):
            v = VYRE_LD_ACQ(<const uint32_t *>view.buf + VYRE_CTRL_METRICS_BASE + op)
            if v:
                out[op] = v
    finally:
        PyBuffer_Release(&view)
    return out


cdef Py_ssize_t _debug(object debug, Py_buffer *view) except -1:
    """Acquire a debug log; return its record capacity."""
    _acquire(debug, view, False, "debug log", True)
    cdef Py_ssize_t n = view.len
    cdef Py_ssize_t fixed = VYRE_DEBUG_HEADER_WORDS + VYRE_DEBUG_TRAILER_WORDS
    if n % WORD == 0 and n // WORD >= fixed and (n // WORD - fixed) % VYRE_DEBUG_RECORD_WORDS == 0:
        return (n // WORD - fixed) // VYRE_DEBUG_RECORD_WORDS
    PyBuffer_Release(view)
    raise ProtocolError(
        f"debug log has {n} bytes, not 4*(1 + 4*records + 1)",
        "allocate it with encode_empty_debug_log(records) or debug_log_byte_len(records)")


def read_debug_log(debug):
    """The PRINTF records written so far, as a list of :class:`DebugRecord`."""
    cdef Py_buffer view
    cdef Py_ssize_t cap = _debug(debug, &view)
    cdef const uint32_t *w = <const uint32_t *>view.buf
    cdef uint32_t cursor
    cdef Py_ssize_t r, at
    out = []
    try:
        cursor = VYRE_LD_ACQ(w + VYRE_DEBUG_CURSOR)
        if cursor % VYRE_DEBUG_RECORD_WORDS or cursor // VYRE_DEBUG_RECORD_WORDS > cap:
            raise ProtocolError(
                f"debug log cursor {cursor} is not a whole number of records within the "
                f"capacity of {cap} records",
                "pass the debug buffer the kernel writes (cursor = words written, never past "
                "capacity); re-encode it with encode_empty_debug_log if it was overwritten")
        for r in range(cursor // VYRE_DEBUG_RECORD_WORDS):
            at = VYRE_DEBUG_HEADER_WORDS + r * VYRE_DEBUG_RECORD_WORDS
            out.append(DebugRecord(w[at], (w[at + 1], w[at + 2], w[at + 3])))
    finally:
        PyBuffer_Release(&view)
    return out


def read_debug_overflow(debug):
    """Records that did not fit the debug log (the trailer word)."""
    cdef Py_buffer view
    cdef Py_ssize_t cap = _debug(debug, &view)
    try:
        return VYRE_LD_ACQ(<const uint32_t *>view.buf + view.len // WORD - 1)
    finally:
        PyBuffer_Release(&view)


def slot_status(ring, i):
    """Status word of ring slot ``i`` (acquire load)."""
    cdef Py_buffer view
    cdef Py_ssize_t slots = _ring(ring, &view, False, True)
    cdef Py_ssize_t idx
    try:
        idx = _index(i, "slot index")
        if idx >= slots:
            raise ProtocolError(f"slot index {idx} is outside the ring of {slots} slots",
                                f"use a slot index in 0..{slots - 1}")
        return VYRE_LD_ACQ(<const uint32_t *>view.buf + idx * SLOT_WORDS)
    except ArgumentError as exc:
        raise ProtocolError(exc.message, exc.fix) from None
    finally:
        PyBuffer_Release(&view)


def count_done_slots(ring, n):
    """How many of the first ``n`` ring slots are DONE."""
    cdef Py_buffer view
    cdef Py_ssize_t slots = _ring(ring, &view, False, True)
    cdef Py_ssize_t count, i, done = 0
    cdef const uint32_t *w = <const uint32_t *>view.buf
    try:
        try:
            count = _count(n, "n", slots, "ring")
        except ArgumentError as exc:
            raise ProtocolError(exc.message, exc.fix) from None
        with nogil:
            for i in range(count):
                if VYRE_LD_ACQ(w + i * SLOT_WORDS) == VYRE_STATUS_DONE:
                    done += 1
    finally:
        PyBuffer_Release(&view)
    return done


# ---------------------------------------------------------------------------------------------
# publishing
# ---------------------------------------------------------------------------------------------

def publish_slot(ring, slot_idx, tenant_id, opcode, args=(), priority=2, doorbell=None,
                 ticket=0):
    """Publish one slot (docs/spec.md §1): body, release fence, status PUBLISHED last.

    Only EMPTY or DONE slots are publishable. Everything (opcode, u32 ranges, priority 0..4,
    at most 12 args, slot index, slot status, the doorbell) is validated before the first byte
    is written.

    ``doorbell``: optional uint64 array; once the slot is PUBLISHED, ``doorbell[0] = ticket +
    1`` is stored (release), as :func:`publish_many` stores its count. A caller that records
    the publish before making it can tell from that word alone whether it happened: the
    store is in the same call as the write, so no interrupt can land between them.
    """
    cdef uint32_t op, tenant, prio
    cdef uint32_t a[VYRE_ARGN]
    cdef Py_buffer dv
    cdef uint64_t *db
    cdef uint64_t after
    _publish_opcode(opcode, &op)
    _u32(tenant_id, &tenant, "tenant_id", -1)
    _priority(priority, &prio)
    _args(args, a, ARG_WORDS, "args")
    if doorbell is None:
        _publish_one(ring, slot_idx, op, tenant, prio, a)
        return
    after = <uint64_t>_index(ticket, "ticket") + 1
    db = _doorbell(doorbell, &dv)
    try:
        _publish_one(ring, slot_idx, op, tenant, prio, a)
        vyre_store_release_u64(db, after)
    finally:
        PyBuffer_Release(&dv)


cdef int _publish_one(object ring, object slot_idx, uint32_t op, uint32_t tenant, uint32_t prio,
                      const uint32_t *a) except -1:
    """The ring and slot checks, then the body and PUBLISHED (values already validated)."""
    cdef Py_buffer view
    cdef uint32_t *w
    cdef Py_ssize_t slot = _index(slot_idx, "slot_idx")
    cdef Py_ssize_t slots = _ring(ring, &view, True, False)
    try:
        _slot_range(slot, slots, "slot_idx")
        w = <uint32_t *>view.buf + slot * SLOT_WORDS
        if not vyre_publishable(VYRE_LD_ACQ(w)):
            _not_publishable(slot, VYRE_LD_ACQ(w))
        vyre_write_slot(w, op, tenant, prio, a)
    finally:
        PyBuffer_Release(&view)
    return 0


def validate_slot(tenant_id, opcode, args=(), priority=2):
    """Validate one slot's contents exactly as :func:`publish_slot` would, writing nothing."""
    cdef uint32_t op, tenant, prio
    cdef uint32_t a[VYRE_ARGN]
    _publish_opcode(opcode, &op)
    _u32(tenant_id, &tenant, "tenant_id", -1)
    _priority(priority, &prio)
    _args(args, a, ARG_WORDS, "args")


cdef int _pack(object ops, uint32_t *out) except -1:
    """docs/spec.md §4.2 packing of ``ops`` into 12 arg words; every packing error raised here."""
    cdef Py_ssize_t n, i, j, meta, total = 0, k
    cdef uint32_t op
    cdef uint8_t b[VYRE_ARGN * 4]
    seq = _as_seq(ops, "ops")
    n = len(seq)
    if n > <Py_ssize_t>VYRE_PACKED_MAX_OPS:
        raise _inval(f"packed slot has {n} ops; the count is a u8, at most "
                   f"{VYRE_PACKED_MAX_OPS}", "split the ops over several packed slots")
    meta = (2 + 2 * n + WORD - 1) // WORD
    if meta > <Py_ssize_t>VYRE_PACKED_ARG_WORDS:
        raise _inval(f"packed slot with {n} ops: metadata exceeds the "
                   f"{VYRE_PACKED_ARG_WORDS}-word budget",
                   "split the ops over several packed slots")
    pairs = []
    for i in range(n):
        item = seq[i]
        try:
            opcode, oargs = item
        except (TypeError, ValueError):
            raise _badtype(f"ops[{i}] must be an (opcode, args) pair, got {item!r}",
                       "pass ops as [(u8 opcode, [args...]), ...]") from None
        _u32(opcode, &op, "inner opcode", i)
        if op > VYRE_PACKED_MAX_INNER_OPCODE:
            raise _inval(f"inner opcode ops[{i}] = {op:#x} does not fit a u8",
                       f"use inner opcodes 0..{VYRE_PACKED_MAX_INNER_OPCODE} in a packed slot "
                       "(publish larger opcodes as single slots)")
        oargs = _as_seq(oargs, f"ops[{i}] args")
        pairs.append((op, oargs))
        total += len(oargs)
    if meta + total > <Py_ssize_t>VYRE_PACKED_ARG_WORDS:
        raise _inval(f"packed slot with {n} ops and {total} arg words: payload exceeds the "
                   f"{VYRE_PACKED_ARG_WORDS}-word budget ({meta} metadata words)",
                   "move some ops into another slot or pass fewer args")
    memset(b, 0, sizeof(b))
    memset(out, 0, ARG_WORDS * sizeof(uint32_t))
    b[0] = <uint8_t>n
    b[1] = <uint8_t>total
    k = meta
    for i in range(n):
        op, oargs = pairs[i]
        b[2 + 2 * i] = <uint8_t>op
        b[3 + 2 * i] = <uint8_t>(k - meta)
        for j in range(len(oargs)):
            _u32(oargs[j], &out[k], f"ops[{i}] args", j)
            k += 1
    memcpy(out, b, meta * WORD)  # little-endian host: byte stream == word stream
    return 0


def pack_ops(ops):
    """The 12 arg words of a PACKED_SLOT holding ``ops`` = [(u8 opcode, args), ...] (docs/spec.md §4.2)."""
    cdef uint32_t a[VYRE_ARGN]
    _pack(ops, a)
    return [a[i] for i in range(ARG_WORDS)]


def publish_packed(ring, slot_idx, tenant_id, ops, priority=2):
    """Publish one PACKED_SLOT carrying ``ops``; packing errors come before ring/slot errors."""
    cdef uint32_t a[VYRE_ARGN]
    cdef uint32_t tenant, prio
    _pack(ops, a)
    _u32(tenant_id, &tenant, "tenant_id", -1)
    _priority(priority, &prio)
    _publish_one(ring, slot_idx, VYRE_OP_PACKED_SLOT, tenant, prio, a)


# Releasing and re-taking the GIL costs ~100 ns: only worth it for longer loops.
cdef Py_ssize_t _NOGIL_MIN = 256


cdef void _write_bodies(uint32_t *words, Py_ssize_t slots, Py_ssize_t start,
                        const SlotBody *bodies, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, idx = start
    for i in range(n):
        vyre_write_slot(words + idx * SLOT_WORDS, bodies[i].opcode, bodies[i].tenant,
                        bodies[i].priority, bodies[i].args)
        idx += 1
        if idx == slots:
            idx = 0


cdef class _Plan:
    """Validated slot bodies waiting to be written all at once (all-or-nothing publishes)."""
    cdef SlotBody *bodies
    cdef Py_ssize_t n, cap

    def __cinit__(self, Py_ssize_t cap):
        self.cap = cap if cap > 0 else 1
        self.n = 0
        self.bodies = <SlotBody *>PyMem_Malloc(self.cap * sizeof(SlotBody))
        if self.bodies == NULL:
            raise MemoryError()

    def __dealloc__(self):
        PyMem_Free(self.bodies)

    cdef SlotBody *add(self, uint32_t tenant, uint32_t priority) except NULL:
        cdef SlotBody *b
        if self.n == self.cap:
            self.cap *= 2
            b = <SlotBody *>PyMem_Realloc(self.bodies, self.cap * sizeof(SlotBody))
            if b == NULL:
                raise MemoryError()
            self.bodies = b
        b = &self.bodies[self.n]
        self.n += 1
        b.tenant = tenant
        b.priority = priority
        return b

    cdef Py_ssize_t commit(self, object ring, object start_slot) except -1:
        """Check ring, range and every target slot, then write them all (status last each)."""
        cdef Py_buffer view
        cdef Py_ssize_t start = _index(start_slot, "start_slot")
        cdef Py_ssize_t slots = _ring(ring, &view, True, False)
        cdef Py_ssize_t bad
        cdef uint32_t status = 0
        cdef uint32_t *words = <uint32_t *>view.buf
        try:
            _slot_range(start, slots, "start_slot")
            _fits_ring(self.n, slots)
            bad = _first_unpublishable(words, slots, start, self.n, &status)
            if bad >= 0:
                _not_publishable((start + bad) % slots, status)
            if self.n >= _NOGIL_MIN:
                with nogil:
                    _write_bodies(words, slots, start, self.bodies, self.n)
            else:
                _write_bodies(words, slots, start, self.bodies, self.n)
        finally:
            PyBuffer_Release(&view)
        return self.n



cdef int _plan_item(_Plan plan, object opcode, object args, uint32_t tenant,
                    uint32_t prio, Py_ssize_t i) except -1:
    cdef SlotBody *b = plan.add(tenant, prio)
    try:
        _publish_opcode(opcode, &b.opcode)
        _args(args, b.args, ARG_WORDS, "args")
    except ArgumentError as exc:
        raise type(exc)(f"item {i}: {exc.message}", exc.fix) from None
    return 0


def publish_sequence(ring, start_slot, entries):
    """Publish ``entries`` = [(tenant, opcode, args, priority), ...] at consecutive slots.

    Slots wrap around the ring. All-or-nothing: every entry and every target slot is checked
    before the first byte is written. Returns the number of slots published.
    """
    seq = _as_seq(entries, "entries")
    cdef _Plan plan = _Plan(len(seq))
    cdef uint32_t tenant, prio
    cdef Py_ssize_t i
    for i in range(len(seq)):
        entry = seq[i]
        try:
            if len(entry) == 3:
                tenant_id, opcode, args = entry
                priority = VYRE_PRIORITY_DEFAULT
            else:
                tenant_id, opcode, args, priority = entry
        except (TypeError, ValueError):
            raise _badtype(f"entries[{i}] must be (tenant, opcode, args[, priority]), got {entry!r}",
                       "pass entries as tuples (tenant, opcode, args, priority)") from None
        _u32(tenant_id, &tenant, "tenant_id", -1)
        _priority(priority, &prio)
        _plan_item(plan, opcode, args, tenant, prio, i)
    return plan.commit(ring, start_slot)


def batch_publish(ring, start_slot, tenant_id, items, batch_tag, priority=2):
    """Publish ``items`` = [(opcode, args), ...] then BATCH_FENCE [n, batch_tag]; returns n+1.

    Slots wrap around the ring; all-or-nothing.
    """
    cdef uint32_t tenant, prio, tag
    cdef Py_ssize_t i
    _u32(tenant_id, &tenant, "tenant_id", -1)
    _priority(priority, &prio)
    _u32(batch_tag, &tag, "batch_tag", -1)
    seq = _as_seq(items, "items")
    cdef Py_ssize_t n = len(seq)
    if n > <Py_ssize_t>VYRE_U32_MAX:
        raise _inval(f"batch of {n} items: the count does not fit a u32", "split the batch")
    cdef _Plan plan = _Plan(n + 1)
    for i in range(n):
        item = seq[i]
        try:
            opcode, args = item
        except (TypeError, ValueError):
            raise _badtype(f"items[{i}] must be an (opcode, args) pair, got {item!r}",
                       "pass items as [(opcode, [args...]), ...]") from None
        _plan_item(plan, opcode, args, tenant, prio, i)
    cdef SlotBody *fence = plan.add(tenant, prio)
    memset(fence.args, 0, sizeof(fence.args))
    fence.opcode = VYRE_OP_BATCH_FENCE
    fence.args[0] = <uint32_t>n
    fence.args[1] = tag
    return plan.commit(ring, start_slot)


cdef _Plan _window_plan(object opcode, object ticket, object required, object lookahead,
                        uint32_t tenant, uint32_t prio):
    cdef uint32_t op, tick
    cdef Py_ssize_t i, room = ARG_WORDS - VYRE_WINDOW_PREFIX_WORDS
    cdef SlotBody *b
    _publish_opcode(opcode, &op)
    _u32(ticket, &tick, "ticket", -1)
    groups = ((VYRE_WINDOW_REQUIRED, _as_seq(required, "required")),
              (VYRE_WINDOW_LOOKAHEAD, _as_seq(lookahead, "lookahead")))
    cdef _Plan plan = _Plan(len(groups[0][1]) + len(groups[1][1]))
    for cls, payloads in groups:
        name = "required" if cls == VYRE_WINDOW_REQUIRED else "lookahead"
        for i in range(len(payloads)):
            b = plan.add(tenant, prio)
            b.opcode = op
            try:
                b.nargs = VYRE_WINDOW_PREFIX_WORDS + <uint32_t>_args(
                    payloads[i], b.args + VYRE_WINDOW_PREFIX_WORDS, room, f"{name}[{i}]")
            except ArgumentError as exc:
                raise type(exc)(f"window payload {exc.message} (after the [ticket, class] prefix)",
                           f"keep each window payload to at most {room} words") from None
            b.args[0] = tick
            b.args[1] = <uint32_t>cls
    return plan


def window_items(opcode, ticket, required, lookahead):
    """The (opcode, args) pairs a window publishes: [ticket, class, *payload] per payload."""
    cdef _Plan plan = _window_plan(opcode, ticket, required, lookahead, 0,
                                   VYRE_PRIORITY_DEFAULT)
    cdef Py_ssize_t i, j
    out = []
    for i in range(plan.n):
        out.append((plan.bodies[i].opcode,
                    [plan.bodies[i].args[j] for j in range(plan.bodies[i].nargs)]))
    return out


def publish_window(ring, start_slot, tenant_id, opcode, ticket, required, lookahead, priority=2):
    """Publish a window (docs/spec.md §10): one slot per payload, required first; returns the count.

    Args of each slot are [ticket, class, *payload] (class 0 required, 1 lookahead). Slots wrap
    around the ring; all-or-nothing.
    """
    cdef uint32_t tenant, prio
    _u32(tenant_id, &tenant, "tenant_id", -1)
    _priority(priority, &prio)
    cdef _Plan plan = _window_plan(opcode, ticket, required, lookahead, tenant, prio)
    return plan.commit(ring, start_slot)


cdef int _u32_array(object obj, Py_buffer *view, int ndim, str role) except -1:
    """Acquire a C-contiguous uint32 numpy-style array of `ndim` dimensions."""
    _acquire(obj, view, False, role, False, PyBUF_FORMAT)
    cdef bytes fmt = view.format if view.format != NULL else b"B"
    fmt = fmt.lstrip(b"@=<")
    if view.ndim == ndim and view.itemsize == WORD and fmt in (b"I", b"L"):
        return 0
    got = f"{view.ndim}-d, format {fmt!r}, itemsize {view.itemsize}"
    PyBuffer_Release(view)
    raise _badtype(f"{role} must be a {ndim}-d uint32 array, got {got}",
               f"pass numpy.ascontiguousarray({role}, dtype=numpy.uint32)")


cdef inline bint _u64_format(const char *f) noexcept:
    """A buffer format of one native or little-endian uint64 ("Q", "L", "<Q", ...), checked
    without making a bytes object (a single-slot publish acquires its doorbell every call)."""
    if f == NULL:
        return False
    while f[0] in b"@=<":
        f += 1
    return f[0] in b"QL" and f[1] == 0


cdef uint64_t *_doorbell(object obj, Py_buffer *view) except NULL:
    """Acquire a writable uint64 doorbell (element 0 is stored with release, so 8-aligned)."""
    _acquire(obj, view, True, "doorbell", False, PyBUF_FORMAT)
    if (view.ndim == 1 and view.itemsize == 8 and _u64_format(view.format) and view.len >= 8
            and (<uintptr_t>view.buf & 7) == 0):
        return <uint64_t *>view.buf
    cdef bytes fmt = view.format if view.format != NULL else b"B"
    fmt = fmt.lstrip(b"@=<")
    got = f"{view.ndim}-d, format {fmt!r}, itemsize {view.itemsize}, {view.len} bytes"
    PyBuffer_Release(view)
    raise _inval(f"doorbell must be a writable, 8-byte aligned 1-d uint64 array with at least "
               f"one element, got {got}",
               "pass the backend's doorbell (or numpy.zeros(1, dtype=numpy.uint64)), or None")


cdef bint _many_arrays(object opcodes, object args, Py_buffer *ov, Py_buffer *av) except -1:
    """Acquire and check the arrays of a bulk publish (shapes, reserved opcodes); returns
    whether ``av`` holds args. On an error nothing stays acquired."""
    cdef Py_ssize_t n, k, i, bad = -1
    cdef bint have_args = False
    cdef const unsigned char *ops
    cdef uint32_t op
    _u32_array(opcodes, ov, 1, "opcodes")
    try:
        n = ov.shape[0]
        ops = <const unsigned char *>ov.buf
        if args is not None:
            _u32_array(args, av, 2, "args")
            have_args = True
            k = av.shape[1]
            if av.shape[0] != n or k > ARG_WORDS:
                raise _inval(f"args has shape ({av.shape[0]}, {k}); it must be ({n}, k) with "
                           f"k <= {ARG_WORDS}", "pass one row of at most 12 args per opcode")
        with nogil:
            for i in range(n):
                if not wire_publishable_opcode(vyre_read_u32(ops + i * WORD)):
                    bad = i
                    break
        if bad >= 0:
            op = vyre_read_u32(ops + bad * WORD)
            raise _inval(f"opcodes[{bad}] = {op:#x} is reserved (system range, not a built-in)",
                       _RESERVED_FIX)
    except BaseException:
        PyBuffer_Release(ov)
        if have_args:
            PyBuffer_Release(av)
        raise
    return have_args


def validate_many(tenant_id, opcodes, args=None, priority=2):
    """Check a bulk publish exactly as :func:`publish_many` would before writing (tenant,
    priority, array shapes and dtypes, reserved opcodes), without a ring; writes nothing."""
    cdef Py_buffer ov, av
    cdef uint32_t tenant, prio
    _u32(tenant_id, &tenant, "tenant_id", -1)
    _priority(priority, &prio)
    if _many_arrays(opcodes, args, &ov, &av):
        PyBuffer_Release(&av)
    PyBuffer_Release(&ov)


def publish_many(ring, start_slot, tenant_id, opcodes, args=None, priority=2, doorbell=None,
                 first_ticket=0, notify_every=0, assume_free=False):
    """Bulk publish: slot ``(start_slot + i) % slot_count`` gets ``opcodes[i]``, ``args[i]``.

    ``opcodes``: uint32 (n,), ``args``: uint32 (n, k<=12) or None / (n, 0). Requires
    n <= slot_count. All opcodes and every target slot are validated before anything is
    written; then each slot is written body first, status last (release). GIL released.
    Returns n.

    ``doorbell``: optional uint64 array; after every ``notify_every`` slots (0: none between)
    and after the last one, ``doorbell[0] = first_ticket + slots written so far`` is stored
    (release), so a consumer polling it can start before the call returns. It only grows and
    never covers a slot not yet PUBLISHED; a failed call (or n == 0) leaves it as is.

    ``assume_free=True`` skips the walk that checks every target slot is EMPTY or DONE (one
    read of each slot's line, a cache miss apiece on a ring the GPU writes): only for a
    caller that knows, as the facade does from its retire bookkeeping, that they are.
    """
    cdef Py_buffer ov, av, rv, dv
    cdef bint have_args = False, have_ring = False, have_db = False, check
    cdef uint32_t tenant, prio, status = 0
    cdef Py_ssize_t n, k = 0, start, slots, i, idx, bad = -1, every, step
    cdef const unsigned char *ops
    cdef const uint32_t *a = NULL
    cdef uint32_t *words
    cdef uint64_t *db = NULL
    cdef uint64_t first
    _u32(tenant_id, &tenant, "tenant_id", -1)
    _priority(priority, &prio)
    start = _index(start_slot, "start_slot")
    first = <uint64_t>_index(first_ticket, "first_ticket")
    every = _index(notify_every, "notify_every")
    have_args = _many_arrays(opcodes, args, &ov, &av)
    try:
        n = ov.shape[0]
        ops = <const unsigned char *>ov.buf
        if have_args:
            k = av.shape[1]
            a = <const uint32_t *>av.buf
        if doorbell is not None:
            db = _doorbell(doorbell, &dv)
            have_db = True
        slots = _ring(ring, &rv, True, False)
        have_ring = True
        words = <uint32_t *>rv.buf
        _slot_range(start, slots, "start_slot")
        _fits_ring(n, slots)
        if db == NULL or every == 0:
            every = n
        check = not assume_free
        with nogil:
            if check:
                bad = _first_unpublishable(words, slots, start, n, &status)
            if bad < 0:
                idx = start
                i = 0
                while i < n:
                    step = min(every, n - i)
                    idx = vyre_write_run(words, slots, idx, ops + i * WORD,
                                         a + i * k if k else a, <size_t>k, tenant, prio, step)
                    i += step
                    if db != NULL:
                        vyre_store_release_u64(db, first + <uint64_t>i)
        if bad >= 0:
            _not_publishable((start + bad) % slots, status)
    finally:
        PyBuffer_Release(&ov)
        if have_args:
            PyBuffer_Release(&av)
        if have_ring:
            PyBuffer_Release(&rv)
        if have_db:
            PyBuffer_Release(&dv)
    return n


# ---------------------------------------------------------------------------------------------
# retiring and waiting (for the facade)
# ---------------------------------------------------------------------------------------------

def retire(ring, start_slot, max_count):
    """Walk finished slots from ``start_slot`` (wrapping): returns ``(count, faults)``.

    Counts consecutive DONE/FAULT slots, stopping at the first other status or after
    ``max_count`` (capped at the ring size). FAULT slots are reset to EMPTY and their offsets
    from ``start_slot`` listed in ``faults``; DONE slots stay DONE.
    """
    cdef Py_buffer view
    cdef Py_ssize_t start = _index(start_slot, "start_slot")
    cdef Py_ssize_t limit = _index(max_count, "max_count")
    cdef Py_ssize_t slots = _ring(ring, &view, True, False)
    cdef Py_ssize_t count, nf = 0, i
    cdef Py_ssize_t *faults = NULL
    try:
        _slot_range(start, slots, "start_slot")
        limit = min(limit, slots)
        faults = <Py_ssize_t *>PyMem_Malloc((limit if limit > 0 else 1) * sizeof(Py_ssize_t))
        if faults == NULL:
            raise MemoryError()
        if limit >= _NOGIL_MIN:
            with nogil:
                count = wire_retire(<uint32_t *>view.buf, slots, start, limit, faults, &nf)
        else:
            count = wire_retire(<uint32_t *>view.buf, slots, start, limit, faults, &nf)
        return count, [faults[i] for i in range(nf)]
    finally:
        PyMem_Free(faults)
        PyBuffer_Release(&view)


cdef uint64_t _CHUNK_NS = 100000000  # re-take the GIL this often to let Ctrl-C through


cdef uint64_t _deadline(object timeout_s, uint64_t now) except? 0:
    """Absolute deadline in ns; None or inf means no deadline, 0 or negative 'poll once'; NaN
    is refused (InvalidValueError)."""
    if timeout_s is None:
        return <uint64_t>-1
    cdef double t
    try:
        t = float(timeout_s)
    except (TypeError, ValueError):
        raise _badtype(f"timeout_s must be a number of seconds or None, got {timeout_s!r}",
                   "pass a float (seconds) or None to wait without a limit") from None
    if math.isnan(t):
        raise _inval("timeout_s is NaN",
                     "pass a number of seconds (0 or less polls once), or None to wait "
                     "without a limit")
    if t <= 0:
        return now
    if t >= 1e9:
        return <uint64_t>-1
    return now + <uint64_t>(t * 1e9)


def wait_slot(ring, slot_idx, timeout_s):
    """Wait until slot ``slot_idx`` is neither PUBLISHED nor CLAIMED; return its status.

    Returns -1 when ``timeout_s`` (seconds; None = no limit) elapses first. Spins hot for the
    first microseconds, then yields, then sleeps (bounded); the GIL is released while waiting.
    """
    cdef Py_buffer view
    cdef Py_ssize_t slot = _index(slot_idx, "slot_idx")
    cdef Py_ssize_t slots = _ring(ring, &view, False, False)
    cdef vyre_wait_t w
    cdef uint64_t now = vyre_now_ns()
    cdef uint64_t deadline
    cdef int64_t r
    cdef const uint32_t *status
    try:
        _slot_range(slot, slots, "slot_idx")
        deadline = _deadline(timeout_s, now)
        status = <const uint32_t *>view.buf + slot * SLOT_WORDS
        vyre_wait_init(&w, now)
        while True:
            w.deadline = deadline if deadline - now <= _CHUNK_NS else now + _CHUNK_NS
            with nogil:
                r = vyre_wait_status(status, &w)
                now = vyre_now_ns()
            if r >= 0 or now >= deadline:
                return r
            PyErr_CheckSignals()
    finally:
        PyBuffer_Release(&view)


def wait_retire(ring, start_slot, count, timeout_s):
    """Consecutive finished (DONE/FAULT) slots from ``start_slot`` reached before the timeout.

    Returns as soon as ``count`` slots (capped at the ring size) are finished, or with the
    number reached when ``timeout_s`` (None = no limit) elapses. Modifies nothing.
    """
    return wait_finished(ring, start_slot, count, timeout_s)[0]


def wait_finished(ring, start_slot, count, timeout_s):
    """:func:`wait_retire` that also says where the first FAULT is: ``(reached, first_fault)``.

    ``first_fault`` is the offset from ``start_slot`` of the first FAULT slot among the
    ``reached`` finished ones, or -1 if they all ended DONE: then a caller that owns those
    tickets may retire them without walking their statuses again. Modifies nothing.
    """
    cdef Py_buffer view
    cdef Py_ssize_t start = _index(start_slot, "start_slot")
    cdef Py_ssize_t want = _index(count, "count")
    cdef Py_ssize_t slots = _ring(ring, &view, False, False)
    cdef Py_ssize_t done = 0, fault = -1
    cdef vyre_wait_t w
    cdef uint64_t now = vyre_now_ns()
    cdef uint64_t deadline
    try:
        _slot_range(start, slots, "start_slot")
        want = min(want, slots)
        deadline = _deadline(timeout_s, now)
        vyre_wait_init(&w, now)
        while True:
            w.deadline = deadline if deadline - now <= _CHUNK_NS else now + _CHUNK_NS
            with nogil:
                done = vyre_wait_finished(<const uint32_t *>view.buf, slots, start, want, done,
                                          &w, &fault)
                now = vyre_now_ns()
            if done >= want or now >= deadline:
                return done, fault
            PyErr_CheckSignals()
    finally:
        PyBuffer_Release(&view)


cdef char *_word_at(object array, Py_ssize_t index, Py_buffer *view, Py_ssize_t *size) except NULL:
    """Acquire a writable 1-d uint32/uint64 array; the address of element ``index``."""
    _acquire(array, view, True, "array", False, PyBUF_FORMAT)
    fmt = (view.format if view.format != NULL else b"B").lstrip(b"@=<")
    size[0] = view.itemsize
    if view.ndim != 1 or view.itemsize not in (4, 8) or fmt not in (b"I", b"L", b"Q") \
            or (<uintptr_t>view.buf & (view.itemsize - 1)) != 0:
        PyBuffer_Release(view)
        raise _badtype(f"array must be an aligned 1-d uint32 or uint64 array, got format "
                       f"{fmt!r}, itemsize {size[0]}",
                       "pass a numpy uint32 or uint64 array (numpy.zeros(n, numpy.uint64))")
    if index >= view.shape[0]:
        n = view.shape[0]
        PyBuffer_Release(view)
        raise _inval(f"index {index} is past the array's {n} elements",
                     "pass an index below len(array)")
    return <char *>view.buf + index * view.itemsize


def store_release(array, index, value):
    """``array[index] = value`` as one atomic store with release order (``array``: 1-d uint32
    or uint64). A reader on another thread, or a device polling mapped memory, that sees the
    value also sees every write the host made before it: how a doorbell or a pause word must
    be written (a plain numpy store promises neither atomicity nor order)."""
    cdef Py_buffer view
    cdef Py_ssize_t size
    cdef uint64_t v
    cdef char *p = _word_at(array, _index(index, "index"), &view, &size)
    try:
        try:
            v = value
        except (OverflowError, TypeError):
            raise _inval(f"value {value!r} is not a non-negative integer of at most 64 bits",
                         "store an int in 0 .. 2**64-1") from None
        if size == 4:
            if v > 0xFFFFFFFF:
                raise _inval(f"value {value!r} does not fit the array's 32-bit words",
                             "store a value below 2**32")
            VYRE_ST_REL(<uint32_t *>p, <uint32_t>v)
        else:
            vyre_store_release_u64(<uint64_t *>p, v)
    finally:
        PyBuffer_Release(&view)


def load_acquire(array, index):
    """``array[index]`` read as one atomic load with acquire order (1-d uint32 or uint64)."""
    cdef Py_buffer view
    cdef Py_ssize_t size
    cdef char *p = _word_at(array, _index(index, "index"), &view, &size)
    try:
        if size == 4:
            return VYRE_LD_ACQ(<uint32_t *>p)
        return vyre_load_acquire_u64(<uint64_t *>p)
    finally:
        PyBuffer_Release(&view)


# ---------------------------------------------------------------------------------------------
# LOAD_MISS (docs/spec.md §8)
# ---------------------------------------------------------------------------------------------

def encode_load_miss(resource_id, prefetch):
    """Arg words of a LOAD_MISS slot: ``[resource_id, prefetch]``."""
    cdef uint32_t rid, pre
    _u32(resource_id, &rid, "resource_id", -1)
    _u32(prefetch, &pre, "prefetch", -1)
    return [rid, pre]


def decode_load_miss(args):
    """``(resource_id, prefetch)`` from LOAD_MISS arg words (missing words read 0)."""
    cdef uint32_t a[VYRE_ARGN]
    try:
        _args(args, a, ARG_WORDS, "LOAD_MISS args")
    except ArgumentError as exc:
        raise ProtocolError(exc.message, exc.fix) from None
    return a[0], a[1]


# ---------------------------------------------------------------------------------------------
# atomics on u32 words of any writable buffer (the mapped IO queue, tests): the interpreter's
# own host atomics, so the host orders these words exactly as the workers do
# ---------------------------------------------------------------------------------------------

cdef uint32_t *_atomic_word(object buf, Py_ssize_t index, Py_buffer *view) except NULL:
    PyObject_GetBuffer(buf, view, PyBUF_ANY_CONTIGUOUS | PyBUF_WRITABLE)
    if index < 0 or (index + 1) * 4 > view.len or (<size_t>view.buf) % 4:
        PyBuffer_Release(view)
        raise IndexError(f"word {index} is outside the {view.len}-byte buffer (or unaligned)")
    return (<uint32_t *>view.buf) + index


def atomic_load_u32(buf, Py_ssize_t index):
    """Load word ``index`` of ``buf`` with acquire order."""
    cdef Py_buffer v
    cdef uint32_t *p = _atomic_word(buf, index, &v)
    cdef uint32_t x = VYRE_LD_ACQ(p)
    PyBuffer_Release(&v)
    return x


def atomic_store_u32(buf, Py_ssize_t index, uint32_t value):
    """Store ``value`` into word ``index`` of ``buf`` with release order."""
    cdef Py_buffer v
    cdef uint32_t *p = _atomic_word(buf, index, &v)
    VYRE_ST_REL(p, value)
    PyBuffer_Release(&v)


def atomic_cas_u32(buf, Py_ssize_t index, uint32_t expected, uint32_t desired):
    """Compare-and-swap word ``index`` (acquire); returns the value seen (``expected`` when
    it swapped)."""
    cdef Py_buffer v
    cdef uint32_t *p = _atomic_word(buf, index, &v)
    cdef uint32_t seen = expected
    VYRE_CAS_ACQ(p, &seen, desired)
    PyBuffer_Release(&v)
    return seen
