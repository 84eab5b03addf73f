"""Can the CUDA backend run here? Cheap, cached, and never raises."""
from __future__ import annotations

import functools
import os

_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     "data")
# The built-in megakernel: the fatbin setup.py builds (SASS for sm_80/sm_90 plus PTX, so the
# driver loads machine code without a JIT), or a PTX-only build. VYRE_PTX points at another
# build of cuda/megakernel.cu, PTX, cubin or fatbin (kernel development, A/B runs).
KERNEL_PATH = os.environ.get("VYRE_PTX") or next(
    (p for p in (os.path.join(_DATA, "megakernel.fatbin"), os.path.join(_DATA, "megakernel.ptx"))
     if os.path.exists(p)), os.path.join(_DATA, "megakernel.fatbin"))
PTX_PATH = KERNEL_PATH  # the name the bench/gpu scripts import

INSTALL_FIX = ("install the CUDA extra on a machine with an NVIDIA GPU and driver "
               "(`pip install 'vyre[cuda]'`), with nvcc on PATH when building vyre so the "
               "megakernel PTX is compiled, or use backend=\"cpu\"")


@functools.lru_cache(maxsize=1)
def probe() -> tuple[bool, str]:
    """(True, device name) when PTX, PyCUDA and a GPU are all present, else (False, reason)."""
    if not os.path.exists(KERNEL_PATH):
        return False, "the megakernel is not in the package (nvcc was absent when vyre was built)"
    # CUDA_MODULE_LOADING is left to the user: a module loaded lazily while a megakernel runs
    # waits for the device to go idle, which it does once the megakernel leaves on its own
    # (idle_exit_ms / yield_ms); forcing EAGER would load every kernel of PyTorch at start-up.
    try:
        import pycuda.driver as cuda
    except ImportError:
        return False, "PyCUDA is not installed"
    try:
        cuda.init()
        if cuda.Device.count() == 0:
            return False, "the CUDA driver reports no device"
        return True, cuda.Device(0).name()
    except Exception as err:  # any driver failure means: not usable here
        return False, f"the CUDA driver failed to initialize ({err})"
