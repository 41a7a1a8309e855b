"""Across-seed summaries: IQM by hand, bootstrap CI against the normal-theory width."""

import numpy as np
import pytest

from purejaxppo.stats import bootstrap_ci, iqm, summarize


def test_iqm_drops_the_outer_quarters():
    # sorted: 1 2 3 4 5 6 7 100 -> floor(8/4) = 2 dropped each side -> mean(3, 4, 5, 6)
    assert iqm(np.array([100.0, 1, 2, 3, 4, 5, 6, 7])) == pytest.approx(4.5)
    # n = 5: floor(5/4) = 1 dropped each side -> mean(2, 3, 4)
    assert iqm(np.array([5.0, -40, 2, 3, 4])) == pytest.approx(3.0)
    # n < 4 drops nothing: the plain mean
    assert iqm(np.array([1.0, 2.0, 6.0])) == pytest.approx(3.0)


def test_iqm_along_an_axis_matches_rows():
    scores = np.random.default_rng(0).normal(size=(3, 9))
    np.testing.assert_allclose(iqm(scores, axis=1), [iqm(row) for row in scores])


def test_bootstrap_ci_width_matches_normal_theory():
    scores = np.random.default_rng(1).normal(loc=3.0, scale=2.0, size=400)
    low, high = bootstrap_ci(scores)
    expected_half_width = 1.96 * scores.std() / np.sqrt(scores.size)
    assert low < scores.mean() < high
    assert (high - low) / 2 == pytest.approx(expected_half_width, rel=0.1)


def test_bootstrap_ci_of_identical_scores_is_a_point_and_deterministic():
    assert bootstrap_ci(np.full(16, 500.0)) == (500.0, 500.0)
    scores = np.arange(10.0)
    assert bootstrap_ci(scores, seed=3) == bootstrap_ci(scores, seed=3)


def test_summarize_fields_and_nan_refusal():
    scores = np.array([10.0, 12.0, 11.0, 50.0])
    summary = summarize(scores)
    assert summary.mean == pytest.approx(20.75)
    assert summary.iqm == pytest.approx(11.5)
    assert summary.ci_low <= summary.mean <= summary.ci_high
    assert summary.num_seeds == 4
    with pytest.raises(ValueError, match="1 of 3 scores are NaN"):
        summarize(np.array([1.0, np.nan, 2.0]))


@pytest.mark.parametrize("bad", [np.zeros((2, 2)), np.zeros(0)])
def test_bootstrap_ci_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match="non-empty 1-D"):
        bootstrap_ci(bad)
