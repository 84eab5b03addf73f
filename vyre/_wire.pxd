# Cython declarations of the vyre wire core, for `cimport` by other extensions.
#
# The wire constants come from csrc/vyre_abi.h through vyre/includes/abi.pxd.
from libc.stdint cimport uint32_t

from vyre.includes.abi cimport *


# Status codes of the nogil fast paths below (0 = success).
cdef enum WireCode:
    WIRE_OK = 0
    WIRE_BAD_SLOT = 1           # slot index outside the ring
    WIRE_NOT_PUBLISHABLE = 2    # target slot is neither EMPTY nor DONE
    WIRE_RESERVED_OPCODE = 3    # system opcode that is not a built-in
    WIRE_BAD_PRIORITY = 4       # priority outside 0..4
    WIRE_TOO_MANY_ARGS = 5      # more than 12 argument words


cdef inline bint wire_is_system(uint32_t op) noexcept nogil:
    """docs/spec.md §3: high bit set, or 0xFFF0..0xFFFF, or a primitive (<= 7)."""
    return ((op & VYRE_SYSTEM_HIGH_BIT) != 0
            or (VYRE_SYSTEM_RANGE_LO <= op <= VYRE_SYSTEM_RANGE_HI)
            or op <= VYRE_OP_MAX_PRIMITIVE)


cdef inline bint wire_is_builtin(uint32_t op) noexcept nogil:
    """docs/spec.md §3: primitives, the system built-ins and this runtime's extension opcodes."""
    return (op <= VYRE_OP_MAX_PRIMITIVE or op == VYRE_OP_PACKED_SLOT or op == VYRE_OP_PRINTF
            or op == VYRE_OP_SHUTDOWN or op == VYRE_OP_LOAD_MISS or op == VYRE_OP_DFA_SCAN
            or op == VYRE_OP_BUF_COPY or op == VYRE_OP_DFA_MATCH)


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


# The argument converters, shared with the other extensions (vyre/_call.pyx) so that a word
# is refused with the same error type, message and Fix hint wherever it is passed.
cdef extern from *:
    bint PyLong_CheckExact(object o)
    long long vyre_as_ll "PyLong_AsLongLongAndOverflow"(object o, int *overflow)

# One u32 word `o` into out[0]: InvalidTypeError for a non-integer, InvalidValueError outside
# 0..0xFFFFFFFF (labelled `what`, or `what[idx]` when idx >= 0).
cdef int _u32_slow(object o, uint32_t *out, str what, Py_ssize_t idx) except -1

# Up to `room` u32 words from a sequence into out[0:room] (zero-filled); returns the count.
cdef Py_ssize_t _args(object args, uint32_t *out, Py_ssize_t room, str what) except -1


cdef inline int _u32(object o, uint32_t *out, str what, Py_ssize_t idx) except -1:
    """Exact-int fast path; everything else (numpy ints, errors) goes through _u32_slow."""
    cdef int overflow = 0
    cdef long long v
    if PyLong_CheckExact(o):
        v = vyre_as_ll(o, &overflow)   # cannot raise for an exact int, only overflow
        if overflow == 0 and 0 <= v <= <long long>VYRE_U32_MAX:
            out[0] = <uint32_t>v
            return 0
    return _u32_slow(o, out, what, idx)
