"""The CUDA backend's pause bookkeeping (quiesced, deferred frees), with stand-in kernels.

What needs a GPU (the kernel draining and the relaunch) is in test_cuda_memory.py; this pins
the host-side rules everywhere: every resident kernel is paused for the block and relaunched
after it, nested blocks pause once, a failed pause or relaunch leaves nothing paused behind,
and frees never run while a kernel is resident.
"""
from __future__ import annotations

import pytest

from vyre.backends.cuda import residency as res
from vyre.errors import BackendError


class StandIn:
    def __init__(self, log, name, fail_pause=False, fail_resume=False):
        self.log, self.name = log, name
        self.fail_pause, self.fail_resume = fail_pause, fail_resume

    def _pause(self):
        if self.fail_pause:
            raise BackendError(f"{self.name} cannot pause", "none")
        self.log.append(("pause", self.name))
        R.resident.pop(id(self), None)

    def _resume(self):
        self.log.append(("resume", self.name))
        if self.fail_resume:
            raise RuntimeError(f"{self.name} cannot relaunch")
        R.resident[id(self)] = self


class Alloc:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def free(self):
        self.log.append(("free", self.name))


R = res.RESIDENCY


pytestmark = pytest.mark.usefixtures("clean_residency")


def resident(*kernels):
    for k in kernels:
        R.resident[id(k)] = k


def test_every_resident_kernel_is_paused_once_and_relaunched():
    log = []
    a, b = StandIn(log, "a"), StandIn(log, "b")
    resident(a, b)
    with res.quiesced():
        assert not R.resident
        with res.quiesced():  # nested: no second pause
            pass
        assert log == [("pause", "a"), ("pause", "b")]
    assert log[2:] == [("resume", "a"), ("resume", "b")]
    assert set(R.resident) == {id(a), id(b)}


def test_a_failed_pause_relaunches_those_already_paused():
    log = []
    a, b = StandIn(log, "a"), StandIn(log, "b", fail_pause=True)
    resident(a, b)
    with pytest.raises(BackendError, match="b cannot pause"):
        with res.quiesced():
            pytest.fail("the block must not run")
    assert log == [("pause", "a"), ("resume", "a")]
    assert R.depth == 0


def test_a_failed_relaunch_still_relaunches_the_others_and_raises():
    log = []
    a, b = StandIn(log, "a", fail_resume=True), StandIn(log, "b")
    resident(a, b)
    with pytest.raises(RuntimeError, match="a cannot relaunch"):
        with res.quiesced():
            pass
    assert ("resume", "b") in log and not R.paused


def test_frees_wait_while_a_kernel_is_resident_and_run_inside_a_pause():
    log = []
    k = StandIn(log, "k")
    resident(k)
    R.release([Alloc(log, "x")])  # a finalizer's release: parked, the kernel is resident
    assert ("free", "x") not in log
    R.release([Alloc(log, "y")], now=True)  # an explicit close: pause, free, relaunch
    assert log == [("pause", "k"), ("free", "y"), ("free", "x"), ("resume", "k")]


def test_frees_run_at_once_when_no_kernel_is_resident():
    log = []
    R.release([Alloc(log, "z")])
    assert log == [("free", "z")]
