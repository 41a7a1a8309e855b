"""A time limit is not a terminal state: the critic must learn the infinite-horizon value."""

import jax
import jax.numpy as jnp
import numpy as np
from conftest import ConstantRewardEnv

from purejaxppo import PPOConfig, make_train


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
    _, value = ts.apply_fn(ts.params, jnp.zeros((1,)))

    infinite_horizon = 1.0 / (1.0 - gamma)
    finite_horizon = np.mean([(1 - gamma**k) / (1 - gamma) for k in range(1, 6)])
    assert abs(float(value) - infinite_horizon) < 0.1
    assert abs(float(value) - finite_horizon) > 5.0
    np.testing.assert_array_equal(out.metrics["episode_length"], 5.0)
