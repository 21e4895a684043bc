"""Paired bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from tuneloom.evaluate.classify import classification_intervals
from tuneloom.evaluate.stats import mean_metric, paired_bootstrap, ratio_metric


def test_identical_models_have_a_zero_width_interval():
    scores = [0.1, 0.5, 0.9, 0.3]
    assert paired_bootstrap(4, mean_metric(scores, scores)) == (0.0, 0.0)


def test_a_constant_improvement_is_exactly_that_improvement():
    base = [0.2, 0.4, 0.6]
    low, high = paired_bootstrap(3, mean_metric(base, [b + 0.25 for b in base]))
    assert low == pytest.approx(0.25) and high == pytest.approx(0.25)


def test_interval_brackets_the_observed_difference_and_is_seeded():
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 1, 200)
    tuned = base + rng.normal(0.1, 0.2, 200)
    low, high = paired_bootstrap(200, mean_metric(base, tuned), seed=3)
    observed = float(np.mean(tuned - base))
    assert low < observed < high
    assert 0.0 < low and high < 0.2  # a real improvement of ~0.1 with n=200 excludes zero
    assert paired_bootstrap(200, mean_metric(base, tuned), seed=3) == (low, high)


def test_ratio_metric_pools_sums_and_counts():
    # base: (2+4)/(1+3) = 1.5 ; tuned: (1+1)/(1+3) = 0.5 on the full sample
    metric = ratio_metric([(2.0, 1), (4.0, 3)], [(1.0, 1), (1.0, 3)])
    assert metric(np.array([0, 1])) == (1.5, 0.5)
    assert metric(np.array([1, 1])) == (4.0 / 3.0, 1.0 / 3.0)


def test_empty_sample():
    assert paired_bootstrap(0, mean_metric([], [])) == (0.0, 0.0)


def test_classification_intervals_for_a_perfect_tuned_model():
    truth = ["a", "b", "c"] * 10
    base = ["a"] * 30  # accuracy 1/3
    out = classification_intervals(truth, base, truth, ["a", "b", "c"])
    low, high = out["accuracy"]
    assert 0.3 < low <= high < 0.95  # the gain is 2/3 on average, resampling moves it around
    assert set(out) == {"accuracy", "macro_f1", "weighted_f1"}
    assert out["macro_f1"][0] > 0
