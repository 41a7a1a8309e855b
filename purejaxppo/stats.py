"""Across-seed summaries of final returns: mean, interquartile mean, bootstrap CI.

Host-side NumPy (not jitted): these summarise the output of a vmapped ``train`` over
seeds, e.g. ``final_return(out.metrics["episode_return"])`` of shape ``[seeds]``.
"""

from __future__ import annotations

import warnings
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


def learning_curve(
    episode_return: np.ndarray, env_steps: np.ndarray, points: int = 100
) -> dict[str, list]:
    """A ``[seeds, updates]`` return history averaged into at most ``points`` windows.

    Per window: each seed's NaN-aware mean, then the mean over seeds and a 95% bootstrap
    band of that mean (the same resampled seeds for every window, so the band is smooth).
    ``env_steps`` ``[updates]``: the x value of each update. Windows in which no episode
    ended anywhere are ``None`` (JSON-ready lists).
    """
    episode_return = np.asarray(episode_return, dtype=np.float64)
    seeds, updates = episode_return.shape
    windows = np.array_split(np.arange(updates), min(points, updates))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN window: no episode ended
        per_seed = np.stack([np.nanmean(episode_return[:, w], axis=1) for w in windows], 1)
        resampled = per_seed[np.random.default_rng(0).integers(0, seeds, (2000, seeds))]
        band = np.nanquantile(np.nanmean(resampled, axis=1), [0.025, 0.975], axis=0)
        mean = np.nanmean(per_seed, axis=0)
    return {
        "env_steps": [int(env_steps[w[-1]]) for w in windows],
        "mean": _finite_or_none(mean),
        "ci_low": _finite_or_none(band[0]),
        "ci_high": _finite_or_none(band[1]),
    }


def _finite_or_none(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values]
