"""Across-seed summaries of final returns: mean, interquartile mean, bootstrap CI.

Host-side NumPy (not jitted): these summarise the output of a vmapped ``train`` over
seeds, e.g. ``final_return(out.metrics["episode_return"])`` of shape ``[seeds]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np


class ReturnSummary(NamedTuple):
    """Summary of per-seed scores: ``ci_low``/``ci_high`` bound a 95% CI of the mean."""

    mean: float
    iqm: float
    ci_low: float
    ci_high: float
    std: float
    num_seeds: int


def iqm(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the scores left after dropping the lowest and the
    highest ``floor(n / 4)`` along ``axis`` (``scipy.stats.trim_mean(x, 0.25)``; Agarwal et
    al. 2021, "Deep RL at the Edge of the Statistical Precipice"). Robust to one
    diverged seed, less noisy than the median."""
    scores = np.sort(np.asarray(scores, dtype=np.float64), axis=axis)
    n = scores.shape[axis]
    if n == 0:
        raise ValueError("iqm needs at least one score")
    cut = n // 4
    return np.take(scores, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def bootstrap_ci(
    scores: np.ndarray,
    statistic: Callable[..., np.ndarray] = np.mean,
    confidence: float = 0.95,
    num_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic`` over ``scores`` ``[n]``.

    Resamples the n seeds with replacement ``num_resamples`` times and returns the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the statistic.
    ``statistic`` must accept ``axis=-1``. Deterministic for a given ``seed``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"scores must be a non-empty 1-D array, got shape {scores.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    resamples = scores[rng.integers(0, scores.size, size=(num_resamples, scores.size))]
    values = statistic(resamples, axis=-1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def summarize(scores: np.ndarray) -> ReturnSummary:
    """Mean, IQM, 95% bootstrap CI of the mean and std of per-seed ``scores`` ``[n]``.

    Raises ``ValueError`` if any score is NaN (a seed that never finished an episode):
    dropping it silently would bias the summary upwards.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if np.isnan(scores).any():
        raise ValueError(
            f"{int(np.isnan(scores).sum())} of {scores.size} scores are NaN (no finished "
            "episode); train longer or use a larger final fraction"
        )
    low, high = bootstrap_ci(scores)
    return ReturnSummary(
        mean=float(scores.mean()),
        iqm=float(iqm(scores)),
        ci_low=low,
        ci_high=high,
        std=float(scores.std()),
        num_seeds=int(scores.size),
    )
