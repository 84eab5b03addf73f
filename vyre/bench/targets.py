"""The project's goals for its headline ratios, so that a report can say "met" or "not met".

A target is a goal, not a measurement: the ratio (oriented as in
:func:`vyre.bench.runner.ratio_of`, > 1 = vyre better) that a subject should reach against a
baseline of the same run. These are the targets in the "target" column of
``bench/RESULTS.md``; a ratio without an entry here is reported without a verdict.
"""
from __future__ import annotations

#: (subject id, baseline id) -> target ratio
TARGETS: dict[tuple[str, str], float] = {
    ("dispatch/megakernel_submit_many", "dispatch/pycuda_launch"): 300.0,
    ("dispatch/megakernel_submit_many", "dispatch/cuda_graph"): 30.0,
    ("latency/megakernel", "latency/pycuda_launch_sync"): 4.0,
    ("ingest/gpustream_scan", "ingest/python_gpu_loop"): 2.0,
    ("ingest/gpustream_scan", "ingest/pinned_h2d"): 0.8,
    # issue 20: per-pattern counts on the GPU vs Hyperscan on every host core
    ("ingest/gpustream_scan_per_pattern", "ingest/hyperscan"): 3.0,
    ("ingest/gpustream_scan_per_pattern", "ingest/pinned_h2d"): 0.9,
    ("cpu/vyre_cpu", "cpu/threadpool_submit"): 100.0,
    ("publish/publish_slot", "publish/python_struct"): 10.0,
    ("publish/publish_many", "publish/python_struct"): 100.0,
    # issue 17: a user op costs at most 20 % more than the built-in doing the same work
    ("userops/user_add", "userops/builtin_atomic_add"): 1 / 1.2,
}


def target_for(subject_id: str, baseline_id: str) -> float | None:
    """The target ratio of ``subject`` vs ``baseline``, or ``None`` when there is none."""
    return TARGETS.get((subject_id, baseline_id))
