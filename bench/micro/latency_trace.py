"""Where one op's round trip goes: GPU timestamps per stage (build with -DVYRE_EXP_LAT).

    nvcc -ptx -arch=compute_75 -std=c++17 -O3 -Icsrc -DVYRE_EXP_LAT cuda/megakernel.cu -o /tmp/lat.ptx
    VYRE_PTX=/tmp/lat.ptx python bench/micro/latency_trace.py

Stages (GPU globaltimer): poller issued the load that saw the doorbell -> mirror stored ->
worker saw the mirror -> slot loaded (overlapping the wait for the tenant mirror) -> executed ->
status stored. "Outside" is the host
round trip minus the GPU span: host publish -> poller sees it, plus status -> host sees it.
"""
from __future__ import annotations

import time

import numpy as np
import pycuda.driver as cuda

from vyre import Megakernel, Opcode

N = 3000


def main() -> None:
    with Megakernel("cuda", slot_count=1024, observable_slots=8) as mk:
        for _ in range(200):
            mk.wait(mk.submit(Opcode.NOP))
        first = mk.submit(Opcode.NOP)
        mk.wait(first)
        host = np.zeros(N)
        tickets = []
        for i in range(N):
            t0 = time.perf_counter_ns()
            t = mk.submit(Opcode.NOP)
            mk.wait(t)
            host[i] = time.perf_counter_ns() - t0
            tickets.append(t)
        be = mk.backend
        with be._active():
            lp, lsize = be._module.get_global("vyre_lat")
            lat = np.zeros(lsize // 8, np.uint64)
            cuda.memcpy_dtoh(lat, lp)
            pp, psize = be._module.get_global("vyre_lat_poll")
            poll = np.zeros(psize // 8, np.uint64)
            cuda.memcpy_dtoh(poll, pp)
    n = lsize // 32
    lat = lat.reshape(n, 4).astype(np.int64)
    poll = poll.reshape(n, 2).astype(np.int64)
    rows = []
    for t in tickets:
        w, p = lat[t % n], poll[t % n]  # doorbell value t+1 -> index t
        rows.append([p[1] - p[0], w[0] - p[1], w[1] - w[0], w[2] - w[1], w[3] - w[2], w[3] - p[0]])
    rows = np.array(rows) / 1e3
    names = ["poller: seen -> mirror", "mirror -> worker run", "slot load", "execute",
             "status store", "GPU span (seen -> stored)"]
    for j, name in enumerate(names):
        print(f"{name:28s} us p10 {np.percentile(rows[:, j], 10):7.2f} p50 "
              f"{np.percentile(rows[:, j], 50):7.2f} p90 {np.percentile(rows[:, j], 90):7.2f}")
    r = host / 1e3
    print(f"{'host round trip':28s} us p10 {np.percentile(r, 10):7.2f} p50 {np.percentile(r, 50):7.2f} "
          f"p90 {np.percentile(r, 90):7.2f}")
    out = r - rows[:, 5]
    print(f"{'outside the GPU span':28s} us p10 {np.percentile(out, 10):7.2f} p50 "
          f"{np.percentile(out, 50):7.2f} p90 {np.percentile(out, 90):7.2f}")


if __name__ == "__main__":
    main()
