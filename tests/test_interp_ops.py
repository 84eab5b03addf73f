"""Interpreter semantics (csrc/vyre_interp.h) pinned opcode by opcode, on live CPU workers.

Every docs/spec.md §3 opcode, the out-of-range rule, the [fix] rules (observables past the end,
protected words, unauthorized tenants, packed slots, PRINTF capacity, handler-set status)
and the per-opcode metrics.
"""
from __future__ import annotations

import numpy as np
import pytest
from test_interp_rig import (
    ATOMIC_ADD,
    BATCH_FENCE,
    BUF_COPY,
    COMPARE_SWAP,
    DFA_STEP,
    DONE,
    DONE_COUNT,
    EPOCH,
    FAULT,
    FAULT_COUNT,
    LOAD_MISS,
    LOAD_U32,
    M32,
    MEMCPY,
    METRICS,
    NOP,
    OBS,
    OP_SHUTDOWN,
    PACKED_SLOT,
    PRINTF,
    SHUTDOWN,
    STORE_U32,
    TENANT_TABLE_LEN,
    WAIT_IO,
    Rig,
    pack,
)


@pytest.fixture
def rig():
    r = Rig(observable_slots=32, debug_records=2, workers=2)
    yield r
    r.close()


def counts(rig):
    return int(rig.ctl[DONE_COUNT]), int(rig.ctl[FAULT_COUNT])


# ------------------------------------------------------------------------ arithmetic / stores
def test_store_and_atomic_add_wrap(rig):
    assert rig.run(STORE_U32, [0xFFFFFFFE, OBS + 1]) == DONE
    assert rig.run(ATOMIC_ADD, [3, OBS + 1]) == DONE
    assert rig.obs[1] == 1  # 0xFFFFFFFE + 3 wraps modulo 2^32
    assert rig.run(ATOMIC_ADD, [M32, OBS + 1]) == DONE
    assert rig.obs[1] == 0
    assert counts(rig) == (3, 0)


def test_load_u32_and_load_past_end_reads_zero(rig):
    rig.obs[2] = 1234
    assert rig.run(LOAD_U32, [OBS + 2, 5]) == DONE
    assert rig.obs[5] == 1234
    rig.obs[6] = 99
    assert rig.run(LOAD_U32, [len(rig.ctl), 6]) == DONE  # control[end] reads 0
    assert rig.obs[6] == 0
    assert rig.run(LOAD_U32, [M32, 6]) == DONE
    assert rig.obs[6] == 0
    assert rig.run(LOAD_U32, [TENANT_TABLE_LEN, 7]) == DONE  # tenant 0 reads the header
    assert rig.obs[7] == 29


def test_store_and_atomic_past_end_do_nothing(rig):
    before = rig.ctl.copy()
    for op in (STORE_U32, ATOMIC_ADD):
        for target in (len(rig.ctl), len(rig.ctl) + 1, M32):
            assert rig.run(op, [7, target]) == DONE
    after = rig.ctl.copy()
    for w in (DONE_COUNT, METRICS + STORE_U32, METRICS + ATOMIC_ADD, 143):
        before[w] = after[w] = 0
    assert np.array_equal(before, after)


@pytest.mark.parametrize("op,args", [
    (LOAD_U32, [OBS + 0, 32]),            # obs[32] with 32 observables
    (LOAD_U32, [OBS + 0, 0xFFFFFFFF - 159]),  # 160 + a1 would wrap to 0 in u32
    (DFA_STEP, [0, 0, 32, 0]),
    (BATCH_FENCE, [0, 5]),                # obs[0] is valid: control only moves EPOCH / obs[0]
])
def test_observables_past_end_do_not_wrap_into_header(rig, op, args):
    rig.obs[0] = 77
    header = rig.header()
    assert rig.run(op, args) == DONE
    h2 = rig.header()
    header[DONE_COUNT] = h2[DONE_COUNT]
    header[METRICS + op] = h2[METRICS + op]
    if op == BATCH_FENCE:
        assert h2[EPOCH] == header[EPOCH] + 1
        header[EPOCH] = h2[EPOCH]
        assert rig.obs[0] == 5
    assert np.array_equal(header, h2)


