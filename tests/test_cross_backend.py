"""The CPU and CUDA backends agree bit for bit on the same program (spec §7)."""
from __future__ import annotations

import numpy as np
import pytest

from vyre import Megakernel, SlotFaultError
from vyre.protocol import Opcode

pytestmark = pytest.mark.gpu
OBS = 160


def random_program(seed: int, n: int, obs: int) -> list[tuple[int, list[int], int]]:
    """(opcode, args, tenant) triples touching observables, header words and odd corners."""
    rng = np.random.default_rng(seed)
    prog = []
    for _ in range(n):
        kind = int(rng.integers(0, 9))
        a = [int(x) for x in rng.integers(0, 2**32, size=3, dtype=np.uint64)]
        w = lambda: OBS + int(rng.integers(0, obs + 8))  # a few past the end  # noqa: E731
        tenant = int(rng.integers(0, 3)) if rng.random() < 0.2 else 0
        if kind == 0:
            prog.append((Opcode.STORE_U32, [a[0], w()], tenant))
        elif kind == 1:
            prog.append((Opcode.ATOMIC_ADD, [a[0], w()], tenant))
        elif kind == 2:
            prog.append((Opcode.LOAD_U32, [int(rng.integers(0, OBS + obs)), int(rng.integers(0, obs + 4))], tenant))
        elif kind == 3:
            prog.append((Opcode.COMPARE_SWAP, [w() - OBS, a[1] % 4, a[2]], tenant))
        elif kind == 4:
            prog.append((Opcode.MEMCPY, [w(), w(), int(rng.integers(0, 6))], tenant))
        elif kind == 5:
            prog.append((Opcode.BATCH_FENCE, [0, a[0]], tenant))
        elif kind == 6:
            prog.append((Opcode.PRINTF, a, tenant))
        elif kind == 7:
            prog.append((Opcode.STORE_U32, [a[0], int(rng.integers(100, OBS))], tenant))  # header
        else:
            prog.append((Opcode.NOP, a, tenant))  # (a user opcode needs a registered op)
    return prog


def execute(backend: str, prog) -> dict[str, bytes]:
    with Megakernel(backend, slot_count=32, observable_slots=64, tenants=2,
                    debug_records=16) as mk:
        for op, args, tenant in prog:
            try:
                mk.wait(mk.submit(op, args, tenant=tenant), timeout=10)
            except SlotFaultError:
                pass
            mk.done_count  # settle lazily folded counters before the next op may overwrite one
        control = mk.control.copy()
        control[143] = 0  # HEARTBEAT differs by nature
        return {"control": control.tobytes(), "debug": mk.backend.debug[:1 + 4 * 16 + 1].tobytes(),
                "ring": mk.backend.ring[: 32 * 16].tobytes()}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cpu_and_cuda_agree_bit_for_bit(seed):
    prog = random_program(seed, 400, 64)
    cpu, gpu = execute("cpu", prog), execute("cuda", prog)
    for key in cpu:
        a = np.frombuffer(cpu[key], np.uint32)
        b = np.frombuffer(gpu[key], np.uint32)
        diff = np.nonzero(a != b)[0]
        assert diff.size == 0, f"{key} differs at words {diff[:10]}: cpu {a[diff[:10]]} gpu {b[diff[:10]]}"
