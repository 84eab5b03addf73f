# The one GPU run of the ops-gpu branch (from /work/main: cd .wt/gpu-ops-gpu && bash bench/gpu_userops.sh); ~145 s budget
set -u
S=$(date +%s); END=$((S + 140))
el(){ echo "[t+$(( $(date +%s) - S ))s] $*" | tee -a $OUT/steps.txt; }
left(){ local l=$((END - $(date +%s))); [ $l -lt 1 ] && l=1; [ $l -gt $1 ] && l=$1; echo $l; }
cp -r ../../.gpu .
source .gpu/env.sh > $OUT/env.log 2>&1 || { el "env.sh failed"; tail -40 /tmp/vyre-build.log > $OUT/build_fail.log; exit 1; }
el "built"
{ date -u; nvidia-smi -L; nvcc --version | tail -1; } > $OUT/device.txt
cp vyre/data/megakernel.ptxas.txt $OUT/
( timeout $(left 70) python3 tests/gpu_userops_child.py prewarm > $OUT/prewarm.json 2> $OUT/prewarm.err; el "prewarm rc $?" ) &
PW=$!
timeout $(left 20) python3 bench/micro/occupancy.py vyre/data/megakernel.fatbin > $OUT/occupancy.txt 2>&1; el "occupancy rc $?"
PYTHONUNBUFFERED=1 timeout $(left 45) python3 -m pytest -m gpu -q -p no:cacheprovider -o faulthandler_timeout=40 --ignore=tests/test_cuda_userops.py > $OUT/gpu_pytest.log 2>&1; el "gpu tests rc $?"
wait $PW
PYTHONUNBUFFERED=1 timeout $(left 40) python3 -m pytest -q -p no:cacheprovider -o faulthandler_timeout=30 -m gpu tests/test_cuda_userops.py -rA > $OUT/userops_pytest.log 2>&1; el "userops tests rc $?"
mkdir -p $OUT/results
VYRE_BENCH_COLD=0 timeout $(left 45) python3 -m vyre.bench --backend cuda --suite userops --repeat 3 --min-time 0.05 --no-progress --json $OUT/results/userops.json --markdown $OUT/results/userops.md > $OUT/bench.log 2>&1; el "bench rc $?"
timeout $(left 15) python3 bench/micro/drain_workers.py 1,4 > $OUT/drain.txt 2>&1; el "drain rc $?"
cat $OUT/steps.txt; tail -3 $OUT/gpu_pytest.log; tail -8 $OUT/userops_pytest.log; tail -30 $OUT/bench.log; cat $OUT/occupancy.txt $OUT/drain.txt
