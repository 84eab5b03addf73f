#!/usr/bin/env bash
# The call server's images (cuda/call_server.cuh) on the GPU, in one device call:
# builds one sm_90 image per variant in parallel (fresh each time), then runs
# `call_gpu.py --quick --trace` on each through VYRE_PTX, the variants in turn, ROUNDS times
# (alternated: drift cannot favour one). With CHECK=<variant>, that image then runs
# compute-sanitizer memcheck and racecheck over bench/gpu/sanitize_workload.py, the call tests,
# and call_gpu.py's ring drain rate and dispatch with and without the call warp. Every step is
# bounded by END (epoch seconds; default 540 s from the start). Logs go to $OUT (or DIR).
#   source .gpu/env.sh && VARIANTS="base trace" CHECK=base bash bench/gpu/call_variants.sh
# A new variant is a line in `flags` (its -D macros) beside an #ifdef in the kernel. A variant
# named ref* is built from the sources under REF_DIR (its cuda/ and csrc/: e.g. the last commit,
# `mkdir -p build/ref && git archive HEAD cuda csrc | tar -x -C build/ref`, carried along as
# build/ref), so a change is A/B'd against what it replaces in one run. The ref image runs
# under this tree's Python (VYRE_PTX is not checked against the ABI): only for kernels whose
# launch layout and ABI are the same.
set -u -o pipefail
out=${DIR:-${OUT:-/tmp/vyre-gpu}}
img=/tmp/call_variants
rm -rf "$img"; mkdir -p "$out" "$img"
END=${END:-$(( $(date +%s) + 540 ))}
left(){ local l=$(( END - $(date +%s) )); [ "$l" -gt "$1" ] && l=$1; [ "$l" -lt 1 ] && l=1; echo "$l"; }
failed=0
declare -A flags=(
  [base]=""
  [trace]="-DVYRE_CALL_TRACE"
  [wait_inline]="-DVYRE_CALL_WAIT_INLINE"
  [ref]=""
  [ref_trace]="-DVYRE_CALL_TRACE"
)
names=${VARIANTS:-base trace}
builds=$(printf '%s\n' $names ${CHECK:-} | awk '!seen[$0]++')
for v in $builds; do  # every name checked before any build starts
  [ -n "${flags[$v]+x}" ] || { echo "call_variants.sh: unknown variant $v"; exit 2; }
  case $v in ref*) [ -f "${REF_DIR:-}/cuda/megakernel.cu" ] \
    || { echo "call_variants.sh: $v needs REF_DIR with cuda/ and csrc/"; exit 2; };; esac
done
declare -A pid=()
for v in $builds; do
  root=.
  case $v in ref*) root=$REF_DIR;; esac
  # shellcheck disable=SC2086
  timeout "$(left 240)" nvcc -fatbin -std=c++17 -O3 -lineinfo -gencode=arch=compute_90,code=sm_90 \
    ${flags[$v]} -I "$root/csrc" "$root/cuda/megakernel.cu" -o "$img/$v.fatbin" > "$img/$v.log" 2>&1 &
  pid[$v]=$!
done
for v in $builds; do
  if ! wait "${pid[$v]}" || [ ! -s "$img/$v.fatbin" ]; then
    echo "BUILD FAILED: $v"; tail -5 "$img/$v.log"; failed=1
  fi
done
export PYTHONUNBUFFERED=1
for r in $(seq "${ROUNDS:-2}"); do
  for v in $names; do
    [ -s "$img/$v.fatbin" ] || continue
    echo "== round $r variant $v (${flags[$v]:-no flags})"
    VYRE_PTX="$img/$v.fatbin" timeout "$(left 60)" python3 bench/gpu/call_gpu.py --quick \
      --trace --n "${N:-10000}" > "$img/run.txt" 2>&1
    rc=$?
    grep -v "^#" "$img/run.txt"
    [ "$rc" = 0 ] || { echo "RUN FAILED: $v round $r rc $rc"; tail -3 "$img/run.txt"; failed=1; }
  done
done | tee "$out/call_variants.txt"
[ "${PIPESTATUS[0]}" = 0 ] || failed=1
grep -q "FAILED" "$out/call_variants.txt" && failed=1
if [ -n "${CHECK:-}" ]; then
  export VYRE_PTX="$img/$CHECK.fatbin"
  if [ ! -s "$VYRE_PTX" ]; then
    echo "CHECK: no image for $CHECK"; failed=1
  else
    timeout "$(left 80)" compute-sanitizer --error-exitcode 1 --tool memcheck \
      python3 bench/gpu/sanitize_workload.py > "$out/memcheck_$CHECK.log" 2>&1 || failed=1
    echo "memcheck $CHECK: $(tail -1 "$out/memcheck_$CHECK.log")"
    timeout "$(left 90)" compute-sanitizer --error-exitcode 1 --tool racecheck \
      python3 bench/gpu/sanitize_workload.py > "$out/racecheck_$CHECK.log" 2>&1 || failed=1
    echo "racecheck $CHECK: $(tail -1 "$out/racecheck_$CHECK.log")"
    timeout "$(left 150)" python3 -m pytest -m gpu -q -rfE -p no:cacheprovider \
      -o faulthandler_timeout=40 tests/ -k call > "$out/call_pytest_$CHECK.log" 2>&1 || failed=1
    echo "call tests $CHECK: $(tail -1 "$out/call_pytest_$CHECK.log")"
    # every GPU test skipped (an image the probe refused) passes with rc 0: not a pass here
    grep -qE "[0-9]+ passed" "$out/call_pytest_$CHECK.log" || { echo "CHECK: no call test ran"; failed=1; }
    # the ring's drain rate and dispatch with and without the call warp, and while calls run
    timeout "$(left 110)" python3 bench/gpu/call_gpu.py --n 5000 --reps 3 \
      > "$out/call_gpu_$CHECK.txt" 2>&1 || failed=1
    grep -E "^call_|^ring|calls made|launch_sync" "$out/call_gpu_$CHECK.txt"
  fi
fi
if [ "$failed" != 0 ]; then echo "call_variants.sh: a step failed (see the logs in $out)"; exit 1; fi
