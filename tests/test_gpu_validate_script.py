"""bench/gpu/gpu_validate.sh bench: the device call's shell logic, run where there is no GPU
(every CUDA step then skips or fails fast, which is what the script must survive)."""
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_mode_leaves_few_plainly_named_files_and_an_archive(tmp_path):
    from vyre.backends import cuda_available

    if cuda_available()[0]:
        pytest.skip("a GPU is present: this test checks the script where none is")
    for tool in ("bash", "timeout", "tar", "du"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), BENCH_S="400", SUITES="cpu",
               PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
    env.pop("BENCH_END", None)
    p = subprocess.run(["bash", "bench/gpu/gpu_validate.sh", "bench"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    names = sorted(f.name for f in out.iterdir())
    # what the device tool brings back: at most 8 files, plain names, nothing nested
    assert names == ["gpu_bench.tgz", "gpu_compare.txt", "gpu_op.txt", "gpu_run1.txt",
                     "gpu_run2.txt", "steps.txt"], names
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", n) for n in names)
    steps = (out / "steps.txt").read_text()
    for step in ("options: --backend cuda", "op rc 0", "run 1 rc 0", "run 2 rc 0",
                 "compare rc 0", "archive "):
        assert step in steps, steps
    with tarfile.open(out / "gpu_bench.tgz") as tar:
        members = set(tar.getnames())
        assert {"./gpu_run1.json", "./gpu_run2.json", "./gpu_op.json", "./gpu_run1.md",
                "./device.txt", "./prewarm.json"} <= members, members
        doc = json.load(tar.extractfile("./gpu_run1.json"))
    assert [s["name"] for s in doc["suites"]] == ["cpu"]
    assert doc["options"]["min_time_s"] == 0.5 and doc["options"]["min_samples"] == 10
    assert "incomplete" not in doc