def test_observables_past_end_small_table():
    # 4 observables: obs[4..] must not alias anything (control has exactly 164 words)
    with Rig(observable_slots=4, workers=1) as r:
        before = r.ctl.copy()
        assert r.run(LOAD_U32, [TENANT_TABLE_LEN, 4]) == DONE
        assert r.run(COMPARE_SWAP, [150, 0, 5]) == DONE  # CAS control[150]; obs[150] out of range
        assert r.ctl[150] == 5
        after = r.ctl.copy()
        for w in (DONE_COUNT, METRICS + LOAD_U32, METRICS + COMPARE_SWAP, 150, 143):
            before[w] = after[w] = 0
        assert np.array_equal(before, after)


def test_compare_swap_success_failure_and_prev():
    r = Rig(observable_slots=256, workers=1)
    try:
        a0 = OBS + 60  # control[220] = obs[60]; prev is stored to obs[a0] = obs[220]
        r.ctl[a0] = 10
        assert r.run(COMPARE_SWAP, [a0, 10, 20]) == DONE
        assert r.ctl[a0] == 20 and r.obs[a0] == 10
        assert r.run(COMPARE_SWAP, [a0, 10, 30]) == DONE  # fails: 20 != 10
        assert r.ctl[a0] == 20 and r.obs[a0] == 20
        assert r.run(COMPARE_SWAP, [len(r.ctl), 0, 1]) == DONE  # past the end: prev 0, nothing
        assert counts(r) == (3, 0) and r.ctl[METRICS + COMPARE_SWAP] == 3
    finally:
        r.close()


def test_memcpy_ascending_overlap_and_bounds(rig):
    rig.obs[10:14] = [1, 2, 3, 4]
    assert rig.run(MEMCPY, [OBS + 10, OBS + 11, 3]) == DONE  # ascending: smears forward
    assert list(rig.obs[10:14]) == [1, 1, 1, 1]
    rig.obs[20:24] = [5, 6, 7, 8]
    assert rig.run(MEMCPY, [OBS + 21, OBS + 20, 3]) == DONE  # backward overlap is exact
    assert list(rig.obs[20:24]) == [6, 7, 8, 8]
    # source past the end reads 0, destination past the end is skipped
    rig.obs[30:32] = [9, 9]
    assert rig.run(MEMCPY, [len(rig.ctl) - 1, OBS + 30, 4]) == DONE
    assert list(rig.obs[30:32]) == [9, 0]  # obs[30] = obs[31]; obs[31] = control[end] = 0
    rig.obs[0:3] = [11, 12, 13]
    assert rig.run(MEMCPY, [OBS + 0, OBS + 30, 3]) == DONE  # third word would be past the end
    assert list(rig.obs[30:32]) == [11, 12]
    assert rig.run(MEMCPY, [OBS, M32, M32]) == DONE  # huge count, destination past end: nothing
    assert rig.run(MEMCPY, [OBS, OBS + 5, 0]) == DONE


def test_memcpy_source_past_end_reads_zero(rig):
    rig.obs[28:32] = [1, 2, 3, 4]
    assert rig.run(MEMCPY, [len(rig.ctl) - 2, OBS + 26, 4]) == DONE
    # reads obs[30], obs[31], then two words past the end (0) -> obs[26..29]
    assert list(rig.obs[26:32]) == [3, 4, 0, 0, 3, 4]


def test_batch_fence(rig):
    for tag in (5, 6, 7):
        assert rig.run(BATCH_FENCE, [3, tag]) == DONE
    assert rig.ctl[EPOCH] == 3 and rig.obs[0] == 7
    assert rig.run(BATCH_FENCE, [1, 8], tenant=2) == DONE  # a tenant's batch fence is allowed
    assert rig.ctl[EPOCH] == 4 and rig.obs[0] == 8


def test_shutdown_opcode_stops_workers(rig):
    assert rig.run(OP_SHUTDOWN) == DONE
    assert rig.ctl[SHUTDOWN] == 1
    import time
    deadline = time.monotonic() + 5
    while rig.be.pool.alive and time.monotonic() < deadline:
        time.sleep(0.001)
    assert rig.be.pool.alive == 0


