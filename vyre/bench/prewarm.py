"""Fill the pipeline cache with the fused CUDA builds a vyre-bench run will ask for.

``python -m vyre.bench.prewarm [--op MODULE:NAME]`` (a GPU machine with nvcc).

Suites that register user ops on the CUDA backend (``latency``'s ``call_user_op``,
``userops``, and ``op`` with ``--op``) make the megakernel build a fused module the first
time a set of ops is seen: one nvcc run of several seconds per set, in turn. Building the
same sets here, all at once, costs about one build of wall time, and the run then loads them
from the disk cache (``VYRE_CACHE_DIR``). Builds never fall inside a sample either way (a
suite registers its ops before it samples); this only shortens the run. The sets are made
exactly as the suites make them (:func:`op_sets`): a set that differed would miss the cache
and be built again by the run, costing time, never correctness.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def op_sets(user_op: Any = None) -> list[list[Any]]:
    """The op lists the suites hand to the backend's ``load_ops``, in registration order: a
    megakernel registering ops one at a time builds every prefix of its list."""
    from vyre.bench.suites.latency import CALL_ADD_OP, CALL_ADD_OP_NAME
    from vyre.bench.suites.userops import START_OPS
    from vyre.ops import Op
    from vyre.ops.registry import OpRegistry

    sets = [OpRegistry().with_op(Op(CALL_ADD_OP_NAME, CALL_ADD_OP)).ops()]
    reg = OpRegistry()
    for name, source in START_OPS.items():  # userops registers them one by one
        reg = reg.with_op(Op(name, source))
        sets.append(reg.ops())
    if user_op is not None:
        sets.append(OpRegistry().with_op(user_op).ops())
    return sets


def prewarm(arch: str, sets: list[list[Any]]) -> list[dict[str, Any]]:
    """Build ``sets`` for ``arch`` (``sm_90``) in parallel through the default cache;
    one record per set: its ops, where the build came from, seconds."""
    from vyre.ops import cuda_build
    from vyre.ops.cache import PipelineCache

    def build(ops: list[Any]) -> dict[str, Any]:
        # a cache object per build: one object builds under its lock, one entry at a time
        got = cuda_build.build_fused(ops, arch, cache=PipelineCache())
        return {"ops": [op.name for op in ops], "source": got.source,
                "seconds": round(got.seconds, 2)}

    with ThreadPoolExecutor(max(1, len(sets))) as pool:
        return list(pool.map(build, sets))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vyre.bench.prewarm",
                                 description="build the fused CUDA modules a vyre-bench run "
                                             "registers, in parallel, into the pipeline cache")
    ap.add_argument("--op", metavar="MODULE:NAME", help="also the op --op will measure")
    args = ap.parse_args(argv)
    user_op = None
    if args.op:
        from vyre.bench import userop

        try:
            user_op, _suite = userop.resolve(args.op)
        except userop.UserOpError as exc:
            print(f"prewarm: {exc}", file=sys.stderr)
            return 2
    import pycuda.driver as drv

    drv.init()  # no context: the compute capability is all a build needs
    major, minor = drv.Device(0).compute_capability()
    t0 = time.perf_counter()
    builds = prewarm(f"sm_{major}{minor}", op_sets(user_op))
    print(json.dumps({"arch": f"sm_{major}{minor}", "wall_s": round(time.perf_counter() - t0, 2),
                      "builds": builds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
