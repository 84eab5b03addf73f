#!/usr/bin/env bash
# The call path's latency on the GPU, this kernel against a base kernel image, in one device call
# (docs/call.md). From a copy of the tree with .gpu beside it (carry [".gpu", ".wt/<copy>"]):
#   cd .wt/<copy> && cp -r ../../.gpu . && source .gpu/env.sh && BASE=base.fatbin bash bench/gpu/call_ab.sh
# BASE: a fatbin of the kernel to compare with (same vyre_launch_t), run through VYRE_PTX with
# this tree's host code; the user-op row of that run still uses this tree's fused build.
# Writes into $OUT: call_gpu.txt, call_gpu_base.txt, call_pytest.log, memcheck.log,
# racecheck.log, megakernel.ptxas.txt.
set -u
out=${OUT:-/tmp/vyre-gpu}
mkdir -p "$out"
failed=0
export PYTHONUNBUFFERED=1
# 1. this kernel: round trips, the ring with and without the call warp, PyCUDA/CuPy baselines
timeout 150 python3 bench/gpu/call_gpu.py --n 10000 --reps 3 > "$out/call_gpu.txt" 2>&1 || failed=1
cat "$out/call_gpu.txt"
# 2. the base kernel's round trips in the same session
if [ -n "${BASE:-}" ]; then
  VYRE_PTX="$BASE" timeout 60 python3 bench/gpu/call_gpu.py --n 10000 --roundtrips-only \
    > "$out/call_gpu_base.txt" 2>&1 || failed=1
  cat "$out/call_gpu_base.txt"
fi
# 3. the call-path tests on CUDA
timeout 120 python3 -m pytest -m gpu -q -rfE -p no:cacheprovider -o faulthandler_timeout=40 \
  tests/ -k call > "$out/call_pytest.log" 2>&1 || failed=1
tail -4 "$out/call_pytest.log"
# 4. the sanitizers over a checked workload that makes calls too
timeout 60 compute-sanitizer --error-exitcode 1 --tool memcheck \
  python3 bench/gpu/sanitize_workload.py > "$out/memcheck.log" 2>&1 || failed=1
tail -2 "$out/memcheck.log"
timeout 70 compute-sanitizer --error-exitcode 1 --tool racecheck \
  python3 bench/gpu/sanitize_workload.py > "$out/racecheck.log" 2>&1 || failed=1
tail -2 "$out/racecheck.log"
# 5. registers and spills of this build (the SASS itself: cuobjdump and nvdisasm, e.g. from the
#    nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm wheels, where no toolkit has them)
cp vyre/data/megakernel.ptxas.txt "$out/" 2>/dev/null || true
if [ "$failed" != 0 ]; then echo "call_ab.sh: a step failed (see the logs in $out)"; exit 1; fi
