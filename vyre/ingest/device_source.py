"""Device arrays as scan sources: CuPy / PyTorch / DLPack memory scanned where it lies.

:meth:`GpuStream.scan` takes objects with ``__cuda_array_interface__`` or ``__dlpack__``
(docs/ingest.md, "Device arrays"). Memory on a CUDA device is not copied: a buffer-table
handle borrowed from this module's per-megakernel pool is pointed at a *window* of the array
(``rebind_buffer``), and the stream's own ``publish`` / ``retire`` put DFA_SCAN slots over
chunks of it, with the context rule of every other source (each chunk re-reads up to
``dfa.context`` bytes before it and does not count inside them), so a match across a chunk or
window boundary counts once. A window is at most ``_WINDOW_BYTES`` (2 GiB) plus its context:
DFA_SCAN's offset and length are 32-bit words. After the call the handle is emptied and goes
back to the pool, so scanning any number of arrays costs one handle per stream in use at once.

A DLPack object whose memory is on the host (a CPU tensor) is read as a NumPy array
(``numpy.from_dlpack``, no copy where it is contiguous) and takes the host path. A CUDA array
given to a megakernel on the CPU backend is refused with a fix.
"""
from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vyre.errors import InvalidTypeError, InvalidValueError, PipelineError, SlotFaultError
from vyre.ingest.pipeline import Job

__all__ = ["DeviceArray", "DeviceJob", "classify", "scan_in_place"]

#: a window's own bytes (its context comes on top): DFA_SCAN offsets are 32-bit
_WINDOW_BYTES = 1 << 31
# DLPack (dlpack.h) device types: host memory, and memory a CUDA device owns or maps
_DL_CPU = 1
_DL_CUDA_TYPES = {2: "CUDA", 3: "CUDA host (pinned)", 13: "CUDA managed"}
_DL_HOST_TYPES = {_DL_CPU}
_LEGACY_STREAM = 1  # CU_STREAM_LEGACY: what a DLPack producer syncs with for stream=None

_CPU_FIX = ("use Megakernel(backend='cuda') to scan it where it lies, or copy it to the host "
            "first (cupy.asnumpy(x), x.cpu().numpy()) and scan that")
_CONTIG_FIX = ("make it contiguous first (cupy.ascontiguousarray(x), x.contiguous(): a device "
               "copy of the array), or scan a contiguous view of the bytes you mean")


class _Window:
    """``nbytes`` device bytes at ``ptr`` as a flat uint8 CUDA array (what a handle names);
    ``owner`` keeps the array they belong to alive while the window is bound."""

    __slots__ = ("nbytes", "owner", "ptr")

    def __init__(self, owner: Any, ptr: int, nbytes: int) -> None:
        self.owner, self.ptr, self.nbytes = owner, ptr, nbytes

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"shape": (self.nbytes,), "typestr": "|u1", "data": (self.ptr, True),
                "version": 3, "strides": None}


@dataclass
class DeviceArray:
    """The bytes of an array on a CUDA device: ``nbytes`` at device address ``ptr``.

    ``owner`` is what keeps the memory alive (the array, and a DLPack capsule); ``stream``
    the producer's stream to wait for before reading (``__cuda_array_interface__``'s
    ``stream``, or the legacy stream for DLPack), None when none is given.
    ``host`` (tests, and hosts that map memory the same way): a NumPy array whose slices
    are bound instead of device windows.
    """

    owner: Any
    ptr: int
    nbytes: int
    stream: int | None = None
    kind: str = "CUDA"
    host: np.ndarray | None = None

    def window(self, offset: int, nbytes: int) -> Any:
        """What a handle is bound to for bytes ``[offset, offset + nbytes)``."""
        if self.host is not None:
            return self.host[offset:offset + nbytes]
        return _Window(self.owner, self.ptr + offset, nbytes)


@dataclass
class DeviceJob(Job):
    """A scan source that lives on the device (:class:`DeviceArray`), scanned in place."""

    device: DeviceArray = field(default_factory=lambda: DeviceArray(None, 0, 0))


