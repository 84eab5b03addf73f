"""vyre.bench.checks (cross-check verdicts) and vyre.bench.env's per-suite snapshots."""
import pytest

from vyre.bench import env
from vyre.bench.checks import Check, band_distance, loop_reference, verdict
from vyre.bench.runner import Context, Options


def summ(median, p10, p90):
    return {"median": median, "p10": p10, "p90": p90}


def check(**kw):
    return Check(what="the same call alone", reference=lambda: 0.0, **kw)


def test_a_baseline_far_from_its_reference_is_suspect_either_way():
    ok = verdict(summ(12_000, 11_000, 14_000), 11_400, "lower", check())
    assert ok["status"] == "ok" and ok["reason"] == ""
    slow = verdict(summ(1_013_000, 985_000, 1_050_000), 11_400, "lower", check())
    assert slow["status"] == "suspect" and slow["factor"] == pytest.approx(88.9, rel=1e-3)
    assert slow["reason"].startswith("measured 88.9x slower than its reference")
    fast = verdict(summ(1_000, 900, 1_100), 11_400, "lower", check())  # work skipped?
    assert fast["status"] == "suspect" and "faster" in fast["reason"]


def test_the_decision_uses_the_band_not_the_median_alone():
    # median 2.7x below the reference, but the reference sits inside the p10-p90 band of a
    # widely spread baseline: not suspect
    s = summ(21_700, 12_000, 60_000)
    assert band_distance(s, 58_000, "lower") == 1.0
    assert verdict(s, 58_000, "lower", check())["status"] == "ok"
    assert band_distance(summ(10, 8, 12), 4, "lower") == 2.0  # p10 / reference


def test_rates_and_floors():
    # a rate 3x below its reference: slower
    r = verdict(summ(1e9, 0.9e9, 1.1e9), 3.6e9, "higher", check())
    assert r["status"] == "suspect" and "slower" in r["reason"]
    # a floor is one sided: far slower than the floor is fine, far faster is not
    assert verdict(summ(1e9, 0.9e9, 1.1e9), 9e9, "higher", check(kind="floor"))["status"] == "ok"
    assert verdict(summ(9e9, 8e9, 10e9), 1e9, "higher", check(kind="floor"))["status"] == "suspect"


def test_loop_reference_units():
    ns = loop_reference(lambda: None, per_call=10, samples=5)()
    assert 0 < ns < 1e6
    rate = loop_reference(lambda: None, per_call=10, samples=5, unit="ops/s")()
    assert rate > 10


def test_reference_measured_once_per_key_and_run():
    calls = []

    def ref():
        calls.append(1)
        return 100.0

    ctx = Context(Options(min_time_s=0.0, warmup_s=0.0, min_samples=3))
    ctx.suite = "s"
    c = Check(what="shared", reference=ref, key="k", tolerance=1e9)
    a = ctx.bench("a", lambda: 100.0, check=c)
    b = ctx.bench("b", lambda: 100.0, check=c)
    assert len(calls) == 1 and a.check["status"] == b.check["status"] == "ok"
    assert a.as_dict()["check"]["reference"] == 100.0


SMI = {
    "steady": "1980, 2619, 0x0000000000000000, 40, 120.5\n",
    "idle": "345, 2619, 0x0000000000000001, 35, 70.0\n",
    "capped": "1500, 2619, 0x0000000000000004, 80, 700.0\n",
    "slower": "1600, 2619, 0x0000000000000000, 60, 300.0\n",
}


def fake_smi(state):
    def run(cmd, timeout=10.0):
        assert cmd[0] == "nvidia-smi" and "clocks_throttle_reasons.active" in cmd[1]
        return SMI[state]
    return run


def test_snapshot_and_clocks_moved():
    a = env.snapshot(fake_smi("steady"))
    assert a["gpus"] == [{"clocks_sm": 1980.0, "clocks_mem": 2619.0, "throttle_reasons": 0,
                          "temperature_gpu": 40.0, "power_draw": 120.5}]
    assert a["loadavg"] is None or len(a["loadavg"]) == 3
    assert env.clocks_moved(a, env.snapshot(fake_smi("steady"))) == ""
    # an idle GPU clocks down; that is not a change of speed under load
    assert env.clocks_moved(env.snapshot(fake_smi("idle")), a) == ""
    assert env.clocks_moved(a, env.snapshot(fake_smi("capped"))) == \
        "GPU 0 after: power cap; GPU 0 SM clock 1980 -> 1500 MHz"
    assert env.clocks_moved(a, env.snapshot(fake_smi("slower"))) == \
        "GPU 0 SM clock 1980 -> 1600 MHz"


def test_no_nvidia_smi_means_no_gpu_clocks():
    assert env.gpu_clocks(lambda cmd, timeout=10.0: None) == []
    assert env.clocks_moved({"gpus": []}, {"gpus": []}) == ""
