"""Per-warp-round timeline of the megakernel draining a burst (build with -DVYRE_EXP_TRACE)."""
import time
import numpy as np
import pycuda.driver as cuda
from vyre import Megakernel, Opcode

with Megakernel("cuda", slot_count=1 << 18, observable_slots=1024) as mk:
    be = mk.backend
    n = 1 << 17
    time.sleep(0.05)
    with be._active():
        ptr, size = be._module.get_global("vyre_trace_n")
        cuda.memset_d32(ptr, 0, 1)
    t0 = time.perf_counter()
    mk.submit_many(np.zeros(n, np.uint32))
    t1 = time.perf_counter()
    target = n
    while mk.control[1] < target:
        pass
    t2 = time.perf_counter()
    print(f"publish {1e3*(t1-t0):.2f} ms, drained {n/(t2-t1)/1e6:.1f} M/s after publish")
    with be._active():
        cnt = np.zeros(1, np.uint32)
        p, _ = be._module.get_global("vyre_trace_n")
        cuda.memcpy_dtoh(cnt, p)
        tp, tsize = be._module.get_global("vyre_trace")
        tr = np.zeros(tsize // 8, np.uint64)
        cuda.memcpy_dtoh(tr, tp)
    k = int(min(cnt[0], 16384))
    tr = tr[: k * 8].reshape(k, 8).astype(np.int64)
    busy = tr[tr[:, 1] > 0]
    t0 = busy[:, 1].min()
    rel = (busy[:, :5] - t0) / 1e3
    print("rounds traced", k, "busy", len(busy))
    for name, a, b in [("wait->claim", 0, 1), ("claim->loaded", 1, 2), ("loaded->executed", 2, 3), ("executed->stored", 3, 4)]:
        d = (busy[:, b] - busy[:, a]) / 1e3
        print(f"{name:18s} us: p10 {np.percentile(d,10):8.2f} p50 {np.percentile(d,50):8.2f} p90 {np.percentile(d,90):8.2f} max {d.max():9.2f}")
    print("iters p50", np.percentile(busy[:, 7], 50), "max", busy[:, 7].max())
    end = rel[:, 4].max()
    for q in np.linspace(0, end, 11):
        active = ((rel[:, 0] <= q) & (rel[:, 4] >= q)).sum()
        inflight = ((rel[:, 1] <= q) & (rel[:, 4] >= q)).sum()
        print(f"t={q:9.1f} us  rounds alive {active:5d}  claimed&unfinished {inflight:5d}")
    sms = np.bincount(busy[:, 5].astype(int))
    print("rounds per SM min/median/max", sms.min(), np.median(sms), sms.max())
