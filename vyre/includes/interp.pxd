# Cython declarations of csrc/vyre_interp.h: the interpreter context and its host atomics.
#
# The atomics are the interpreter's own macros (the __atomic builtins on the host), so every
# extension orders its loads and stores on shared words the way the workers do, with one set
# of helpers. Only the struct fields Cython code touches are declared.
from libc.stdint cimport uint32_t, uint64_t

cdef extern from "vyre_interp.h" nogil:
    ctypedef struct vyre_buf_t:
        uint64_t addr
        uint64_t bytes

    ctypedef struct vyre_ctx_t:
        uint32_t *ring
        uint32_t *control
        uint32_t *debug
        uint32_t *ioq
        const vyre_buf_t *bufs
        uint32_t slot_count
        uint32_t control_words
        uint32_t observable_slots
        uint32_t debug_records
        uint32_t io_slots
        uint32_t buf_count

    # user opcodes of the test-hooks build's SPIN and STALL ops
    const uint32_t VYRE_TEST_OP_SPIN
    const uint32_t VYRE_TEST_OP_STALL

    uint32_t VYRE_LD_ACQ(const uint32_t *p) noexcept
    uint32_t VYRE_LD_RLX(const uint32_t *p) noexcept
    void VYRE_ST_REL(uint32_t *p, uint32_t v) noexcept
    void VYRE_ST_RLX(uint32_t *p, uint32_t v) noexcept
    uint32_t VYRE_ADD_RLX(uint32_t *p, uint32_t v) noexcept
    # compare-and-swap; *expected receives the value seen; true when it swapped
    bint VYRE_CAS_ACQ(uint32_t *p, uint32_t *expected, uint32_t desired) noexcept
    bint VYRE_CAS_RLX(uint32_t *p, uint32_t *expected, uint32_t desired) noexcept
