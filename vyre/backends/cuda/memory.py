"""Memory the megakernel reads: mapped host memory, device addresses of foreign arrays, copies.

Every host buffer vyre makes is anonymous ``mmap`` memory page-locked and mapped with
``cuMemHostRegister`` (which, unlike ``cuMemHostAlloc``, works under a running kernel); the
registry below maps host addresses to device addresses. Frees and unregistrations go through
:data:`vyre.backends.cuda.residency.RESIDENCY`, never under a resident kernel.
"""
from __future__ import annotations

import contextlib
import ctypes
import mmap
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from vyre.backends.cuda.host import HostRegistration
from vyre.backends.cuda.residency import RESIDENCY
from vyre.errors import BackendError

if TYPE_CHECKING:
    from vyre.backends.cuda.buffer_table import CudaBufferTable

_COPY_TIMEOUT = 10.0
_PAGE = 4096  # host page: the unit cuMemHostRegister locks
# registered host memory: host address -> registration (device_address looks arrays up here)
_REGISTERED: dict[int, HostRegistration] = {}


def _forget(alloc: Any) -> None:
    if isinstance(alloc, HostRegistration):
        _REGISTERED.pop(alloc.host_pointer, None)


RESIDENCY.on_freed = _forget

# DLPack (dlpack.h): device types, and the DLTensor a "dltensor" capsule points at (first
# member of DLManagedTensor)
_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED = 1, 2, 3, 13


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device_type", ctypes.c_int32),
                ("device_id", ctypes.c_int32), ("ndim", ctypes.c_int32),
                ("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16),
                ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def dlpack_address(array: Any) -> tuple[int, int, Any]:
    """(device address, byte length, capsule) of an object exporting ``__dlpack__`` on a CUDA
    device. The capsule is left unconsumed: holding it keeps the producer's memory alive
    (its deleter runs when the capsule is collected)."""
    device_type = int(array.__dlpack_device__()[0]) if hasattr(array, "__dlpack_device__") else -1
    if device_type not in (_DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED):
        raise BackendError(f"this DLPack tensor lives on device type {device_type}, not on the GPU",
                           "pass host arrays as numpy arrays (numpy.from_dlpack(x)), device "
                           "arrays from the CUDA device the megakernel runs on")
    capsule = array.__dlpack__()
    t = _DLTensor.from_address(_capsule_pointer(capsule, b"dltensor"))
    shape = [t.shape[i] for i in range(t.ndim)]
    itemsize = (t.bits * t.lanes + 7) // 8
    if t.strides:
        expect = 1
        for dim, i in zip(reversed(shape), reversed(range(t.ndim)), strict=True):
            if dim != 1 and t.strides[i] != expect:
                raise BackendError("the DLPack tensor is not C-contiguous",
                                   "pass a contiguous tensor (e.g. .contiguous())")
            expect *= dim
    count = 1
    for dim in shape:
        count *= dim
    return int(t.data or 0) + int(t.byte_offset), count * itemsize, capsule


def register_host(array: np.ndarray, context: Any = None) -> HostRegistration:
    """Page-lock and map ``array`` for the GPU; :func:`release_host` undoes it safely."""
    reg = HostRegistration(array, context)
    _REGISTERED[reg.host_pointer] = reg
    return reg


def release_host(reg: HostRegistration) -> None:
    """Unregister host memory from :func:`register_host`, never under a running kernel."""
    RESIDENCY.release([reg], now=True)


def reachable(array: np.ndarray) -> bool:
    """Is this host array already mapped for the GPU (registered by vyre, or PyCUDA's)?"""
    try:
        device_address(array)
    except BackendError:
        return False
    return True


def register_pages(array: np.ndarray, context: Any) -> tuple[HostRegistration | None, int]:
    """Page-lock and map the whole pages under ``array`` (registrations are per page: two
    small arrays on one page would collide); an array on pages registered before is found
    there instead (registration None). Returns (registration, the array's device address)."""
    ptr, n = int(array.ctypes.data), max(int(array.nbytes), 1)
    found = registered_address(ptr, n)
    if found is not None:
        return None, found
    start, end = ptr & ~(_PAGE - 1), (ptr + n + _PAGE - 1) & ~(_PAGE - 1)
    pages = np.ctypeslib.as_array((ctypes.c_uint8 * (end - start)).from_address(start))
    try:
        reg = register_host(pages, context)
    except BackendError as err:
        raise BackendError(f"this numpy array could not be page-locked for the GPU ({err})",
                           "its pages may be registered already by another library; use "
                           "Megakernel.alloc_buffer, or a page-aligned array") from err
    reg.owner = array  # the array's memory outlives the registration
    return reg, reg.device_pointer + (ptr - start)


def host_zeros(nbytes: int) -> np.ndarray:
    """Zeroed, page-aligned host memory (anonymous mmap) as a flat uint8 array."""
    mm = mmap.mmap(-1, max(nbytes, 1),
                   flags=mmap.MAP_PRIVATE | getattr(mmap, "MAP_ANONYMOUS", 0x20),
                   prot=mmap.PROT_READ | mmap.PROT_WRITE)
    return np.frombuffer(mm, dtype=np.uint8)[:max(nbytes, 1)]


def registered_address(ptr: int, nbytes: int) -> int | None:
    for reg in _REGISTERED.values():
        if (reg.registered and reg.host_pointer <= ptr
                and ptr + nbytes <= reg.host_pointer + max(reg.nbytes, 1)):
            return reg.device_pointer + (ptr - reg.host_pointer)
    return None


def device_address(array: Any) -> tuple[int, int]:
    """(device address, byte length) of a buffer the GPU can read.

    Accepts PyCUDA ``GPUArray`` and ``DeviceAllocation`` (with ``nbytes``), mapped pinned numpy
    arrays, and any object with ``__cuda_array_interface__`` (CuPy, PyTorch, Numba).
    """
    if type(array) is DeviceBuffer:  # the stream's device mirror: once per chunk
        return int(array.alloc), array.nbytes
    cai = getattr(array, "__cuda_array_interface__", None)
    if cai is not None:
        ptr = int(cai["data"][0])
        itemsize = np.dtype(cai["typestr"]).itemsize
        count = int(np.prod(cai["shape"])) if cai["shape"] else 1
        if cai.get("strides") not in (None, ()):
            expect = itemsize
            # a foreign exporter may give strides of another length; compare what pairs up
            strides = reversed(cai["strides"])
            for dim, stride in zip(reversed(cai["shape"]), strides, strict=False):
                if stride != expect:
                    raise BackendError("the device buffer is not C-contiguous",
                                       "pass a contiguous array (e.g. .contiguous() / "
                                       "cupy.ascontiguousarray)")
                expect *= dim
        return ptr, count * itemsize
    gpudata = getattr(array, "gpudata", None)
    if gpudata is not None:  # pycuda GPUArray
        return int(gpudata), int(array.nbytes)
    if not isinstance(array, np.ndarray) and hasattr(array, "__dlpack__"):
        return dlpack_address(array)[:2]
    if isinstance(array, np.ndarray):
        if array.flags.c_contiguous:
            found = registered_address(int(array.ctypes.data), int(array.nbytes))
            if found is not None:
                return found, int(array.nbytes)
        base = array.base
        while base is not None and not hasattr(base, "get_device_pointer"):
            base = getattr(base, "base", None)
        if base is None:
            raise BackendError(
                "this numpy array is not mapped into the GPU's address space",
                "pass it to Megakernel.register_buffer (which page-locks and maps it), or use "
                "Megakernel.alloc_buffer (host memory the GPU can reach)")
        if not array.flags.c_contiguous:
            raise BackendError("the buffer is not C-contiguous",
                               "pass np.ascontiguousarray(buffer)")
        offset = array.__array_interface__["data"][0] - base.__array_interface__["data"][0] \
            if hasattr(base, "__array_interface__") else 0
        return int(base.get_device_pointer()) + offset, int(array.nbytes)
    raise BackendError(f"cannot take a device address of {type(array).__name__}",
                       "pass a GPUArray, a numpy array, an object with "
                       "__cuda_array_interface__ (CuPy, PyTorch) or __dlpack__")


class DeviceBuffer:
    """Device memory from :meth:`CudaBackend.alloc_buffer` (``__cuda_array_interface__``, bytes).

    Freed with the backend (after the kernel stopped): freeing device memory synchronizes the
    device, which would wait for the persistent kernel.
    """

    def __init__(self, alloc: Any, nbytes: int) -> None:
        self.alloc = alloc
        self.nbytes = nbytes

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            RESIDENCY.release([self.alloc])  # a finalizer: parked while a megakernel is resident

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"shape": (self.nbytes,), "typestr": "|u1", "data": (int(self.alloc), False),
                "version": 3, "strides": None}


