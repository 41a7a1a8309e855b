"""The optimiser and the schedules: per-network clipping, schedules held past the end."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from purejaxppo import PPOConfig, make_trainer
from purejaxppo.losses import Batch, LossCoefficients, ppo_loss_terms, value_loss
from purejaxppo.networks import PolicyParams
from purejaxppo.update import (
    clip_by_network_norm,
    clip_eps_at,
    learning_rate_at,
    make_optimizer,
    network_of,
)

GRADS = {
    "params": {
        "actor": {"Dense_0": {"kernel": jnp.full((2, 2), 0.1)}},  # norm 0.2
        "critic": {"Dense_0": {"kernel": jnp.full((2, 2), 50.0)}},  # norm 100
        "log_std": jnp.array([0.0]),
    }
}


def _norm(tree):
    return float(optax.tree.norm(tree))


def test_network_of_groups_the_log_std_with_the_actor():
    groups = {
        jax.tree_util.keystr(path): network_of(path)
        for path, _ in jax.tree_util.tree_leaves_with_path(GRADS)
    }
    assert sorted(groups.values()) == ["actor", "actor", "critic"]
    assert groups["['params']['critic']['Dense_0']['kernel']"] == "critic"


def test_per_network_clipping_leaves_a_small_actor_gradient_alone():
    """A value error of ~100 dominates one global norm of 0.5: the actor's step shrinks
    500-fold; clipped per network, the actor's gradient passes unchanged."""
    global_clip, _ = optax.clip_by_global_norm(0.5).update(GRADS, optax.EmptyState())
    per_network, _ = clip_by_network_norm(0.5).update(GRADS, optax.EmptyState())
    actor = GRADS["params"]["actor"]
    assert _norm(global_clip["params"]["actor"]) == pytest.approx(0.2 * 0.5 / 100.002, rel=1e-4)
    assert _norm(per_network["params"]["actor"]) == pytest.approx(_norm(actor), rel=1e-6)
    assert _norm(per_network["params"]["critic"]) == pytest.approx(0.5, rel=1e-6)
    np.testing.assert_array_equal(per_network["params"]["log_std"], [0.0])


def test_optimizer_clipping_choice_reaches_the_update():
    """The clipped gradient Adam sees, read from its first moment after one step
    (mu = (1 - b1) g = 0.1 g), with the norm set through the injected hyperparameter."""
    params = jax.tree.map(jnp.zeros_like, GRADS)
    for grad_clip in ("global", "per_network"):
        tx = make_optimizer(grad_clip)
        state = tx.init(params)
        state.hyperparams.update(learning_rate=jnp.float32(1.0), max_grad_norm=jnp.float32(0.5))
        _, state = tx.update(GRADS, state, params)
        mu = optax.tree_utils.tree_get(state, "mu")  # Adam's, on the flat parameter vector
        if not isinstance(mu, dict):
            mu = ravel_pytree(params)[1](mu)  # optax.flatten's order is ravel_pytree's
        actor_mu = _norm(mu["params"]["actor"])
        expected = 0.1 * 0.2 * (1.0 if grad_clip == "per_network" else 0.5 / 100.002)
        assert actor_mu == pytest.approx(expected, rel=1e-3), grad_clip


def test_value_clip_eps_sets_the_value_loss_range():
    values, old_values, targets = (
        jnp.array([1.0, 2.0]),
        jnp.array([0.0, 0.0]),
        jnp.array([3.0, 3.0]),
    )

    def apply_fn(params, carry, obs, episode_start):
        return carry, PolicyParams(jnp.zeros((1, 2, 2))), values[None]

    batch = Batch(
        obs=jnp.zeros((1, 2, 1)),
        action=jnp.array([[0, 1]]),
        policy_params=PolicyParams(jnp.zeros((1, 2, 2))),
        log_prob=jnp.log(jnp.full((1, 2), 0.5)),
        value=old_values[None],
        advantage=jnp.array([[1.0, -1.0]]),
        target=targets[None],
        episode_start=jnp.zeros((1, 2), bool),
    )
    base = LossCoefficients(clip_eps=0.2, vf_coef=0.5, ent_coef=0.0, kl_beta=0.0)
    for value_clip_eps, expected_range in ((None, 0.2), (1.5, 1.5)):
        coefficients = base._replace(value_clip_eps=value_clip_eps)
        _, terms = ppo_loss_terms({}, apply_fn, batch, coefficients)
        expected = value_loss(values, old_values, targets, expected_range)
        assert float(terms.value_loss) == pytest.approx(float(expected))
    assert value_loss(values, old_values, targets, 0.2) != value_loss(
        values, old_values, targets, 1.5
    )


def test_schedules_hold_their_final_values_past_num_updates():
    config = PPOConfig(total_timesteps=512 * 4, clip_eps=0.3, clip_eps_final=0.1)
    k = jnp.arange(12)
    lr = np.asarray(learning_rate_at(config, 1.0, k))
    clip = np.asarray(clip_eps_at(config, 0.3, k))
    np.testing.assert_allclose(lr, [1, 0.75, 0.5, 0.25] + [0.25] * 8, rtol=1e-6)
    np.testing.assert_allclose(clip, [0.3, 0.3 - 0.2 / 3, 0.3 - 0.4 / 3] + [0.1] * 9, rtol=1e-6)


def test_running_twice_num_updates_never_ascends_the_gradient():
    """Trainer.run past config.num_updates (a chunked or continued run) keeps training
    with the final learning rate and clip range: positive, never 0 or negative."""
    config = PPOConfig(
        num_envs=4, num_steps=16, num_minibatches=2, update_epochs=1, total_timesteps=4 * 16 * 3
    ).replace(clip_eps_final=0.1)
    trainer = make_trainer(config)
    _, metrics = jax.jit(trainer.run, static_argnums=1)(trainer.init(jax.random.key(0)), 6)
    lr, clip = np.asarray(metrics["learning_rate"]), np.asarray(metrics["clip_eps"])
    final_lr = config.lr / config.num_updates
    np.testing.assert_allclose(lr, [config.lr * (1 - k / 3) for k in range(3)] + [final_lr] * 3)
    np.testing.assert_allclose(clip, [0.2, 0.15, 0.1, 0.1, 0.1, 0.1], rtol=1e-6)
