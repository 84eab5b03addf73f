"""Host memory for the CUDA backend, the parts that need no GPU: layout, lookup, errors."""
from __future__ import annotations

import ctypes.util
import mmap
from types import SimpleNamespace

import numpy as np
import pytest

from vyre.backends import cuda as cb
from vyre.backends.cuda_host import HostRegistration
from vyre.errors import BackendError


def test_host_zeros_is_zeroed_page_aligned_and_writable():
    a = cb.host_zeros(10_000)
    assert a.dtype == np.uint8 and a.size == 10_000
    assert a.ctypes.data % mmap.PAGESIZE == 0
    assert not a.any()
    a[-1] = 7
    assert a[-1] == 7


def test_device_address_finds_registered_memory_by_host_range(monkeypatch):
    host = cb.host_zeros(4096)
    base = int(host.ctypes.data)
    fake = SimpleNamespace(registered=True, host_pointer=base, nbytes=4096,
                           device_pointer=0x7000_0000_0000)
    monkeypatch.setitem(cb._REGISTERED, base, fake)
    assert cb.device_address(host[100:200]) == (0x7000_0000_0000 + 100, 100)
    assert cb.device_address(host.view(np.uint32)) == (0x7000_0000_0000, 4096)
    other = cb.host_zeros(64)
    with pytest.raises(BackendError, match="not mapped") as ei:
        cb.device_address(other)  # plain host memory: refused, with a fix
    assert "alloc_buffer" in ei.value.fix
    fake.registered = False  # unregistered memory is no longer a device address
    with pytest.raises(BackendError):
        cb.device_address(host)


@pytest.mark.skipif(ctypes.util.find_library("cuda") is not None, reason="a CUDA driver is present")
def test_registration_without_a_driver_says_what_to_install():
    with pytest.raises(BackendError, match="driver") as ei:
        HostRegistration(cb.host_zeros(64))
    assert "libcuda" in ei.value.fix


def test_registration_refuses_strided_memory():
    with pytest.raises(BackendError, match="contiguous"):
        HostRegistration(cb.host_zeros(64)[::2])


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
