"""Matplotlib drawing of a :func:`purejaxppo.stats.learning_curve` (matplotlib is optional:
imported only when drawing)."""

from __future__ import annotations

from typing import Any

import numpy as np


def format_steps(value: float) -> str:
    """150000 -> '150k', 10000000 -> '10M'."""
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:g}{unit}"
    return f"{value:g}"


def draw_curve(
    ax: Any,
    curve: dict[str, list],
    seeds: int,
    title: str,
    color: str = "C0",
    label: str | None = None,
    ylabel: str = "episode return",
) -> None:
    """Mean over seeds and its 95% band against environment steps on ``ax`` (``label``
    names the curve in the legend, for several on one axes).

    Windows in which no episode ended (long episodes, e.g. Freeway's 2500 steps) are
    skipped rather than drawn as gaps."""
    from matplotlib.ticker import FuncFormatter

    steps = np.asarray(curve["env_steps"], dtype=float)

    def as_array(key: str) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in curve[key]], dtype=float)

    mean, low, high = as_array("mean"), as_array("ci_low"), as_array("ci_high")
    seen = np.isfinite(mean) & np.isfinite(low) & np.isfinite(high)
    prefix = f"{label}: " if label else ""
    ax.plot(steps[seen], mean[seen], color=color, label=f"{prefix}mean of {seeds} seeds")
    ax.fill_between(
        steps[seen], low[seen], high[seen], color=color, alpha=0.25, label=f"{prefix}95% CI"
    )
    ax.set_title(title)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: format_steps(x) if x > 0 else "0"))
    ax.grid(True, alpha=0.3)
