"""The PPO update: ``update_epochs`` passes over the batch, each shuffled and split into
``num_minibatches`` gradient steps (nested ``lax.scan``s).

The optimiser is Adam (eps 1e-5) after global-norm clipping, wrapped in
``optax.inject_hyperparams`` so that the learning rate and the clipping norm are arrays
in the optimiser state: they can be annealed, traced and vmapped over without retracing.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from purejaxppo.config import PPOConfig, PPOHyperparams
from purejaxppo.losses import Batch, LossInfo, ppo_loss


def _clipped_adam(learning_rate: float, max_grad_norm: float) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(max_grad_norm), optax.adam(learning_rate, eps=1e-5)
    )


def make_optimizer() -> optax.GradientTransformation:
    """Clip-then-Adam whose ``learning_rate`` / ``max_grad_norm`` live in the opt state.

    The placeholders are overwritten by :func:`set_optimizer_hyperparams` before use.
    """
    return optax.inject_hyperparams(_clipped_adam)(learning_rate=0.0, max_grad_norm=1.0)


def set_optimizer_hyperparams(
    train_state: TrainState, learning_rate: jax.Array, max_grad_norm: jax.Array | None = None
) -> TrainState:
    """Write the learning rate (and optionally the clipping norm) into the opt state."""
    hyperparams = dict(train_state.opt_state.hyperparams)
    hyperparams["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)
    if max_grad_norm is not None:
        hyperparams["max_grad_norm"] = jnp.asarray(max_grad_norm, jnp.float32)
    return train_state.replace(opt_state=train_state.opt_state._replace(hyperparams=hyperparams))


def learning_rate_at(config: PPOConfig, base_lr: jax.Array, update_index: jax.Array) -> jax.Array:
    """Learning rate for update ``k`` (0-based): ``lr * (1 - k / num_updates)`` if annealed."""
    if not config.anneal_lr:
        return base_lr
    return base_lr * (1.0 - update_index / config.num_updates)


class _EpochCarry(NamedTuple):
    train_state: TrainState
    rng: jax.Array


def _minibatch_step(
    config: PPOConfig, hyperparams: PPOHyperparams, train_state: TrainState, minibatch: Batch
) -> tuple[TrainState, LossInfo]:
    grad_fn = jax.grad(ppo_loss, has_aux=True)
    grads, info = grad_fn(
        train_state.params,
        train_state.apply_fn,
        minibatch,
        hyperparams,
        config.normalize_advantages,
        config.clip_value_loss,
    )
    return train_state.apply_gradients(grads=grads), info


def shuffle_into_minibatches(rng: jax.Array, batch: Batch, num_minibatches: int) -> Batch:
    """Shuffle the ``[B, ...]`` leaves and split them into ``[M, B // M, ...]`` (M minibatches)."""
    batch_size = batch.obs.shape[0]
    permutation = jax.random.permutation(rng, batch_size)
    return jax.tree.map(
        lambda x: jnp.take(x, permutation, axis=0).reshape(num_minibatches, -1, *x.shape[1:]),
        batch,
    )


def update_policy(
    config: PPOConfig,
    hyperparams: PPOHyperparams,
    train_state: TrainState,
    batch: Batch,
    rng: jax.Array,
) -> tuple[TrainState, LossInfo]:
    """Run ``update_epochs x num_minibatches`` gradient steps on ``batch`` ``[B, ...]``.

    Returns the new train state and the loss diagnostics averaged over all steps.
    """

    def epoch(carry: _EpochCarry, _: None) -> tuple[_EpochCarry, LossInfo]:
        rng, shuffle_key = jax.random.split(carry.rng)
        minibatches = shuffle_into_minibatches(shuffle_key, batch, config.num_minibatches)
        train_state, infos = jax.lax.scan(
            lambda ts, mb: _minibatch_step(config, hyperparams, ts, mb),
            carry.train_state,
            minibatches,
        )
        return _EpochCarry(train_state, rng), infos

    carry, infos = jax.lax.scan(
        epoch, _EpochCarry(train_state, rng), None, length=config.update_epochs
    )
    return carry.train_state, jax.tree.map(jnp.mean, infos)
