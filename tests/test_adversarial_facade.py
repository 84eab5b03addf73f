"""Adversarial tests of the facade and the CPU worker pool: interrupts landing at every step
of the publish and retire paths, bad inputs to every public call, use after shutdown, long
slots under Ctrl-C, watchdog verdicts, and fork."""
from __future__ import annotations

import dis
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, Callable

import numpy as np
import pytest

import vyre.megakernel as mk_module
from vyre import (BackendError, InvalidTypeError, InvalidValueError, Megakernel, PipelineError,
                  SlotFaultError)
from vyre.protocol import Opcode

OBS = 160
SPIN_OP = 0x3FFFFF00  # VYRE_TEST_OP_SPIN of the test-hooks build
STALL_OP = 0x3FFFFF01  # VYRE_TEST_OP_STALL: busy-waits a0 ms ignoring SHUTDOWN
ADD = int(Opcode.ATOMIC_ADD)
NOP = int(Opcode.NOP)
FACADE_FILE = mk_module.__file__

# ---------------------------------------------------------------------------------------------
# item 1: an interrupt at any instant of submit / retire leaves the facade consistent
# ---------------------------------------------------------------------------------------------
# CPython raises a pending KeyboardInterrupt where the interpreter checks for signals: after a
# call returns and at backward jumps (the "eval breaker"). The tracer below raises one at the
# n-th such point inside vyre/megakernel.py, for n = 0, 1, 2, ... until the call completes
# untouched: every place a real Ctrl-C can land in the facade's own code is tried once.
_BREAK_AFTER = {"CALL", "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT", "CALL_FUNCTION_EX"}


class _Injected(KeyboardInterrupt):
    """The injected interrupt (a KeyboardInterrupt, told apart from a real one)."""


def _run_with_interrupt_at(fn: Callable[[], Any], n: int) -> bool:
    """Run ``fn`` raising ``_Injected`` at the n-th signal-check point of the facade's frames.
    Returns True when it was injected (and swallowed), False when ``fn`` ran to the end."""
    seen = [0]
    last: dict[int, int] = {}

    def local(frame, event, arg):
        if event == "opcode":
            prev = last.get(id(frame))
            last[id(frame)] = frame.f_lasti
            if prev is not None and dis.opname[frame.f_code.co_code[prev]] in _BREAK_AFTER:
                seen[0] += 1
                if seen[0] == n + 1:
                    raise _Injected()
        return local

    def tracer(frame, event, arg):
        if frame.f_code.co_filename != FACADE_FILE:
            return None
        frame.f_trace_opcodes = True
        last.pop(id(frame), None)  # a new frame (ids of dead frames are reused)
        return local

    sys.settrace(tracer)
    try:
        fn()
    except _Injected:
        return True
    finally:
        sys.settrace(None)
    return False


def _check_consistent(mk: Megakernel, faulty: set[int]) -> None:
    """Every published ticket is known and runs exactly once, faults are reported, and a new
    submit + wait works: ``faulty`` collects the tickets known to FAULT."""
    t = mk.submit(ADD, [1, OBS + 1], timeout=10)
    mk.wait(t, timeout=10)
    mk.drain(timeout=10)
    published = mk.published
    tel = mk.telemetry()
    assert tel["in_flight"] == 0
    # each published slot ran exactly once: DONE + FAULT counts cover every ticket
    assert mk.done_count + mk.fault_count == published, (mk.done_count, mk.fault_count, published)
    # every fault reached the host's bookkeeping (none reset and forgotten)
    assert tel["faults"] == mk.fault_count
    # the ring holds no slot the facade does not know of
    statuses = mk.backend.ring.reshape(-1, 16)[:, 0]
    assert not np.isin(statuses, [1, 2]).any()  # nothing PUBLISHED or CLAIMED is left over
    for bad in sorted(faulty):
        if bad < published:
            with pytest.raises(SlotFaultError):
                mk.wait(bad, timeout=10)


def _sweep(mk: Megakernel, step: Callable[[int], Any], limit: int = 2000) -> int:
    """Inject at every point of ``step`` (called with the attempt number); returns how many
    points there were."""
    faulty: set[int] = set()
    for n in range(limit):
        before = mk.published
        injected = _run_with_interrupt_at(lambda: step(n), n)
        after = mk.published
        # the steps publish their faulting ops as tenant 1 (unauthorized): remember those
        for t in range(max(before, after - mk.slot_count), after):  # slots not reused since
            if int(mk.backend.ring[(t % mk.slot_count) * 16 + 2]) == 1:  # tenant 1: FAULT
                faulty.add(t)
        _check_consistent(mk, faulty)
        if not injected:
            return n
    raise AssertionError(f"{limit} injection points and still not done")


def _mk(slot_count: int = 8) -> Megakernel:
    return Megakernel("cpu", slot_count=slot_count, observable_slots=4, tenants=1,
                      workers=2).start()


def _many(n: int) -> tuple[np.ndarray, np.ndarray]:
    ops = np.full(n, ADD, np.uint32)
    args = np.tile(np.array([[1, OBS]], np.uint32), (n, 1))
    return ops, args


