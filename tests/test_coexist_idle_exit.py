"""Leaving the GPU when idle, and coming back: the host half, with stand-in kernels.

The megakernel leaves on its own after ``idle_exit_ms`` without publications (or after
``yield_ms`` resident); the next submit relaunches it. The handshake (cuda/megakernel.cu,
CudaBackend.kick): the kernel stores its exit word, fences, then reads the doorbell a last
time and runs everything below what it read; the host stores the doorbell, fences, then reads
the exit word and relaunches for tickets past the kernel's final mirror. These tests pin that
no interleaving loses or runs a ticket twice (a model of both halves, checked over every
order), and that the backend's relaunch logic does what the model assumes.
"""
from __future__ import annotations

import itertools
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from vyre.backends.cuda import backend as cb
from vyre.backends.cuda import residency as res
from vyre.errors import BackendError

R = res.RESIDENCY


pytestmark = pytest.mark.usefixtures("clean_residency")


# ------------------------------------------------------------------ the handshake, modelled
def _run_model(order, kernel_reads_first=False):
    """One interleaving of a kernel leaving and a host publishing.

    Kernel ("K" steps): E (store the exit word) and D (read the doorbell: final = what it
    read), in that order (or reversed, to show the check bites); it then runs every ticket
    below final and leaves. Host, per publication i: P_i (doorbell += 1), then H_i (read the
    exit word). A kick that saw the exit word waits for the exit and relaunches when the
    doorbell is past final; the exit word stays set until a relaunch, so the last kick decides.
    Sequentially consistent: both sides fence between their store and their load.
    Returns (how many times each ticket ran, tickets published)."""
    doorbell, exit_word, final = 0, 0, 0
    kernel = ["D", "E"] if kernel_reads_first else ["E", "D"]
    saw_exit = False
    for step in order:
        if step == "K":
            if kernel.pop(0) == "E":
                exit_word = 1
            else:
                final = doorbell
        elif step.startswith("P"):
            doorbell += 1
        else:
            saw_exit = saw_exit or bool(exit_word)
    runs = {t: 1 for t in range(final)}  # the launch that left
    if saw_exit and doorbell > final:  # the relaunch starts at final
        for t in range(final, doorbell):
            runs[t] = runs.get(t, 0) + 1
    return runs, doorbell


def _orders(publishes):
    host = []
    for i in range(publishes):
        host += [f"P{i}", f"H{i}"]
    events = ["K", "K"] + host
    seen = set()
    for perm in itertools.permutations(range(len(events))):
        order = [events[i] for i in perm]
        # program order: the kernel's two steps, and each host's P before its H, P_i before P_i+1
        ks = [i for i, e in enumerate(order) if e == "K"]
        hs = [order.index(e) for e in host]
        if hs != sorted(hs) or ks != sorted(ks):
            continue
        key = tuple(order)
        if key not in seen:
            seen.add(key)
            yield order


@pytest.mark.parametrize("publishes", [1, 2])
def test_no_interleaving_loses_or_repeats_a_ticket(publishes):
    n = 0
    for order in _orders(publishes):
        runs, published = _run_model(order)
        assert all(runs.get(t, 0) == 1 for t in range(published)), order
        n += 1
    assert n >= 6  # the orders were really enumerated


def test_the_model_catches_a_kernel_that_reads_before_it_announces():
    """The same check on the wrong order (doorbell read before the exit word store) finds
    lost tickets: the model is not vacuous."""
    lost = [o for o in _orders(1)
            if _run_model(o, kernel_reads_first=True)[0].get(0, 0) != 1]
    assert lost


# ------------------------------------------------------------------ the backend's come-back
class _Stream:
    def __init__(self):
        self.done = True

    def is_done(self):
        return self.done


def _backend(**attrs):
    """A CudaBackend with its doorbell in plain memory and the driver calls stood in for."""
    b = cb.CudaBackend.__new__(cb.CudaBackend)
    log = []
    b._log = log
    b._cuda = SimpleNamespace(Error=RuntimeError)
    b.doorbell = np.zeros(4, np.uint64)
    b._exit_words = memoryview(b.doorbell.view(np.uint32))
    b.control = np.zeros(160, np.uint32)
    b._running, b.paused, b._failed = True, False, None
    b._away, b._comeback_wanted, b._call_wanted = False, False, False
    b.idle_exits = b.relaunches = b.pauses = 0
    b._stream = _Stream()
    b._active = lambda: __import__("contextlib").nullcontext()

    def relaunch():
        log.append(("relaunch", int(b.doorbell[3])))
        b.doorbell[2] = 0
        b._away = False
        R.resident[id(b)] = b

    b._relaunch = relaunch
    for k, v in attrs.items():
        setattr(b, k, v)
    R.resident[id(b)] = b
    return b


def _leave(b, final):
    """The kernel's side: exit word, final mirror, gone."""
    b.doorbell[2] = 1
    b.doorbell[3] = final


def test_a_kick_with_the_kernel_resident_does_nothing():
    b = _backend()
    b.doorbell[0] = 5
    b.kick()
    assert b._log == [] and id(b) in R.resident


