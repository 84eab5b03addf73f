#!/usr/bin/env bash
# The call path on the GPU (docs/call.md), one device call (carry [".gpu", ".wt/gpu-callpath"]):
#   cd .wt/gpu-callpath && cp -r ../../.gpu . && source .gpu/env.sh && bash bench/gpu/callpath.sh
# Writes into $OUT: call_gpu_pytest.log, call_gpu.txt, latency.json/.md.
set -u
out=${OUT:-/tmp/vyre-gpu}
mkdir -p "$out"
failed=0
# 1. the call-path tests on CUDA (and the rest of tests/test_call.py on the CPU beside them)
PYTHONUNBUFFERED=1 timeout 150 python3 -m pytest -v -p no:cacheprovider \
  -o faulthandler_timeout=40 tests/test_call.py > "$out/call_gpu_pytest.log" 2>&1 || failed=1
tail -3 "$out/call_gpu_pytest.log"
# 2. round trips, the ring with and without the call warp, launch + sync baselines
PYTHONUNBUFFERED=1 timeout 240 python3 bench/gpu/call_gpu.py --n 20000 --reps 3 \
  2>&1 | tee "$out/call_gpu.txt" || failed=1
# 3. the latency suite (ring, calls, PyCUDA/CuPy in one run, as distributions)
timeout 150 python3 -m vyre.bench --backend cuda --suite latency --no-progress \
  --json "$out/latency.json" --markdown "$out/latency.md" 2>&1 | tail -25 || failed=1
if [ "$failed" != 0 ]; then echo "callpath.sh: a step failed (see the logs in $out)"; exit 1; fi