# ---------------------------------------------------------------------- classification
def _cai(src: Any) -> dict[str, Any] | None:
    try:
        cai = src.__cuda_array_interface__
    except AttributeError:  # e.g. a CPU torch tensor: the attribute raises
        return None
    except Exception as err:  # noqa: BLE001  # torch: a tensor that requires grad
        raise InvalidValueError(f"{type(src).__name__} does not export its device memory "
                                f"({type(err).__name__}: {err})",
                                "pass x.detach() (a tensor that requires grad exports "
                                "nothing)") from None
    return cai if isinstance(cai, dict) else None


def _dlpack_device(src: Any) -> tuple[int, int] | None:
    if not hasattr(src, "__dlpack__"):
        return None
    get = getattr(src, "__dlpack_device__", None)
    if get is None:
        return None
    try:
        dev = get()
        return int(dev[0]), int(dev[1])
    except Exception:  # noqa: BLE001  # an exporter that cannot say: not a source we know
        return None


def _check_contiguous(shape: tuple[int, ...], strides: Any, itemsize: int, what: str) -> None:
    """Refuse strides other than C order (dimensions of extent 1 may have any stride)."""
    if strides in (None, ()):
        return
    expect = itemsize
    for dim, stride in zip(reversed(shape), reversed(tuple(strides)), strict=False):
        if dim != 1 and int(stride) != expect:
            raise InvalidValueError(f"the {what} is not C-contiguous (shape {tuple(shape)}, "
                                    f"strides {tuple(strides)} bytes)", _CONTIG_FIX)
        expect *= int(dim)


def _from_cai(src: Any, cai: dict[str, Any]) -> DeviceArray:
    try:
        dtype = np.dtype(cai["typestr"])
        shape = tuple(int(d) for d in cai["shape"])
        ptr = int(cai["data"][0] or 0)
    except (KeyError, TypeError, ValueError) as err:
        raise InvalidValueError(f"{type(src).__name__}'s __cuda_array_interface__ is malformed "
                                f"({err})", "pass a CuPy array or a PyTorch CUDA tensor"
                                ) from None
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    strides = cai.get("strides")
    if strides is not None:
        strides = tuple(int(s) for s in strides)
    _check_contiguous(shape, strides, dtype.itemsize, f"{type(src).__name__} array")
    if cai.get("mask") is not None:
        raise InvalidValueError(f"the {type(src).__name__} array is masked",
                                "pass the array's data without a mask")
    # version 3: the producer's stream, None when no wait is needed; before version 3 (and
    # PyTorch's export) there is no key: its work is ordered on the legacy default stream
    stream = cai.get("stream", _LEGACY_STREAM)
    if stream == 0:  # not a valid value; the default stream is what it can only mean
        stream = _LEGACY_STREAM
    return DeviceArray(src, ptr, count * dtype.itemsize,
                       stream=None if stream is None else int(stream))


def _host_dlpack(src: Any) -> np.ndarray:
    """A host DLPack object as NumPy (no copy), or an error saying how to pass it."""
    if getattr(src, "requires_grad", False) is True:
        raise InvalidValueError(f"the {type(src).__name__} requires grad, so it exports no "
                                "memory", "pass x.detach()")
    try:
        arr = np.from_dlpack(src)
    except Exception as err:  # noqa: BLE001  # BufferError / TypeError for dtypes NumPy lacks
        raise InvalidValueError(f"{type(src).__name__} could not be read as host memory "
                                f"through DLPack ({type(err).__name__}: {err})",
                                "view it as bytes first (torch: x.view(torch.uint8), or "
                                "x.numpy()) and scan that") from None
    if not arr.flags.c_contiguous:
        raise InvalidValueError(f"the {type(src).__name__} is not C-contiguous",
                                "make it contiguous first (x.contiguous(): a copy), or scan "
                                "a contiguous view of the bytes you mean")
    return arr


