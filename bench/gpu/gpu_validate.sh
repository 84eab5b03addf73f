#!/usr/bin/env bash
# The GPU session in device calls (carry [".gpu"], timeout_s 600 each):
#   source .gpu/env.sh && bash bench/gpu/gpu_validate.sh session  # tests, examples, sanitizers,
#                                                                  # the call path, in one call
#   source .gpu/env.sh && bash bench/gpu/gpu_validate.sh tests    # GPU tests + compute-sanitizer
#   source .gpu/env.sh && bash bench/gpu/gpu_validate.sh bench    # full vyre-bench on CUDA, twice
#   source .gpu/env.sh && bash bench/gpu/gpu_validate.sh final    # one call of ~10 min: sanitizers,
#       the ingest tests, the ingest suite (needs the .whl scanners), then the other GPU tests
# Everything it writes lands in $OUT (copy bench/results/* back into the repo afterwards).
set -u
out=${OUT:-/tmp/vyre-gpu}
failed=0  # any failing step makes the script exit 1 (after running the rest)
mkdir -p "$out"
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
  mkdir -p "$out/results"
  for i in 1 2; do
    timeout 280 python3 -m vyre.bench --backend cuda --suite dispatch,latency,throughput,ingest \
      --no-progress --json "$out/results/gpu_run$i.json" --markdown "$out/results/gpu_run$i.md" \
      $( [ "$i" = 1 ] && echo --plot /tmp/vyre-plots ) 2>&1 | tail -40
  done
  python3 -m vyre.bench compare "$out/results/gpu_run1.json" "$out/results/gpu_run2.json" \
    | tee "$out/results/gpu_compare.txt"
  # the device tool returns at most 8 files: the plots travel as one archive
  tar -C /tmp -cf "$out/results/gpu_plots.tar" vyre-plots
  ;;
final)
  timeout 70 compute-sanitizer --error-exitcode 1 --tool memcheck \
    python3 bench/gpu/sanitize_workload.py > "$out/memcheck.log" 2>&1 || failed=1
  tail -2 "$out/memcheck.log"
  timeout 80 compute-sanitizer --error-exitcode 1 --tool racecheck \
    python3 bench/gpu/sanitize_workload.py > "$out/racecheck.log" 2>&1 || failed=1
  tail -2 "$out/racecheck.log"
  first="tests/test_dfa_match_lanes.py tests/test_dfa_match_backends.py tests/test_stream_match.py tests/test_stream_device_sources.py"
  # shellcheck disable=SC2086
  timeout 120 python3 -m pytest -m gpu -q -rfE -p no:cacheprovider $first > "$out/gpu_pytest_ingest.log" 2>&1 \
    || failed=1
  tail -4 "$out/gpu_pytest_ingest.log"
  VYRE_BENCH_INGEST_MIB=${INGEST_MIB:-512} timeout 170 python3 -m vyre.bench --backend cuda \
    --suite ingest --no-progress --json "$out/h200_ingest.json" --markdown "$out/h200_ingest.md" \
    > "$out/h200_ingest.txt" 2>&1 || failed=1
  grep -E "^ingest/|vs hyperscan|^  (ok|suspect)" "$out/h200_ingest.txt"
  ignore=""; for f in $first; do ignore="$ignore --ignore=$f"; done
  # shellcheck disable=SC2086
  rest=$(( ${FINAL_S:-580} - SECONDS ))  # what the call has left, so its end still reports
  echo "other GPU tests: ${rest} s"
  timeout "$rest" python3 -m pytest -m gpu -v -p no:cacheprovider -o faulthandler_timeout=90 \
    $ignore > "$out/gpu_pytest.log" 2>&1 || failed=1
  grep -E "PASSED|FAILED|ERROR|SKIPPED" "$out/gpu_pytest.log" | sed -E 's/ +\[ *[0-9]+%\]//' \
    | awk '{print $NF}' | sort | uniq -c
  grep -E "FAILED|ERROR" "$out/gpu_pytest.log" | head -20
  tail -2 "$out/gpu_pytest.log"
  ;;
esac
if [ "$failed" != 0 ]; then echo "gpu_validate: a step failed (see the logs in $out)"; exit 1; fi
