# cython: language_level=3
"""vyre CPU backend workers, test-hooks build (-DVYRE_TEST_HOOKS=1: VYRE_TEST_OP_SPIN, VYRE_TEST_OP_STALL)."""
include "_cpu_impl.pxi"
