# Declarations of csrc/vyre_op.h (the public C API for op authors) that Cython code reads.

cdef extern from "vyre_op.h":
    unsigned VYRE_OP_ABI_VERSION
    unsigned VYRE_OP_LANES
