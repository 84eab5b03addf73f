"""100 000 random user and built-in ops against a pure-Python model (tests/ops_model.py).

The programs mix in-bounds and out-of-bounds accesses, unaligned buffers, unauthorized
tenants, writes to protected control words, raised faults and bad result indices. Every
slot's outcome (DONE or FAULT), its four result words and, at the end, every buffer byte and
every control word the programs may touch are compared with the model. The CPU runs the
program with one worker (so in order) in batches; the GPU (marked gpu) one op at a time, so
the same model holds on both and therefore cpu and cuda agree.
"""
from __future__ import annotations

import numpy as np
import pytest
from ops_model import OPCODES, QUIET_FROM, SOURCES, Model, random_program

from vyre import BatchDescriptor, Megakernel, SlotDescriptor, SlotFaultError
from vyre.errors import BackendError
from vyre.protocol import CTRL_HEADER_WORDS, RESULT_WORDS, SLOT_RESULT, SLOT_WORDS

TOTAL = 100_000
OBS = 64
TENANTS = 3
BUF1, BUF2 = 256, 256


def _setup(backend: str):
    mk = Megakernel(backend, slot_count=1024, observable_slots=OBS, tenants=TENANTS,
                    workers=1 if backend == "cpu" else None).start()
    try:
        for name, src in SOURCES.items():
            mk.register_op(name, src, opcode=OPCODES[name])
    except BackendError as err:
        mk.shutdown(drain=False)
        pytest.skip(f"the {backend} backend does not run user ops here: {err.message}")
    rng = np.random.default_rng(7)
    # host memory the backend's workers reach (mapped for the GPU: a plain numpy array is not)
    b1 = mk.backend.alloc_buffer(BUF1)
    b1[:] = rng.integers(0, 256, BUF1, dtype=np.uint8)
    store = mk.backend.alloc_buffer(BUF2 + 8)
    skew = 1 if store.ctypes.data % 4 == 0 else 2
    b2 = store[skew:skew + BUF2]  # a buffer whose address is not 4-byte aligned
    assert b2.ctypes.data % 4 != 0
    b2[:] = rng.integers(0, 256, BUF2, dtype=np.uint8)
    assert mk.register_buffer(b1) == 1 and mk.register_buffer(b2) == 2
    return mk, b1, b2


def _check(got_done: bool, got_words, want, what: str) -> None:
    want_done, want_words = want
    assert (got_done, tuple(got_words)) == (want_done, tuple(want_words)), what


@pytest.mark.parametrize("backend", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_random_ops_match_the_model(backend):
    mk, b1, b2 = _setup(backend)
    cw = CTRL_HEADER_WORDS + OBS
    model = Model(mk.control.copy(), {1: bytearray(b1.tobytes()), 2: bytearray(b2.tobytes())},
                  {1: True, 2: False}, TENANTS, OBS)
    prog = random_program(2026, TOTAL, control_words=cw, buf_bytes={1: BUF1, 2: BUF2},
                          tenants=TENANTS)
    faults = done = 0
    try:
        if backend == "cpu":
            ring = mk.backend.ring.reshape(-1, SLOT_WORDS)
            chunk = mk.slot_count
            for start in range(0, TOTAL, chunk):
                part = prog[start:start + chunk]
                items = tuple(SlotDescriptor(tenant, op, args) for op, tenant, args in part)
                tickets = mk.submit(BatchDescriptor(0, items))
                mk.drain(timeout=60)
                for (op, tenant, args), t in zip(part, tickets, strict=True):
                    row = ring[t % mk.slot_count]
                    want = model.run(op, tenant, args)
                    # retiring resets a FAULT slot to EMPTY; DONE stays DONE
                    _check(int(row[0]) == 3, row[SLOT_RESULT:SLOT_RESULT + RESULT_WORDS], want,
                           f"ticket {t}: op {op:#x} tenant {tenant} args {args}")
                    done += want[0]
                    faults += not want[0]
        else:
            for i, (op, tenant, args) in enumerate(prog):
                t = mk.submit(op, args, tenant=tenant)
                want = model.run(op, tenant, args)
                try:
                    words, ok = mk.result(t, timeout=30), True
                except SlotFaultError as err:
                    words, ok = err.words, False
                _check(ok, words, want, f"op {i}: {op:#x} tenant {tenant} args {args}")
                done += want[0]
                faults += not want[0]
        assert bytes(b1) == bytes(model.bufs[1])
        assert bytes(b2) == bytes(model.bufs[2])
        assert list(mk.control[QUIET_FROM:]) == model.control[QUIET_FROM:]
        # the program exercised both outcomes broadly
        assert done > TOTAL // 3 and faults > TOTAL // 10
    finally:
        mk.shutdown(drain=False)
