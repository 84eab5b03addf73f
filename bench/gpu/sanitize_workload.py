"""A representative GPU workload for compute-sanitizer (memcheck, racecheck).

Every buffer is allocated *before* the megakernel is launched: the sanitizer does not see
host allocations made while its instrumented kernel already runs (it reported an in-bounds
read of a mapped buffer allocated after launch as out of bounds). Results are checked, so a
run that "passes" the sanitizer also computed the right answers.

    compute-sanitizer --tool memcheck python bench/gpu/sanitize_workload.py
"""
from __future__ import annotations

import sys

import numpy as np

from vyre import Megakernel, Opcode, SlotFaultError
from vyre.ingest.dfa import build_dfa, count_per_pattern
from vyre.protocol import OBSERVABLE_BASE as OBS


def main(backend: str = "cuda") -> int:
    rng = np.random.default_rng(11)
    dfa = build_dfa([b"needle", b"pin"])
    data = bytearray(rng.choice(list(b"needlpi"), size=100_000).astype(np.uint8).tobytes())
    for pos in range(0, len(data) - 6, 997):
        data[pos:pos + 6] = b"needle"
    mk = Megakernel(backend, slot_count=256, observable_slots=256, tenants=2)
    h_tab, _ = mk.alloc_buffer(dfa.table, device=True)
    h_host, _ = mk.alloc_buffer(np.frombuffer(bytes(data), np.uint8))
    h_dev, _ = mk.alloc_buffer(np.frombuffer(bytes(data), np.uint8), device=True)
    h_dst, dst = mk.alloc_buffer(4096)
    # DFA_MATCH: id table, counters + a record region in device memory and in host memory
    h_ids, _ = mk.alloc_buffer(dfa.ids, device=True)
    npat, cap = len(dfa.patterns), 64
    out_words = npat + 1 + 2 * cap
    h_mdev, mdev = mk.alloc_buffer(4 * out_words, device=True)
    h_mhost, mhost = mk.alloc_buffer(4 * out_words)
    mk.start()
    failures = []

    def check(what: str, got, want) -> None:
        if got != want:
            failures.append(f"{what}: got {got}, want {want}")

    try:
        # counters through submit_many (lanes of many warps hit the same observables)
        n = 20_000
        idx = rng.integers(0, 16, n, dtype=np.uint32)
        args = np.zeros((n, 2), np.uint32)
        args[:, 0] = 1
        args[:, 1] = OBS + idx
        mk.wait(mk.submit_many(np.full(n, int(Opcode.ATOMIC_ADD), np.uint32), args), timeout=30)
        check("atomic adds", mk.observables[:16].tolist(), np.bincount(idx, minlength=16).tolist())
        # DFA scans: one lane (small), a whole warp (a6 > 0, large), from every lane position
        want_ctx = (dfa.count_matches(bytes(data[100:]))
                    - dfa.count_matches(bytes(data[100:100 + dfa.context])))
        for lead in (0, 7, 31):
            for _ in range(lead):
                mk.submit(Opcode.NOP)
            for h, slot in ((h_host, 40), (h_dev, 41)):
                mk.observables[slot] = 0
                mk.wait(mk.submit(Opcode.DFA_SCAN, [h_tab, h, 100, len(data) - 100, 0xFFFFFFFF,
                                                    slot, dfa.context]), timeout=30)
                check(f"coop scan lead={lead} h={h}", int(mk.observables[slot]), want_ctx)
        # many long scans at once: more than the assist board's 64 entries, so parts go to
        # idle warps and some scans run on their own warp only
        rows = np.array([[h_tab, h_host if i % 2 else h_dev, 100, len(data) - 100, 0xFFFFFFFF,
                          100 + i, dfa.context] for i in range(80)], np.uint32)
        mk.observables[100:180] = 0
        mk.wait(mk.submit_many(np.full(80, int(Opcode.DFA_SCAN), np.uint32), rows), timeout=60)
        check("80 assisted scans", mk.observables[100:180].tolist(), [want_ctx] * 80)
        # DFA_MATCH over the same range: per-pattern counts and records (a region too small
        # for them all), split over lanes and assisting warps, out buffer in either memory
        want_per = count_per_pattern(dfa.patterns, bytes(data[100:]))
        want_per -= count_per_pattern(dfa.patterns, bytes(data[100:100 + dfa.context]))
        for h_out, out in ((h_mdev, mdev), (h_mhost, mhost)):
            mk.observables[44] = 0
            res = mk.result(mk.submit(Opcode.DFA_MATCH, [
                h_tab, h_dev, 100, len(data) - 100, h_ids, 44, dfa.context, h_out, 0, npat,
                npat, cap]), timeout=30)
            words = np.zeros(out_words, np.uint32)
            if isinstance(out, np.ndarray):
                words[:] = out.view(np.uint32)[:out_words]
            else:
                mk.backend.copy_from_device(out, 0, words)
            check(f"match counts h={h_out}", words[:npat].tolist(), want_per.tolist())
            check(f"match result h={h_out}", tuple(res[:3]),
                  (want_ctx, int(want_per.sum()), min(cap, int(want_per.sum()))))
            check(f"match records h={h_out}", int(words[npat]), min(cap, int(want_per.sum())))
        mk.observables[42] = 0
        mk.wait(mk.submit(Opcode.DFA_SCAN, [h_tab, h_host, 0, 1000, 43, 42, 0]), timeout=30)
        check("lane scan", int(mk.observables[42]), dfa.count_matches(bytes(data[:1000])))
        # buffer copies, in and out of bounds
        mk.wait(mk.submit(Opcode.BUF_COPY, [h_host, 10, h_dst, 0, 4096]), timeout=10)
        check("buf copy", bytes(dst[:4096]), bytes(data[10:4106]))
        for bad in ([h_host, 0, h_dst, 4000, 200], [h_host, 0, 200, 0, 8]):
            try:
                mk.wait(mk.submit(Opcode.BUF_COPY, bad), timeout=10)
                failures.append(f"BUF_COPY {bad} did not fault")
            except SlotFaultError:
                pass
        # packed slots, stores, loads, compare-swap, printf, an unauthorized tenant
        mk.wait(mk.submit_packed([(1, [7, OBS + 60]), (2, [3, OBS + 60]), (3, [OBS + 60, 61])]),
                timeout=10)
        check("packed", (int(mk.observables[60]), int(mk.observables[61])), (10, 10))
        mk.wait([mk.submit(Opcode.PRINTF, [i, i, i]) for i in range(8)], timeout=10)
        check("printf records", len(mk.debug_log()), 8)
        try:
            mk.wait(mk.submit(Opcode.STORE_U32, [1, OBS + 70], tenant=3), timeout=10)
            failures.append("unauthorized tenant did not fault")
        except SlotFaultError:
            pass
        # the call path (docs/call.md): built-ins, faults, and several lanes at once
        check("call NOP", mk.call(Opcode.NOP, timeout=10), 0)
        mk.observables[80] = 5
        check("call ATOMIC_ADD", mk.call(Opcode.ATOMIC_ADD, (2, OBS + 80), timeout=10), 7)
        check("call LOAD_U32", mk.call(Opcode.LOAD_U32, (OBS + 80, 0), timeout=10), 7)
        # an unauthorized tenant; a header word written by an authorized non-system tenant
        for op, bad, tenant, reason in ((Opcode.ATOMIC_ADD, (1, OBS + 81), 3, 1),
                                        (Opcode.STORE_U32, (0xFFFF, 5), 1, 2)):
            try:
                mk.call(op, bad, tenant=tenant, timeout=10)
                failures.append(f"call {bad} tenant {tenant} did not fault")
            except SlotFaultError as err:
                check(f"call fault reason, tenant {tenant}", err.reason, reason)
        import threading

        def caller() -> None:
            for _ in range(200):
                mk.call(Opcode.ATOMIC_ADD, (1, OBS + 82), timeout=10)
        threads = [threading.Thread(target=caller) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        check("calls from 4 threads", int(mk.observables[82]), 800)
    finally:
        mk.shutdown(timeout=10)
    for f in failures:
        print("FAIL", f)
    print("sanitize workload:", "FAILED" if failures else "results correct")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