def classify(src: Any) -> DeviceArray | np.ndarray | None:
    """What ``src`` is as a scan source: a :class:`DeviceArray` (memory on a CUDA device), a
    NumPy view of host memory it exports through DLPack, or None (not an array exporter).

    NumPy arrays themselves are handled by the caller (they also export DLPack)."""
    cai = _cai(src)
    if cai is not None:
        return _from_cai(src, cai)
    dev = _dlpack_device(src)
    if dev is None:
        return None
    if dev[0] in _DL_HOST_TYPES:
        return _host_dlpack(src)
    if dev[0] in _DL_CUDA_TYPES:
        # the address is taken when the call runs on CUDA (vyre.backends.cuda.memory):
        # reading the capsule needs nothing else, but it is of no use on another backend
        return DeviceArray(src, 0, -1, stream=_LEGACY_STREAM, kind=_DL_CUDA_TYPES[dev[0]])
    raise InvalidValueError(f"{type(src).__name__} lives on DLPack device type {dev[0]}, "
                            "which vyre cannot read",
                            "copy it to the host or to a CUDA device first")


def _resolve_dlpack(dev: DeviceArray) -> None:
    """Take the address of a DLPack device object (CUDA backend only)."""
    if dev.nbytes >= 0:
        return
    from vyre.backends.cuda.memory import dlpack_address
    from vyre.errors import BackendError

    try:
        ptr, nbytes, capsule = dlpack_address(dev.owner)
    except BackendError as err:  # not C-contiguous, or not on the GPU after all
        raise InvalidValueError(f"{type(dev.owner).__name__}: {err.args[0]}",
                                _CONTIG_FIX) from None
    dev.ptr, dev.nbytes, dev.owner = ptr, nbytes, (dev.owner, capsule)


