"""The divergence guard: find the first update at which a run's losses, gradient norm or
parameters stopped being finite, and which of the vmapped seeds it was.

Episode statistics are not watched: ``episode_return`` is NaN by design in an update in
which no episode ended, and ``explained_variance`` when the value targets do not vary.
Everything here runs on the host on metrics it already has, plus one small compiled
reduction over the parameters (:func:`finite_parameters`) per chunk of updates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# Watched metrics, in the order they are named when several fail at one update: the
# losses first (the total last among them, as it sums the others), then the KL and the
# gradient norm.
WATCHED_METRICS = (
    "policy_loss",
    "value_loss",
    "entropy",
    "total_loss",
    "kl",
    "approx_kl",
    "grad_norm",
)
PARAMETERS = "parameters"  # the name reported when only the parameters are non-finite


class NonFinite(NamedTuple):
    """Where a run first went non-finite.

    ``update``: the 0-based update index. ``seeds``: the positions, in the batch of seeds,
    of every seed non-finite at that update. ``metric``: the first watched metric that is
    (see :data:`WATCHED_METRICS`), or ``"parameters"``. ``value``: its value for the
    first of those seeds (NaN or +-inf).
    """

    update: int
    seeds: tuple[int, ...]
    metric: str
    value: float


@jax.jit
def finite_parameters(params: Any) -> jax.Array:
    """Per seed, whether every parameter is finite: ``[seeds]`` bool for params whose
    leaves are ``[seeds, ...]``."""
    leaves = jax.tree.leaves(params)
    per_leaf = [jnp.isfinite(leaf).reshape(leaf.shape[0], -1).all(axis=1) for leaf in leaves]
    return jnp.stack(per_leaf).all(axis=0)


def first_nonfinite(
    metrics: Mapping[str, Any], first_update: int, params_finite: Any = None
) -> NonFinite | None:
    """The first update of ``metrics`` (each ``[seeds, updates]``, the updates numbered
    from ``first_update``) at which a watched metric is NaN or infinite for some seed;
    failing that, the last update if ``params_finite`` (``[seeds]`` bool, the parameters
    after the last update) is False for a seed. None if everything is finite.
    """
    names = [name for name in WATCHED_METRICS if name in metrics]
    if names:
        values = np.stack([np.asarray(metrics[name], np.float64) for name in names])
        bad = ~np.isfinite(values)  # [metrics, seeds, updates]
        if bad.any():
            update = int(np.flatnonzero(bad.any(axis=(0, 1)))[0])
            seeds = tuple(int(s) for s in np.flatnonzero(bad[:, :, update].any(axis=0)))
            metric = int(np.flatnonzero(bad[:, seeds[0], update])[0])
            value = float(values[metric, seeds[0], update])
            return NonFinite(first_update + update, seeds, names[metric], value)
    if params_finite is not None:
        params_finite = np.asarray(params_finite, bool).reshape(-1)
        if not params_finite.all():
            updates = np.shape(next(iter(metrics.values())))[-1] if metrics else 1
            seeds = tuple(int(s) for s in np.flatnonzero(~params_finite))
            return NonFinite(first_update + updates - 1, seeds, PARAMETERS, float("nan"))
    return None


def describe(found: NonFinite, num_seeds: int, base_seed: int) -> str:
    """One line naming the update, the seeds and the metric, for the command line."""
    seeds = ", ".join(str(s) for s in found.seeds)
    plural = "s" if len(found.seeds) > 1 else ""
    if found.metric == PARAMETERS:
        what = "the parameters became non-finite"
    else:
        what = f"{found.metric} = {found.value}"
    return (
        f"update {found.update}, seed{plural} {seeds} of {num_seeds} (keys split from "
        f"--seed {base_seed}): {what}"
    )
