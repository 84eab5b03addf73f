#!/usr/bin/env bash
# The call path's experiment macros (cuda/call_server.cuh) on the GPU, in one device call:
# builds one sm_90 image per variant in parallel, then runs `call_gpu.py --quick --trace` on
# each through VYRE_PTX, the variants in turn, ROUNDS times (alternated: drift cannot favour
# one). With CHECK=<variant>, that image then runs compute-sanitizer memcheck and racecheck
# over bench/gpu/sanitize_workload.py, the call tests, and call_gpu.py's ring drain rate and
# dispatch with and without the call warp. Writes $OUT/call_variants.txt and the logs.
#   source .gpu/env.sh && VARIANTS="base stagger_hot" CHECK=stagger_hot bash bench/gpu/call_variants.sh
set -u
out=${OUT:-/tmp/vyre-gpu}
mkdir -p "$out" /tmp/call_variants
failed=0
declare -A flags=(
  [base]=""
  [inline]="-DVYRE_CALL_INLINE"
  [stagger]="-DVYRE_CALL_STAGGER"
  [stagger4]="-DVYRE_CALL_STAGGER=4"
  [stagger_hot]="-DVYRE_CALL_STAGGER -DVYRE_CALL_HOT_LANES"
  [inline_stagger_hot]="-DVYRE_CALL_INLINE -DVYRE_CALL_STAGGER -DVYRE_CALL_HOT_LANES"
  [trace]="-DVYRE_CALL_TRACE"
  [trace_inline]="-DVYRE_CALL_TRACE -DVYRE_CALL_INLINE"
  [trace_stagger_hot]="-DVYRE_CALL_TRACE -DVYRE_CALL_STAGGER -DVYRE_CALL_HOT_LANES"
)
names=${VARIANTS:-base inline stagger stagger4 stagger_hot inline_stagger_hot trace trace_inline trace_stagger_hot}
for v in $names ${CHECK:-}; do
  [ -e "/tmp/call_variants/$v.fatbin" ] && continue
  # shellcheck disable=SC2086
  timeout 240 nvcc -fatbin -std=c++17 -O3 -lineinfo -gencode=arch=compute_90,code=sm_90 \
    ${flags[$v]} -I csrc cuda/megakernel.cu -o "/tmp/call_variants/$v.fatbin" \
    > "/tmp/call_variants/$v.log" 2>&1 &
done
wait
ls -la /tmp/call_variants/*.fatbin
export PYTHONUNBUFFERED=1
for r in $(seq "${ROUNDS:-2}"); do
  for v in $names; do
    echo "== round $r variant $v (${flags[$v]:-no flags})"
    VYRE_PTX="/tmp/call_variants/$v.fatbin" timeout 60 python3 bench/gpu/call_gpu.py --quick \
      --trace --n "${N:-10000}" 2>&1 | grep -v "^#"
  done
done | tee "$out/call_variants.txt"
if [ -n "${CHECK:-}" ]; then
  export VYRE_PTX="/tmp/call_variants/$CHECK.fatbin"
  timeout 80 compute-sanitizer --error-exitcode 1 --tool memcheck \
    python3 bench/gpu/sanitize_workload.py > "$out/memcheck_$CHECK.log" 2>&1 || failed=1
  tail -1 "$out/memcheck_$CHECK.log"
  timeout 90 compute-sanitizer --error-exitcode 1 --tool racecheck \
    python3 bench/gpu/sanitize_workload.py > "$out/racecheck_$CHECK.log" 2>&1 || failed=1
  tail -1 "$out/racecheck_$CHECK.log"
  timeout 150 python3 -m pytest -m gpu -q -rfE -p no:cacheprovider -o faulthandler_timeout=40 \
    tests/ -k call > "$out/call_pytest_$CHECK.log" 2>&1 || failed=1
  tail -3 "$out/call_pytest_$CHECK.log"
  # the ring's drain rate and dispatch with and without the call warp, and while calls run
  timeout 110 python3 bench/gpu/call_gpu.py --n 5000 --reps 3 > "$out/call_gpu_$CHECK.txt" 2>&1 \
    || failed=1
  grep -E "^ring|calls made|drain|dispatch" "$out/call_gpu_$CHECK.txt"
fi
if [ "$failed" != 0 ]; then echo "call_variants.sh: a check failed (see the logs in $out)"; exit 1; fi
