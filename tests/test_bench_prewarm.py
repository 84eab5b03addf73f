"""vyre.bench.prewarm: the op sets it builds are the ones the suites register."""
import pytest

from vyre.bench import prewarm
from vyre.bench.sample_op import bump

ops = pytest.importorskip("vyre.ops")


def registered_sets(register_all):
    """The op lists a CPU megakernel hands its backend's load_ops while ``register_all(mk)``
    registers ops (the CUDA backend builds exactly these lists)."""
    from vyre import Megakernel

    seen = []
    try:
        with Megakernel(backend="cpu", slot_count=16, observable_slots=4) as mk:
            real = mk._backend.load_ops

            def record(op_list, *a, **kw):
                seen.append(list(op_list))
                return real(op_list, *a, **kw)

            mk._backend.load_ops = record
            register_all(mk)
    except ops.OpBuildError as exc:  # no C compiler for the CPU backend's ops
        pytest.skip(f"user ops on the CPU backend cannot build here: {exc}")
    return seen


def test_the_sets_are_what_the_suites_register():
    from vyre.bench.suites import latency, userops

    want = registered_sets(
        lambda mk: mk.register_op(latency.CALL_ADD_OP_NAME, latency.CALL_ADD_OP))
    want += registered_sets(
        lambda mk: [userops.register(mk, n, s) for n, s in userops.START_OPS.items()])
    want += registered_sets(lambda mk: mk.register_op(bump))
    got = prewarm.op_sets(bump)
    assert len(got) == 5
    assert got == want
    assert prewarm.op_sets() == want[:4]
    # the suite's rounds register the three ops in one build: the last prefix set
    assert registered_sets(userops.register_all) == want[3:4]


def test_prewarm_builds_every_set_once(monkeypatch):
    from vyre.ops import cuda_build

    calls = []

    def fake_build(op_list, arch, cache=None):
        calls.append(([o.name for o in op_list], arch))
        return cuda_build.BuildResult(b"", arch, "k", "build", 0.5)

    monkeypatch.setattr(cuda_build, "build_fused", fake_build)
    out = prewarm.prewarm("sm_90", prewarm.op_sets(bump))
    assert sorted(calls) == sorted([
        (["bench_call_add"], "sm_90"), (["uadd"], "sm_90"), (["uadd", "ht_insert"], "sm_90"),
        (["uadd", "ht_insert", "ht_lookup"], "sm_90"), (["bump"], "sm_90")])
    assert out[-1] == {"ops": ["bump"], "source": "build", "seconds": 0.5}


def test_a_bad_op_spec_is_refused(capsys):
    assert prewarm.main(["--op", "no_colon"]) == 2
    assert "is not MODULE:NAME" in capsys.readouterr().err
