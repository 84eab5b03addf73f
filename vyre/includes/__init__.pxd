# Cython declarations of the C headers in csrc/, one .pxd per header (cimport vyre.includes.abi, ...).
