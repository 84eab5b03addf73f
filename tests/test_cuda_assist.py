"""The CUDA megakernel's assist board: a long cooperative DFA_SCAN is cut into parts that idle
warps help with (cuda/megakernel.cu). Whatever the part size, and whether a scan got a board
entry or not (more scans in flight than entries), counts and final states must equal the CPU
backend's on the same inputs (docs/spec.md §7: bit-identical).
"""
from __future__ import annotations

import random

import numpy as np
import pytest

from vyre import Megakernel, Opcode
from vyre.ingest.dfa import build_dfa, count_matches

pytestmark = pytest.mark.gpu

PATS = [b"abc", b"cab", b"hgfedcba", b"ddd", b"ffgghh"]
NO_STATE = 0xFFFFFFFF


def _data(rng: random.Random, n: int) -> np.ndarray:
    data = bytearray(rng.choice(b"abcdefgh") for _ in range(n))
    for _ in range(n // 300):
        p = rng.choice(PATS)
        at = rng.randrange(n - len(p))
        data[at:at + len(p)] = p
    return np.frombuffer(bytes(data), np.uint8)


def _jobs(rng: random.Random, n: int, size: int, ctx: int, states: int) -> list[list[int]]:
    """(lo, len, start, ctx) of n scans: long, short, past the end, to the end (a3 = ~0)."""
    jobs = [[0, size, 0, ctx]]  # the whole buffer: checked against count_matches too
    while len(jobs) < n:
        lo = rng.randrange(size)
        ln = rng.choice([rng.randrange(1, size), size - lo, 0xFFFFFFFF, rng.randrange(1, 4 * ctx),
                         rng.randrange(64 << 10)])
        jobs.append([lo, ln, rng.randrange(states), ctx])
    return jobs


def _run(backend: str, data: np.ndarray, table: np.ndarray, jobs, data_on_device=False,
         **opts) -> np.ndarray:
    n = len(jobs)
    with Megakernel(backend, slot_count=256, observable_slots=2 * n, **opts) as mk:
        h_tab, _ = mk.alloc_buffer(table, device=backend == "cuda")
        h_dat, _ = mk.alloc_buffer(data, device=data_on_device)
        obs = mk.observables
        rows = []
        for i, (lo, ln, start, ctx) in enumerate(jobs):
            obs[2 * i], obs[2 * i + 1] = start, 0
            rows.append([h_tab, h_dat, lo, ln, 2 * i, 2 * i + 1, ctx])
        ops = np.full(n, int(Opcode.DFA_SCAN), np.uint32)
        mk.wait(mk.submit_many(ops, np.array(rows, np.uint32)), timeout=120)
        assert mk.fault_count == 0
        return obs[:2 * n].copy()


@pytest.fixture(scope="module")
def case():
    rng = random.Random(5)
    d = build_dfa(PATS)
    data = _data(rng, 256 << 10)
    jobs = _jobs(rng, 96, data.size, d.context, d.states)  # 96 > the board's 64 entries
    want = _run("cpu", data, d.table, jobs, workers=2)
    assert int(want[1]) == count_matches(PATS, data.tobytes())
    return data, d, jobs, want


@pytest.mark.parametrize("where", ["host", "device"])
@pytest.mark.parametrize("part", [0, 1, 64, 700, 16384])
def test_assisted_scans_equal_the_cpu_backend(case, part, where):
    """Parts of every size down to a few bytes per lane segment (each lane steps several
    16-byte aligned segments, so unaligned lo/len and empty segments are all in here), with the
    data in mapped host memory and in device memory."""
    data, d, jobs, want = case
    got = _run("cuda", data, d.table, jobs, data_on_device=where == "device", coop_min_bytes=64,
               assist_part_bytes=part)
    bad = [i for i in range(len(jobs))
           if tuple(got[2 * i:2 * i + 2]) != tuple(want[2 * i:2 * i + 2])]
    assert not bad, [(jobs[i], got[2 * i:2 * i + 2], want[2 * i:2 * i + 2]) for i in bad[:5]]


def test_assist_survives_a_pause_and_runs_again(case):
    """Entries are device state: a pause mid-stream relaunches with a clean board."""
    data, d, jobs, want = case
    with Megakernel("cuda", slot_count=256, observable_slots=2 * len(jobs),
                    coop_min_bytes=64, assist_part_bytes=512) as mk:
        h_tab, _ = mk.alloc_buffer(d.table, device=True)
        h_dat, _ = mk.alloc_buffer(data)
        obs = mk.observables
        for rnd in range(3):
            rows = []
            for i, (lo, ln, start, ctx) in enumerate(jobs):
                obs[2 * i], obs[2 * i + 1] = start, 0
                rows.append([h_tab, h_dat, lo, ln, 2 * i, 2 * i + 1, ctx])
            t = mk.submit_many(np.full(len(jobs), int(Opcode.DFA_SCAN), np.uint32),
                               np.array(rows, np.uint32))
            with mk.paused():  # the pause drains what was published, then relaunches
                pass
            mk.wait(t, timeout=120)
            assert np.array_equal(obs[:2 * len(jobs)], want), rnd


@pytest.mark.parametrize("part", [0, 4096])
def test_idle_warps_take_parts_of_a_long_scan(part):
    """One long scan with the board on: warps other than its owner scan parts of it (else a
    regression would leave the ingest to one warp, exact but slow); with the board off, none."""
    rng = random.Random(9)
    d = build_dfa(PATS)
    data = _data(rng, 4 << 20)
    with Megakernel("cuda", slot_count=64, observable_slots=2, assist_part_bytes=part) as mk:
        h_tab, _ = mk.alloc_buffer(d.table, device=True)
        h_dat, _ = mk.alloc_buffer(data, device=True)
        obs = mk.observables
        obs[0], obs[1] = 0, 0
        mk.wait(mk.submit(Opcode.DFA_SCAN, [h_tab, h_dat, 0, data.size, 0, 1, d.context]),
                timeout=60)
        assert int(obs[1]) == count_matches(PATS, data.tobytes())
        helped = mk.backend.assist_helped()
        if part:
            assert helped > 0, "no idle warp took a part of a 4 MiB scan cut into 4 KiB parts"
            assert helped <= (4 << 20) // part  # never more than there are parts
        else:
            assert helped == 0
        # still running after the read's pause; a second scan after it is banked at stop
        mk.wait(mk.submit(Opcode.DFA_SCAN, [h_tab, h_dat, 0, data.size, 0, 1, d.context]),
                timeout=60)
        assert int(obs[1]) == 2 * count_matches(PATS, data.tobytes())
    after = mk.backend.assist_helped()
    assert after > helped if part else after == 0
