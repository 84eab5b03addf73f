"""The facade's watchdog: a slot that never finishes while the backend stays alive.

The CPU test-hooks build has an opcode that spins until SHUTDOWN without reporting progress;
with two workers the idle one keeps HEARTBEAT moving, so only the progress check can end the
wait. Timeouts here are generous: the test asserts which branch fired, not how fast.
"""
import time

import pytest

from vyre import BackendError, Megakernel, Opcode
from vyre.backends import _cpu
from vyre.protocol import OBSERVABLE_BASE

SPIN_OP = _cpu.TEST_OP_SPIN  # the test-hooks build's "never finishes" opcode


def test_stall_is_reported_while_the_heartbeat_still_moves():
    mk = Megakernel("cpu", slot_count=8, workers=2, test_hooks=True,
                    stall_timeout=0.5, heartbeat_timeout=120).start()
    try:
        stuck = mk.submit(SPIN_OP)
        beat = mk.heartbeat
        with pytest.raises(BackendError) as info:
            mk.wait(stuck)  # no timeout: only the watchdog can end this wait
        assert mk.heartbeat != beat, "precondition: the idle worker kept beating"
        msg = str(info.value)
        assert "no progress" in msg and f"ticket {stuck}" in msg and "CLAIMED" in msg
        assert "stall_timeout" in info.value.fix
        # the other worker still executes (tickets retire in order, so poll the result)
        mk.submit(Opcode.ATOMIC_ADD, [3, OBSERVABLE_BASE])
        deadline = time.monotonic() + 60
        while mk.observables[0] != 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert mk.observables[0] == 3
    finally:
        mk.shutdown(drain=False, timeout=10)
