"""User ops on the CPU backend: start-up with 3 ops (cold compile, warm disk cache) and the
dispatch cost of a user op against the built-in ATOMIC_ADD.

    python bench/ops_cpu.py [--ops 100000] [--repeats 5] [--json out.json]

Start-up: a fresh process creates a CPU Megakernel, registers 3 ops in one build
(``register_ops``) and runs one of them; "cold" uses an empty VYRE_CACHE_DIR (the compiler
runs), "warm" a second fresh process over the same directory (a verified disk hit, no
compiler). Each figure is the median of ``--repeats`` processes, measured inside the
process from before ``Megakernel(...)`` to the first result (``import vyre`` is reported
separately).

Dispatch: ``submit_many`` + ``drain`` of ``--ops`` slots, ATOMIC_ADD ``[1, obs[k % 64]]``
against a user op doing the same add from lane 0 (the other 31 lanes return at once), the
same harness run, interleaved; ns/op = median wall time / ops.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

OPS_SOURCE = {
    "bench_add": r"""
VYRE_OP(bench_add) {
    if (op->lane == 0)
        vyre_op_result(op, 0, vyre_obs_add(op, op->args[1] - 160u, op->args[0]) + op->args[0]);
}
""",
    "bench_scale": r"""
VYRE_OP(bench_scale) {
    float *x = (float *)vyre_buf_ptr(op, op->args[0], 4ull * op->args[1], 4ull * op->args[2], 1);
    if (x == NULL) return;
    for (uint32_t i = op->lane; i < op->args[2]; i += op->lanes) x[i] *= 2.0f;
}
""",
    "bench_max": r"""
VYRE_OP(bench_max) {
    if (op->lane != 0) return;
    uint32_t m = 0;
    for (uint32_t i = 0; i < op->args[1]; ++i) {
        uint32_t v = vyre_load_u32(op, op->args[0], i);
        m = v > m ? v : m;
    }
    vyre_op_result(op, 0, m);
}
""",
}

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import vyre
from vyre import Megakernel
from vyre.ops import Op
t1 = time.perf_counter()
sources = json.loads(sys.argv[1])
mk = Megakernel("cpu", slot_count=256, observable_slots=64).start()
ops = mk.register_ops([Op(name, src) for name, src in sources.items()])
r = mk.result(mk.submit(ops[0], [1, 160]))
t2 = time.perf_counter()
mk.shutdown()
print(json.dumps({"import_s": t1 - t0, "start_s": t2 - t1, "build": mk._ops_telemetry.get("source"),
                  "result": list(r)}))
"""


def startup(repeats: int) -> dict:
    cold, warm, imports, sources = [], [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="vyre-bench-cache-") as cache:
            env = dict(os.environ, VYRE_CACHE_DIR=cache)
            for bucket in (cold, warm):
                out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(OPS_SOURCE)],
                                     capture_output=True, text=True, env=env, check=True)
                rec = json.loads(out.stdout.strip().splitlines()[-1])
                assert rec["result"] == [1, 0, 0, 0], rec
                bucket.append(rec["start_s"])
                imports.append(rec["import_s"])
                sources.append(rec["build"])
    assert sources[0::2] == ["build"] * repeats and sources[1::2] == ["disk"] * repeats, sources
    return {"cold_start_s": statistics.median(cold), "warm_start_s": statistics.median(warm),
            "cold_all_s": cold, "warm_all_s": warm, "import_vyre_s": statistics.median(imports)}


def dispatch(n: int, repeats: int) -> dict:
    import numpy as np

    from vyre import Megakernel, Opcode
    from vyre.ops import Op

    with Megakernel("cpu", slot_count=4096, observable_slots=64) as mk:
        (op,) = mk.register_ops([Op("bench_add", OPS_SOURCE["bench_add"])])
        args = np.stack([np.ones(n, np.uint32), 160 + np.arange(n, dtype=np.uint32) % 64], axis=1)
        kinds = {"ATOMIC_ADD": np.full(n, int(Opcode.ATOMIC_ADD), np.uint32),
                 "user op": np.full(n, op.opcode, np.uint32)}
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(repeats):
            for name, opcodes in kinds.items():
                before = mk.observables[:64].astype(np.uint64).sum()
                t0 = time.perf_counter()
                mk.submit_many(opcodes, args)
                mk.drain()
                times[name].append(time.perf_counter() - t0)
                assert mk.observables[:64].astype(np.uint64).sum() - before == n
        assert mk.fault_count == 0
        workers = mk.backend.workers
    out = {f"{k} ns/op": statistics.median(v) / n * 1e9 for k, v in times.items()}
    out["ratio user/builtin"] = out["user op ns/op"] / out["ATOMIC_ADD ns/op"]
    out["ops"] = n
    out["workers"] = workers
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", help="write the figures here too")
    a = p.parse_args()
    result = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "host": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
                f"load {os.getloadavg()[0]:.1f}",
        "python": platform.python_version(),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "startup_3_ops": startup(a.repeats),
        "dispatch": dispatch(a.ops, a.repeats),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