# ------------------------------------------------------------------------ tenants (§3.1, §5)
@pytest.mark.parametrize("op,args", [
    (STORE_U32, [1, SHUTDOWN]),
    (STORE_U32, [0, 3 + 5]),               # authorize tenant 5
    (STORE_U32, [5, DONE_COUNT]),          # forge a counter
    (STORE_U32, [5, OBS - 1]),
    (ATOMIC_ADD, [1, FAULT_COUNT]),
    (ATOMIC_ADD, [1, TENANT_TABLE_LEN]),
    (COMPARE_SWAP, [SHUTDOWN, 0, 1]),
    (MEMCPY, [OBS, OBS - 1, 5]),           # only the first word is protected: nothing written
    (MEMCPY, [OBS, 0, 1]),
    (OP_SHUTDOWN, []),
    (BUF_COPY, [1, 0, 0, 0, 4]),           # into control's header through the buffer table
    (BUF_COPY, [1, 0, 0, 4 * OBS - 1, 2]),
])
def test_protected_words_fault_for_tenants(rig, op, args):
    rig.be.register_buffer(np.full(64, 0xAB, np.uint8))
    rig.obs[:] = 0x5A5A5A5A
    before_ctl = rig.ctl.copy()
    done0, fault0 = counts(rig)
    assert rig.run(op, args, tenant=1) == FAULT
    assert counts(rig) == (done0, fault0 + 1)
    after = rig.ctl.copy()
    before_ctl[FAULT_COUNT] = after[FAULT_COUNT]
    before_ctl[143] = after[143]
    assert np.array_equal(before_ctl, after), "a refused slot wrote something"
    assert rig.metrics() == [0] * 32  # nothing executed, nothing counted


def test_tenant_writes_to_observables_are_allowed(rig):
    rig.be.register_buffer(np.full(64, 0xAB, np.uint8))
    assert rig.run(STORE_U32, [5, OBS], tenant=3) == DONE
    assert rig.run(ATOMIC_ADD, [5, OBS], tenant=3) == DONE
    assert rig.run(COMPARE_SWAP, [OBS + 1, 0, 9], tenant=3) == DONE
    assert rig.run(MEMCPY, [OBS, OBS + 2, 1], tenant=3) == DONE
    assert rig.run(LOAD_U32, [TENANT_TABLE_LEN, 3], tenant=3) == DONE  # reading is fine
    assert rig.run(BUF_COPY, [1, 0, 0, 4 * OBS + 16, 4], tenant=3) == DONE
    assert list(rig.obs[:5]) == [10, 9, 10, 29, 0xABABABAB]
    assert counts(rig) == (6, 0)


def test_tenant_zero_may_write_the_header(rig):
    assert rig.run(STORE_U32, [0xFFFFFFFF, 3 + 7]) == DONE  # authorize tenant 7
    assert rig.run(STORE_U32, [1, OBS], tenant=7) == DONE
    assert rig.obs[0] == 1


@pytest.mark.parametrize("tenant", [4, 5, 28, 29, 30, 1000, M32])
def test_unauthorized_tenants_fault_without_running(rig, tenant):
    # masks are set for tenants 0..3; 29 and up are past control[141]
    assert rig.run(STORE_U32, [1, OBS], tenant=tenant) == FAULT
    assert rig.obs[0] == 0
    assert counts(rig) == (0, 1)
    assert rig.metrics() == [0] * 32


def test_tenant_table_len_bounds_the_mask_table(rig):
    rig.ctl[3:32] = 0xFFFFFFFF  # every mask allows
    rig.ctl[TENANT_TABLE_LEN] = 2
    assert rig.run(STORE_U32, [1, OBS], tenant=1) == DONE
    assert rig.run(STORE_U32, [2, OBS], tenant=2) == FAULT
    assert rig.run(NOP, [], tenant=3) == FAULT
    assert rig.obs[0] == 1
    assert counts(rig) == (1, 2)


def test_unauthorized_packed_slot_and_printf_fault(rig):
    assert rig.run(PACKED_SLOT, pack([(STORE_U32, [1, OBS])]), tenant=9) == FAULT
    assert rig.run(PRINTF, [1, 2, 3], tenant=9) == FAULT
    assert rig.obs[0] == 0 and rig.be.debug[0] == 0
    assert counts(rig) == (0, 2)


