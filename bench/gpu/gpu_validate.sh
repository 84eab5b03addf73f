#!/usr/bin/env bash
# The GPU session in device calls (carry [".gpu"], timeout_s 600 each):
#   source .gpu/env.sh && bash bench/gpu/gpu_validate.sh session  # tests, examples, sanitizers,
#                                                                  # the call path, in one call
#   source .gpu/env.sh && bash bench/gpu/gpu_validate.sh tests    # GPU tests + compute-sanitizer
#   source .gpu/env.sh && bash bench/gpu/gpu_validate.sh bench    # vyre-bench --op on CUDA, every
#       suite twice, compare, plots, by BENCH_END (see the mode); results in $OUT/gpu_bench.tgz
#   source .gpu/env.sh && bash bench/gpu/gpu_validate.sh final    # one call of ~10 min: sanitizers,
#       the ingest tests, the ingest suite (needs the .whl scanners; INGEST_MIB, default 512,
#       within INGEST_S, default 170 s; VYRE_BENCH_INGEST_METHODS passes through), the latency
#       suite (LATENCY=0 leaves it out), then the other GPU tests
#   source .gpu/env.sh && bash bench/gpu/gpu_validate.sh calls    # one call of ~8 min: the
#       call-server variants A/B with the CHECK variant sanitized and tested
#       (bench/gpu/call_variants.sh), then the ingest A/B of 8 files against 2
#   source .gpu/env.sh && FROM=tests/test_x.py bash bench/gpu/gpu_validate.sh rest  # what a cut
#       `final` left: throughput twice + compare, the ingest A/B, the GPU tests from FROM on
# Everything it writes lands in $OUT (copy bench/results/* back into the repo afterwards).
set -u
out=${OUT:-/tmp/vyre-gpu}
failed=0  # any failing step makes the script exit 1 (after running the rest)
mkdir -p "$out"
# the ingest GPU tests, which `final` runs first (before its benchmarks) and `rest` leaves out
ingest_tests="tests/test_dfa_match_lanes.py tests/test_dfa_match_backends.py tests/test_stream_match.py tests/test_stream_device_sources.py"
# what a step may take: at most $1 s and what is left before END (epoch seconds, set per mode)
left(){ local l=$(( END - $(date +%s) )); [ "$l" -gt "$1" ] && l=$1; [ "$l" -lt 1 ] && l=1; echo "$l"; }
# throughput_twice DIR: two runs of the throughput suite and their compare
throughput_twice() {
  local d=$1 i
  for i in 1 2; do
    timeout "$(left 70)" python3 -m vyre.bench --backend cuda --suite throughput --no-progress \
      --min-time 0.5 --repeat 10 --json "$d/throughput$i.json" --markdown "$d/throughput$i.md" \
      > "$d/throughput$i.txt" 2>&1 || failed=1
  done
  timeout "$(left 15)" python3 -m vyre.bench compare "$d/throughput1.json" "$d/throughput2.json" \
    > "$d/throughput_compare.txt" 2>&1 || failed=1
  grep -E "^throughput/|^summary" "$d/throughput_compare.txt"
}
# ingest_files DIR: ingest_ab on 8 files with whole-GPU options (noyield; with the 4 KiB head
# it had before; without idle exits, the suite's options since 7b80e0c; with more chunks in
# flight) and the defaults, then on 2 files (a per-source cost; ~8 s per configuration), noyield on 2 GiB in
# 8 files, then where a per-pattern scan of 8 files spends its time, chunk by chunk
ingest_files() {
  local d=$1 raw=/tmp/vyre-ingest-ab-raw.txt
  : > "$raw"
  # each step's own exit status counts (a step cut by its timeout fails the script)
  timeout "$(left 100)" python3 bench/gpu/ingest_ab.py --mib 512 --files 8 --rounds 2 --configs \
    noyield,noyield+head4k,noexit+noyield,noyield+depth32,noyield+chunk2x40,default+share1 \
    --device-mib 0 >> "$raw" 2>&1 || { echo "ingest_ab 8 files: rc $?" >> "$raw"; failed=1; }
  timeout "$(left 60)" python3 bench/gpu/ingest_ab.py --mib 512 --files 2 --rounds 2 \
    --configs noyield,noyield+head4k,default+share1 --device-mib 0 >> "$raw" 2>&1 \
    || { echo "ingest_ab 2 files: rc $?" >> "$raw"; failed=1; }
  # the same 8 files 4x as long: a scan's fill and drain (~2-3 ms by the timeline) weigh a
  # quarter as much as on 512 MiB
  timeout "$(left 60)" python3 bench/gpu/ingest_ab.py --mib 2048 --files 8 --rounds 2 \
    --configs noyield --device-mib 0 >> "$raw" 2>&1 \
    || { echo "ingest_ab 2 GiB: rc $?" >> "$raw"; failed=1; }
  timeout "$(left 40)" python3 bench/gpu/ingest_ab.py --mib 512 --files 8 --timeline \
    --configs noyield >> "$raw" 2>&1 || { echo "ingest_ab timeline: rc $?" >> "$raw"; failed=1; }
  grep -v "^#" "$raw" > "$d/ingest_ab_files.txt"
  cat "$d/ingest_ab_files.txt"
}
# gpu_tests SECONDS LOG PYTEST-ARGS...: the GPU tests named, bounded, and a count of outcomes
gpu_tests() {
  local limit=$1 log=$2; shift 2
  timeout "$limit" python3 -m pytest -m gpu -v -p no:cacheprovider -o faulthandler_timeout=120 \
    "$@" > "$log" 2>&1 || failed=1
  grep -E "PASSED|FAILED|ERROR|SKIPPED" "$log" | sed -E 's/ +\[ *[0-9]+%\]//' \
    | awk '{print $NF}' | sort | uniq -c
  grep -E "FAILED|ERROR|Timeout" "$log" | head -20
  tail -2 "$log"
}
case "${1:-tests}" in
session)
  PYTHONUNBUFFERED=1 timeout 230 python3 -m pytest -m gpu -q -rfE -p no:cacheprovider \
    -o faulthandler_timeout=60 > "$out/gpu_pytest.log" 2>&1 || failed=1
  tail -15 "$out/gpu_pytest.log"
  for e in axpy histogram hashtable; do
    timeout 45 python3 "examples/$e.py" --backend cuda 2>&1 | tail -3 || failed=1
  done > "$out/examples.log"
  cat "$out/examples.log"
  timeout 60 compute-sanitizer --error-exitcode 1 --tool memcheck \
    python3 bench/gpu/sanitize_workload.py > "$out/memcheck.log" 2>&1 || failed=1
  tail -2 "$out/memcheck.log"
  timeout 70 compute-sanitizer --error-exitcode 1 --tool racecheck \
    python3 bench/gpu/sanitize_workload.py > "$out/racecheck.log" 2>&1 || failed=1
  tail -2 "$out/racecheck.log"
  PYTHONUNBUFFERED=1 timeout 110 python3 bench/gpu/call_gpu.py --n 5000 --reps 3 \
    > "$out/call_gpu.txt" 2>&1 || failed=1
  cat "$out/call_gpu.txt"
  ;;