@pytest.mark.parametrize("what", ["submit", "submit_full_ring", "submit_packed", "submit_batch",
                                  "submit_many", "submit_many_in_pieces", "wait_faults",
                                  "finished", "drain"])
def test_an_interrupt_at_any_step_leaves_the_facade_consistent(what):
    mk = _mk()
    try:
        def step(n: int) -> None:
            if what == "submit":
                mk.submit(ADD, [1, OBS])
                mk.submit(NOP, tenant=1)
            elif what == "submit_full_ring":
                mk.submit_many(*_many(mk.slot_count - (mk.published - mk._retired)))
                mk.submit(ADD, [1, OBS], timeout=10)
                mk.submit(NOP, tenant=1, timeout=10)
            elif what == "submit_packed":
                mk.submit_packed([(ADD, [1, OBS]), (ADD, [1, OBS])])
            elif what == "submit_batch":
                mk.submit_batch([(ADD, [1, OBS]), (NOP, [])], tag=7)
            elif what == "submit_many":
                mk.submit_many(*_many(3))
            elif what == "submit_many_in_pieces":
                mk.submit_many(*_many(3 * mk.slot_count), timeout=10)
            else:
                ts = [mk.submit(ADD, [1, OBS]), mk.submit(NOP, tenant=1),
                      mk.submit(ADD, [1, OBS]), mk.submit(NOP, tenant=1)]
                deadline = time.monotonic() + 10
                # DONE, FAULT, or EMPTY (a FAULT already retired while making room)
                while not all(mk.backend.ring[(t % mk.slot_count) * 16] in (0, 3, 7) for t in ts):
                    assert time.monotonic() < deadline
                    time.sleep(0.0005)
                if what == "wait_faults":
                    with pytest.raises(SlotFaultError):
                        mk.wait(ts, timeout=10)
                elif what == "finished":
                    with pytest.raises(SlotFaultError):
                        mk.finished(ts)
                else:
                    mk.drain(timeout=10)
        points = _sweep(mk, step)
        assert points > 3  # the tracer did reach the facade's code
    finally:
        mk.shutdown(drain=False, timeout=10)


# ---------------------------------------------------------------------------------------------
# item 8: Ctrl-C (a hard stop) during a long CPU slot
# ---------------------------------------------------------------------------------------------
def _run_script(body: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(body)], capture_output=True,
                          text=True, timeout=timeout)


def test_a_hard_stop_during_a_long_dfa_scan_is_prompt_and_frees_nothing_in_use():
    # a 1 GiB scan (seconds) stopped 50 ms in: the worker must notice SHUTDOWN inside the
    # scan, and nothing may free the scanned buffer while a worker still reads it
    proc = _run_script("""
        import gc, time
        import numpy as np
        from vyre import Megakernel, Opcode
        mk = Megakernel("cpu", slot_count=8, observable_slots=4, workers=1).start()
        th = mk.register_buffer(np.zeros(256, np.uint32))  # one state, never accepts
        dh = mk.register_buffer(np.ones(1 << 30, np.uint8))
        t = mk.submit(Opcode.DFA_SCAN, [th, dh, 0, 0xFFFFFFFF, 0xFFFFFFFF, 1, 0])
        while mk.telemetry()["slots"].get("CLAIMED", 0) == 0:
            time.sleep(0.001)
        time.sleep(0.05)
        try:
            mk.shutdown(drain=False, timeout=3.0)  # the whole scan takes longer than that
            print("stopped", flush=True)
        except Exception as err:
            print("refused:", err, flush=True)
        del mk
        gc.collect()
        junk = np.ones(1 << 30, np.uint8)  # reuse the freed memory
        time.sleep(0.5)
        print("alive", flush=True)
    """)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert "stopped" in proc.stdout and "alive" in proc.stdout


def test_a_worker_that_cannot_be_stopped_keeps_its_memory_alive():
    # STALL ignores SHUTDOWN: the stop times out; dropping the megakernel and exiting the
    # interpreter must not free the ring, control or registered buffers under the worker
    proc = _run_script("""
        import gc, time
        import numpy as np
        from vyre import BackendError, Megakernel
        mk = Megakernel("cpu", slot_count=8, observable_slots=4, workers=1,
                        test_hooks=True).start()
        mk.register_buffer(np.ones(64 << 20, np.uint8))
        mk.submit(0x3FFFFF01, [1500])  # STALL 1.5 s
        while mk.telemetry()["slots"].get("CLAIMED", 0) == 0:
            time.sleep(0.001)
        try:
            mk.shutdown(drain=False, timeout=0.05)
        except BackendError as err:
            print("refused:", err, flush=True)
        del mk
        gc.collect()
        junk = [np.ones(8 << 20, np.uint8) for _ in range(32)]
        time.sleep(2.0)  # the stall ends: the worker finishes its slot into the ring
        print("alive", flush=True)
    """)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert "refused:" in proc.stdout and "Fix:" in proc.stdout and "alive" in proc.stdout
