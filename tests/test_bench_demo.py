"""``python -m vyre demo``: says what ran where, every check, figures against baselines."""
import os
import re
import subprocess
import sys

import pytest
from _cpu_backend import cpu_backend_works

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def demo_output():
    if not cpu_backend_works():
        pytest.skip("CPU backend not usable here")
    p = subprocess.run([sys.executable, "-m", "vyre", "demo", "--backend", "cpu"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    return p


def test_demo_speaks_in_words(demo_output):
    out = demo_output.stdout
    assert demo_output.returncode == 0, out + demo_output.stderr
    first = out.splitlines()[0]
    assert first.startswith("vyre demo on the cpu backend: ") and "worker threads" in first
    assert not re.search(r"[{}]|'\w+':", out), "a raw dict reached the output"
    assert out.count("\n  ok  ") == 6
    # a figure, its baseline and a verdict in words, with the target
    assert re.search(r"\n  tiny ops through one submit_many \+ drain on the CPU backend: "
                     r"[\d.,]+ [mun]?s/op \(median\)\n", out), out  # us/op on a loaded host
    assert re.search(r"\n    [\d.,]+x (faster|slower) than one ThreadPoolExecutor.submit per op "
                     r"\([\d.,]+ [mun]?s/op\) \(95% CI [\d.,]+x-[\d.,]+x\); the target is 100x: "
                     r"(met|not met)\n", out), out
    assert "baselines cross-checked against the same call measured alone:" in out
    assert "quick mode is a smoke test, not numbers to quote" in out
    assert "`vyre-bench --quick --suite cpu,latency --backend cpu --no-progress --summary`" in out


def test_demo_without_the_benchmark():
    if not cpu_backend_works():
        pytest.skip("CPU backend not usable here")
    p = subprocess.run([sys.executable, "-m", "vyre", "demo", "--backend", "cpu", "--no-bench"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "How fast, against what" not in p.stdout
    assert "All 1,000,015 slots ran with 0 faults." in p.stdout
