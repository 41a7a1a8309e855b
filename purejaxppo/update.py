"""The PPO update: ``update_epochs`` passes over the batch, each shuffled and split into
``num_minibatches`` gradient steps (nested ``lax.scan``s).

The optimiser is Adam (eps 1e-5) after global-norm clipping, wrapped in
``optax.inject_hyperparams`` so that the learning rate and the clipping norm are arrays
in the optimiser state: they can be annealed, traced and vmapped over without retracing.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from purejaxppo.collectives import LOCAL, Collectives
from purejaxppo.config import PPOConfig
from purejaxppo.losses import (
    Batch,
    LossCoefficients,
    LossInfo,
    LossTerms,
    ppo_loss_terms,
    summarize_loss_terms,
)


def network_of(path: tuple[Any, ...]) -> str:
    """``"critic"`` for a parameter under a top-level module named ``critic``, else
    ``"actor"`` (the actor MLP and the Gaussian log-std); ``path`` is a key path."""
    names = [str(getattr(key, "key", key)) for key in path]
    if names[:1] == ["params"]:  # flax's variable collection
        names = names[1:]
    return "critic" if names[:1] == ["critic"] else "actor"


def clip_by_network_norm(max_norm: jax.Array) -> optax.GradientTransformation:
    """Like ``optax.clip_by_global_norm``, but the actor's and the critic's gradients are
    each scaled to norm at most ``max_norm`` on their own (groups by :func:`network_of`),
    so a large value error cannot shrink the policy's step."""

    def update_fn(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        del params
        paths_leaves = jax.tree_util.tree_leaves_with_path(updates)
        groups = [network_of(path) for path, _ in paths_leaves]
        squares: dict[str, jax.Array] = {}
        for group, (_, leaf) in zip(groups, paths_leaves, strict=True):
            squares[group] = squares.get(group, 0.0) + jnp.sum(jnp.square(leaf))
        scales = {
            group: jnp.where(s < max_norm**2, 1.0, max_norm / jnp.sqrt(s))
            for group, s in squares.items()
        }
        scaled = [
            (leaf * scales[group]).astype(leaf.dtype)
            for group, (_, leaf) in zip(groups, paths_leaves, strict=True)
        ]
        return jax.tree.unflatten(jax.tree.structure(updates), scaled), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def _clipped_adam(
    learning_rate: float, max_grad_norm: float, grad_clip: str = "global"
) -> optax.GradientTransformation:
    """Clip, then Adam, on one flat vector of all parameters (``optax.flatten``): a few
    ops on one array instead of the same ops on every leaf. On PureJaxRL's CartPole
    config (2-core CPU, interleaved A/B) the program compiled 0.2 s faster and ran 3%
    faster than with Adam on the tree. Per-network clipping needs the tree, so it clips
    the tree and flattens for Adam."""
    adam = optax.adam(learning_rate, eps=1e-5)
    if grad_clip == "per_network":
        return optax.chain(clip_by_network_norm(max_grad_norm), optax.flatten(adam))
    return optax.flatten(optax.chain(optax.clip_by_global_norm(max_grad_norm), adam))


def make_optimizer(grad_clip: str = "global") -> optax.GradientTransformation:
    """Clip-then-Adam whose ``learning_rate`` / ``max_grad_norm`` live in the opt state.

    ``grad_clip``: ``"global"`` clips the norm of all gradients together (PureJaxRL's
    choice), ``"per_network"`` the actor's and the critic's each on its own
    (:func:`clip_by_network_norm`). The placeholders are overwritten by
    :func:`set_optimizer_hyperparams` before use.
    """
    return optax.inject_hyperparams(_clipped_adam, static_args="grad_clip")(
        learning_rate=0.0, max_grad_norm=1.0, grad_clip=grad_clip
    )


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
    """Learning rate for update ``k`` (0-based) of ``K = num_updates``: if annealed,
    ``lr * (1 - min(k, K - 1) / K)``, i.e. ``lr / K`` at the last update and after it
    (a run continued past ``num_updates`` keeps the final rate; it never reaches 0)."""
    if not config.anneal_lr:
        return base_lr
    k = jnp.minimum(update_index, config.num_updates - 1)
    return base_lr * (1.0 - k / config.num_updates)


def clip_eps_at(config: PPOConfig, base_clip_eps: jax.Array, update_index: jax.Array) -> jax.Array:
    """Clip range for update ``k``: linear from ``clip_eps`` (k = 0) to ``clip_eps_final``
    (the last update, ``k = num_updates - 1``, and every update after it), or constant
    when ``clip_eps_final`` is None."""
    if config.clip_eps_final is None:
        return base_clip_eps
    progress = jnp.minimum(update_index / max(config.num_updates - 1, 1), 1.0)
    return base_clip_eps + (config.clip_eps_final - base_clip_eps) * progress


# Bounds on the adaptive KL coefficient. Unbounded halving underflows to exactly 0.0 in
# float32 after ~150 updates with a tiny KL, and 0 * 2 == 0 could then never recover.
KL_BETA_MIN = 1e-6
KL_BETA_MAX = 1e6


def adapt_kl_beta(kl_beta: jax.Array, kl: jax.Array, kl_target: jax.Array) -> jax.Array:
    """The PPO paper's adaptive penalty: halve beta if ``kl < target / 1.5``, double it if
    ``kl > target * 1.5``, else keep it; kept within ``[KL_BETA_MIN, KL_BETA_MAX]``."""
    new_beta = jnp.where(
        kl < kl_target / 1.5, kl_beta / 2.0, jnp.where(kl > kl_target * 1.5, kl_beta * 2.0, kl_beta)
    )
    return jnp.clip(new_beta, KL_BETA_MIN, KL_BETA_MAX)


def masked_mean(values: jax.Array, mask: jax.Array, empty: float = 0.0) -> jax.Array:
    """Mean of ``values`` where ``mask`` is true (any shape); ``empty`` if it never is."""
    mean = jnp.mean(values.astype(jnp.float32), where=mask)  # NaN for an empty mask
    return jnp.where(jnp.any(mask), mean, empty)


class StepInfo(NamedTuple):
    """One minibatch step: its loss terms, gradient norm before clipping, and whether
    the step was taken (False once ``target_kl`` stopped the update)."""

    terms: LossTerms
    grad_norm: jax.Array
    taken: jax.Array


class UpdateInfo(NamedTuple):
    """A whole update's diagnostics: losses averaged over the steps taken, ratio and KL
    statistics over all their samples (see ``summarize_loss_terms``), and how many
    minibatch steps were taken."""

    loss: LossInfo
    grad_norm: jax.Array
    minibatches_done: jax.Array


class _EpochCarry(NamedTuple):
    train_state: TrainState
    stopped: jax.Array  # target_kl exceeded in an earlier epoch: skip the remaining steps


def _minibatch_step(
    config: PPOConfig,
    coefficients: LossCoefficients,
    collectives: Collectives,
    train_state: TrainState,
    minibatch: Batch,
) -> tuple[TrainState, StepInfo]:
    grad_fn = jax.grad(ppo_loss_terms, has_aux=True)
    grads, terms = grad_fn(
        train_state.params,
        train_state.apply_fn,
        minibatch,
        coefficients,
        config.policy_objective,
        config.normalize_advantages,
        config.clip_value_loss,
        collectives,
    )
    # data parallel: every device's share of the minibatch is the same size, so the mean
    # of their gradients is the whole minibatch's; clipping and Adam then see that
    grads = collectives.mean(grads)
    step = StepInfo(terms, optax.tree.norm(grads), jnp.bool_(True))
    return train_state.apply_gradients(grads=grads), step


def minibatch_indices(rng: jax.Array, num_sequences: int, num_minibatches: int) -> jax.Array:
    """A random permutation of ``range(num_sequences)`` split into
    ``[M, num_sequences // M]``: row ``m`` holds the sequences of minibatch ``m``."""
    return jax.random.permutation(rng, num_sequences).reshape(num_minibatches, -1)


def gather_minibatch(batch: Batch, indices: jax.Array) -> Batch:
    """The sequences ``indices`` ``[s]`` of ``batch``: leaves ``[L, S, ...]`` ->
    ``[L, s, ...]``, the carry's ``[S, ...]`` -> ``[s, ...]`` (whole sequences: never
    shuffled over time).

    Gathered one minibatch at a time inside the step loop, so a shuffled copy of the whole
    batch is never held in memory.
    """
    steps = jax.tree.map(lambda x: _take_sequences(x, indices), batch._replace(carry=()))
    return steps._replace(carry=jax.tree.map(lambda x: jnp.take(x, indices, axis=0), batch.carry))


def _take_sequences(x: jax.Array, indices: jax.Array) -> jax.Array:
    """``x[:, indices]``: ``[L, S, ...]`` -> ``[L, s, ...]``."""
    if x.shape[0] == 1:
        # single steps (feed-forward): gather rows of the flat [S, ...] batch. XLA fuses
        # that gather into the loss differently from an axis-1 gather, and the rounding
        # differs in the last bits; this keeps results bit-identical to before sequences
        return jnp.take(x[0], indices, axis=0)[None]
    return jnp.take(x, indices, axis=1)


def _summarise(steps: StepInfo, clip_eps: jax.Array, collectives: Collectives) -> UpdateInfo:
    """Describe ``steps`` (leaves ``[epochs, minibatches, ...]``) over the steps taken."""
    taken = steps.taken
    loss = summarize_loss_terms(steps.terms, clip_eps, taken, collectives)
    return UpdateInfo(loss, masked_mean(steps.grad_norm, taken), taken.sum().astype(jnp.int32))


def update_policy(
    config: PPOConfig,
    coefficients: LossCoefficients,
    train_state: TrainState,
    batch: Batch,
    rng: jax.Array,
    collectives: Collectives = LOCAL,
) -> tuple[TrainState, UpdateInfo]:
    """Run up to ``update_epochs x num_minibatches`` gradient steps on ``batch`` (``S``
    sequences ``[L, S, ...]``), each epoch on its own shuffle of the sequences
    (:func:`minibatch_indices`, from a key split from ``rng``).

    With ``config.target_kl`` set, once an epoch's mean exact KL(pi_old || pi) exceeds it
    the remaining steps of this update are skipped (masked with ``lax.cond``, so the
    program keeps one shape). The stop depends on the run's own KL, so under ``vmap``
    over runs the ``cond`` becomes a select: every step is computed and the stopped
    runs' results are discarded (a single run skips the compute).

    Data parallel (``collectives``): ``batch`` is this device's samples; each device
    shuffles its own (a key of its own), so a minibatch is every device's ``m``-th share
    and no sample moves between devices. Gradients are averaged over devices in every
    step, and ``target_kl`` reads the KL of all devices' samples, so every device takes
    the same steps and the parameters stay the same everywhere.
    """

    step = functools.partial(_minibatch_step, config, coefficients, collectives)

    def take_or_skip(stopped: jax.Array, ts: TrainState, mb: Batch) -> tuple[TrainState, StepInfo]:
        if config.target_kl is None:
            return step(ts, mb)

        def skip(ts: TrainState, mb: Batch) -> tuple[TrainState, StepInfo]:
            shapes = jax.eval_shape(step, ts, mb)[1]
            return ts, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        return jax.lax.cond(stopped, skip, step, ts, mb)

    def epoch(carry: _EpochCarry, shuffle_key: jax.Array) -> tuple[_EpochCarry, StepInfo]:
        own_key = collectives.device_key(shuffle_key)
        indices = minibatch_indices(own_key, batch.episode_start.shape[1], config.num_minibatches)
        train_state, steps = jax.lax.scan(
            lambda ts, idx: take_or_skip(carry.stopped, ts, gather_minibatch(batch, idx)),
            carry.train_state,
            indices,
        )
        stopped = carry.stopped
        if config.target_kl is not None:
            epoch_kl = collectives.mean_of(steps.terms.kl, where=steps.taken[:, None])
            stopped = stopped | (epoch_kl > config.target_kl)
        return _EpochCarry(train_state, stopped), steps

    # the epochs' shuffle keys in one split (one random-number kernel instead of one per
    # epoch); each epoch permutes inside its loop (a [epochs, B] sort up front ran the
    # whole update 15% slower on CPU, measured in interleaved rounds)
    shuffle_keys = jax.random.split(rng, config.update_epochs)
    carry, steps = jax.lax.scan(epoch, _EpochCarry(train_state, jnp.bool_(False)), shuffle_keys)
    return carry.train_state, _summarise(steps, coefficients.clip_eps, collectives)
