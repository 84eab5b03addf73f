#!/usr/bin/env bash
# The sanitizer job: build vyre's C extensions (the wire core, the CPU workers and the
# interpreter they run, io_uring) with AddressSanitizer and UndefinedBehaviorSanitizer, in a
# copy of this tree with its own virtual environment (the tree's own build is left alone),
# then run the CPU test suite against that build. Any ASan or UBSan report fails the job.
#
#   tools/sanitize.sh                 # the CPU suite but the benchmark tooling's tests
#   tools/sanitize.sh tests/test_x.py # or the pytest arguments given
#
# Environment: VYRE_SANITIZE_DIR (default build/sanitize: the copy and its venv), CC (gcc or
# clang; the runtime preloaded into python is the compiler's own libasan).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=${VYRE_SANITIZE_DIR:-$root/build/sanitize}
cc=${CC:-gcc}

# the tree as it is now (committed and uncommitted files, no build products)
rm -rf "$work/src"
mkdir -p "$work/src"
git ls-files -z --cached --others --exclude-standard \
    | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$work/src"

if [ ! -x "$work/venv/bin/python" ]; then
    python3 -m venv "$work/venv"
    "$work/venv/bin/python" -m pip install -q --upgrade pip
    "$work/venv/bin/python" -m pip install -q "numpy>=1.23" "pytest>=7" "hypothesis>=6" \
        "Cython>=3.0" setuptools
fi
py=$work/venv/bin/python

# -fno-sanitize-recover: undefined behaviour aborts the test that triggers it
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
# (VYRE_NVCC=true: no megakernel PTX, which the CPU suite does not use)
(cd "$work/src" && CC=$cc CFLAGS="$san" LDFLAGS="$san" VYRE_NVCC=true \
    VYRE_BUILD_ONLY=wire,cpu,cpu_testhooks,call,uring "$py" setup.py -q build_ext --inplace \
    >"$work/build.log" 2>&1) || { tail -30 "$work/build.log"; echo "sanitize: build failed"; exit 1; }

# python itself is not instrumented: the ASan runtime must be loaded first
asan=$("$cc" -print-file-name=libasan.so)
[ -f "$asan" ] || { echo "sanitize: $cc has no libasan.so ($asan)"; exit 1; }
# leaks: the interpreter keeps memory until exit by design, so leak checking is off
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
log=$work/pytest.log
set +e
# (the benchmark tooling's, kernel-build and fused-op register tests are left out: they
# exercise no extension, and they run nvcc, which cannot run with the ASan runtime preloaded;
# and so is the packaging test, which checks a default build while this one builds the
# test-hooks worker in place)
if [ "$#" -eq 0 ]; then
    set -- tests --ignore-glob="tests/test_bench_*" --ignore=tests/test_kernel_build.py \
        --ignore=tests/test_cuda_userops.py --ignore=tests/test_packaging.py
fi
(cd "$work/src" && LD_PRELOAD=$asan PYTHONPATH=$work/src "$py" -m pytest -q -p no:cacheprovider \
    -m "not gpu" "$@" 2>&1) | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if grep -qE "ERROR: AddressSanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer" "$log"; then
    echo "sanitize: a sanitizer report is in $log"
    exit 1
fi
[ "$rc" -eq 0 ] || { echo "sanitize: the test suite failed under the sanitizers (rc $rc)"; exit "$rc"; }
echo "sanitize: ASan + UBSan build, CPU suite passed with no report"
