"""``python -m vyre demo`` on the CPU backend: every check passes, a wrong result fails the
demo with exit code 1, and the benchmark hand-off asks for the quick CPU suites."""
import subprocess
import sys

import pytest

import vyre.__main__ as demo_cli
from vyre.ingest.dfa import Dfa


def test_demo_runs_and_checks_every_result(capsys):
    assert demo_cli.main(["demo", "--backend", "cpu", "--no-bench"]) == 0
    out = capsys.readouterr().out
    assert "cpu backend" in out
    assert out.count("  ok  ") >= 6  # opcodes, packed, window, batch, scan, bulk


def test_demo_fails_on_a_wrong_result(capsys, monkeypatch):
    monkeypatch.setattr(Dfa, "count_matches", lambda self, data: -1)
    assert demo_cli.main(["demo", "--backend", "cpu", "--no-bench"]) == 1
    err = capsys.readouterr().err
    assert "demo FAILED" in err and "expected -1" in err


def test_demo_hands_over_to_the_quick_benchmark(capsys, monkeypatch):
    import vyre.bench.__main__ as bench_cli

    seen = []
    monkeypatch.setattr(bench_cli, "main", lambda argv: seen.append(argv) or 0)
    assert demo_cli.main(["demo", "--backend", "cpu"]) == 0
    assert len(seen) == 1
    argv = seen[0]
    assert "--quick" in argv and argv[argv.index("--backend") + 1] == "cpu"
    assert "cpu" in argv[argv.index("--suite") + 1].split(",")


def test_command_line_needs_a_command():
    out = subprocess.run([sys.executable, "-m", "vyre"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "demo" in out.stderr


@pytest.mark.parametrize("choice", ["tpu", ""])
def test_unknown_backend_is_refused(choice):
    with pytest.raises(SystemExit) as info:
        demo_cli.main(["demo", "--backend", choice])
    assert info.value.code == 2