# ------------------------------------------------------------------------ packed slots (§4.2)
def test_packed_worked_example(rig):
    args = pack([(STORE_U32, [10, OBS + 2]), (ATOMIC_ADD, [1, OBS + 4])])
    assert args[:2] == [0x00010402, 0x00000202]
    ref = [0x00010402, 0x00000202, 10, 32, 1, 64]
    assert pack([(1, [10, 32]), (2, [1, 64])])[:6] == ref
    assert rig.run(PACKED_SLOT, args) == DONE
    assert rig.obs[2] == 10 and rig.obs[4] == 1
    m = rig.metrics()
    assert m[STORE_U32] == 1 and m[ATOMIC_ADD] == 1 and sum(m) == 2  # outer not counted
    assert counts(rig) == (1, 0)  # a packed slot counts once


def test_packed_each_op_gets_exactly_its_own_args(rig):
    rig.obs[7] = 4242
    ops = [
        (NOP, []),
        (ATOMIC_ADD, [5, OBS + 1]),
        (LOAD_U32, [OBS + 7, 2]),      # obs[2] = obs[7]
        (ATOMIC_ADD, [6, OBS + 1]),
        (BATCH_FENCE, [0, 77]),
    ]
    assert rig.run(PACKED_SLOT, pack(ops)) == DONE
    assert rig.obs[1] == 11 and rig.obs[2] == 4242 and rig.obs[0] == 77 and rig.ctl[EPOCH] == 1
    m = rig.metrics()
    assert (m[NOP], m[ATOMIC_ADD], m[LOAD_U32], m[BATCH_FENCE]) == (1, 2, 1, 1) and sum(m) == 5


def test_packed_missing_args_read_zero(rig):
    # hand-built: n=2, T=11; op 0 = ATOMIC_ADD at offset 0 (9 words, junk after its 2 args),
    # op 1 = LOAD_U32 at offset 9 -> words 11 and 12: word 12 is past the payload, reads 0
    rig.obs[3] = 55
    words = [2 | 11 << 8 | ATOMIC_ADD << 16 | 0 << 24, LOAD_U32 | 9 << 8, 2, OBS + 5]
    words += [0xDEAD] * 7 + [OBS + 3]
    assert len(words) == 12
    assert rig.run(PACKED_SLOT, words) == DONE
    assert rig.obs[5] == 2 and rig.obs[0] == 55  # obs[a1 = 0] = obs[3]
    assert rig.metrics()[ATOMIC_ADD] == 1 and rig.metrics()[LOAD_U32] == 1


def test_packed_args_do_not_leak_between_ops(rig):
    # LOAD_U32 with one arg: its a1 must read 0, not the next op's first arg (3)
    rig.obs[2] = 66
    ops = [(LOAD_U32, [OBS + 2]), (STORE_U32, [3, OBS + 8])]
    assert rig.run(PACKED_SLOT, pack(ops)) == DONE
    assert rig.obs[0] == 66 and rig.obs[3] == 0 and rig.obs[8] == 3


def test_packed_23_ops_all_run(rig):
    # n = 23 fills the metadata budget (M = 12): every op runs, with zero args
    ops = [(BATCH_FENCE if i % 3 == 0 else 8 + i, []) for i in range(23)]
    args = pack(ops)
    assert rig.run(PACKED_SLOT, args) == DONE
    m = rig.metrics()
    assert m[BATCH_FENCE] == 8 and rig.ctl[EPOCH] == 8
    for i in range(23):
        if i % 3:
            assert m[8 + i] == 1, i
    assert sum(m) == 23 and counts(rig) == (1, 0)


def test_packed_23_ops_each_with_its_own_arg_window(rig):
    # n = 23 leaves no payload word (M = 12): op i declares one arg at offset i (T = 23), which
    # lies past the 12 words and reads 0 -- no op may borrow metadata words as args
    rig.obs[0] = 9
    ops = [(BATCH_FENCE, [])] * 23
    words = pack(ops)
    b = bytearray(b"".join(w.to_bytes(4, "little") for w in words))
    b[1] = 23
    for i in range(23):
        b[3 + 2 * i] = i
    words = [int.from_bytes(b[4 * k:4 * k + 4], "little") for k in range(12)]
    assert rig.run(PACKED_SLOT, words) == DONE
    assert rig.ctl[EPOCH] == 23 and rig.obs[0] == 0
    assert rig.metrics()[BATCH_FENCE] == 23 and counts(rig) == (1, 0)


