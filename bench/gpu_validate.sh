#!/usr/bin/env bash
# The GPU session in two device calls (carry [".gpu"], timeout_s 600 each):
#   source .gpu/env.sh && bash bench/gpu_validate.sh tests    # GPU tests + compute-sanitizer
#   source .gpu/env.sh && bash bench/gpu_validate.sh bench    # full vyre-bench on CUDA, twice
# Everything it writes lands in $OUT (copy bench/results/* back into the repo afterwards).
set -u
out=${OUT:-/tmp/vyre-gpu}
mkdir -p "$out"
case "${1:-tests}" in
tests)
  # every GPU test, each bounded: a hang shows up as one timed-out test, not a lost call
  timeout 330 python3 -m pytest -m gpu -v -p no:cacheprovider --timeout=60 2>&1 | tee "$out/gpu_pytest.log" | tail -25
  timeout 120 compute-sanitizer --tool memcheck --target-processes all \
    python3 -m pytest tests/test_semantics.py -q -p no:cacheprovider --timeout=60 \
    -k "cuda and (store_load or packed or dfa_scan or buf_copy or unauthorized or printf)" \
    2>&1 | tee "$out/memcheck.log" | tail -6
  timeout 90 compute-sanitizer --tool racecheck --target-processes all \
    python3 -m pytest tests/test_semantics.py -q -p no:cacheprovider --timeout=60 \
    -k "cuda and (dfa_scan_context or packed_slot_runs)" 2>&1 | tee "$out/racecheck.log" | tail -6
  ;;
bench)
  mkdir -p "$out/results"
  for i in 1 2; do
    timeout 280 python3 -m vyre.bench --backend cuda --suite dispatch,latency,throughput,ingest \
      --no-progress --json "$out/results/h100_run$i.json" --markdown "$out/results/h100_run$i.md" \
      $( [ "$i" = 1 ] && echo --plot /tmp/vyre-plots ) 2>&1 | tail -40
  done
  python3 -m vyre.bench compare "$out/results/h100_run1.json" "$out/results/h100_run2.json" \
    | tee "$out/results/h100_compare.txt"
  # the device tool returns at most 8 files: the plots travel as one archive
  tar -C /tmp -cf "$out/results/h100_plots.tar" vyre-plots
  ;;
esac
