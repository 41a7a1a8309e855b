"""Counters stay exact in long runs: env steps past 2**31, normalisation counts past 2**26."""

import jax
import jax.numpy as jnp
import numpy as np

from purejaxppo import PPOConfig, make_trainer
from purejaxppo.counters import env_steps, float64
from purejaxppo.envs import RunningMeanStd


def test_env_steps_are_exact_int64_far_past_int32():
    steps = env_steps(jnp.asarray([1, 500_000_001, 2**31 - 1], jnp.int32), 2048)
    assert steps.dtype == jnp.int64
    expected = np.array([1, 500_000_001, 2**31 - 1], np.int64) * 2048  # up to 4.4e12
    np.testing.assert_array_equal(np.asarray(steps), expected)


def test_env_steps_metric_of_an_update_late_in_a_10_to_the_12_step_run():
    """One update starting at update 5e8 of 2048-step batches: 1.024e12 steps, exactly."""
    config = PPOConfig(num_envs=16, num_steps=128, num_minibatches=1, update_epochs=1)
    trainer = make_trainer(config.replace(total_timesteps=2048))
    state = trainer.init(jax.random.key(0))._replace(update_index=jnp.int32(500_000_000))
    _, metrics = jax.jit(trainer.run, static_argnums=1)(state, 1)
    assert metrics["env_steps"].dtype == jnp.int64
    assert int(metrics["env_steps"][0]) == 500_000_001 * 2048 > 10**12


def test_normalisation_count_keeps_counting_past_float32_precision():
    """At 2**26 a float32 count plus 4 rounds back to itself; the count must not freeze,
    and a batch must still get its weight 4 / (n + 4) in the mean."""
    start = 2.0**26 + 1e-4
    stats = RunningMeanStd.create((1,)).replace(count=float64(start))
    for _ in range(3):
        stats = stats.update(jnp.ones((4, 1)))
    assert float(stats.count) == start + 12  # exact
    np.testing.assert_allclose(float(stats.mean[0]), 12 / (2**26 + 12), rtol=1e-3)

    late = RunningMeanStd.create(()).replace(count=float64(1e12))
    assert float(late.update(jnp.zeros(4)).count) == 1e12 + 4
