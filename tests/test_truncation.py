"""A time limit is not a terminal state: the critic must learn the infinite-horizon value."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ClockEnv, ConstantRewardEnv

from purejaxppo import PPOConfig, make_train, make_trainer


def test_critic_learns_infinite_horizon_value_despite_truncation():
    """Reward 1 forever, truncated every 5 steps, constant observation, gamma = 0.9.

    Bootstrapping from V(final_observation) at truncation gives V = 1 / (1 - gamma) = 10.
    Treating the time limit as terminal would instead fit the average finite-horizon
    return over the 5 positions, sum_k (1 - gamma^k) / (1 - gamma) / 5 ~= 3.7.
    """
    gamma = 0.9
    config = PPOConfig(
        num_envs=4,
        num_steps=20,
        num_minibatches=2,
        update_epochs=4,
        gamma=gamma,
        lr=1e-2,
        clip_value_loss=False,
        ent_coef=0.0,
        anneal_lr=False,
        total_timesteps=80 * 50,
    )
    out = jax.jit(make_train(config, env=ConstantRewardEnv()))(jax.random.key(0))
    ts = out.train_state
    _, _, values = ts.apply_fn(ts.params, (), jnp.zeros((1, 1, 1)), jnp.zeros((1, 1), bool))
    value = values[0, 0]

    infinite_horizon = 1.0 / (1.0 - gamma)
    finite_horizon = np.mean([(1 - gamma**k) / (1 - gamma) for k in range(1, 6)])
    assert abs(float(value) - infinite_horizon) < 0.1
    assert abs(float(value) - finite_horizon) > 5.0
    np.testing.assert_array_equal(out.metrics["episode_length"], 5.0)


def test_rollout_bootstraps_from_the_final_observation_before_the_reset():
    """next_value is V(true next observation): V(obs_{t+1}) inside an episode, V([5]) (not
    V([0]) of the restart) where the time limit ends it. Only that value is stored."""
    config = PPOConfig(num_envs=2, num_steps=12, num_minibatches=1, total_timesteps=24)
    trainer = make_trainer(config, env=ClockEnv())
    state, traj = jax.jit(trainer.collect)(trainer.init(jax.random.key(0)))
    params = state.runner.train_state.params

    def value(obs):
        return float(trainer.network.apply(params, jnp.array([obs], jnp.float32), method="value"))

    assert not hasattr(traj, "final_obs")
    done = np.asarray(traj.done)
    np.testing.assert_array_equal(done[:, 0], [t % 5 == 4 for t in range(12)])
    for t, n in np.ndindex(done.shape):
        want = value(5.0) if done[t, n] else value(float(traj.obs[t, n, 0]) + 1.0)
        assert float(traj.next_value[t, n]) == pytest.approx(want, rel=1e-5), (t, n)
    assert abs(value(5.0) - value(0.0)) > 1e-3  # the two candidates are told apart
