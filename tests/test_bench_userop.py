"""``vyre-bench --op MODULE:NAME``: resolution, clear refusals, and no silent ignoring."""
import sys
import types

import pytest

from vyre.bench import suites, userop
from vyre.bench.__main__ import main, run_suites
from vyre.bench.runner import Options


def test_spec_must_be_module_colon_name(capsys):
    assert main(["--op", "no_colon"]) == 2
    err = capsys.readouterr().err
    assert "is not MODULE:NAME" in err and "Fix:" in err


def test_without_the_ops_package_the_refusal_says_so(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "vyre.ops", None)  # import fails
    assert main(["--op", "mymod:op"]) == 2
    err = capsys.readouterr().err
    assert "needs user-defined ops (the vyre.ops package)" in err and "Fix:" in err


@pytest.fixture
def fake_ops(monkeypatch):
    class Op:
        def __init__(self, name):
            self.name = name

    api = types.ModuleType("vyre.ops")
    api.Op = Op
    monkeypatch.setitem(sys.modules, "vyre.ops", api)
    user = types.ModuleType("user_ops_for_test")
    user.table = types.SimpleNamespace(scatter=Op("scatter"))
    user.not_an_op = 42
    monkeypatch.setitem(sys.modules, "user_ops_for_test", user)
    if userop.SUITE not in suites.SUITES:
        monkeypatch.setattr(suites, "SUITES", (*suites.SUITES, userop.SUITE))
    return user


def test_resolves_dotted_names_and_checks_the_type(fake_ops):
    op, suite = userop.resolve("user_ops_for_test:table.scatter")
    assert op is fake_ops.table.scatter and suite == userop.SUITE
    with pytest.raises(userop.UserOpError, match="has no 'missing'"):
        userop.resolve("user_ops_for_test:missing")
    with pytest.raises(userop.UserOpError, match="is a int, not a vyre.ops.Op"):
        userop.resolve("user_ops_for_test:not_an_op")
    with pytest.raises(userop.UserOpError, match="cannot import 'no_such_module_x'"):
        userop.resolve("no_such_module_x:op")


def test_the_op_reaches_the_suite_or_the_run_says_it_was_ignored(fake_ops, monkeypatch):
    seen = {}

    def measuring(ctx):
        seen["op"] = ctx.cache["user_op"]
        ctx.cache[userop.MEASURED] = True

    def ignoring(ctx):
        pass

    op = fake_ops.table.scatter
    opts = Options(suites=[userop.SUITE], min_time_s=0.0, warmup_s=0.0, min_samples=1)
    monkeypatch.setattr(suites, "load", lambda name: types.SimpleNamespace(run=measuring))
    doc = run_suites(opts, argv=["vyre-bench"], user_op=op)
    assert seen["op"] is op and doc["errors"] == []
    monkeypatch.setattr(suites, "load", lambda name: types.SimpleNamespace(run=ignoring))
    doc = run_suites(opts, argv=["vyre-bench"], user_op=op)
    assert doc["suites"][0]["status"] == "error"
    assert "did not measure it" in doc["errors"][0]["error"]
