"""copy_from_device reads through the backend's page-locked bounce buffer (CPU stand-ins).

A read into pageable memory is staged by the driver and waited behind the chunk uploads in
flight on the H200 (~1 ms per per-pattern source, bench/RESULTS.md): the driver must only ever
be handed the page-locked bounce buffer, in pieces when the read is larger."""
import threading

import numpy as np
import pytest

from vyre.backends.cuda.buffer_table import CudaBufferTable
from vyre.errors import BackendError

BASE = 0x7000_0000


class Device:
    """A device allocation: bytes at BASE, exported the way CuPy exports one."""

    def __init__(self, data: bytes) -> None:
        self.data = np.frombuffer(data, np.uint8).copy()
        self.__cuda_array_interface__ = {"data": (BASE, False), "shape": (self.data.size,),
                                         "typestr": "|u1", "version": 3}


class Driver:
    """memcpy_dtoh_async from the fake device; records every destination it was given."""

    def __init__(self, device: Device) -> None:
        self.device, self.dests = device, []

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream) -> None:
        self.dests.append(dst)
        at = src - BASE
        dst[:] = self.device.data[at:at + dst.nbytes]


class Stream:
    def synchronize(self) -> None:
        pass


class Table(CudaBufferTable):
    """Only the buffer-table half of the backend (no kernel)."""

    __init__ = check = describe = running = start = stop = None  # type: ignore[assignment]


def table(device: Device, bounce_bytes: int) -> CudaBufferTable:
    t = Table.__new__(Table)
    t._cuda = Driver(device)
    t._read_stream = Stream()
    t._read_staging = np.zeros(bounce_bytes, np.uint8)
    t._read_lock = threading.Lock()
    t._in_ctx = lambda fn, *args: fn(*args)
    return t


@pytest.mark.parametrize("words,offset", [(1, 0), (7, 12), (1000, 4), (4096, 0)])
def test_reads_come_through_the_bounce_buffer_in_pieces(words, offset):
    data = np.random.default_rng(words).integers(0, 2**32, 5000, dtype=np.uint32).tobytes()
    dev = Device(data)
    t = table(dev, bounce_bytes=1024)
    out = np.empty(words, np.uint32)
    t.copy_from_device(dev, offset, out)
    assert out.tobytes() == data[offset:offset + 4 * words]
    bounce = t._read_staging
    assert t._cuda.dests and all(np.shares_memory(d, bounce) for d in t._cuda.dests)
    assert not any(np.shares_memory(d, out) for d in t._cuda.dests)
    assert len(t._cuda.dests) == -(-4 * words // 1024)


def test_a_read_past_the_buffer_or_into_a_strided_array_is_refused():
    dev = Device(bytes(64))
    t = table(dev, bounce_bytes=32)
    with pytest.raises(BackendError, match="do not fit"):
        t.copy_from_device(dev, 60, np.empty(2, np.uint32))
    with pytest.raises(BackendError, match="contiguous"):
        t.copy_from_device(dev, 0, np.empty(8, np.uint32)[::2])
    assert t._cuda.dests == []


def test_concurrent_readers_get_their_own_bytes():
    data = np.arange(1 << 14, dtype=np.uint32).tobytes()
    dev = Device(data)
    t = table(dev, bounce_bytes=256)
    bad = []

    def reader(k: int) -> None:
        for i in range(200):
            at = 4 * ((k * 997 + i * 31) % 8000)
            out = np.empty(100, np.uint32)
            t.copy_from_device(dev, at, out)
            if out.tobytes() != data[at:at + 400]:
                bad.append((k, i))

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert bad == []
