"""Host memory for the CUDA backend, the parts that need no GPU: layout, lookup, errors."""
from __future__ import annotations

import ctypes.util
import mmap
from types import SimpleNamespace

import numpy as np
import pytest

from vyre.backends.cuda import backend as cb
from vyre.backends.cuda import memory as mem
from vyre.backends.cuda import residency as res
from vyre.backends.cuda.host import HostRegistration
from vyre.errors import BackendError


def test_host_zeros_is_zeroed_page_aligned_and_writable():
    a = mem.host_zeros(10_000)
    assert a.dtype == np.uint8 and a.size == 10_000
    assert a.ctypes.data % mmap.PAGESIZE == 0
    assert not a.any()
    a[-1] = 7
    assert a[-1] == 7


def test_device_address_finds_registered_memory_by_host_range(monkeypatch):
    host = mem.host_zeros(4096)
    base = int(host.ctypes.data)
    fake = SimpleNamespace(registered=True, host_pointer=base, nbytes=4096,
                           device_pointer=0x7000_0000_0000)
    monkeypatch.setitem(mem._REGISTERED, base, fake)
    assert mem.device_address(host[100:200]) == (0x7000_0000_0000 + 100, 100)
    assert mem.device_address(host.view(np.uint32)) == (0x7000_0000_0000, 4096)
    other = mem.host_zeros(64)
    with pytest.raises(BackendError, match="not mapped") as ei:
        mem.device_address(other)  # plain host memory: refused, with a fix
    assert "alloc_buffer" in ei.value.fix
    fake.registered = False  # unregistered memory is no longer a device address
    with pytest.raises(BackendError):
        mem.device_address(host)


@pytest.mark.skipif(ctypes.util.find_library("cuda") is not None, reason="a CUDA driver is present")
def test_registration_without_a_driver_says_what_to_install():
    with pytest.raises(BackendError, match="driver") as ei:
        HostRegistration(mem.host_zeros(64))
    assert "libcuda" in ei.value.fix


def test_registration_refuses_strided_memory():
    with pytest.raises(BackendError, match="contiguous"):
        HostRegistration(mem.host_zeros(64)[::2])


def test_paused_is_a_no_op_context_on_the_cpu_backend():
    from vyre import Megakernel

    mk = Megakernel("cpu", slot_count=16)
    with mk.paused():
        with mk.paused():
            pass
    assert mk._backend.pauses == 0 and not mk._backend.paused


@pytest.mark.parametrize("part", [-1, 1 << 32])
def test_assist_part_bytes_is_checked_before_any_driver_call(part):
    """Runs without PyCUDA: the option is refused before the backend touches the driver."""
    with pytest.raises(BackendError) as info:
        cb.CudaBackend(slot_count=64, observable_slots=8, debug_records=8, io_slots=8,
                       assist_part_bytes=part)
    assert "assist_part_bytes" in str(info.value) and "65536" in info.value.fix


# ------------------------------------------------ host-side error paths, with stand-in drivers
class _FakeCudaError(Exception):
    pass


def _bare_backend(**attrs):
    """A CudaBackend that never touched a driver: only the attributes a test names."""
    backend = cb.CudaBackend.__new__(cb.CudaBackend)
    backend._cuda = SimpleNamespace(Error=_FakeCudaError)
    backend._in_ctx = lambda fn, *a: fn(*a)
    for k, v in attrs.items():
        setattr(backend, k, v)
    return backend


def test_a_failing_copy_query_is_a_backend_error_with_a_fix():
    def query():
        raise _FakeCudaError("cuEventQuery failed: an illegal memory access was encountered")

    copy = mem.DeviceCopy(_bare_backend(), SimpleNamespace(query=query), 4096)
    with pytest.raises(BackendError, match="4096-byte host-to-device copy failed") as ei:
        copy.done()
    assert "recreate the Megakernel" in ei.value.fix
    assert isinstance(ei.value.__cause__, _FakeCudaError)


def test_a_landed_copy_hands_its_event_back_once():
    backend = _bare_backend(_events=[])
    event = SimpleNamespace(query=lambda: True)
    copy = mem.DeviceCopy(backend, event, 16)
    assert copy.done() and copy.done()
    assert backend._events == [event]


def test_stop_is_bounded_while_another_thread_is_inside_quiesced(held_elsewhere):
    import time
    backend = _bare_backend(_running=True, paused=False, control=np.zeros(160, np.uint32))
    with held_elsewhere(res.RESIDENCY.lock):
        t0 = time.monotonic()
        with pytest.raises(BackendError, match="quiesced") as ei:
            backend.stop(0.2)
        assert 0.15 < time.monotonic() - t0 < 2
        assert "retry" in ei.value.fix
        assert backend.control[0] == 0 and backend._running  # nothing was half done


def test_a_stored_failure_is_raised_again_without_growing_its_traceback():
    import traceback
    backend = _bare_backend(_failed=BackendError("the megakernel faulted", "recreate it"))
    depths = []
    for _ in range(3):
        with pytest.raises(BackendError, match="faulted") as ei:
            backend.check()
        depths.append(len(traceback.extract_tb(ei.value.__traceback__)))
    assert depths[0] == depths[1] == depths[2]


@pytest.mark.parametrize("timeout", [float("inf"), 1e10])
def test_stop_takes_any_timeout(timeout):
    backend = _bare_backend(_running=False)
    backend.stop(timeout)  # not running: returns (no OverflowError past TIMEOUT_MAX)
