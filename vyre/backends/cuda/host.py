"""Page-lock existing host memory for the GPU (``cuMemHostRegister``) through the driver API.

PyCUDA's ``register_host_memory`` cannot be used with NumPy 2: it builds its result with
``PyArray_FromInterface``, which already sets the new array's base, then sets the base again
and fails ("Cannot set the NumPy array 'base' dependency more than once"). The three driver
calls it wraps are made here with ``ctypes`` on ``libcuda`` instead, in whatever context is
current on the calling thread (the same contexts PyCUDA manages). ``ctypes`` releases the GIL
for the call, so a slow registration never freezes the other Python threads.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from collections.abc import Iterator
from typing import Any

import numpy as np

from vyre.errors import BackendError

_PORTABLE = 0x01  # CU_MEMHOSTREGISTER_PORTABLE
_DEVICEMAP = 0x02  # CU_MEMHOSTREGISTER_DEVICEMAP
_lib: Any = None


def _driver() -> Any:
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("cuda") or "libcuda.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError as err:
            raise BackendError(f"the CUDA driver library could not be loaded ({err})",
                               "install the NVIDIA driver (libcuda.so.1)") from err
        lib.cuMemHostRegister_v2.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint]
        lib.cuMemHostUnregister.argtypes = [ctypes.c_void_p]
        lib.cuMemHostGetDevicePointer_v2.argtypes = [
            ctypes.POINTER(ctypes.c_uint64), ctypes.c_void_p, ctypes.c_uint]
        lib.cuGetErrorName.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        _lib = lib
    return _lib


def _check(rc: int, what: str, fix: str) -> None:
    if rc == 0:
        return
    name = ctypes.c_char_p()
    _driver().cuGetErrorName(rc, ctypes.byref(name))
    label = name.value.decode() if name.value else f"CUresult {rc}"
    raise BackendError(f"{what} failed: {label}", fix)


class HostRegistration:
    """``array``'s memory page-locked and mapped into the current context's address space.

    ``array`` must be C-contiguous and must outlive the registration (this object keeps a
    reference). :meth:`unregister` releases the page lock; the host memory stays valid.
    Unregistering waits for the device to be idle, so the CUDA backend defers it until no
    megakernel runs (see ``vyre.backends.cuda._release``).
    """

    #: what must outlive the registration when ``array`` is a view made for it (the CUDA
    #: backend registers the whole pages under a user's array)
    owner: Any = None

    def __init__(self, array: np.ndarray, context: Any = None) -> None:
        if not array.flags.c_contiguous:
            raise BackendError("only contiguous host memory can be registered",
                               "pass np.ascontiguousarray(buffer)")
        self.array = array
        if context is None:  # the caller's current context, remembered for unregister
            try:
                import pycuda.driver as cuda

                context = cuda.Context.get_current()
            except Exception:  # no PyCUDA: the driver call below says what is missing
                context = None
        self._context = context
        self.host_pointer = int(array.ctypes.data)
        self.nbytes = int(array.nbytes)
        lib = _driver()
        with self._current():
            _check(lib.cuMemHostRegister_v2(self.host_pointer, max(self.nbytes, 1),
                                            _PORTABLE | _DEVICEMAP),
                   f"cuMemHostRegister of {self.nbytes} bytes",
                   "make a CUDA context current (start the Megakernel first) and check the "
                   "page-locked memory limit (ulimit -l) and free host memory")
            ptr = ctypes.c_uint64()
            rc = lib.cuMemHostGetDevicePointer_v2(ctypes.byref(ptr), self.host_pointer, 0)
            if rc != 0:
                lib.cuMemHostUnregister(self.host_pointer)  # never leave it pinned
                _check(rc, "cuMemHostGetDevicePointer", "report this as a bug")
        self.device_pointer = int(ptr.value)
        self._registered = True

    @contextlib.contextmanager
    def _current(self) -> Iterator[None]:
        """The registration's context current on this thread for a driver call."""
        ctx = self._context
        if ctx is None:
            yield
            return
        import pycuda.driver as cuda

        if cuda.Context.get_current() == ctx:
            yield
            return
        ctx.push()
        try:
            yield
        finally:
            cuda.Context.pop()

    @property
    def registered(self) -> bool:
        return self._registered

    def unregister(self) -> None:
        """Release the page lock (idempotent). The memory stays valid for the host."""
        if not self._registered:
            return
        with self._current():
            _check(_driver().cuMemHostUnregister(self.host_pointer),
                   "cuMemHostUnregister", "report this as a bug")
        self._registered = False

    # the CUDA backend's deferred-release list calls .free() on what it holds
    free = unregister
