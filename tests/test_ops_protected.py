"""Protected control words on every path (docs/ops.md, issue item: tenant isolation).

A tenant other than 0 must not write control words below OBSERVABLE_BASE by any op: the
built-ins, LOAD_MISS (the host writes the data at byte 0 of the destination buffer), BUF_COPY
and user ops. Each attempt FAULTs with reason PROTECTED and leaves the header untouched.
"""
from __future__ import annotations

import numpy as np
import pytest

from vyre import Megakernel, SlotFaultError
from vyre.ioservice import IoService
from vyre.protocol import OBSERVABLE_BASE, FaultReason, Opcode


@pytest.mark.parametrize("nbytes", [4, 64, 0])
def test_tenant_load_miss_into_control_faults_and_is_never_served(backend, tmp_path, nbytes):
    path = tmp_path / "payload"
    path.write_bytes(b"\x41" * 640)
    with Megakernel(backend, slot_count=16, observable_slots=16, tenants=2, io_slots=4) as mk:
        header = mk.control[:OBSERVABLE_BASE].copy()
        with IoService(mk, {5: str(path)}) as io:
            t = mk.submit(Opcode.LOAD_MISS, [5, nbytes, 0, 0, 0], tenant=1)
            with pytest.raises(SlotFaultError) as err:
                mk.result(t, timeout=10)
            assert err.value.reason == FaultReason.PROTECTED
            assert err.value.details == (0, 0, 0)  # handle 0, word 0 (SHUTDOWN onwards)
            assert io.served == 0  # the request never reached the host
        now = mk.control[:OBSERVABLE_BASE].copy()
        for moving in (1, 142, 143) + tuple(range(96, 128)):  # counters and heartbeat
            now[moving] = header[moving]
        assert np.array_equal(now, header)
        # the header still authorizes what it did: tenant 1 runs, tenant 2 is refused
        t = mk.submit(Opcode.ATOMIC_ADD, [2, OBSERVABLE_BASE], tenant=1)
        assert mk.result(t) == (2, 0, 0, 0)
        with pytest.raises(SlotFaultError) as err:
            mk.result(mk.submit(Opcode.ATOMIC_ADD, [2, OBSERVABLE_BASE], tenant=2))
        assert err.value.reason == FaultReason.UNAUTHORIZED and err.value.details == (2, 0, 0)


def test_system_tenant_load_miss_into_an_observable_buffer_still_works(backend, tmp_path):
    path = tmp_path / "payload"
    path.write_bytes(bytes(range(64)))
    with Megakernel(backend, slot_count=16, observable_slots=16, tenants=2, io_slots=4) as mk:
        handle, buf = mk.alloc_buffer(64)
        with IoService(mk, {5: str(path)}):
            t = mk.submit(Opcode.LOAD_MISS, [5, 64, handle, 0, 0], tenant=1)
            assert mk.result(t, timeout=10) == (0, 0, 0, 0)
        assert np.asarray(buf)[:64].tobytes() == bytes(range(64))


@pytest.mark.parametrize("op,args,word", [
    (Opcode.STORE_U32, [1, 5], 5),
    (Opcode.ATOMIC_ADD, [1, 141], 141),
    (Opcode.COMPARE_SWAP, [3, 0xFFFFFFFF, 0], 3),
    (Opcode.MEMCPY, [OBSERVABLE_BASE, 100, 1], 100),
    (Opcode.BUF_COPY, [0, 4 * OBSERVABLE_BASE, 0, 8, 4], 2),
    (Opcode.SHUTDOWN, [], 0),
])
def test_builtin_protected_writes_fault_with_the_word(backend, op, args, word):
    with Megakernel(backend, slot_count=16, observable_slots=16, tenants=2) as mk:
        with pytest.raises(SlotFaultError) as err:
            mk.result(mk.submit(op, args, tenant=1), timeout=10)
        assert err.value.reason == FaultReason.PROTECTED
        assert err.value.details == (0, word, 0)
        assert "PROTECTED" in str(err.value)
