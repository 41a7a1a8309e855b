"""compute_gae against a plain NumPy loop and the lambda = 0 / lambda = 1 identities."""

import jax.numpy as jnp
import numpy as np
import pytest

from purejaxppo import compute_gae


def numpy_gae(rewards, values, next_values, terminations, dones, gamma, lam):
    """The textbook backward loop, one env column at a time."""
    T = rewards.shape[0]
    advantages = np.zeros_like(rewards)
    running = np.zeros(rewards.shape[1:])
    for t in reversed(range(T)):
        delta = rewards[t] + gamma * (1.0 - terminations[t]) * next_values[t] - values[t]
        running = delta + gamma * lam * (1.0 - dones[t]) * running
        advantages[t] = running
    return advantages, advantages + values


def random_rollout(seed, T=40, N=5):
    """Random data with terminations and truncations mid-rollout (and one of each at t = T-1)."""
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(T, N)).astype(np.float32)
    values = rng.normal(size=(T, N)).astype(np.float32)
    next_values = rng.normal(size=(T, N)).astype(np.float32)
    terminations = rng.random((T, N)) < 0.1
    truncations = (rng.random((T, N)) < 0.1) & ~terminations
    terminations[-1, 0], truncations[-1, 1] = True, True
    dones = terminations | truncations
    assert terminations[:-1].any() and truncations[:-1].any()
    return rewards, values, next_values, terminations, dones


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 0.5), (1.0, 1.0), (0.97, 0.0)])
def test_matches_numpy_loop(gamma, lam):
    data = random_rollout(seed=int(gamma * 100 + lam * 10))
    adv, targets = compute_gae(*map(jnp.asarray, data), gamma, lam)
    ref_adv, ref_targets = numpy_gae(*[d.astype(np.float64) for d in data], gamma, lam)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets, ref_targets, rtol=1e-5, atol=1e-5)


def test_lambda_zero_is_one_step_td_error():
    rewards, values, next_values, terminations, dones = random_rollout(seed=1)
    gamma = 0.9
    adv, _ = compute_gae(rewards, values, next_values, terminations, dones, gamma, 0.0)
    td_error = rewards + gamma * (1.0 - terminations) * next_values - values
    np.testing.assert_allclose(adv, td_error, rtol=1e-6, atol=1e-6)


def test_lambda_one_is_monte_carlo_return_minus_baseline():
    """With lambda = 1, A_t = G_t - V(s_t), where G_t sums discounted rewards to the end of
    the episode and bootstraps only where it was cut short (truncation or rollout end)."""
    rewards, values, next_values, terminations, dones = random_rollout(seed=2)
    # In a real rollout V(s_{t+1}) is the next step's V(s) unless the episode ended there.
    next_values[:-1] = np.where(dones[:-1], next_values[:-1], values[1:])
    gamma = 0.95
    adv, targets = compute_gae(rewards, values, next_values, terminations, dones, gamma, 1.0)

    T, N = rewards.shape
    returns = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            g, discount = 0.0, 1.0
            for k in range(t, T):
                g += discount * rewards[k, n]
                discount *= gamma
                if terminations[k, n]:
                    break
                if dones[k, n] or k == T - 1:  # cut short: bootstrap from V(true next state)
                    g += discount * next_values[k, n]
                    break
            returns[t, n] = g
    np.testing.assert_allclose(adv, returns - values, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(targets, returns, rtol=1e-4, atol=1e-4)


def test_truncation_bootstraps_and_termination_does_not():
    """Hand-computed single step: r = 1, V(s) = 0, V(s') = 10, gamma = 0.9."""
    one = jnp.ones((1, 1))
    zero = jnp.zeros((1, 1))
    truncated_adv, _ = compute_gae(one, zero, 10 * one, zero, one, 0.9, 0.95)
    terminated_adv, _ = compute_gae(one, zero, 10 * one, one, one, 0.9, 0.95)
    assert float(truncated_adv[0, 0]) == pytest.approx(1.0 + 0.9 * 10)
    assert float(terminated_adv[0, 0]) == pytest.approx(1.0)


def test_trace_does_not_cross_episode_boundary():
    """A done at t = 0 must hide the (huge) TD error of the next episode's step t = 1."""
    rewards = jnp.array([[0.0], [1000.0]])
    zeros = jnp.zeros((2, 1))
    dones = jnp.array([[1.0], [0.0]])
    adv, _ = compute_gae(rewards, zeros, zeros, zeros, dones, 0.99, 0.95)
    assert float(adv[0, 0]) == 0.0
    assert float(adv[1, 0]) == 1000.0


def test_rejects_mismatched_shapes():
    with pytest.raises(AssertionError):
        compute_gae(
            jnp.ones((3, 2)),
            jnp.ones((3, 2)),
            jnp.ones((3, 1)),
            jnp.zeros((3, 2)),
            jnp.zeros((3, 2)),
            0.99,
            0.95,
        )
