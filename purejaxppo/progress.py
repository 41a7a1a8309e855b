"""Live progress from inside the jitted train loop: a host callback once per update.

``report_to_host`` wraps ``jax.pure_callback`` with ``vmap_method="expand_dims"``, so
under ``vmap`` over seeds (or a sweep grid) the host is called once per update with every
seed's metrics stacked, not once per seed. The callback passes one metric through, and
the program uses what comes back, so XLA cannot drop it as dead code. With no callback
requested, nothing is added to the program.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import numpy as np

UpdateCallback = Callable[[dict[str, np.ndarray]], None]


class ProgressBar:
    """One tqdm bar over the run's updates (for all vmapped seeds at once), showing the
    latest mean episode return across seeds."""

    def __init__(self, total_updates: int, description: str = "PPO"):
        try:
            from tqdm.auto import tqdm
        except ImportError as error:  # pragma: no cover - tqdm is a dependency
            raise ValueError("progress=True needs tqdm: pip install tqdm") from error
        self._tqdm = tqdm
        self.total = total_updates
        self.description = description
        self.bar = None

    def __call__(self, metrics: Mapping[str, np.ndarray]) -> None:
        update = int(metrics["update"])
        if self.bar is None or update < self.bar.n:  # first call, or a new run
            if self.bar is not None:
                self.bar.close()
            self.bar = self._tqdm(total=self.total, initial=update, desc=self.description)
        self.bar.update(update + 1 - self.bar.n)
        episode_return = np.asarray(metrics["episode_return"], dtype=np.float64)
        if np.isfinite(episode_return).any():
            self.bar.set_postfix(episode_return=f"{np.nanmean(episode_return):.1f}")
        if self.bar.n >= self.total:
            self.bar.close()


def combine_callbacks(
    on_update: UpdateCallback | None, progress: bool, total_updates: int, description: str
) -> UpdateCallback | None:
    """The single host function to call per update, or None when nothing is requested."""
    if on_update is not None and not callable(on_update):
        raise ValueError(f"on_update must be callable or None, got {on_update!r}")
    callbacks = [on_update] if on_update is not None else []
    if progress:
        callbacks.append(ProgressBar(total_updates, description))
    if not callbacks:
        return None

    def call_all(metrics: dict[str, np.ndarray]) -> None:
        for callback in callbacks:
            callback(metrics)

    return call_all


def report_to_host(
    host: UpdateCallback, update_index: jax.Array, metrics: dict[str, jax.Array]
) -> dict[str, jax.Array]:
    """Send ``metrics`` (and ``update``, the 0-based update index) to ``host``; returns
    ``metrics`` with ``episode_return`` threaded through the callback.

    ``host`` receives NumPy arrays: scalars for one run, ``[seeds]`` (or the sweep's
    grid shape) under ``vmap``; ``update`` is an int.
    """

    def on_host(update_index: np.ndarray, metrics: dict[str, np.ndarray]) -> np.ndarray:
        host({"update": int(np.asarray(update_index).reshape(-1)[0]), **metrics})
        return np.asarray(metrics["episode_return"])

    passed = jax.pure_callback(
        on_host,
        jax.ShapeDtypeStruct(metrics["episode_return"].shape, metrics["episode_return"].dtype),
        update_index,
        metrics,
        vmap_method="expand_dims",
    )
    return {**metrics, "episode_return": passed}