tests)
  # every GPU test; PyCUDA holds the GIL in driver calls, so pytest-timeout cannot interrupt a
  # hung call: faulthandler dumps the stacks instead and `timeout` bounds the whole run
  PYTHONUNBUFFERED=1 timeout 300 python3 -m pytest -m gpu -v -p no:cacheprovider \
    -o faulthandler_timeout=40 > "$out/gpu_pytest.log" 2>&1 || failed=1
  tail -3 "$out/gpu_pytest.log"
  # the sanitizers over a checked workload whose buffers exist before the launch (the
  # sanitizer misreports host memory registered while its instrumented kernel runs)
  timeout 120 compute-sanitizer --error-exitcode 1 --tool memcheck \
    python3 bench/gpu/sanitize_workload.py > "$out/memcheck.log" 2>&1 || failed=1
  tail -2 "$out/memcheck.log"
  timeout 120 compute-sanitizer --error-exitcode 1 --tool racecheck \
    python3 bench/gpu/sanitize_workload.py > "$out/racecheck.log" 2>&1 || failed=1
  tail -2 "$out/racecheck.log"
  timeout 100 python3 bench/gpu/blocking_calls.py --limit 6 | tee "$out/blocking_calls.txt"
  ;;
bench)
  # One device call: the --op sample on CUDA, two runs of every suite, compare, plots. Every
  # step is bounded by a deadline: BENCH_END (epoch seconds; set it at the start of the
  # device command, before the build, e.g. BENCH_END=$(( $(date +%s) + 570 ))), else
  # BENCH_S (default 480) seconds from here, so the call ends inside its 600 s with what
  # finished. The runs write their JSON after every suite: a run cut by `timeout` keeps the
  # suites it finished, marked "incomplete". Repetitions are trimmed to fit: MIN_TIME (s of
  # sampling per benchmark, default 0.5; a full run's default is 1.0), REPEAT (samples,
  # default 10; full 20), the latency suite keeping its own 3000 samples; INGEST_MIB (default
  # 256 of 2048) and DEVICE_MIB (default 1024 of 4096) size the ingest suite;
  # VYRE_BENCH_COLD=0 leaves out the userops cold compile (prewarm builds the fused modules
  # first instead).
  now(){ date +%s; }
  S=$(now); END=${BENCH_END:-$(( S + ${BENCH_S:-480} ))}
  step(){ echo "[t+$(( $(now) - S ))s, $(( END - $(now) ))s left] $*" | tee -a "$out/steps.txt"; }
  r=/tmp/vyre-bench-results; rm -rf "$r"; mkdir -p "$r/plots"
  export VYRE_BENCH_INGEST_MIB=${INGEST_MIB:-256} VYRE_BENCH_DEVICE_MIB=${DEVICE_MIB:-1024}
  export VYRE_BENCH_COLD=0 PYTHONUNBUFFERED=1
  opts="--backend cuda --no-progress --min-time ${MIN_TIME:-0.5} --repeat ${REPEAT:-10}"
  # every default suite; throughput (no baselines of its own to cross-check) last, so a run
  # cut at its limit loses the suite that matters least to the evidence
  suites=${SUITES:-publish,latency,dispatch,userops,cpu,ingest,throughput}
  { nvidia-smi -L; nvcc --version | tail -1; echo "commit ${VYRE_BENCH_COMMIT:-unset}"; } \
    > "$r/device.txt" 2>&1
  step "options: $opts --suite $suites INGEST_MIB=$VYRE_BENCH_INGEST_MIB DEVICE_MIB=$VYRE_BENCH_DEVICE_MIB"
  timeout -k 5 "$(left 60)" python3 -m vyre.bench.prewarm --op vyre.bench.sample_op:bump \
    > "$r/prewarm.json" 2>&1
  rc=$?; step "prewarm rc $rc: $(tail -c 400 "$r/prewarm.json")"
  # shellcheck disable=SC2086
  timeout -k 5 "$(left 120)" python3 -m vyre.bench $opts --op vyre.bench.sample_op:bump \
    --json "$r/gpu_op.json" --markdown "$r/gpu_op.md" > "$r/gpu_op.txt" 2>&1
  rc=$?; step "op rc $rc"; [ "$rc" = 0 ] || failed=1
  for i in 1 2; do
    # run 1 takes half of what is left after 40 s for compare and plots, run 2 the rest
    cap=$(( (END - $(now) - 40) / (3 - i) ))
    # shellcheck disable=SC2086
    timeout -k 5 "$(left "$cap")" python3 -m vyre.bench $opts --suite "$suites" \
      --json "$r/gpu_run$i.json" \
      --markdown "$r/gpu_run$i.md" > "$r/gpu_run$i.txt" 2>&1
    rc=$?; step "run $i rc $rc (124: cut at its limit; its JSON keeps the suites it finished)"
    [ "$rc" = 0 ] || failed=1
    if [ "$rc" -ge 124 ] && [ -s "$r/gpu_run$i.json" ]; then  # cut: its report is the checkpoint's
      timeout 30 python3 -m vyre.bench show "$r/gpu_run$i.json" --markdown "$r/gpu_run$i.md" \
        >> "$r/gpu_run$i.txt" 2>&1
    fi
    grep -E "^(suites|INCOMPLETE)" "$r/gpu_run$i.txt" | tee -a "$out/steps.txt"
  done
  timeout 30 python3 -m vyre.bench compare "$r/gpu_run1.json" "$r/gpu_run2.json" \
    > "$out/gpu_compare.txt" 2>&1
  rc=$?; step "compare rc $rc"; [ "$rc" = 0 ] || failed=1
  for d in run1 op; do
    timeout "$(left 30)" python3 -m vyre.bench show "$r/gpu_$d.json" --plot "$r/plots/$d" \
      > /dev/null 2>> "$r/plots.log"; step "plots of $d rc $?: $(ls "$r/plots/$d" 2>/dev/null | tr '\n' ' ')"
  done
  # the device tool returns at most 8 files: all of it in one archive, the reports beside it
  cp "$r"/gpu_op.txt "$r"/gpu_run1.txt "$r"/gpu_run2.txt "$out/" 2>/dev/null
  tar -C "$r" -czf "$out/gpu_bench.tgz" . && step "archive $(du -h "$out/gpu_bench.tgz" | cut -f1)"
  for f in gpu_op gpu_run1 gpu_run2; do
    echo "== $f: cross-checks, errors"
    grep -E "^  (ok|SUSPECT|UNCHECKED) " "$r/$f.txt"
    grep -E -A12 "^ERRORS:" "$r/$f.txt"
  done
  echo "== gpu_op ratios"; grep -E -A12 "^ratios" "$r/gpu_op.txt"
  grep -E "^(summary|note|WARNING)" "$out/gpu_compare.txt"
  ;;