def test_a_kick_after_an_exit_that_missed_tickets_relaunches():
    b = _backend()
    b.doorbell[0] = 3
    _leave(b, final=3)
    b.doorbell[0] = 4  # published after the kernel's last doorbell read
    b.kick()
    assert b._log == [("relaunch", 3)] and b.relaunches == 1 and b.idle_exits == 1
    assert b.doorbell[2] == 0 and not b._away


def test_an_exit_that_covered_every_ticket_stays_away_until_the_next_publication():
    b = _backend()
    b.doorbell[0] = 7
    _leave(b, final=7)
    b.kick()  # its publication was seen by the last read: nothing to relaunch for
    assert b._log == [] and b._away and id(b) not in R.resident and b.idle_exits == 1
    b.kick()  # nothing new: still away, no second exit counted
    assert b._log == [] and b.idle_exits == 1
    b.doorbell[0] = 8
    b.kick()
    assert b._log == [("relaunch", 7)] and b.idle_exits == 1


def test_a_kick_waits_a_little_for_a_kernel_still_leaving(monkeypatch):
    monkeypatch.setattr(cb, "_COMEBACK_EXIT_WAIT", 10.0)
    b = _backend()
    b._stream.done = False
    b.doorbell[0] = 2
    _leave(b, final=1)
    threading.Timer(0.05, lambda: setattr(b._stream, "done", True)).start()
    b.kick()
    assert b._log == [("relaunch", 1)]


def test_a_kernel_still_draining_is_left_to_the_next_kick_not_failed(monkeypatch):
    """A long op in flight keeps a leaving kernel on the GPU: the submitter is not held for it
    and nothing fails; a later kick (or a waiter's check) relaunches once it has left."""
    monkeypatch.setattr(cb, "_COMEBACK_EXIT_WAIT", 0.02)
    b = _backend()
    b._stream.done = False
    b.doorbell[0] = 2
    _leave(b, final=1)
    b.kick()
    assert b._log == [] and b._comeback_wanted and b._failed is None and b.control[0] == 0
    b.check()  # still draining: no error, nothing relaunched
    assert b._log == [] and b._comeback_wanted
    b._stream.done = True
    b.check()
    assert b._log == [("relaunch", 1)] and not b._comeback_wanted


def test_a_kick_inside_a_quiesced_block_leaves_the_relaunch_to_its_end():
    b = _backend()
    b._pause = lambda: (b._log.append(("pause",)), setattr(b, "paused", True),
                        R.resident.pop(id(b), None))
    b._resume = lambda: (b._log.append(("resume",)), setattr(b, "paused", False))
    with res.quiesced():
        b.doorbell[0] = 2
        _leave(b, final=1)
        b.kick()  # paused by the block: its end relaunches
        assert b._log == [("pause",)]
    assert b._log == [("pause",), ("resume",)]


def test_a_kick_that_cannot_take_the_lock_is_finished_by_the_next_check(held_elsewhere,
                                                                       monkeypatch):
    monkeypatch.setattr(cb, "_COMEBACK_LOCK_WAIT", 0.01)
    b = _backend()
    b.doorbell[0] = 2
    _leave(b, final=1)
    with held_elsewhere(R.lock):
        b.kick()
        assert b._log == [] and b._comeback_wanted
    b.check()
    assert b._log == [("relaunch", 1)] and not b._comeback_wanted


def test_check_does_not_call_an_idle_exit_a_crash():
    b = _backend()
    b.doorbell[0] = 4
    _leave(b, final=4)
    b.check()  # the stream is done, no SHUTDOWN: it left on its own, not an error
    assert b._away and b._log == []


def test_a_stream_that_ended_without_exit_word_or_shutdown_is_still_an_error():
    b = _backend()
    with pytest.raises(BackendError, match="without a SHUTDOWN"):
        b.check()


@pytest.mark.parametrize("option,value", [("sm_share", 0), ("sm_share", 1.5),
                                          ("idle_exit_ms", -1), ("yield_ms", 1e9)])
def test_residency_options_are_checked_before_any_driver_call(option, value):
    from vyre.errors import InvalidValueError
    with pytest.raises(InvalidValueError, match=option) as ei:
        cb.CudaBackend(slot_count=64, observable_slots=8, debug_records=8, io_slots=8,
                       **{option: value})
    assert ei.value.fix


def test_a_relaunch_left_to_a_quiesced_block_is_made_at_its_end(monkeypatch):
    """The kernel is away (not resident, so the block does not pause it); a submitter of
    another thread cannot take the lock the block holds: the block's end relaunches it."""
    monkeypatch.setattr(cb, "_COMEBACK_LOCK_WAIT", 0.01)
    b = _backend()
    b.doorbell[0] = 3
    _leave(b, final=3)
    b.kick()
    assert b._away and id(b) not in R.resident
    with res.quiesced():
        b.doorbell[0] = 4
        th = threading.Thread(target=b.kick)
        th.start()
        th.join(5)
        assert b._log == [] and b._comeback_wanted
    assert b._log == [("relaunch", 3)] and not R.wanted
