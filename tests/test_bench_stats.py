"""vyre.bench.stats: percentiles (numpy 'linear'), sample stdev, summaries."""
import math
import random
import statistics

import numpy as np
import pytest

from vyre.bench.stats import SUMMARY_KEYS, mean_stdev, percentile, summarize


def test_percentile_known_values():
    xs = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(xs, 0.0) == 1.0
    assert percentile(xs, 1.0) == 5.0
    assert percentile(xs, 0.5) == 3.0
    # h = (5-1)*0.1 = 0.4 -> 1 + 0.4*(2-1)
    assert percentile(xs, 0.1) == pytest.approx(1.4)
    # h = 4*0.9 = 3.6 -> 4 + 0.6*1
    assert percentile(xs, 0.9) == pytest.approx(4.6)
    # even count: the median interpolates halfway
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.5) == 25.0
    assert percentile([7.0], 0.99) == 7.0


def test_percentile_matches_numpy_linear():
    rng = random.Random(1234)
    for n in (1, 2, 3, 10, 101, 1000):
        xs = sorted(rng.lognormvariate(0, 1) for _ in range(n))
        for q in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0):
            assert percentile(xs, q) == pytest.approx(np.percentile(xs, 100 * q, method="linear"),
                                                      rel=1e-12)


def test_percentile_rejects_bad_input():
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)


def test_stdev_is_sample_stdev():
    xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    mean, sd = mean_stdev(xs)
    assert mean == 5.0
    # population stdev of this classic sample is exactly 2; the sample stdev is sqrt(32/7)
    assert sd == pytest.approx(math.sqrt(32 / 7))
    assert sd == pytest.approx(statistics.stdev(xs))
    assert sd != pytest.approx(statistics.pstdev(xs))
    assert mean_stdev([3.0]) == (3.0, None)


def test_summarize_known_sample():
    s = summarize([5, 1, 4, 2, 3])  # unsorted input on purpose
    assert tuple(s) == SUMMARY_KEYS
    assert s["n"] == 5
    assert (s["min"], s["max"], s["median"], s["mean"]) == (1.0, 5.0, 3.0, 3.0)
    assert s["p10"] == pytest.approx(1.4)
    assert s["p25"] == pytest.approx(2.0)
    assert s["p75"] == pytest.approx(4.0)
    assert s["p90"] == pytest.approx(4.6)
    assert s["p99"] == pytest.approx(4.96)
    assert s["stdev"] == pytest.approx(statistics.stdev([1, 2, 3, 4, 5]))


def test_summarize_rejects_empty_and_nan():
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        summarize([1.0, float("nan")])