calls)
  # every step inside a deadline (an outer `timeout` would leave an inner step running); the
  # files go into one archive (the device tool returns at most 8). INGEST=0 leaves out the
  # ingest A/B (ingest_files), THROUGHPUT=1 adds the throughput suite twice and compare.
  S=$(date +%s); END=$(( S + ${CALLS_S:-505} ))
  d=/tmp/vyre-calls; rm -rf "$d"; mkdir -p "$d"
  VARIANTS=${VARIANTS:-base trace} REF_DIR=${REF_DIR:-build/ref} \
    CHECK=${CHECK:-base} END=$(( S + 400 )) DIR="$d" \
    bash bench/gpu/call_variants.sh > "$d/call_variants_run.log" 2>&1 || failed=1
  grep -E "^== |call_nop|call_atomic|trace|FAILED|^memcheck|^racecheck|^call tests|^CHECK|^ring" \
    "$d/call_variants_run.log"
  [ "${INGEST:-1}" = 1 ] && ingest_files "$d"
  [ "${THROUGHPUT:-0}" = 1 ] && throughput_twice "$d"
  tar -C "$d" -czf "$out/calls.tgz" . && cp "$d/call_variants_run.log" "$out/"
  ;;
final)
  timeout 70 compute-sanitizer --error-exitcode 1 --tool memcheck \
    python3 bench/gpu/sanitize_workload.py > "$out/memcheck.log" 2>&1 || failed=1
  tail -2 "$out/memcheck.log"
  timeout 80 compute-sanitizer --error-exitcode 1 --tool racecheck \
    python3 bench/gpu/sanitize_workload.py > "$out/racecheck.log" 2>&1 || failed=1
  tail -2 "$out/racecheck.log"
  # shellcheck disable=SC2086
  timeout 120 python3 -m pytest -m gpu -q -rfE -p no:cacheprovider $ingest_tests \
    > "$out/gpu_pytest_ingest.log" 2>&1 || failed=1
  tail -4 "$out/gpu_pytest_ingest.log"
  VYRE_BENCH_INGEST_MIB=${INGEST_MIB:-512} timeout "${INGEST_S:-170}" python3 -m vyre.bench --backend cuda \
    --suite ingest --no-progress --json "$out/h200_ingest.json" --markdown "$out/h200_ingest.md" \
    > "$out/h200_ingest.txt" 2>&1 || failed=1
  grep -E "^ingest/|vs hyperscan|^  (ok|suspect)" "$out/h200_ingest.txt"
  if [ "${LATENCY:-1}" = 1 ]; then  # the call path's round trips beside launch + sync (text only:
    # the device tool returns at most 8 files)
    timeout 120 python3 -m vyre.bench --backend cuda --suite latency --no-progress \
      > "$out/h200_latency.txt" 2>&1 || failed=1
    grep -E "^latency/|call_nop vs|  (ok|SUSPECT) " "$out/h200_latency.txt"
  fi
  ignore=""; for f in $ingest_tests; do ignore="$ignore --ignore=$f"; done
  # what the call has left after env.sh (~40 s, before this script), so its end still reports
  # (at least 1 s: `timeout 0` would not bound the tests at all)
  rest=$(( ${FINAL_S:-500} - SECONDS )); [ "$rest" -lt 1 ] && rest=1
  echo "other GPU tests: ${rest} s"
  # shellcheck disable=SC2086
  gpu_tests "$rest" "$out/gpu_pytest.log" $ignore
  ;;
rest)
  # what a cut `final` left, in one call of TAIL_S (default 440) seconds: the throughput suite
  # twice and compare (rounds in processes; THROUGHPUT=0: not), the ingest A/B of
  # ingest_files, then the GPU tests from file FROM (e.g. tests/test_ops_random.py) on,
  # alphabetically, the ingest ones left out (FROM past every file, e.g. tests/test_zzz: none)
  END=$(( $(date +%s) + ${TAIL_S:-440} ))
  [ "${THROUGHPUT:-1}" = 1 ] && throughput_twice "$out"
  [ "${INGEST:-1}" = 1 ] && ingest_files "$out"
  files=$(for f in tests/test_*.py; do [[ "$f" < "${FROM:-tests/test_}" ]] || echo "$f"; done)
  for f in $ingest_tests; do files=$(echo "$files" | grep -vx "$f"); done
  # shellcheck disable=SC2086
  [ -n "$files" ] && gpu_tests "$(left 600)" "$out/gpu_pytest_rest.log" $files
  ;;
esac
if [ "$failed" != 0 ]; then echo "gpu_validate: a step failed (see the logs in $out)"; exit 1; fi