def test_packed_tenant_validates_every_inner_op_first(rig):
    ops = [(ATOMIC_ADD, [1, OBS + 1]), (STORE_U32, [1, SHUTDOWN]), (ATOMIC_ADD, [1, OBS + 2])]
    assert rig.run(PACKED_SLOT, pack(ops), tenant=2) == FAULT
    assert rig.obs[1] == 0 and rig.obs[2] == 0 and rig.ctl[SHUTDOWN] == 0
    assert rig.metrics() == [0] * 32 and counts(rig) == (0, 1)
    ok = [(ATOMIC_ADD, [1, OBS + 1]), (ATOMIC_ADD, [1, OBS + 2])]
    assert rig.run(PACKED_SLOT, pack(ok), tenant=2) == DONE
    assert rig.obs[1] == 1 and rig.obs[2] == 1


def test_packed_empty(rig):
    assert rig.run(PACKED_SLOT, pack([])) == DONE
    assert rig.metrics() == [0] * 32 and counts(rig) == (1, 0)


# ------------------------------------------------------------------------ PRINTF (§9)
def test_printf_records_and_capacity(rig):
    dbg = rig.be.debug  # 2 records: [cursor, 8 record words, overflow]
    assert len(dbg) == 1 + 8 + 1
    tickets = [rig.publish(PRINTF, [100 + i, 200 + i, 300 + i]) for i in range(5)]
    for t in tickets:
        assert rig.wait(t) == DONE
    assert dbg[0] == 8  # the cursor saturates at capacity
    assert dbg[9] == 3  # three records did not fit
    recs = [tuple(int(x) for x in dbg[1 + 4 * i:5 + 4 * i]) for i in range(2)]
    printed = {(100 + i, 200 + i, 300 + i, t % rig.n) for i, t in enumerate(tickets)}
    assert len(set(recs)) == 2 and set(recs) <= printed  # two workers: any two may win
    assert counts(rig) == (5, 0)


def test_printf_without_records_only_counts_overflow():
    with Rig(debug_records=0, workers=1) as r:
        assert r.run(PRINTF, [1, 2, 3]) == DONE
        assert list(r.be.debug) == [0, 1]


def test_printf_concurrent_never_passes_capacity():
    with Rig(slot_count=64, debug_records=50, workers=2) as r:
        ts = [r.publish(PRINTF, [i, 0, 0]) for i in range(200)]
        for t in ts:
            r.wait(t)
        assert r.be.debug[0] == 200 and r.be.debug[-1] == 150
        ids = sorted(int(r.be.debug[1 + 4 * i]) for i in range(50))
        assert len(set(ids)) == 50


# ------------------------------------------------------------------------ metrics, unknown ops
def test_metrics_per_opcode(rig):
    plan = {NOP: 3, STORE_U32: 2, ATOMIC_ADD: 4, LOAD_U32: 1, COMPARE_SWAP: 2, MEMCPY: 1,
            DFA_STEP: 2, BATCH_FENCE: 1}
    args = {NOP: [], STORE_U32: [1, OBS], ATOMIC_ADD: [1, OBS], LOAD_U32: [OBS, 1],
            COMPARE_SWAP: [OBS + 2, 0, 1], MEMCPY: [OBS, OBS + 3, 1], DFA_STEP: [0, 0, 4, 99],
            BATCH_FENCE: [0, 0]}
    for op, k in plan.items():
        for _ in range(k):
            assert rig.run(op, args[op]) == DONE
    m = rig.metrics()
    assert [m[op] for op in range(8)] == [plan[op] for op in range(8)]
    assert sum(m) == sum(plan.values())
    assert counts(rig) == (sum(plan.values()), 0)


@pytest.mark.parametrize("op,metric", [(8, 8), (9, 9), (31, 31), (32, None), (255, None),
                                       (0x40000000, None), (0xFFF5, None), (0x80000002, None),
                                       (PRINTF, None)])
