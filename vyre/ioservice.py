"""The host side of LOAD_MISS (docs/spec.md §8): :class:`IoService` claims IO-queue requests,
reads the named resource into the named buffer and completes them OK or ERROR.
"""
from __future__ import annotations

import os
import stat as _stat
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from vyre.errors import PipelineError
from vyre.ingest.readers import Reader, open_reader

__all__ = ["IoService"]

if TYPE_CHECKING:
    from typing_extensions import Self


def _abi() -> dict:
    from vyre.protocol import ABI

    return ABI



def _raw_bytes(res: Any) -> memoryview:
    """The bytes of an in-memory resource."""
    return memoryview(res).cast("B")


class IoService:
    """Host side of LOAD_MISS (docs/spec.md §8): claims IO-queue requests and serves them.

    ``IoService(mk, resources)``; ``with IoService(...) as io:`` runs a service thread
    (:meth:`start` / :meth:`stop`), or call :meth:`service_once` from your own loop.

    The lane's LOAD_MISS(``a0`` resource id, ``a1`` byte count, ``a2`` destination handle,
    ``a3``/``a4`` offset lo/hi) fills an IO slot ``[op_type=READ, src_handle=a0,
    dst_handle=a2, offset_lo=a3, offset_hi=a4, byte_count=a1, status, tag=ring slot]``
    (csrc/vyre_interp.h) and publishes it. The service:

    1. finds PUBLISHED IO slots and claims each with ``CAS(PUBLISHED→CLAIMED)`` (a lane that
       gave up withdraws its request with the same CAS, so exactly one side wins);
    2. reads ``byte_count`` bytes of resource ``src_handle`` starting at byte ``offset``
       (64-bit) into buffer ``dst_handle`` starting at its byte 0 (``byte_count`` 0 = the
       default: the rest of the resource, at most the buffer's size) -- through the stream's
       reader (io_uring when available) straight into host-visible buffers, or through a
       host bounce buffer and an upload for device-only buffers;
    3. completes with status OK, or ERROR (unknown resource or handle, a range past the end
       of the resource or of the buffer, a read error, an op other than READ / FENCE),
       stored with release order. ERROR ends the LOAD_MISS slot in FAULT; the reason is kept
       in :attr:`errors`.

    Args:
        mk: the Megakernel (its backend's ``ioq`` is served).
        resources: ``{resource_id: path | bytes-like | open fd}``.
        buffers: ``{handle: array}`` for destination handles; default: the backend's
            ``buffer(handle)`` (CPU backend) or its ``_buffers`` table (CUDA backend).
        mode: reader path (``auto`` / ``uring`` / ``fallback``; default ``$VYRE_INGEST``).
        depth: reads in flight at once.
    """

    def __init__(self, mk: Any, resources: Mapping[int, Any], *,
                 buffers: Mapping[int, Any] | None = None, mode: str | None = None,
                 depth: int = 16, ioq: np.ndarray | None = None) -> None:
        self.mk = mk
        backend = getattr(mk, "backend", None)
        found = ioq if ioq is not None else getattr(backend, "ioq", None)
        if found is None or len(found) == 0:
            raise PipelineError("this megakernel has no IO queue",
                                "create the Megakernel with io_slots > 0 (default 64)")
        self.ioq: np.ndarray = found
        abi = _abi()
        self._abi = abi
        self._words = abi["IO_SLOT_WORDS"]
        self.io_slots = min(len(self.ioq) // self._words, abi["IO_MAX_SLOTS"])
        self._buffers = buffers
        self._resources: dict[int, Any] = dict(resources)
        self._fds: dict[int, int] = {}
        self._mode = mode
        self._depth = int(depth)
        self._reader: Reader | None = None
        self.errors: list[tuple[int, int, str]] = []   # (io slot, tag, reason)
        self.served = 0
        self.failed = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._crash: BaseException | None = None

    # ---- lifetime
    def start(self) -> Self:
        """Serve in a background thread until :meth:`stop`."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="vyre-io-service",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, close files opened for resources and the reader."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout)
            self._thread = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._crash is not None:
            err, self._crash = self._crash, None
            raise err

    close = stop

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        idle = 0
        try:
            while not self._stop.is_set():
                try:
                    done = self.service_once()
                except Exception as err:  # noqa: BLE001  # keep serving; say what happened
                    self.errors.append((-1, -1, f"service pass failed: {err!r}"))
                    done = 0
                if done:
                    idle = 0
                else:
                    idle += 1
                    time.sleep(min(1e-3, 2e-5 * idle))
        except BaseException as err:  # noqa: BLE001  # reported by stop()
            self._crash = err

    # ---- serving
    def _buffer(self, handle: int) -> Any:
        if self._buffers is not None:
            return self._buffers.get(handle)
        backend = getattr(self.mk, "backend", None)
        lookup = getattr(backend, "buffer", None)
        if callable(lookup):
            try:
                return lookup(handle)
            except Exception:  # noqa: BLE001  # any lookup failure: not a known buffer
                return None
        table = getattr(backend, "_buffers", None)
        if table is None:
            return None
        if isinstance(table, Mapping):
            return table.get(handle)
        return table[handle] if 0 <= handle < len(table) else None

    def _resource_fd(self, rid: int) -> int | None:
        if rid in self._fds:
            return self._fds[rid]
        res = self._resources.get(rid)
        if isinstance(res, int):
            return res
        if isinstance(res, (str, os.PathLike)):
            fd = os.open(res, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            self._fds[rid] = fd
            return fd
        return None

    def _resource_size(self, rid: int) -> int | None:
        res = self._resources.get(rid)
        if res is None:
            return None
        if isinstance(res, (bytes, bytearray, memoryview, np.ndarray)):
            return _raw_bytes(res).nbytes
        try:
            fd = self._resource_fd(rid)
            return None if fd is None else int(os.fstat(fd).st_size)
        except OSError:
            return None

    def _complete(self, i: int, ok: bool, why: str = "") -> None:
        from vyre._wire import atomic_store_u32

        abi = self._abi
        if not ok:
            tag = int(self.ioq[i * self._words + abi["IO_TAG"]])
            self.errors.append((i, tag, why))
            self.failed += 1
        else:
            self.served += 1
        atomic_store_u32(self.ioq, i * self._words + abi["IO_STATUS"],
                         abi["IO_STATUS_OK"] if ok else abi["IO_STATUS_ERROR"])

    def service_once(self) -> int:
        """Claim every PUBLISHED request, serve them (reads run concurrently), complete them.

        Returns the number of requests completed (OK or ERROR).
        """
        from vyre._wire import atomic_cas_u32

        abi, w = self._abi, self._words
        status = self.ioq[: self.io_slots * w].reshape(self.io_slots, w)[:, abi["IO_STATUS"]]
        cand = np.flatnonzero(status == abi["STATUS_PUBLISHED"])
        if cand.size == 0:
            return 0
        claimed = []
        for i in cand.tolist():
            if atomic_cas_u32(self.ioq, i * w + abi["IO_STATUS"], abi["STATUS_PUBLISHED"],
                              abi["STATUS_CLAIMED"]) == abi["STATUS_PUBLISHED"]:
                claimed.append(i)
        if not claimed:
            return 0
        reads: list[tuple[int, int, Any, int]] = []   # (io slot, fd, dst host view, count)
        bounce: dict[int, tuple[Any, np.ndarray]] = {}
        for i in claimed:
            try:
                req = self._prepare(i, bounce)
            except Exception as err:  # noqa: BLE001  # any failure ends this request only
                bounce.pop(i, None)
                self._complete(i, False, f"request failed: {type(err).__name__}: {err}")
                continue
            if req is not None:
                reads.append(req)
        if reads:
            self._read_all(reads, bounce)
        return len(claimed)

    def _prepare(self, i: int, bounce: dict[int, tuple[Any, np.ndarray]]
                 ) -> tuple[int, int, Any, int] | None:
        """Serve claimed request ``i`` as far as it can be without reading: complete it
        (FENCE, in-memory resources, refusals) or return the read it needs."""
        abi, w = self._abi, self._words
        f = [int(x) for x in self.ioq[i * w:(i + 1) * w]]
        op = f[abi["IO_OP_TYPE"]]
        if op == abi["IO_FENCE"]:
            self._complete(i, True)
            return None
        if op != abi["IO_READ"]:
            self._complete(i, False, f"op_type {op} is not served (READ and FENCE are)")
            return None
        rid, dst = f[abi["IO_SRC_HANDLE"]], f[abi["IO_DST_HANDLE"]]
        offset = f[abi["IO_OFFSET_LO"]] | (f[abi["IO_OFFSET_HI"]] << 32)
        count = f[abi["IO_BYTE_COUNT"]]
        buf = self._buffer(dst)
        if buf is None:
            self._complete(i, False, f"destination handle {dst} is not a known buffer")
            return None
        nbytes = int(getattr(buf, "nbytes", 0))
        if count == 0:  # the host's default: as much of the resource as the buffer holds
            size = self._resource_size(rid)
            if size is None:
                self._complete(i, False, f"resource {rid} is not registered with the "
                                         f"IoService (or cannot be opened)")
                return None
            count = max(0, min(size - offset, nbytes))
        if count > nbytes:
            self._complete(i, False, f"{count} bytes do not fit buffer {dst} ({nbytes} bytes)")
            return None
        res = self._resources.get(rid)
        if res is None:
            self._complete(i, False, f"resource {rid} is not registered with the IoService")
            return None
        host = np.asarray(buf).view(np.uint8).reshape(-1) if isinstance(buf, np.ndarray) else None
        target = host[:count] if host is not None else np.empty(count, np.uint8)
        if host is None:
            bounce[i] = (buf, target)
        if isinstance(res, (bytes, bytearray, memoryview, np.ndarray)):
            src = _raw_bytes(res)
            if offset + count > len(src):
                self._complete(i, False, f"resource {rid} has {len(src)} bytes; the request "
                                         f"wants {offset}..{offset + count}")
                return None
            target[:] = np.frombuffer(src[offset:offset + count], np.uint8)
            self._finish_bounce(i, bounce)
            return None
        try:
            fd = self._resource_fd(rid)
        except OSError as err:
            self._complete(i, False, f"resource {rid}: cannot open {res!r}: {err.strerror}")
            return None
        if fd is None:
            self._complete(i, False, f"resource {rid} has an unsupported type "
                                     f"{type(res).__name__}")
            return None
        try:
            fst = os.fstat(fd)
        except OSError as err:  # e.g. an fd resource closed since it was registered
            self._complete(i, False, f"resource {rid}: {err.strerror or err}")
            return None
        size = fst.st_size
        if _stat.S_ISREG(fst.st_mode) and offset + count > size:  # before touching dst
            self._complete(i, False, f"resource {rid} has {size} bytes; the request "
                                     f"wants {offset}..{offset + count}")
            return None
        return i, fd, target, count

    def _finish_bounce(self, i: int, bounce: dict) -> None:
        hit = bounce.pop(i, None)
        if hit is not None:
            buf, data = hit
            try:
                self.mk.backend.upload(buf, data)
            except Exception as err:  # noqa: BLE001  # pragma: no cover - needs a device buffer
                self._complete(i, False, f"upload to the device buffer failed: {err}")
                return
        self._complete(i, True)

    def _read_all(self, reads: list[tuple[int, int, Any, int]],
                  bounce: dict[int, tuple[Any, np.ndarray]]) -> None:
        """Read every request through the reader; each ends OK or ERROR, whatever fails."""
        if self._reader is None:
            self._reader = open_reader(self._depth, mode=self._mode, fixed_buffers=False)
        reader = self._reader
        todo = deque(reads)
        want: dict[int, int] = {}
        try:
            while todo or want:
                while todo and reader.free:
                    i, fd, target, count = todo.popleft()
                    try:
                        reader.read(fd, target, self._offset(i), i)
                    except Exception as exc:  # noqa: BLE001  # this request fails, not all
                        bounce.pop(i, None)
                        self._complete(i, False, f"read not started: {exc}")
                        continue
                    want[i] = count
                if not want:
                    continue
                reader.submit()
                for tag, nbytes, rerr, _eof in reader.poll(1):
                    count = want.pop(tag)
                    if rerr:
                        self._complete(tag, False, f"read failed: {os.strerror(rerr)}")
                    elif nbytes != count:
                        self._complete(tag, False, f"the resource ended after {nbytes} of "
                                                   f"{count} bytes")
                    else:
                        self._finish_bounce(tag, bounce)
                        continue
                    bounce.pop(tag, None)
        except Exception as exc:  # noqa: BLE001  # the reader broke: end what it held
            for i in [*want, *(r[0] for r in todo)]:
                bounce.pop(i, None)
                self._complete(i, False, f"the reader failed: {exc}")
            self._reader = None
            try:
                reader.close()
            except Exception:  # noqa: BLE001, S110  # a new reader is opened next time
                pass

    def _offset(self, i: int) -> int:
        abi, w = self._abi, self._words
        return int(self.ioq[i * w + abi["IO_OFFSET_LO"]]) | (
            int(self.ioq[i * w + abi["IO_OFFSET_HI"]]) << 32)
