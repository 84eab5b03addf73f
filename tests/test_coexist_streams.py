"""Ordering with other libraries' streams and sharing their memory, without a GPU.

The GPU runs of the same paths are in test_coexist_gpu.py; here the host logic is pinned with
stand-in drivers: which stream handle is used, which word and value a stream waits on, how
an event is polled, how DLPack tensors are read, what the CPU backend does instead.
"""
from __future__ import annotations

import ctypes
from types import SimpleNamespace

import numpy as np
import pytest

from vyre import Megakernel, Opcode
from vyre.backends.cuda import backend as cb
from vyre.backends.cuda import memory as mem
from vyre.backends.cuda import streams
from vyre.errors import (
    BackendError,
    InvalidTypeError,
    InvalidValueError,
    WaitTimeoutError,
)
from vyre.protocol import SlotStatus

OBS = 160


@pytest.mark.parametrize("stream,handle", [
    (SimpleNamespace(cuda_stream=0x1234), 0x1234),  # torch.cuda.Stream
    (SimpleNamespace(ptr=0x5678), 0x5678),  # cupy.cuda.Stream
    (SimpleNamespace(handle=0x9ABC), 0x9ABC),  # pycuda Stream
    (0x42, 0x42), (0, 0)])
def test_stream_handles_of_each_library(stream, handle):
    assert streams.stream_handle(stream) == handle


@pytest.mark.parametrize("bad", [None, True, "stream", SimpleNamespace(ptr="x"), 1.5])
def test_things_that_are_not_streams_are_refused(bad):
    with pytest.raises(InvalidTypeError) as ei:
        streams.stream_handle(bad)
    assert "cupy.cuda.Stream" in ei.value.fix


class FakeLib:
    """The four driver entry points streams.py uses, recorded."""

    def __init__(self, queries=(0,)):
        self.calls = []
        self.queries = list(queries)

    def cuStreamWaitValue32_v2(self, stream, addr, value, flags):
        self.calls.append(("wait32", stream.value, addr, value, flags))
        return 0

    def cuEventCreate(self, ref, flags):
        ref._obj.value = 0xE0
        self.calls.append(("create", flags))
        return 0

    def cuEventRecord(self, event, stream):
        self.calls.append(("record", event.value, stream.value))
        return 0

    def cuEventQuery(self, event):
        return self.queries.pop(0) if len(self.queries) > 1 else self.queries[0]

    def cuEventDestroy_v2(self, event):
        self.calls.append(("destroy", event.value))
        return 0

    def cuGetErrorName(self, rc, ref):
        ref._obj.value = b"CUDA_ERROR_LAUNCH_FAILED"
        return 0


def test_a_stream_waits_on_the_status_word_of_the_tickets_slot(monkeypatch):
    lib = FakeLib()
    monkeypatch.setattr(streams, "_lib", lambda: lib)
    b = cb.CudaBackend.__new__(cb.CudaBackend)
    b._active = lambda: __import__("contextlib").nullcontext()
    b.ring = np.zeros(64 * 16, np.uint32)
    b._dptr = lambda arr: 0x7F00_0000_0000
    assert b.stream_wait(SimpleNamespace(ptr=0x77), 5) is True
    assert lib.calls == [("wait32", 0x77, 0x7F00_0000_0000 + 5 * 64, int(SlotStatus.DONE), 0)]
    # DONE and FAULT pass a >= DONE wait, the states before them do not
    done, fault = int(SlotStatus.DONE), int(SlotStatus.FAULT)
    passes = [s for s in (0, 1, 2, done, fault)
              if ((s - done) & 0xFFFFFFFF) < 0x80000000]  # (int32)(*addr - value) >= 0
    assert passes == [done, fault]


def test_after_stream_polls_an_event_until_it_lands(monkeypatch):
    lib = FakeLib(queries=[streams._NOT_READY, streams._NOT_READY, 0])
    monkeypatch.setattr(streams, "_lib", lambda: lib)
    streams.stream_event_done(SimpleNamespace(cuda_stream=0x99), timeout=5)
    assert lib.calls == [("create", streams._EVENT_DISABLE_TIMING), ("record", 0xE0, 0x99),
                         ("destroy", 0xE0)]


def test_after_stream_times_out_and_still_destroys_its_event(monkeypatch):
    lib = FakeLib(queries=[streams._NOT_READY])
    monkeypatch.setattr(streams, "_lib", lambda: lib)
    with pytest.raises(WaitTimeoutError, match="did not finish") as ei:
        streams.stream_event_done(0, timeout=0.02)
    assert "cycle" in ei.value.fix and lib.calls[-1] == ("destroy", 0xE0)


