"""Which CUDA driver calls wait for a running persistent kernel (and so hang under one)?

Each probe runs in its own process: a vyre megakernel is started, then the call is made with
a watchdog that kills the process after ``--limit`` seconds. Output: one line per probe,
``ok <ms>`` or ``HUNG``. Run on a GPU machine: ``python bench/gpu/blocking_calls.py``.
"""
from __future__ import annotations

import argparse
import subprocess
import sys

PROBES = {
    "host_alloc": "cuda.pagelocked_zeros(1 << 20, np.uint8, mem_flags=MAPPED)",
    "host_free": "pre_host.base.free()",
    "host_register": "HostRegistration(fresh_mmap())",
    "host_unregister": "pre_reg.unregister()",
    "dev_alloc": "cuda.mem_alloc(1 << 20)",
    "dev_free": "pre_dev.free()",
    "stream_create": "cuda.Stream(flags=1)",
    "side_copy": ("cuda.memcpy_htod_async(pre_dev, np.ones(1 << 20, np.uint8), side); "
                  "side.synchronize()"),
    "event_sync": "ev = cuda.Event(); ev.record(side); ev.synchronize()",
    "module_load": "cuda.module_from_buffer(open(PTX_PATH, 'rb').read())",
    "second_megakernel": ("m2 = Megakernel('cuda', slot_count=64).start(); "
                          "m2.wait(m2.submit(Opcode.NOP), timeout=5); m2.shutdown(timeout=5)"),
}

BODY = """
import faulthandler, sys, time
import numpy as np
from vyre import Megakernel, Opcode
from vyre.backends.cuda.probe import PTX_PATH
import pycuda.driver as cuda
mk = Megakernel('cuda', slot_count=64)
MAPPED = cuda.host_alloc_flags.DEVICEMAP | cuda.host_alloc_flags.PORTABLE
from vyre.backends.cuda import host_zeros
from vyre.backends.cuda.host import HostRegistration
def fresh_mmap():
    return host_zeros(1 << 20)
pre_host = cuda.pagelocked_zeros(1 << 20, np.uint8, mem_flags=MAPPED)
pre_reg = HostRegistration(fresh_mmap())
pre_dev = cuda.mem_alloc(1 << 20)
side = cuda.Stream(flags=1)
mk.start()
mk.wait(mk.submit(Opcode.NOP), timeout=5)
faulthandler.dump_traceback_later({limit}, exit=True)
t0 = time.perf_counter()
{call}
print(f"ok {{(time.perf_counter() - t0) * 1e3:.3f}} ms", flush=True)
faulthandler.cancel_dump_traceback_later()
mk.shutdown(timeout=5)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--limit", type=float, default=8.0)
    ap.add_argument("probes", nargs="*", default=list(PROBES))
    args = ap.parse_args()
    for name in args.probes:
        code = BODY.format(limit=args.limit, call=PROBES[name])
        try:
            p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=args.limit + 30)
            line = next((ln for ln in p.stdout.splitlines() if ln.startswith("ok")), None)
            if line:
                verdict = line
            elif "Timeout" in p.stderr:
                verdict = "HUNG"
            else:
                tail = p.stderr.strip().splitlines()[-14:]
                verdict = f"ERROR rc={p.returncode}:\n    " + "\n    ".join(tail)
        except subprocess.TimeoutExpired:
            verdict = "HUNG (process did not exit)"
        print(f"{name:18s} {verdict}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