def test_unknown_and_high_opcodes_finish_done(rig, op, metric):
    header = rig.header()
    assert rig.run(op, [1, OBS, 3]) == DONE
    m = rig.metrics()
    if metric is None:
        assert sum(m) == 0
    else:
        assert m[metric] == 1 and sum(m) == 1
    h = rig.header()
    header[DONE_COUNT] = h[DONE_COUNT]
    header[METRICS:METRICS + 32] = h[METRICS:METRICS + 32]
    assert np.array_equal(header, h) and rig.obs[0] == 0
    assert counts(rig) == (1, 0)


# ------------------------------------------------------------------------ BUF_COPY
def test_buf_copy_between_buffers(rig):
    src = np.arange(64, dtype=np.uint8)
    dst = np.zeros(32, np.uint8)
    hs, hd = rig.be.register_buffer(src), rig.be.register_buffer(dst)
    assert rig.run(BUF_COPY, [hs, 10, hd, 3, 20]) == DONE
    assert list(dst[3:23]) == list(range(10, 30)) and dst[:3].sum() == 0 and dst[23:].sum() == 0
    assert rig.run(BUF_COPY, [hs, 0, hd, 0, 0]) == DONE  # zero bytes
    assert rig.run(BUF_COPY, [hs, 64, hd, 32, 0]) == DONE  # zero bytes at the very end
    # overlapping copy inside one buffer behaves like memmove
    assert rig.run(BUF_COPY, [hs, 0, hs, 1, 8]) == DONE
    assert list(src[:9]) == [0, 0, 1, 2, 3, 4, 5, 6, 7]
    # control is handle 0: observables can be filled from a buffer and read back
    assert rig.run(BUF_COPY, [hs, 0, 0, 4 * (OBS + 1), 4]) == DONE
    assert rig.obs[1] == int.from_bytes(bytes(src[:4]), "little")
    assert rig.run(BUF_COPY, [0, 4 * (OBS + 1), hd, 0, 4]) == DONE
    assert list(dst[:4]) == list(src[:4])
    assert counts(rig) == (6, 0)


@pytest.mark.parametrize("args", [
    [1, 60, 2, 0, 5],            # source overflows by one
    [1, 0, 2, 28, 5],            # destination overflows by one
    [1, 0, 2, 0, 33],
    [1, M32, 2, 0, 2],           # offsets that would wrap in 32 bits
    [1, 0, 2, M32, 2],
    [7, 0, 2, 0, 1],             # unregistered handle
    [1, 0, 200, 0, 1],
    [1, 0, 0, 4 * 192, 4],       # past the end of control
])
def test_buf_copy_out_of_bounds_faults_and_writes_nothing(rig, args):
    src = np.arange(64, dtype=np.uint8)
    dst = np.full(32, 0xEE, np.uint8)
    rig.be.register_buffer(src)
    rig.be.register_buffer(dst)
    ctl = rig.ctl.copy()
    assert rig.run(BUF_COPY, args) == FAULT
    assert (dst == 0xEE).all() and np.array_equal(src, np.arange(64, dtype=np.uint8))
    assert np.array_equal(rig.ctl[OBS:], ctl[OBS:])
    assert counts(rig) == (0, 1)


# ------------------------------------------------------------------------ handler-set status
def test_handler_set_status_is_kept():
    """LOAD_MISS with every io slot taken parks the ring slot in WAIT_IO: the final DONE store
    must not replace it, nothing is counted, and the worker retries it once an io slot frees."""
    with Rig(io_slots=2, workers=1) as r:
        ioq = r.be.ioq.reshape(2, 8)
        ioq[:, 6] = 2  # both io slots CLAIMED by "someone"
        t = r.publish(LOAD_MISS, [5, 64, 0, 0, 0])
        assert r.wait(t, until=(WAIT_IO, DONE, FAULT)) == WAIT_IO
        import time
        time.sleep(0.05)
        assert r.status(t) == WAIT_IO
        assert counts(r) == (0, 0)
        ioq[1, 6] = 0  # free one io slot: the parked slot is retried and publishes its request
        deadline = time.monotonic() + 5
        while ioq[1, 6] != 1:
            assert time.monotonic() < deadline, "WAIT_IO slot was not retried"
            time.sleep(0.001)
        assert list(ioq[1]) == [1, 5, 0, 0, 0, 64, 1, t % r.n]
        ioq[1, 6] = 0x10  # host completes it OK
        assert r.wait(t) == DONE
        assert ioq[1, 6] == 0  # recycled
        assert counts(r) == (1, 0)
