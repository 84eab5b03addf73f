"""Memory under a persistent kernel: allocations, frees and pauses never hang or lose work.

On the GPU, cuMemHostAlloc / cuMemFreeHost / cuMemHostUnregister / cuMemAlloc / cuMemFree and
module loads wait for the device to go idle (bench/gpu/blocking_calls.py measured it), so
the CUDA backend makes them with every megakernel paused. These tests would hang (and be
killed by the timeout) if one of those calls ran under a resident kernel.
"""
from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest
from test_facade import OBS, adds

from vyre import Megakernel
from vyre.protocol import Opcode

pytestmark = pytest.mark.gpu
BIG = 64 << 20  # large enough that the driver must map new memory (small ones are pooled)


def test_large_allocations_while_a_megakernel_runs():
    # resident throughout (no idle exit), so the pause count below is the allocations' alone
    with Megakernel("cuda", slot_count=256, observable_slots=8, idle_exit_ms=0,
                    yield_ms=0) as mk:
        mk.wait(mk.submit(Opcode.NOP), timeout=10)
        h_host, host = mk.alloc_buffer(BIG)
        h_dev, _ = mk.alloc_buffer(BIG, device=True)
        host[-4:] = [1, 2, 3, 4]
        # the kernel reads both: copy the host tail into device memory and back
        mk.wait(mk.submit(Opcode.BUF_COPY, [h_host, BIG - 4, h_dev, 0, 4]), timeout=10)
        mk.wait(mk.submit(Opcode.BUF_COPY, [h_dev, 0, h_host, 0, 4]), timeout=10)
        assert host[:4].tolist() == [1, 2, 3, 4]
        # host memory is registered under the running kernel; only the device allocation pauses
        assert mk._backend.pauses == 1


def test_paused_block_loses_nothing_and_runs_nothing_twice():
    """Pauses in the middle of a stream of adds: totals stay exact."""
    ops, args, totals = adds(200_000, 8, seed=5)
    with Megakernel("cuda", slot_count=1024, observable_slots=8) as mk:
        stop = threading.Event()
        pauses = []

        def pauser():
            import pycuda.driver as cuda

            while not stop.is_set() and len(pauses) < 100:
                with mk.paused():
                    pauses.append(cuda.mem_alloc(1 << 20))  # would hang under a running kernel
                time.sleep(0.002)
        t = threading.Thread(target=pauser)
        t.start()
        try:
            mk.submit_many(ops, args, timeout=60)
            mk.drain(timeout=60)
        finally:
            stop.set()
            t.join(30)
        assert not t.is_alive()
        assert len(pauses) > 3
        assert np.array_equal(mk.observables[:8], totals)
        assert mk.done_count == 200_000
        with mk.paused():
            for a in pauses:
                a.free()


def test_a_stopped_megakernel_is_collected_while_another_runs():
    """Its host memory is unregistered and its device memory freed without waiting on the
    running kernel (either paused for the release or parked until it stops)."""
    first = Megakernel("cuda", slot_count=64).start()
    first.wait(first.submit(Opcode.NOP), timeout=10)
    with Megakernel("cuda", slot_count=64) as other:
        first.shutdown(timeout=10)
        del first
        gc.collect()
        other.wait(other.submit(Opcode.ATOMIC_ADD, [3, OBS]), timeout=10)
        assert other.observables[0] == 3


def test_megakernel_started_inside_a_paused_block_runs_after_it():
    with Megakernel("cuda", slot_count=64) as a:
        with a.paused():
            b = Megakernel("cuda", slot_count=64).start()
            t = b.submit(Opcode.ATOMIC_ADD, [5, OBS])
        b.wait(t, timeout=10)
        assert b.observables[0] == 5
        b.shutdown(timeout=10)


def test_pause_runs_published_tickets_no_warp_holds_yet():
    """A ring larger than 32 tickets x the worker warps: a pause must still drain every
    published ticket (warps keep taking batches until one is past the final mirror)."""
    n = 65_536
    with Megakernel("cuda", slot_count=1 << 17, observable_slots=8) as mk:
        mk.submit_many(np.zeros(n, np.uint32), notify=False)
        mk.notify()
        with mk.paused():
            pass
        mk.drain(timeout=30)
        assert mk.done_count == n