# ---------------------------------------------------------------------- borrowed handles
class _Handles:
    """Buffer-table handles of one megakernel lent to in-place scans (one per call in
    progress). A handle that slots of an interrupted call may still read is never lent
    again."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.free: list[int] = []

    def take(self, mk: Any, empty: Any) -> int:
        with self.lock:
            if self.free:
                return self.free.pop()
        return int(mk.register_buffer(empty))

    def give(self, handle: int) -> None:
        with self.lock:
            self.free.append(handle)


_POOLS: weakref.WeakKeyDictionary[Any, _Handles] = weakref.WeakKeyDictionary()
_POOLS_LOCK = threading.Lock()


def _handles(mk: Any) -> _Handles:
    with _POOLS_LOCK:
        got = _POOLS.get(mk)
        if got is None:
            got = _POOLS[mk] = _Handles()
        return got


def _backend_name(mk: Any) -> str:
    return str(getattr(getattr(mk, "backend", None), "name", "cpu"))


def check_backend(mk: Any, jobs: list[Job]) -> None:
    """Refuse device sources where the backend cannot read device memory, before anything
    of the call runs; resolve DLPack addresses on CUDA."""
    for i, job in enumerate(jobs):
        if not isinstance(job, DeviceJob) or job.device.host is not None:
            continue
        if _backend_name(mk) != "cuda":
            raise InvalidValueError(
                f"source {i} ({type(job.device.owner).__name__}) is in {job.device.kind} "
                f"memory, which the {_backend_name(mk)} backend cannot read", _CPU_FIX)
        _resolve_dlpack(job.device)
    backend = getattr(mk, "backend", None)
    if any(isinstance(j, DeviceJob) for j in jobs) \
            and not callable(getattr(backend, "rebind_buffer", None)):
        raise PipelineError(f"the {_backend_name(mk)} backend cannot rebind a buffer handle, "
                            "so arrays cannot be scanned in place",
                            "copy the arrays to the host and scan those")


# ---------------------------------------------------------------------- the scan
#: ``publish(scan_slot, offset_in_buffer, context, length, source_offset, job) -> tickets``
Publish = Callable[[int, int, int, int, int, Job], list[int]]
#: ``retire(scan_slot, job)``: the slot's tickets are DONE
Retire = Callable[[int, Job], None]


def scan_in_place(stream: Any, jobs: list[DeviceJob], context: int, publish: Publish,
                  retire: Retire) -> None:
    """Scan every device job in place with the stream's ``publish`` / ``retire`` (the
    counts land in ``job.count`` as for any source).

    The handle the stream's slots read (``stream._scan_handle``) is a borrowed one for the
    call. Up to ``depth`` chunks are in flight (one per counting observable); a window is
    rebound only once every slot over the previous one retired.
    """
    if not jobs:
        return
    mk = stream.mk
    backend = mk.backend
    pool = _handles(mk)
    empty: Any = _Window(None, 0, 0) if _backend_name(mk) == "cuda" else np.zeros(0, np.uint8)
    handle = pool.take(mk, empty)
    saved = stream._scan_handle
    stream._scan_handle = handle
    t = stream._t
    free: deque[int] = deque(range(stream.depth))
    busy: deque[tuple[int, Job, list[int]]] = deque()
    errors: list[BaseException] = []

    def retire_oldest() -> None:
        slot, job, tickets = busy[0]
        try:
            if tickets:
                mk.wait(tickets, timeout=stream.timeout)
        except SlotFaultError as err:
            job.failed = True
            errors.append(err)
        else:
            retire(slot, job)
        busy.popleft()
        free.append(slot)

    t0 = time.perf_counter()
    bytes0 = t.bytes
    try:
        for job in jobs:
            if errors:
                break
            dev = job.device
            t.files += 1
            if dev.nbytes <= 0:
                continue
            if dev.stream is not None and callable(getattr(backend, "after_stream", None)):
                backend.after_stream(dev.stream, stream.timeout)  # the producer's writes
            for wlo in range(0, dev.nbytes, _WINDOW_BYTES):
                whi = min(dev.nbytes, wlo + _WINDOW_BYTES)
                c0 = min(context, wlo)
                while busy:  # nothing may read the handle while it is rebound
                    retire_oldest()
                if errors:
                    break
                backend.rebind_buffer(handle, dev.window(wlo - c0, whi - wlo + c0))
                for off in range(wlo, whi, stream.chunk_bytes):
                    n = min(stream.chunk_bytes, whi - off)
                    c = min(context, off)
                    if not free:
                        t.stalls += 1
                        retire_oldest()
                    if errors:
                        break
                    slot = free.popleft()
                    try:
                        tickets = publish(slot, off - wlo + c0, c, n, off, job)
                    except BaseException as e:
                        out = list(getattr(e, "published", None) or ())
                        if out:
                            busy.append((slot, job, out))
                        raise
                    t.bytes += n
                    t.context_bytes += c
                    t.chunks += 1
                    t.slots += len(tickets)
                    job.tickets += len(tickets)
                    busy.append((slot, job, tickets))
                    t.max_in_flight = max(t.max_in_flight, len(busy))
        while busy:
            retire_oldest()
    finally:
        settled = not busy
        if busy:  # an exception ended the call: the next call waits for these first
            for _, _, tickets in busy:
                stream._orphans.extend(tickets)
        stream._scan_handle = saved
        if settled:
            backend.rebind_buffer(handle, None)
            pool.give(handle)
        # else: the slots still out read the handle; it stays bound (and its array
        # referenced) and is never lent again
        dt = time.perf_counter() - t0
        t.seconds += dt
        t.last = {"bytes": t.bytes - bytes0, "seconds": dt,
                  "gbps": (t.bytes - bytes0) / dt / 1e9 if dt > 0 else 0.0}
    if errors:
        raise errors[0]


def source_error(i: int, src: Any) -> InvalidTypeError:
    """The error for a source of no kind ``scan`` knows."""
    return InvalidTypeError(f"source {i} is a {type(src).__name__}, not a path, bytes-like "
                            "data, an open file or a device array",
                            "pass paths (str / os.PathLike), bytes / bytearray / memoryview / "
                            "NumPy arrays, objects with fileno(), or CuPy / PyTorch / DLPack "
                            "arrays")