class DeviceCopy:
    """A host-to-device copy in flight (:meth:`CudaBufferTable.copy_to_device_async`)."""

    __slots__ = ("_backend", "_event", "nbytes")

    def __init__(self, backend: CudaBufferTable, event: Any, nbytes: int) -> None:
        self._backend, self._event, self.nbytes = backend, event, nbytes

    def done(self) -> bool:
        """True once the bytes are in device memory (a non-blocking event query).

        Raises :class:`BackendError` when the query fails (the context faulted)."""
        if self._event is None:
            return True
        try:
            landed = self._backend._in_ctx(self._event.query)
        except self._backend._cuda.Error as err:
            raise BackendError(f"a {self.nbytes}-byte host-to-device copy failed ({err})",
                               "the CUDA context faulted: check the megakernel's error "
                               "(check()), dmesg (Xid); recreate the Megakernel") from err
        if not landed:
            return False
        self._backend._events.append(self._event)  # reused by the next copy
        self._event = None
        return True

    def wait(self, timeout: float = _COPY_TIMEOUT) -> None:
        """Block until :meth:`done` (polled: a driver-side wait could not be bounded).

        Raises :class:`BackendError` after ``timeout`` s; the copy engine never waits on the
        megakernel, so that means the device stopped making progress."""
        start = time.monotonic()
        while not self.done():
            waited = time.monotonic() - start
            if waited > timeout:
                raise BackendError(
                    f"a {self.nbytes}-byte host-to-device copy did not finish in {timeout} s",
                    "the GPU stopped making progress: check nvidia-smi and dmesg (Xid)")
            # a chunk's copy is ~0.1 ms: yield the core between queries (a sleep would add
            # the timer slack, ~50 us), and sleep only once it is clearly late
            time.sleep(0 if waited < 0.005 else 0.0005)
