"""Action masks, MultiDiscrete actions and structured (dict) observations: the masked
Categorical and the factorised one against hand computations, and training end to end
on a probe env that has all three (conftest.MaskedPickEnv)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import MaskedPickEnv

from purejaxppo import PPOConfig, evaluate, make_policy, make_train
from purejaxppo.networks import (
    MASKED_LOGIT,
    PolicyParams,
    action_noise,
    apply_network,
    distribution_mode,
    make_distribution,
    mask_policy,
    sample_with_noise,
)

LOGITS = np.array([[0.3, -1.2, 2.0, 0.5], [1.0, 1.0, -0.4, 0.0]], np.float32)
OTHER = np.array([[-0.7, 0.4, 1.1, 0.0], [0.2, -1.0, 0.9, 1.5]], np.float32)
MASK = np.array([[True, False, True, True], [False, True, False, True]])


def _softmax_over(logits, mask):
    z = np.where(mask, np.exp(logits - logits.max()), 0.0)
    return z / z.sum()


def test_masked_entropy_and_kl_equal_hand_computed_values():
    pi = make_distribution(mask_policy(PolicyParams(LOGITS), MASK))
    rho = make_distribution(mask_policy(PolicyParams(OTHER), MASK))
    for row in range(2):
        p = _softmax_over(LOGITS[row], MASK[row])
        q = _softmax_over(OTHER[row], MASK[row])
        legal = MASK[row]
        entropy = -np.sum(p[legal] * np.log(p[legal]))
        kl = np.sum(p[legal] * np.log(p[legal] / q[legal]))
        np.testing.assert_allclose(pi.entropy()[row], entropy, rtol=1e-5)
        np.testing.assert_allclose(pi.kl_divergence(rho)[row], kl, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(pi.probs[row], p, atol=1e-7)
    assert np.all(np.isfinite(pi.log_prob(jnp.array([1, 0]))))  # illegal: finite, very low


def test_all_but_one_mask_gives_zero_entropy_and_always_that_action():
    mask = np.array([[False, False, True, False]] * 2)
    policy = mask_policy(PolicyParams(LOGITS), mask)
    assert np.all(np.asarray(make_distribution(policy).entropy()) == 0.0)
    noise = action_noise(jax.random.key(0), (500, 2, 4), True)
    assert np.all(np.asarray(sample_with_noise(policy, noise)) == 2)
    assert np.all(np.asarray(distribution_mode(policy)) == 2)


def test_illegal_actions_are_never_sampled_but_legal_ones_are():
    policy = mask_policy(PolicyParams(jnp.broadcast_to(LOGITS, (4000, 2, 4))), MASK)
    actions = np.asarray(
        sample_with_noise(policy, action_noise(jax.random.key(1), (4000, 2, 4), True))
    )
    for row in range(2):
        seen = set(np.unique(actions[:, row]).tolist())
        assert seen == set(np.flatnonzero(MASK[row]).tolist())


def test_apply_network_masks_whatever_the_network_returns():
    def apply_fn(params, carry, obs, episode_start):
        return carry, PolicyParams(jnp.zeros((1, 2, 4))), jnp.zeros((1, 2))

    obs = {"x": jnp.zeros((1, 2, 3)), "action_mask": jnp.asarray(MASK)[None]}
    out = apply_network(apply_fn, None, (), obs, jnp.zeros((1, 2), bool))
    expected = np.where(MASK, 0.0, MASKED_LOGIT)[None]
    np.testing.assert_array_equal(out.policy.logits_or_mean, expected)


def test_multidiscrete_sums_log_probs_entropies_and_kls_over_components():
    nvec = (3, 2)
    logits = np.array([[0.1, 0.7, -0.3, 1.2, -0.5]], np.float32)
    other = np.array([[0.4, -0.2, 0.0, 0.3, 0.9]], np.float32)
    pi = make_distribution(PolicyParams(logits, nvec=nvec))
    rho = make_distribution(PolicyParams(other, nvec=nvec))
    p0, p1 = _softmax_over(logits[0, :3], True), _softmax_over(logits[0, 3:], True)
    q0, q1 = _softmax_over(other[0, :3], True), _softmax_over(other[0, 3:], True)
    np.testing.assert_allclose(
        pi.log_prob(jnp.array([[2, 1]]))[0], np.log(p0[2] * p1[1]), rtol=1e-5
    )
    entropy = -np.sum(p0 * np.log(p0)) - np.sum(p1 * np.log(p1))
    np.testing.assert_allclose(pi.entropy()[0], entropy, rtol=1e-5)
    kl = np.sum(p0 * np.log(p0 / q0)) + np.sum(p1 * np.log(p1 / q1))
    np.testing.assert_allclose(pi.kl_divergence(rho)[0], kl, rtol=1e-4)
    mode = np.asarray(distribution_mode(PolicyParams(logits, nvec=nvec)))
    np.testing.assert_array_equal(mode, [[1, 0]])
    noise = action_noise(jax.random.key(2), (3000, 5), True)
    samples = np.asarray(
        sample_with_noise(PolicyParams(jnp.broadcast_to(logits[0], (3000, 5)), nvec=nvec), noise)
    )
    assert samples.shape == (3000, 2)
    np.testing.assert_allclose(np.bincount(samples[:, 0], minlength=3) / 3000, p0, atol=0.03)
    np.testing.assert_allclose(np.bincount(samples[:, 1], minlength=2) / 3000, p1, atol=0.03)


PICK = dict(
    num_envs=32,
    num_steps=2,
    total_timesteps=32 * 2 * 40,
    num_minibatches=2,
    update_epochs=2,
    lr=3e-3,
    anneal_lr=False,
    hidden_sizes=(32,),
)


@functools.cache
def _pick_run(expose_mask: bool, normalize_obs: bool = False):
    env = MaskedPickEnv(expose_mask)
    config = PPOConfig(**PICK, normalize_obs=normalize_obs)
    return env, config, jax.jit(make_train(config, env=env))(jax.random.key(0))


def test_masked_multidiscrete_dict_env_never_acts_illegally_and_learns():
    env, config, out = _pick_run(True)
    returns = np.asarray(out.metrics["episode_return"])
    assert np.all(returns >= 0.0), returns  # any illegal action: a negative mean
    assert returns[:5].mean() < 1.3 and returns[-5:].mean() > 1.8, returns
    # deployment and evaluation mask too: the greedy policy never picks an illegal action
    act = make_policy(out, config, env=env)
    obs, _ = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(jax.random.key(5), 64), env.default_params
    )
    actions = np.asarray(act(obs))
    mask = np.asarray(obs["action_mask"])
    assert np.all(mask[np.arange(64), actions[:, 0]] & mask[np.arange(64), 3 + actions[:, 1]])
    result = evaluate(out, config, jax.random.key(6), num_episodes=64, env=env, deterministic=False)
    assert np.all(np.asarray(result.episode_return) >= 0.0)


def test_without_the_mask_the_probe_env_punishes_illegal_actions():
    _, _, out = _pick_run(False)
    assert np.asarray(out.metrics["episode_return"])[0] < 0.0


def test_structured_observations_are_normalised_leaf_by_leaf_and_the_mask_is_kept():
    _, _, out = _pick_run(True, normalize_obs=True)
    stats = out.env_state.obs_stats
    assert set(stats) == {"target"}  # the mask has no statistics
    assert stats["target"].mean.shape == (7,)
    assert np.all(np.asarray(out.metrics["episode_return"]) >= 0.0)


def test_a_network_that_ignores_multidiscrete_is_refused_before_tracing():
    import flax.linen as nn

    class Flat(nn.Module):
        @nn.nowrap
        def initial_carry(self, batch_size):
            return ()

        @nn.compact
        def __call__(self, carry, obs, episode_start):
            x = obs["target"]
            return carry, PolicyParams(nn.Dense(7)(x)), nn.Dense(1)(x)[..., 0]

    with pytest.raises(ValueError, match=r"nvec=None; this env's action space needs nvec=\(3, 4\)"):
        make_train(PPOConfig(**PICK), env=MaskedPickEnv(), network=Flat())
