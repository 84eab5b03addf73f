"""Execution semantics through the facade, on every backend present (spec §3-§9).

Each test states the SPEC rule it pins. The same file runs on the CPU backend in CI and on
the CUDA backend on a GPU machine; test_cross_backend.py checks the two agree bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest

from vyre import InvalidValueError, Megakernel, SlotFaultError
from vyre.protocol import Opcode

OBS = 160  # control word of obs[0]
ALL = 0xFFFFFFFF


def make(backend: str, **kw) -> Megakernel:
    kw.setdefault("slot_count", 64)
    kw.setdefault("observable_slots", 256)
    kw.setdefault("workers", 2 if backend == "cpu" else None)
    return Megakernel(backend=backend, **kw).start()


def quiet_control(mk: Megakernel) -> np.ndarray:
    """Control words minus those that move by themselves (DONE_COUNT, metrics, HEARTBEAT)."""
    c = mk.control.copy()
    c[1] = 0
    c[96:128] = 0
    c[143] = 0
    return c


def run(mk: Megakernel, opcode: int, args=(), tenant: int = 0) -> None:
    mk.wait(mk.submit(opcode, args, tenant=tenant), timeout=10)


def dfa_reference(table: np.ndarray, data: bytes, state: int = 0, skip: int = 0) -> tuple[int, int]:
    """Sequential DFA: (accepting transitions at positions >= skip, final state)."""
    count = 0
    for i, b in enumerate(data):
        entry = int(table[state * 256 + b])
        if entry >> 31 and i >= skip:
            count += 1
        state = entry & 0x7FFFFFFF
    return count, state


def literal_dfa(pattern: bytes) -> np.ndarray:
    """KMP automaton of one literal: state = matched prefix length; accept when complete."""
    m = len(pattern)
    table = np.zeros((m, 256), dtype=np.uint32)
    fail = [0] * (m + 1)
    for i in range(1, m):
        k = fail[i]
        while k and pattern[i] != pattern[k]:
            k = fail[k]
        fail[i + 1] = k + 1 if pattern[i] == pattern[k] else 0
    for s in range(m):
        for b in range(256):
            k = s
            while k and pattern[k] != b:
                k = fail[k]
            nxt = k + 1 if pattern[k] == b else 0
            if nxt == m:
                table[s, b] = fail[m] | 0x80000000
            else:
                table[s, b] = nxt
    return table.reshape(-1)


@pytest.fixture
def mk(backend):
    m = make(backend)
    yield m
    m.shutdown(drain=False, timeout=10)


# ---------------------------------------------------------------- primitive opcodes
def test_store_load_and_wraparound(mk):
    run(mk, Opcode.STORE_U32, [0xFFFFFFFE, OBS + 1])
    run(mk, Opcode.ATOMIC_ADD, [5, OBS + 1])  # wraps modulo 2^32
    assert mk.observables[1] == 3
    run(mk, Opcode.LOAD_U32, [OBS + 1, 2])  # obs[2] = control[161]
    assert mk.observables[2] == 3


def test_out_of_range_load_reads_zero_and_store_does_nothing(mk):
    words = mk.control.size
    run(mk, Opcode.STORE_U32, [7, OBS + 3])
    run(mk, Opcode.LOAD_U32, [words + 10, 3])  # past the end reads 0
    assert mk.observables[3] == 0
    before = quiet_control(mk)
    run(mk, Opcode.STORE_U32, [99, words])  # past the end: nothing
    run(mk, Opcode.ATOMIC_ADD, [1, words + 1000])
    assert np.array_equal(before, quiet_control(mk))


def test_observable_past_the_end_does_not_wrap_into_header(mk):
    """[fix] obs[i] with i >= observable_slots is out of range (LOAD_U32 writes obs[a1])."""
    before = quiet_control(mk)
    run(mk, Opcode.LOAD_U32, [OBS, mk.observable_slots])       # obs[256]: nothing
    run(mk, Opcode.LOAD_U32, [OBS, mk.observable_slots + 3])
    assert np.array_equal(before, quiet_control(mk))


def test_compare_swap_success_and_failure(mk):
    run(mk, Opcode.STORE_U32, [10, OBS + 4])
    run(mk, Opcode.COMPARE_SWAP, [OBS + 4, 10, 20])  # prev -> obs[a0] = control[160 + a0]
    assert mk.observables[4] == 20
    assert mk.control[OBS + OBS + 4] == 10
    run(mk, Opcode.COMPARE_SWAP, [OBS + 4, 10, 30])  # expected mismatch: unchanged
    assert mk.observables[4] == 20
    assert mk.control[OBS + OBS + 4] == 20


def test_memcpy_is_ascending(mk):
    for i, v in enumerate([1, 2, 3, 4]):
        run(mk, Opcode.STORE_U32, [v, OBS + 10 + i])
    run(mk, Opcode.MEMCPY, [OBS + 10, OBS + 11, 4])  # overlapping forward copy smears word 0
    assert list(mk.observables[10:15]) == [1, 1, 1, 1, 1]


def test_batch_fence_bumps_epoch_and_tags(mk):
    e = mk.epoch
    tickets = mk.submit_batch([(Opcode.ATOMIC_ADD, [1, OBS + 5])] * 3, tag=0xBEEF)
    mk.wait(tickets, timeout=10)
    assert len(tickets) == 4
    assert mk.epoch == e + 1
    assert mk.observables[0] == 0xBEEF
    assert mk.observables[5] == 3


def test_unregistered_user_opcode_is_refused_before_publishing(mk):
    # docs/spec.md §12: the facade refuses a user opcode no registered op handles (raw
    # vyre.wire keeps 0.6's count-and-finish, pinned in test_interp_ops.py)
    ring = mk.backend.ring.copy()
    for op in (9, 0x1234, 0x40000000):
        with pytest.raises(InvalidValueError, match="not handled by any registered op") as err:
            mk.submit(op, [1, 2])
        assert "register_op" in err.value.fix
    assert mk.published == 0 and np.array_equal(mk.backend.ring, ring)


def test_metrics_count_each_executed_opcode(mk):
    run(mk, Opcode.NOP)
    run(mk, Opcode.NOP)
    run(mk, Opcode.STORE_U32, [1, OBS])
    m = mk.metrics()
    assert m[int(Opcode.NOP)] == 2 and m[int(Opcode.STORE_U32)] == 1


# ---------------------------------------------------------------- packed slots
def test_packed_slot_runs_every_inner_op_with_its_own_args(mk):
    ops = [(1, [7, OBS + 20]), (2, [3, OBS + 20]), (3, [OBS + 20, 21])]
    mk.wait(mk.submit_packed(ops), timeout=10)
    assert mk.observables[20] == 10 and mk.observables[21] == 10
    m = mk.metrics()
    assert m[1] == 1 and m[2] == 1 and m[3] == 1
    assert int(Opcode.PACKED_SLOT) not in m


def test_packed_slot_of_23_ops(mk):
    """23 NOP-free ops: 11 ATOMIC_ADDs would not fit args; 23 zero-arg NOPs plus metrics."""
    ops = [(0, [])] * 23
    mk.wait(mk.submit_packed(ops), timeout=10)
    assert mk.metrics()[0] == 23
    assert mk.done_count == 1  # a packed slot counts once


def test_packed_slot_missing_args_read_zero(mk):
    # op 0: STORE_U32 with one arg (value 5) -> its a1 reads 0 -> control[0]? no: tenant 0 may,
    # so give the missing arg a harmless meaning: ATOMIC_ADD of 0 into control[0] is a no-op.
    mk.wait(mk.submit_packed([(2, [0]), (1, [4, OBS + 30])]), timeout=10)
    assert mk.observables[30] == 4
    assert mk.control[0] == 0


# ---------------------------------------------------------------- tenants and faults
def test_unauthorized_tenant_faults(backend):
    mk = make(backend, tenants=2)
    try:
        ok = mk.submit(Opcode.ATOMIC_ADD, [1, OBS], tenant=1)
        mk.wait(ok, timeout=10)
        bad = mk.submit(Opcode.ATOMIC_ADD, [1, OBS], tenant=2)  # mask 0
        with pytest.raises(SlotFaultError) as info:
            mk.wait(bad, timeout=10)
        assert info.value.ticket == bad and "Fix:" in str(info.value)
        past = mk.submit(Opcode.ATOMIC_ADD, [1, OBS], tenant=40)  # >= TENANT_TABLE_LEN
        with pytest.raises(SlotFaultError):
            mk.wait(past, timeout=10)
        assert mk.observables[0] == 1
        assert mk.fault_count == 2 and mk.done_count == 1
    finally:
        mk.shutdown(drain=False)


def test_tenant_table_len_limits_authorization(backend):
    """[fix] ids at or past control[141] are unauthorized even when a mask word is set."""
    mk = make(backend, tenants=29)
    try:
        mk.control[141] = 3
        with pytest.raises(SlotFaultError):
            mk.wait(mk.submit(Opcode.NOP, [], tenant=5), timeout=10)
        mk.wait(mk.submit(Opcode.NOP, [], tenant=2), timeout=10)
    finally:
        mk.shutdown(drain=False)


@pytest.mark.parametrize("op,args", [
    (Opcode.STORE_U32, [1, 0]),            # SHUTDOWN word
    (Opcode.STORE_U32, [0, 3 + 5]),        # authorize a tenant
    (Opcode.ATOMIC_ADD, [100, 1]),         # forge DONE_COUNT
    (Opcode.MEMCPY, [OBS, OBS - 2, 4]),    # copy straddling into the header
    (Opcode.COMPARE_SWAP, [141, 29, 1000]),
    (Opcode.SHUTDOWN, []),
])
def test_protected_words_for_non_system_tenants(backend, op, args):
    """[fix] §3.1: a tenant other than 0 writing below OBSERVABLE_BASE ends in FAULT."""
    mk = make(backend, tenants=3)
    try:
        header = mk.control[:OBS].copy()
        with pytest.raises(SlotFaultError):
            mk.wait(mk.submit(op, args, tenant=1), timeout=10)
        now = mk.control[:OBS].copy()
        assert now[0] == 0 and now[8] == header[8] and now[141] == header[141]
        assert mk.fault_count == 1 and mk.done_count == 0
        assert np.array_equal(mk.observables[:4], np.zeros(4, np.uint32)) or op == Opcode.MEMCPY
        mk.wait(mk.submit(Opcode.ATOMIC_ADD, [1, OBS + 1], tenant=1), timeout=10)  # observables are fine
        assert mk.observables[1] == 1
    finally:
        mk.shutdown(drain=False)


def test_system_tenant_may_write_header(mk):
    run(mk, Opcode.STORE_U32, [0xFFFFFFFF, 3 + 7])
    assert mk.control[10] == 0xFFFFFFFF


# ---------------------------------------------------------------- debug log
def test_printf_records_and_overflow(backend):
    mk = make(backend, debug_records=3)
    try:
        tickets = [mk.submit(Opcode.PRINTF, [i, 10 + i, 20 + i]) for i in range(5)]
        mk.wait(tickets, timeout=10)
        log = mk.debug_log()
        assert len(log) == 3  # [fix] the cursor saturates at capacity
        assert len({r.fmt_id for r in log}) == 3  # any 3 of the 5: workers race for the cursor
        for rec in log:
            assert rec.args[0] == 10 + rec.fmt_id and rec.args[1] == 20 + rec.fmt_id
            assert rec.args[2] == tickets[rec.fmt_id] % mk.slot_count
        assert mk.debug_overflow == 2
    finally:
        mk.shutdown(drain=False)


# ---------------------------------------------------------------- shutdown
def test_shutdown_opcode_stops_the_workers(backend):
    mk = make(backend)
    try:
        t = mk.submit(Opcode.SHUTDOWN)
        mk.wait(t, timeout=10)
        assert mk.control[0] == 1
    finally:
        mk.shutdown(drain=False, timeout=10)


# ---------------------------------------------------------------- buffers, DFA, BUF_COPY
def test_dfa_step_reads_the_table(mk):
    rng = np.random.default_rng(1)
    table = rng.integers(0, 2**32, size=4 * 256, dtype=np.uint32)
    h, _ = mk.alloc_buffer(table)
    for state, byte in [(0, 0), (3, 255), (2, 97)]:
        run(mk, Opcode.DFA_STEP, [state, byte, 40, h])
        assert mk.observables[40] == table[state * 256 + byte]
    run(mk, Opcode.DFA_STEP, [4, 0, 40, h])  # past the table: reads 0
    assert mk.observables[40] == 0


@pytest.mark.parametrize("size", [0, 1, 1000, 70_000])
def test_dfa_scan_matches_reference(mk, size):
    rng = np.random.default_rng(size)
    pattern = b"abcab"
    table = literal_dfa(pattern)
    data = bytearray(rng.choice(list(b"abcx"), size=size).astype(np.uint8).tobytes())
    h_tab, _ = mk.alloc_buffer(table, device=True)
    h_dat, _ = mk.alloc_buffer(np.frombuffer(bytes(data) or b"\0", np.uint8))
    run(mk, Opcode.STORE_U32, [0, OBS + 50])
    run(mk, Opcode.DFA_SCAN, [h_tab, h_dat, 0, size, 51, 50, 0])
    expect, state = dfa_reference(table, bytes(data))
    assert mk.observables[50] == expect
    assert mk.observables[51] == state


@pytest.mark.parametrize("lead", [0, 5, 31])
def test_dfa_scan_context_split_is_exact(mk, lead):
    """a6 > 0: accepts in the first a6 bytes are not counted; the scan may be split.
    `lead` NOPs first put the scan on another lane of a GPU warp (the owner commits)."""
    for _ in range(lead):
        run(mk, Opcode.NOP)
    rng = np.random.default_rng(7)
    pattern = b"needle"
    table = literal_dfa(pattern)
    data = bytearray(rng.choice(list(b"needl"), size=200_000).astype(np.uint8).tobytes())
    for pos in range(0, len(data) - 6, 997):
        data[pos:pos + 6] = pattern
    h_tab, _ = mk.alloc_buffer(table, device=True)
    h_dat, _ = mk.alloc_buffer(np.frombuffer(bytes(data), np.uint8))
    ctx = len(pattern)
    run(mk, Opcode.DFA_SCAN, [h_tab, h_dat, 100, len(data) - 100, ALL, 52, ctx])
    expect, _ = dfa_reference(table, bytes(data[100:]), skip=ctx)
    assert mk.observables[52] == expect > 100


def test_dfa_scan_carries_state_across_calls(mk):
    table = literal_dfa(b"xyz")
    data = np.frombuffer(b"aaxy" + b"zbb", np.uint8)
    h_tab, _ = mk.alloc_buffer(table)
    h_dat, _ = mk.alloc_buffer(data)
    run(mk, Opcode.STORE_U32, [0, OBS + 60])
    run(mk, Opcode.DFA_SCAN, [h_tab, h_dat, 0, 4, 60, 61, 0])
    run(mk, Opcode.DFA_SCAN, [h_tab, h_dat, 4, 3, 60, 61, 0])
    assert mk.observables[61] == 1


def test_dfa_scan_range_is_clamped_to_the_buffer(mk):
    """A range past the data buffer is clamped to it (docs/interpreter.md): bytes 4..8 only."""
    table = literal_dfa(b"ab")
    h_tab, _ = mk.alloc_buffer(table)
    h_dat, _ = mk.alloc_buffer(np.frombuffer(b"abababab", np.uint8))
    run(mk, Opcode.DFA_SCAN, [h_tab, h_dat, 4, 100, ALL, 62, 0])
    assert mk.observables[62] == 2
    run(mk, Opcode.DFA_SCAN, [h_tab, h_dat, 100, 8, ALL, 63, 0])  # starts past the end: nothing
    assert mk.observables[63] == 0


def test_buf_copy_and_bounds(mk):
    src = np.arange(64, dtype=np.uint8)
    h_src, _ = mk.alloc_buffer(src)
    h_dst, dst = mk.alloc_buffer(64)
    run(mk, Opcode.BUF_COPY, [h_src, 8, h_dst, 16, 32])
    assert bytes(np.asarray(dst)[16:48]) == bytes(src[8:40])
    before = bytes(np.asarray(dst))
    with pytest.raises(SlotFaultError):  # no partial copy on overflow
        mk.wait(mk.submit(Opcode.BUF_COPY, [h_src, 40, h_dst, 0, 32]), timeout=10)
    with pytest.raises(SlotFaultError):
        mk.wait(mk.submit(Opcode.BUF_COPY, [h_src, 0, h_dst, 60, 8]), timeout=10)
    with pytest.raises(SlotFaultError):  # unknown handle
        mk.wait(mk.submit(Opcode.BUF_COPY, [h_src, 0, 200, 0, 8]), timeout=10)
    assert bytes(np.asarray(dst)) == before


# ---------------------------------------------------------------- window
def test_window_publishes_prefixed_slots(mk):
    user_op = int(Opcode.NOP)  # a user opcode needs a registered op: tests/test_ops_facade.py
    tickets = mk.submit_window(0, user_op, 77, [[1, 2], [3]], [[4]])
    mk.wait(tickets, timeout=10)
    assert len(tickets) == 3
    ring = mk.backend.ring.reshape(mk.slot_count, 16)
    rows = [ring[t % mk.slot_count] for t in tickets]
    assert [list(r[4:8]) for r in rows] == [[77, 0, 1, 2], [77, 0, 3, 0], [77, 1, 4, 0]]
    assert all(r[1] == user_op and r[0] == 3 for r in rows)
