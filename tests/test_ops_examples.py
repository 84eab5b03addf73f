"""Each example runs on the CPU backend, checks its own results and says OK."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.mark.parametrize("name", ["axpy", "histogram", "hashtable"])
def test_example_runs_and_checks_itself(name):
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, f"{name}.py"),
                           "--backend", "cpu"],
                          capture_output=True, text=True, timeout=600, cwd=EXAMPLES, check=False,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith(": OK"), proc.stdout
