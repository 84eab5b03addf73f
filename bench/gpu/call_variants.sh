#!/usr/bin/env bash
# The call path's experiment macros (cuda/call_server.cuh) on the GPU, in one device call:
# builds one sm_90 image per variant in parallel, then runs `call_gpu.py --quick --trace` on
# each through VYRE_PTX, the variants in turn, ROUNDS times (alternated: drift cannot favour
# one). Writes $OUT/call_variants.txt.
#   source .gpu/env.sh && bash bench/gpu/call_variants.sh
set -u
out=${OUT:-/tmp/vyre-gpu}
mkdir -p "$out" /tmp/call_variants
declare -A flags=(
  [base]=""
  [inline]="-DVYRE_CALL_INLINE"
  [trace]="-DVYRE_CALL_TRACE"
  [trace_inline]="-DVYRE_CALL_TRACE -DVYRE_CALL_INLINE"
  [stagger]="-DVYRE_CALL_STAGGER"
  [trace_stagger]="-DVYRE_CALL_TRACE -DVYRE_CALL_STAGGER"
  [inline_stagger]="-DVYRE_CALL_INLINE -DVYRE_CALL_STAGGER"
)
names=${VARIANTS:-base inline stagger inline_stagger trace trace_inline trace_stagger}
for v in $names; do
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
