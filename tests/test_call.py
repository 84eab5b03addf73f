"""The call path (docs/call.md): mk.call / call_words / acall / call_future, ticket futures.

Cross-backend tests take the ``backend`` fixture (CUDA ones are marked gpu). Timeouts and the
watchdog use the CPU test-hooks build (an op that stalls, an op that spins until SHUTDOWN).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import operator
import threading
import time

import numpy as np
import pytest

import vyre
from vyre import Opcode, _call, _wire
from vyre.backends._cpu import TEST_OP_SPIN, TEST_OP_STALL
from vyre.errors import (
    ArgumentError,
    BackendError,
    InvalidTypeError,
    InvalidValueError,
    SlotFaultError,
    WaitTimeoutError,
)
from vyre.protocol import FaultReason

OBS = vyre.protocol.OBSERVABLE_BASE
ADD, STORE, LOAD, CAS = (int(Opcode.ATOMIC_ADD), int(Opcode.STORE_U32), int(Opcode.LOAD_U32),
                         int(Opcode.COMPARE_SWAP))
# per-op result words (the user-op contract: ATOMIC_ADD returns the new value, ...) are written
# by the interpreter builds that define them
HAS_RESULTS = "SLOT_RESULT" in _wire.ABI
needs_results = pytest.mark.skipif(not HAS_RESULTS, reason="interpreter without per-op results")


def _mk(backend="cpu", **kw):
    kw.setdefault("slot_count", 64)
    kw.setdefault("observable_slots", 16)
    if backend == "cpu":
        kw.setdefault("workers", 1)
    return vyre.Megakernel(backend=backend, **kw)


# ---------------------------------------------------------------- record codec
def test_request_roundtrip_carries_full_opcode_tenant_and_twelve_args():
    args = tuple(range(0xA0000000, 0xA0000000 + 12))
    words = _call.encode_request(0x1234, 0xDEADBEEF, 0x8765_4321, args)
    assert len(words) == 16
    # every piece starts with the sequence number in its low 16 bits
    assert [words[4 * k] & 0xFFFF for k in range(4)] == [0x1234] * 4
    assert _call.decode_request(words) == (0x1234, 0xDEADBEEF, 0x87654321, args)


def test_a_torn_request_decodes_as_nothing():
    old = _call.encode_request(7, ADD, 0, (1, OBS))
    new = _call.encode_request(8, STORE, 0, (2, OBS + 1))
    for k in range(4):  # piece k from the newer request, the rest from the older
        torn = old[:4 * k] + new[4 * k:4 * k + 4] + old[4 * k + 4:]
        assert _call.decode_request(torn)[0] == 0
    assert _call.decode_request([0] * 16)[0] == 0  # a zeroed lane holds no request
    assert _call.decode_request(new)[0] == 8


def test_codec_refuses_bad_words():
    with pytest.raises(InvalidValueError):
        _call.encode_request(1, 0, 0, list(range(13)))
    with pytest.raises(InvalidValueError):
        _call.decode_request([0] * 15)
    with pytest.raises(InvalidValueError):
        _call.encode_request(1, 0, 0, (-1,))


def test_port_reads_answers_by_sequence_and_refuses_a_stale_one():
    area = np.zeros(2 * 32, np.uint32)
    port = _call.CallPort(area, 2)
    lane = port.take()
    port.issue(lane, ADD, (1, OBS))
    seq = _call.decode_request(area[lane * 32:lane * 32 + 16].tolist())[0]
    assert seq == 1
    _call.put_answer(area, lane, seq + 5, 3, (9, 9, 9, 9))  # someone else's answer: not ours
    assert port.wait_any(1 << lane, 0.001) == []
    _call.put_answer(area, lane, seq, 3, (42, 1, 2, 3))
    assert port.wait_any(1 << lane, 0.001) == [(lane, 3, (42, 1, 2, 3))]
    port.give(lane)
    assert port.free_lanes == 2


def test_port_wakes_the_server_only_while_its_exit_word_is_set():
    # one lane whose answer is stored before each call: the call returns at once
    area = np.zeros(32, np.uint32)
    port = _call.CallPort(area, 1)
    exit_words = np.zeros(4, np.uint32)
    woken = []
    port.wake_when(exit_words, 2, lambda: woken.append(int(exit_words[2])))
    for seq, word in ((1, 0), (2, 5), (3, 0), (4, 1)):
        exit_words[2] = word
        _call.put_answer(area, 0, seq, 3, (seq * 10, 0, 0, 0))
        assert port.call(ADD, (1, OBS), 0, 1.0) == seq * 10
    assert woken == [5, 1]  # once per call made while the word was set, never otherwise


def test_port_wake_when_refuses_bad_arguments():
    port = _call.CallPort(np.zeros(32, np.uint32), 1)
    with pytest.raises(InvalidValueError) as err:
        port.wake_when(np.zeros(4, np.uint32), 4, lambda: None)
    assert "Fix:" in str(err.value)
    with pytest.raises(InvalidTypeError):
        port.wake_when(np.zeros(4, np.uint32), 0, None)
    with pytest.raises((TypeError, ValueError)):  # not a uint32 buffer
        port.wake_when(np.zeros(4, np.float64), 0, lambda: None)


def test_port_arguments_are_checked():
    area = np.zeros(32, np.uint32)
    with pytest.raises(InvalidValueError):
        _call.CallPort(area, 2)  # area too small
    with pytest.raises(InvalidValueError):
        _call.CallPort(np.zeros(64, np.uint32), 0)
    with pytest.raises(InvalidValueError):
        _call.CallPort(np.zeros(33, np.uint32)[1:], 1)  # 4-byte aligned only
    port = _call.CallPort(area, 1)
    with pytest.raises(InvalidValueError):
        port.give(3)


# ---------------------------------------------------------------- calls, both backends
def test_call_runs_builtins_and_their_effects_land(backend):
    with _mk(backend) as mk:
        assert mk.call(Opcode.NOP) == 0
        mk.call(ADD, (5, OBS))
        mk.call(ADD, (7, OBS))
        assert int(mk.observables[0]) == 12
        mk.call(STORE, (0xCAFEBABE, OBS + 3))
        assert int(mk.observables[3]) == 0xCAFEBABE
        mk.call(LOAD, (OBS + 3, 4))  # LOAD_U32: obs[a1] = control[a0]
        assert int(mk.observables[4]) == 0xCAFEBABE
        # the ring is untouched and still works beside the calls
        assert mk.published == 0
        t = mk.submit(ADD, (1, OBS))
        mk.wait(t)
        assert int(mk.observables[0]) == 13


@needs_results
def test_call_returns_the_ops_result_words(backend):
    with _mk(backend) as mk:
        assert mk.call(ADD, (5, OBS)) == 5
        assert mk.call(ADD, (7, OBS)) == 12
        mk.call(STORE, (99, OBS + 1))
        assert mk.call(LOAD, (OBS + 1, 2)) == 99
        assert mk.call(CAS, (OBS + 1, 99, 100)) == 99  # the value seen
        assert int(mk.observables[1]) == 100
        words = mk.call_words(ADD, (1, OBS))
        assert words == (13, 0, 0, 0)


@needs_results
def test_each_call_answers_its_own_result_words(backend):
    """A call's words are what its op produced, never a previous call's on the same lane (the
    server answers from the words the interpreter stored, so they must be cleared per call)."""
    from vyre import wire
    with _mk(backend, call_lanes=1) as mk:
        assert mk.call_words(ADD, (0xFFFFFFFF, OBS)) == (0xFFFFFFFF, 0, 0, 0)
        assert mk.call_words(Opcode.NOP) == (0, 0, 0, 0)
        # a packed slot answers with its last inner op's words
        packed = wire.pack_ops([(ADD, (2, OBS + 1)), (ADD, (3, OBS + 1))])
        assert mk.call_words(Opcode.PACKED_SLOT, packed) == (5, 0, 0, 0)
        assert mk.call_words(ADD, (1, OBS)) == (0, 0, 0, 0)  # 0xFFFFFFFF + 1 wraps to 0
        with pytest.raises(SlotFaultError) as info:
            mk.call(ADD, (1, OBS), tenant=7)
        assert info.value.reason is FaultReason.UNAUTHORIZED
        assert mk.call_words(Opcode.NOP) == (0, 0, 0, 0)


def test_unauthorized_tenant_faults_with_slot_fault_error(backend):
    with _mk(backend, tenants=2) as mk:
        with pytest.raises(SlotFaultError) as info:
            mk.call(ADD, (1, OBS), tenant=7)
        assert int(mk.observables[0]) == 0  # nothing ran
        if HAS_RESULTS:
            assert info.value.reason == _wire.ABI["FAULT_UNAUTHORIZED"]
        assert "Fix:" in str(info.value)
        mk.call(ADD, (1, OBS), tenant=1)  # tenant 1 is authorized
        assert int(mk.observables[0]) == 1


def test_protected_word_write_by_a_tenant_faults(backend):
    with _mk(backend, tenants=2) as mk:
        before = int(mk.control[5])
        with pytest.raises(SlotFaultError) as info:
            mk.call(STORE, (0xFFFF, 5), tenant=1)
        assert int(mk.control[5]) == before
        if HAS_RESULTS:
            assert info.value.reason == _wire.ABI["FAULT_PROTECTED"]
            assert info.value.details[1] == 5
        mk.call(STORE, (3, OBS + 2), tenant=1)  # observables are the tenant's to write
        assert int(mk.observables[2]) == 3


@needs_results
def test_a_call_fault_names_its_reason_as_the_ring_does():
    # one table of reasons (vyre.protocol.FaultReason) for the call path and the ring
    with _mk(tenants=2) as mk:
        for op, args, tenant in ((STORE, (0xFFFF, 5), 1), (ADD, (1, OBS), 7)):
            with pytest.raises(SlotFaultError) as by_call:
                mk.call(op, args, tenant=tenant)
            by_future = mk.call_future(op, args, tenant=tenant).exception(timeout=10)
            t = mk.submit(op, args, tenant=tenant)
            with pytest.raises(SlotFaultError) as by_result:
                mk.result(t, timeout=10)
            with pytest.raises(SlotFaultError) as by_wait:
                mk.wait(t, timeout=10)
            reason = by_result.value.reason
            assert type(reason) is FaultReason and reason != FaultReason.NONE
            text = f": {reason.name} (details "
            assert text in str(by_wait.value) and text in str(by_result.value)
            for err in (by_call.value, by_future):
                assert isinstance(err, SlotFaultError) and "Fix:" in str(err)
                assert type(err.reason) is FaultReason and err.reason == reason
                assert (err.details, err.words) == (by_result.value.details,
                                                    by_result.value.words)
                assert text in str(err)
        with pytest.raises(SlotFaultError) as info:  # the call path's own reason, same table
            mk.call(Opcode.LOAD_MISS, (0, 16, 1, 0, 0))
        assert info.value.reason is FaultReason.NOT_CALLABLE
        assert ": NOT_CALLABLE (details " in str(info.value)


def test_load_miss_is_not_callable(backend):
    with _mk(backend) as mk:
        with pytest.raises(SlotFaultError) as info:
            mk.call(Opcode.LOAD_MISS, (0, 16, 1, 0, 0))
        assert info.value.reason == _call.ABI["FAULT_NOT_CALLABLE"]
        assert info.value.details[0] == int(Opcode.LOAD_MISS)
        assert "NOT_CALLABLE" in str(info.value)
        assert mk.call(Opcode.NOP) == 0  # the lane was given back


def test_call_arguments_are_checked_before_anything_is_sent():
    with _mk() as mk:
        with pytest.raises(InvalidValueError):
            mk.call(ADD, list(range(13)))
        with pytest.raises(InvalidValueError):
            mk.call(ADD, (1 << 32, OBS))
        with pytest.raises(InvalidTypeError):
            mk.call(ADD, (1.5, OBS))
        with pytest.raises(InvalidTypeError):
            mk.call(ADD, "ab")
        with pytest.raises(ArgumentError):
            mk.call(ADD, (1, OBS), tenant=-1)
        with pytest.raises(InvalidValueError, match="register_op"):  # as submit says it
            mk.call("no such op")
        with pytest.raises(InvalidTypeError):
            mk.call(object())
        assert mk._calls.port.free_lanes == mk.backend.call_lanes  # no lane leaked
        assert int(mk.observables[0]) == 0


class _Opaque:
    def __repr__(self) -> str:
        return "_Opaque()"


# ugly values of one u32 word: negative, past u32, floats, None, numpy scalars of each kind, a
# bool (an int to both paths), strings and objects
_BAD_WORDS = [-1, 1 << 32, (1 << 64) + 1, 1.5, 2.0, None, "3", b"3", _Opaque(), True,
              np.int64(-1), np.uint64(1 << 32), np.float64(1.0), np.float32(2.0), np.uint8(7),
              np.int32(5), np.bool_(True), np.array(3), np.array([3])]


def _argument_outcome(fn):
    """("accepted",) when ``fn`` raised no argument error (an op that faulted was accepted),
    else the type of the argument error, its message and its Fix hint."""
    try:
        fn()
    except ArgumentError as err:
        return (type(err), err.message, err.fix)
    except SlotFaultError:
        pass
    return ("accepted",)


def _is_word(value):
    try:
        return 0 <= operator.index(value) <= 0xFFFFFFFF
    except TypeError:
        return False


@pytest.mark.parametrize("value", _BAD_WORDS, ids=repr)
def test_call_refuses_an_argument_word_as_submit_does(value):
    # one parser for the words of a call and of a slot: same error type, message and Fix
    with _mk(tenants=2) as mk:
        for args in ((value,), (0, value), [0, 1, value]):
            by_call = _argument_outcome(lambda a=args: mk.call(Opcode.NOP, a))
            by_submit = _argument_outcome(lambda a=args: mk.submit(Opcode.NOP, a))
            assert by_call == by_submit, args
            assert (by_call == ("accepted",)) == _is_word(value)
            if by_call != ("accepted",):
                assert issubclass(by_call[0], (InvalidTypeError, InvalidValueError))
        by_call = _argument_outcome(lambda: mk.call(Opcode.NOP, (), tenant=value))
        by_submit = _argument_outcome(lambda: mk.submit(Opcode.NOP, (), tenant=value))
        # the parameter is `tenant` here, `tenant_id` in the wire API submit goes through
        assert by_call[0] == by_submit[0]
        assert by_call[1:] == tuple(s.replace("tenant_id", "tenant") for s in by_submit[1:])
        if not _is_word(value):  # (a word is an opcode that would run)
            by_call = _argument_outcome(lambda: mk.call(value))
            by_submit = _argument_outcome(lambda: mk.submit(value))
            assert by_call[0] == by_submit[0] and by_call[0] != "accepted"
            assert by_call[2]  # a Fix hint
        mk.drain(timeout=10)
        assert mk._calls.port.free_lanes == mk.backend.call_lanes  # no lane leaked
        assert int(mk.observables[0]) == 0


def test_call_refuses_bad_argument_sequences_as_submit_does():
    makers = [lambda: list(range(13)), lambda: tuple(range(13)), lambda: "ab", lambda: b"ab",
              lambda: 5, lambda: 1.5, lambda: {1: 2}, lambda: {1, 2}, lambda: None,
              lambda: np.arange(3, dtype=np.uint32), lambda: np.arange(13, dtype=np.uint32),
              lambda: np.array([-1]), lambda: iter([1, 2]), lambda: (x for x in (-1,))]
    with _mk() as mk:
        for make in makers:
            by_call = _argument_outcome(lambda m=make: mk.call(Opcode.NOP, m()))
            by_submit = _argument_outcome(lambda m=make: mk.submit(Opcode.NOP, m()))
            assert by_call == by_submit, make()
        mk.drain(timeout=10)
        assert mk._calls.port.free_lanes == mk.backend.call_lanes


def test_call_outside_start_and_shutdown_raises():
    mk = _mk()
    with pytest.raises(BackendError, match="not running"):
        mk.call(Opcode.NOP)
    mk.start()
    assert mk.call(Opcode.NOP) == 0
    mk.shutdown()
    with pytest.raises(BackendError, match="not running"):
        mk.call(Opcode.NOP)


def test_no_call_path_when_built_without_lanes():
    with _mk(call_lanes=0) as mk:
        with pytest.raises(BackendError, match="call_lanes"):
            mk.call(Opcode.NOP)
        t = mk.submit(ADD, (1, OBS))  # the ring alone still works
        mk.wait(t)


def test_bad_call_lanes_option():
    with pytest.raises(InvalidValueError, match="Fix:"):
        _mk(call_lanes=33)


def test_sequence_numbers_wrap_without_using_zero():
    # one lane: every call takes the next 16-bit sequence number; past 0xFFFF it goes on at 1
    with _mk(call_lanes=1) as mk:
        area = mk.backend.call_area
        n = 0x10000 + 3
        for _ in range(n):
            mk.call(ADD, (1, OBS))
        assert int(mk.observables[0]) == n
        assert int(area[16]) == n % 0xFFFF  # the answer's sequence: 1..0xFFFF, then 1 again


# ---------------------------------------------------------------- user ops (vyre.ops)
USER_ADD = r"""
VYRE_OP(call_add) {              /* lane 0: obs[a0] += a1; returns the new value and a2 */
    if (op->lane != 0) return;
    vyre_op_result(op, 0, vyre_obs_add(op, op->args[0], op->args[1]) + op->args[1]);
    vyre_op_result(op, 1, op->args[2]);
}
"""
USER_RAISE = r"""
VYRE_OP(call_raise) {            /* faults with code a0 */
    if (op->lane == 0) vyre_op_fault(op, op->args[0]);
}
"""
USER_CTL_ADD = r"""
VYRE_OP(call_ctl_add) {          /* control word a0 += a1 (handle 0); returns the new value */
    if (op->lane == 0)
        vyre_op_result(op, 0,
                       vyre_atomic_add_u32(op, 0, op->args[0], op->args[1]) + op->args[1]);
}
"""
needs_ops = pytest.mark.skipif(not hasattr(vyre.Megakernel, "register_op"),
                               reason="no user-op registry in this build")


@needs_ops
def test_call_runs_a_registered_user_op_by_handle_name_and_opcode():
    with _mk() as mk:
        op = mk.register_op("call_add", USER_ADD)
        assert mk.call_words(op, (2, 5, 77)) == (5, 77, 0, 0)
        assert mk.call("call_add", (2, 5)) == 10
        assert mk.call(op.opcode, (2, 5)) == 15
        assert int(mk.observables[2]) == 15

        async def main():
            return await asyncio.gather(*[mk.acall(op, (2, 1)) for _ in range(50)])
        assert sorted(asyncio.run(main())) == list(range(16, 66))


@needs_ops
def test_user_op_faults_come_back_with_their_reason():
    with _mk(tenants=2) as mk:
        mk.register_op("call_raise", USER_RAISE)
        with pytest.raises(SlotFaultError) as info:
            mk.call("call_raise", (1234,))
        assert info.value.reason == _wire.ABI["FAULT_RAISED"]
        assert info.value.details[0] == 1234
        with pytest.raises(SlotFaultError) as info:
            mk.call(0x3FFF0000)  # a user opcode no registered op handles
        assert info.value.reason == _wire.ABI["FAULT_UNKNOWN_OP"]
        mk.register_op("call_ctl_add", USER_CTL_ADD)
        before = int(mk.control[5])
        with pytest.raises(SlotFaultError) as info:  # a tenant may not write a header word
            mk.call("call_ctl_add", (5, 1), tenant=1)
        assert info.value.reason == _wire.ABI["FAULT_PROTECTED"]
        assert int(mk.control[5]) == before
        assert mk.call("call_ctl_add", (OBS + 1, 4), tenant=1) == 4  # an observable: allowed


USER_LANES = r"""
VYRE_OP(call_lanes) {            /* every lane: obs[a0] += 1; lane 0 returns the lane count */
    vyre_obs_add(op, op->args[0], 1);
    if (op->lane == 0) vyre_op_result(op, 0, op->lanes);
}
"""


@needs_ops
def test_user_ops_by_call_on_every_backend(backend):
    # one build with all the ops (a GPU build is an nvcc run): results, every lane of an op
    # run once (on the GPU the call warp runs an op's lanes on its 32 threads), faults with
    # their reasons, and calls from several threads on several lanes
    with _mk(backend, tenants=2, call_lanes=4) as mk:
        add, lanes, boom, ctl = mk.register_ops([
            vyre.ops.Op("call_add", USER_ADD), vyre.ops.Op("call_lanes", USER_LANES),
            vyre.ops.Op("call_raise", USER_RAISE), vyre.ops.Op("call_ctl_add", USER_CTL_ADD)])
        assert mk.call_words(add, (2, 5, 77)) == (5, 77, 0, 0)
        assert mk.call(lanes, (3,)) == 32
        assert int(mk.observables[3]) == 32
        with pytest.raises(SlotFaultError) as info:
            mk.call(boom, (1234,))
        assert (info.value.reason, info.value.details[0]) == (_wire.ABI["FAULT_RAISED"], 1234)
        with pytest.raises(SlotFaultError) as info:
            mk.call(ctl, (5, 1), tenant=1)
        assert info.value.reason == _wire.ABI["FAULT_PROTECTED"]
        with pytest.raises(SlotFaultError) as info:
            mk.call(add, (2, 1), tenant=7)
        assert info.value.reason == _wire.ABI["FAULT_UNAUTHORIZED"]
        got: list[int] = []

        def caller() -> None:
            got.extend(mk.call(add, (4, 1)) for _ in range(100))
        ts = [threading.Thread(target=caller) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert sorted(got) == list(range(1, 401))  # every new value exactly once
        assert int(mk.observables[4]) == 400


USER_HIGH_ARGS = r"""
VYRE_OP(call_high_args) {        /* lane 0 returns args 8..11, the words results reuse */
    if (op->lane != 0) return;
    for (uint32_t i = 0; i < 4; ++i) vyre_op_result(op, i, op->args[8 + i]);
}
"""


@needs_ops
def test_a_call_hands_the_op_all_twelve_args(backend):
    # a request carries 12 args; the op must see args 8..11 as on the ring (they share slot
    # words 12..15 with the results, which start at 0 for what the op does not write)
    with _mk(backend) as mk:
        high, add = mk.register_ops([vyre.ops.Op("call_high_args", USER_HIGH_ARGS),
                                     vyre.ops.Op("call_add", USER_ADD)])
        assert mk.call_words(high, tuple(range(1, 13))) == (9, 10, 11, 12)
        assert mk.call_words(high, (1, 2)) == (0, 0, 0, 0)
        # an op that writes two result words: the other two read 0, not args 10 and 11
        assert mk.call_words(add, (2, 5, 77, 0, 0, 0, 0, 0, 8, 9, 10, 11)) == (5, 77, 0, 0)


# ---------------------------------------------------------------- timeouts and the watchdog
def test_timeout_then_the_abandoned_lane_is_reused_once_answered():
    with _mk(call_lanes=1, test_hooks=True, stall_timeout=30) as mk:
        with pytest.raises(WaitTimeoutError):
            mk.call(TEST_OP_STALL, (300,), timeout=0.02)  # stalls 300 ms
        port = mk._calls.port
        assert port.free_lanes == 0  # the only lane waits for that answer
        t0 = time.monotonic()
        mk.call(ADD, (1, OBS))  # waits for the lane, then runs
        assert time.monotonic() - t0 > 0.1
        assert int(mk.observables[0]) == 1
        assert port.abandoned_lanes == 0 and port.free_lanes == 1


def test_no_free_lane_times_out():
    with _mk(call_lanes=1, test_hooks=True) as mk:
        with pytest.raises(WaitTimeoutError):
            mk.call(TEST_OP_STALL, (300,), timeout=0.01)
        with pytest.raises(WaitTimeoutError, match="no free call lane"):
            mk.call(Opcode.NOP, timeout=0.01)


def test_calls_hand_the_port_one_watchdog_factory_and_each_wait_a_watch_of_its_own():
    with _mk() as mk:
        path = mk._callpath()
        real, factories = path.port, []

        class Spy:
            def __getattr__(self, name):
                return getattr(real, name)

            def call(self, *args):
                factories.append(args[4])  # (opcode, args, tenant, timeout, watch, ...)
                return real.call(*args)

        path.port = Spy()
        for _ in range(3):
            mk.call(ADD, (1, OBS))
        mk.call_words(ADD, (1, OBS), timeout=5)
        assert int(mk.observables[0]) == 4
        assert len(factories) == 4 and all(f is factories[0] for f in factories)
        first, second = factories[0](), factories[0]()
        assert first is not second and first.mk is mk and second.mk is mk
        first()  # a running megakernel passes the watchdog


def test_watchdog_ends_a_call_that_never_finishes():
    mk = _mk(test_hooks=True, stall_timeout=0.2)
    mk.start()
    try:
        with pytest.raises(BackendError, match="not answered"):
            mk.call(TEST_OP_SPIN)
    finally:
        mk.shutdown(drain=False, timeout=5)  # SHUTDOWN ends the spinning op


def test_watchdog_sees_shutdown_written_under_a_waiting_call():
    mk = _mk(test_hooks=True, stall_timeout=30)
    mk.start()
    try:
        threading.Timer(0.05, lambda: mk.control.__setitem__(0, 1)).start()
        with pytest.raises(BackendError, match="SHUTDOWN"):
            mk.call(TEST_OP_STALL, (1000,))
    finally:
        mk.shutdown(drain=False, timeout=5)


# ---------------------------------------------------------------- threads
@pytest.mark.parametrize("lanes", [1, 2, 8])
def test_many_threads_calling_at_once(lanes, backend):
    threads, per = 8, 300
    with _mk(backend, call_lanes=lanes) as mk:
        errors = []

        def worker(i):
            try:
                for _ in range(per):
                    mk.call(ADD, (1, OBS))
                    mk.call(ADD, (i + 1, OBS + 1 + i))
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert not errors
        assert int(mk.observables[0]) == threads * per
        assert [int(mk.observables[1 + i]) for i in range(threads)] == \
            [(i + 1) * per for i in range(threads)]
        assert mk._calls.port.free_lanes == lanes


# ---------------------------------------------------------------- asyncio and futures
def test_ten_thousand_concurrent_acalls_from_one_loop():
    n = 10_000
    with _mk(slot_count=64) as mk:
        async def main():
            return await asyncio.gather(*[mk.acall(ADD, (1, OBS)) for _ in range(n)])

        results = asyncio.run(main())
        assert len(results) == n
        assert int(mk.observables[0]) == n
        if HAS_RESULTS:  # every new value exactly once
            assert sorted(results) == list(range(1, n + 1))
        assert threading.active_count() < 20  # one poller, not a thread per call


def test_acall_faults_and_timeouts_arrive_as_exceptions():
    with _mk(tenants=1, test_hooks=True, call_lanes=2, stall_timeout=30) as mk:
        async def main():
            ok = mk.acall(ADD, (2, OBS))
            bad = mk.acall(ADD, (1, OBS), tenant=9)
            slow = mk.acall(TEST_OP_STALL, (300,), timeout=0.02)
            return await asyncio.gather(ok, bad, slow, return_exceptions=True)

        ok, bad, slow = asyncio.run(main())
        assert isinstance(bad, SlotFaultError)
        assert isinstance(slow, WaitTimeoutError)
        assert not isinstance(ok, BaseException)
        assert int(mk.observables[0]) == 2


def test_acall_argument_errors_raise_in_the_caller():
    with _mk() as mk:
        async def main():
            with pytest.raises(InvalidValueError):
                await mk.acall(ADD, list(range(13)))
        asyncio.run(main())


def test_cancelled_acall_does_not_break_the_others():
    with _mk(call_lanes=1, test_hooks=True, stall_timeout=30) as mk:
        async def main():
            slow = asyncio.ensure_future(mk.acall(TEST_OP_STALL, (100,)))
            queued = [asyncio.ensure_future(mk.acall(ADD, (1, OBS))) for _ in range(5)]
            await asyncio.sleep(0.01)
            queued[0].cancel()
            await slow
            return await asyncio.gather(*queued[1:])

        asyncio.run(main())
        assert int(mk.observables[0]) in (4, 5)  # the cancelled one may have been sent already


def test_call_future_is_a_concurrent_future():
    with _mk() as mk:
        futs = [mk.call_future(ADD, (1, OBS)) for _ in range(100)]
        assert all(isinstance(f, concurrent.futures.Future) for f in futs)
        concurrent.futures.wait(futs, timeout=30)
        assert all(f.exception() is None for f in futs)
        assert int(mk.observables[0]) == 100


def test_ticket_future_and_wait_async(backend):
    with _mk(backend) as mk:
        t = mk.submit(ADD, (1, OBS))
        assert mk.future(t).result(timeout=10) is None
        r = mk.submit_many(np.full(10, ADD, np.uint32),
                           np.tile(np.array([[1, OBS]], np.uint32), (10, 1)))
        asyncio.run(mk.wait_async(r, timeout=10))
        assert int(mk.observables[0]) == 11
        bad = mk.submit(ADD, (1, OBS), tenant=5)
        with pytest.raises(SlotFaultError):
            mk.future(bad).result(timeout=10)

        async def awaited():
            await mk.wait_async(bad)
        with pytest.raises(SlotFaultError):
            asyncio.run(awaited())
        with pytest.raises(ValueError):
            mk.future(10_000)  # never published: raised at once, in the caller


def test_ticket_future_times_out():
    with _mk(test_hooks=True, stall_timeout=30) as mk:
        t = mk.submit(TEST_OP_STALL, (300,))
        with pytest.raises(WaitTimeoutError):
            mk.future(t, timeout=0.02).result(timeout=10)
        mk.wait(t)


def test_shutdown_fails_pending_async_calls():
    mk = _mk(call_lanes=1, test_hooks=True, stall_timeout=30)
    mk.start()
    futs = [mk.call_future(TEST_OP_STALL, (200,))] + [mk.call_future(Opcode.NOP) for _ in range(3)]
    time.sleep(0.02)
    mk.shutdown(drain=False, timeout=5)
    for f in futs[1:]:
        with pytest.raises(BackendError):
            f.result(timeout=10)


def test_answer_pieces_are_never_seen_half_written():
    # a writer stores answers alternating between two contents while a reader polls with the
    # GIL released: each 16-byte piece must read whole (status with its r0 and r1; r2 with r3)
    area = np.zeros(32, np.uint32)
    port = _call.CallPort(area, 1)
    lane = port.take()
    port.issue(lane, 0)  # the port now expects answers with sequence number 1
    stop = threading.Event()

    def writer():
        k = 0
        while not stop.is_set():
            for _ in range(1000):
                k ^= 1
                v = 0x11111111 if k else 0x22222222
                _call.put_answer(area, lane, 1, 3 if k else 7, (v, v, v ^ 0xFF, v ^ 0xFF))

    th = threading.Thread(target=writer)
    th.start()
    torn = []
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and not torn:
            for _, status, (r0, r1, r2, r3) in port.wait_any(1 << lane, 0.0005):
                if r0 != r1 or r2 != r3 or (status == 3) != (r0 == 0x11111111):
                    torn.append((status, r0, r1, r2, r3))
    finally:
        stop.set()
        th.join(10)
    assert not torn, torn[:3]
