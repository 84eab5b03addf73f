"""Context.paired_in_processes: each round of every method in a fresh process (vyre.bench.round)."""
import os
import textwrap
import time

import pytest

from vyre.bench.runner import Context, Options

FACTORY = '''
import os, threading, time
from vyre.bench.runner import Method

def methods(spec):
    out = []
    child = os.getpid() != spec.get("parent")
    if spec.get("linger") and child:  # a thread that would keep the process alive a minute
        threading.Thread(target=time.sleep, args=(60,)).start()
    if spec.get("silent") and child:
        os._exit(0)
    names = spec["names"]
    if spec.get("drop_in_child") and child:
        names = [n for n in names if n != spec["drop_in_child"]]
    for name in names:
        def sample(name=name):
            if name == spec.get("raises"):
                with open(spec["log"], "a") as f:
                    f.write("ran\\n")
                raise ValueError("this method cannot run here")
            if spec.get("crash"):
                os._exit(3)
            if spec.get("hang"):
                time.sleep(60)
            return float(os.getpid())  # ns: one value per process
        verify = None
        if spec.get("fail_first"):  # the first process to verify fails, the others pass
            def verify(path=spec["fail_first"]):
                first = not os.path.exists(path)
                open(path, "a").close()
                return not first, "the first process's work was wrong"
        out.append(Method(name, sample, unit="ns/op", params={"name": name}, verify=verify))
    return out
'''


@pytest.fixture
def factory(tmp_path, monkeypatch):
    (tmp_path / "round_factory.py").write_text(textwrap.dedent(FACTORY))
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + (os.pathsep + path if path else ""))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "round_factory:methods"


def ctx():
    c = Context(Options(min_time_s=0.0, warmup_s=0.0, min_samples=6, warmup_samples=1))
    c.suite = "t"
    return c


def test_each_round_runs_in_its_own_process(factory):
    c = ctx()
    got = c.paired_in_processes(factory, {"names": ["a", "b"]}, rounds=3)
    assert c.errors == []
    for name in ("a", "b"):
        r = got[name]
        assert r is not None and r.rounds == 3 and r.params["processes"] == 3
        # every round's samples come from one process, none of them this one
        per_round = [set(s) for s in r.strata]
        assert all(len(s) == 1 for s in per_round) and len(per_round) == 3
        pids = set().union(*per_round)
        assert len(pids) == 3 and float(os.getpid()) not in pids
        assert sum(len(s) for s in r.strata) == 6  # 1/rounds of min_samples, rounded up
    # both methods' round r ran in the same process
    assert [set(s) for s in got["a"].strata] == [set(s) for s in got["b"].strata]


def test_a_method_failing_in_its_process_is_its_error_only(factory, tmp_path):
    c = ctx()
    log = tmp_path / "ran"
    got = c.paired_in_processes(factory, {"names": ["a", "b"], "raises": "b", "log": str(log)},
                                rounds=3)
    assert got["a"] is not None and got["a"].rounds == 3 and got["b"] is None
    assert [(e["name"], e["error"]) for e in c.errors] == [
        ("b", "ValueError: this method cannot run here")]
    assert log.read_text() == "ran\n"  # left out of the later rounds, as paired() does


def test_a_method_a_process_did_not_build_is_an_error(factory):
    c = ctx()
    got = c.paired_in_processes(factory, {"names": ["a", "b"], "drop_in_child": "b",
                                          "parent": os.getpid()}, rounds=2)
    assert got["a"] is not None and got["b"] is None
    assert len(c.errors) == 1 and "did not build this method" in c.errors[0]["error"]


def test_a_process_that_prints_no_result_is_every_methods_error(factory):
    c = ctx()
    got = c.paired_in_processes(factory, {"names": ["a"], "silent": True,
                                          "parent": os.getpid()}, rounds=2)
    assert got == {"a": None} and "printed no result" in c.errors[0]["error"]


def test_a_lingering_thread_does_not_hold_the_round(factory):
    c = ctx()
    t0 = time.monotonic()
    got = c.paired_in_processes(factory, {"names": ["a"], "linger": True,
                                          "parent": os.getpid()}, rounds=2, timeout_s=30)
    assert got["a"] is not None and c.errors == []
    assert time.monotonic() - t0 < 25


def test_a_process_that_dies_is_every_methods_error(factory):
    c = ctx()
    got = c.paired_in_processes(factory, {"names": ["a", "b"], "crash": True}, rounds=2)
    assert got == {"a": None, "b": None}
    assert len(c.errors) == 2 and all("exit 3" in e["error"] for e in c.errors)


def test_a_process_that_hangs_is_stopped_at_the_timeout(factory):
    c = ctx()
    got = c.paired_in_processes(factory, {"names": ["a"], "hang": True}, rounds=2,
                                timeout_s=3)
    assert got == {"a": None}
    assert "round 1 did not finish within 3 s" in c.errors[0]["error"]


def test_verification_must_hold_in_every_process(factory, tmp_path):
    c = ctx()
    got = c.paired_in_processes(factory, {"names": ["a"], "fail_first": str(tmp_path / "f")},
                                rounds=3)
    # a failed verification is an error, not a number, in whichever process it happens
    assert got["a"] is None
    assert "the first process's work was wrong" in c.errors[0]["error"]
    c = ctx()
    got = c.paired_in_processes(factory, {"names": ["a"], "fail_first": str(tmp_path / "f")},
                                rounds=3)  # the file exists: every process passes
    assert got["a"] is not None and got["a"].verified is True


def test_a_bad_factory_reference_is_refused():
    with pytest.raises(ValueError, match="module:function"):
        ctx().paired_in_processes("no_colon_here", {})