def test_a_failed_stream_is_a_backend_error(monkeypatch):
    from vyre.backends.cuda import host
    lib = FakeLib(queries=[719])
    monkeypatch.setattr(streams, "_lib", lambda: lib)
    monkeypatch.setattr(host, "_driver", lambda: lib)
    with pytest.raises(BackendError, match="CUDA_ERROR_LAUNCH_FAILED"):
        streams.stream_event_done(0, timeout=1)


# ------------------------------------------------------------------ the CPU backend's fallbacks
class HostStream:
    def __init__(self, log):
        self.log = log

    def synchronize(self):
        self.log.append("stream synchronized")


def test_on_the_cpu_a_stream_wait_waits_for_the_ticket_on_the_host():
    with Megakernel("cpu", slot_count=64, observable_slots=8) as mk:
        t = mk.submit(Opcode.ATOMIC_ADD, [3, OBS])
        mk.stream_wait(HostStream([]), t)
        assert mk.finished(t) and mk.observables[0] == 3
        with pytest.raises(InvalidValueError, match="never published"):
            mk.stream_wait(HostStream([]), t + 1)


def test_submit_after_publishes_only_after_the_stream_finished():
    log = []
    with Megakernel("cpu", slot_count=64, observable_slots=8) as mk:
        real = mk.submit

        def submit(*a, **k):
            log.append("published")
            return real(*a, **k)

        mk.submit = submit
        t = mk.submit_after(HostStream(log), Opcode.ATOMIC_ADD, [2, OBS])
        mk.wait(t)
        assert log == ["stream synchronized", "published"] and mk.observables[0] == 2
        with pytest.raises(InvalidTypeError, match="without a GPU backend"):
            mk.submit_after(object(), Opcode.NOP)


# ------------------------------------------------------------------ DLPack tensors
class DeviceTensor:
    """A DLPack producer that says it lives on GPU 0 (its bytes are a numpy array's)."""

    def __init__(self, array):
        self.array = array

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, **kw):
        return self.array.__dlpack__()


def test_a_dlpack_tensor_gives_its_address_and_length_and_a_capsule_to_hold():
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    addr, nbytes, capsule = mem.dlpack_address(DeviceTensor(a))
    assert (addr, nbytes) == (a.ctypes.data, 96)
    ctypes.pythonapi.PyCapsule_IsValid.restype = ctypes.c_int
    ctypes.pythonapi.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]
    assert ctypes.pythonapi.PyCapsule_IsValid(capsule, b"dltensor")  # unconsumed: it pins
    assert mem.device_address(DeviceTensor(a[1:])) == (a[1:].ctypes.data, 72)


def test_strided_and_host_dlpack_tensors_are_refused_with_a_fix():
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    with pytest.raises(BackendError, match="not C-contiguous"):
        mem.dlpack_address(DeviceTensor(a[:, ::2]))
    with pytest.raises(BackendError, match="device type 1") as ei:
        mem.dlpack_address(SimpleNamespace(__dlpack_device__=lambda: (1, 0),
                                           __dlpack__=a.__dlpack__))
    assert "numpy.from_dlpack" in ei.value.fix


def test_plain_numpy_on_cuda_points_at_register_buffer():
    with pytest.raises(BackendError) as ei:
        mem.device_address(np.zeros(16, np.uint8))
    assert "register_buffer" in ei.value.fix


def test_numpy_arrays_are_registered_by_whole_pages_once(monkeypatch):
    """Two small arrays on one page share one registration (a second cuMemHostRegister of the
    page would fail); the table gets each array's own device address; the registration keeps
    the array alive."""
    import contextlib

    made = []

    class Reg:
        def __init__(self, pages):
            self.host_pointer, self.nbytes = int(pages.ctypes.data), int(pages.nbytes)
            self.device_pointer, self.registered = (1 << 44) + self.host_pointer, True
            made.append(self)

    def register_host(pages, context=None):
        reg = Reg(pages)
        mem._REGISTERED[reg.host_pointer] = reg
        return reg

    monkeypatch.setattr(mem, "_REGISTERED", {})
    monkeypatch.setattr(mem, "register_host", register_host)
    b = cb.CudaBackend.__new__(cb.CudaBackend)
    b._buffers, b._table, b._registrations, b._ctx = [None], np.zeros(512, np.uint64), [], None
    b._active = contextlib.nullcontext
    page = np.zeros(4096 * 3, np.uint8)
    at = (-page.ctypes.data) % 4096  # two arrays inside one page
    a1, a2 = page[at:at + 64].view(np.uint32), page[at + 128:at + 192].view(np.uint32)
    assert (b.register_buffer(a1), b.register_buffer(a2)) == (1, 2)
    assert len(made) == 1 and made[0].nbytes == 4096 and made[0].owner is a1
    assert b._table[2] == (1 << 44) + a1.ctypes.data and b._table[3] == 64
    assert b._table[4] == (1 << 44) + a2.ctypes.data and b._buffers[2] is a2
    with pytest.raises(BackendError, match="C-contiguous"):
        b.register_buffer(page[::2])
