#!/usr/bin/env bash
# A/B the megakernel under compile-time variants: bash bench/micro/ab.sh FLAGS...
set -u
for flags in "" "$@"; do
  out=/tmp/mk_$(echo "$flags" | tr -c 'A-Za-z0-9' _).ptx
  nvcc -ptx -arch=compute_75 -std=c++17 -O3 -Icsrc $flags cuda/megakernel.cu -o "$out" || exit 1
  echo "== variant: ${flags:-baseline}"
  VYRE_PTX=$out timeout 60 python3 bench/micro/throughput.py
done
