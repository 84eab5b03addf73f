# cython: language_level=3
"""vyre CPU backend workers (native threads running csrc/vyre_interp.h). See _cpu_impl.pxi."""
include "_cpu_impl.pxi"
