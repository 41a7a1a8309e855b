"""The reset pool (``resets_per_step``): envs whose episodes end take the oldest fresh
reset waiting, first in first out; a reset is shared only when the pool has run dry, and
every such start is counted."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FixedHorizonParams, tree_equal
from gymnax.environments import environment, spaces

from purejaxppo import PPOConfig, make_trainer
from purejaxppo.envs import ResetPool, VecEnv, take_resets


def _reference(pool, start, count, new_batches, done_batches):
    """``take_resets`` step by step with a Python deque: returns, per step, the reset
    each env is given (None where not done), the pool's contents and the shortfall."""
    size = len(pool)
    queue = collections.deque(pool[(start + i) % size] for i in range(count))
    shortfall, out = 0, []
    for new, done in zip(new_batches, done_batches, strict=True):
        entries = list(queue) + list(new)
        taken = []
        for rank in range(int(np.sum(done))):
            if rank < len(entries):
                taken.append(entries[rank])
            else:  # dry: this step's new resets again, cyclically
                taken.append(new[(rank - len(entries)) % len(new)])
                shortfall += 1
        ranks = iter(taken)
        given = [next(ranks) if d else None for d in done]
        queue = collections.deque(entries[min(len(taken), len(entries)) :][:size])
        out.append((given, list(queue), shortfall))
    return out


def test_take_resets_is_a_first_in_first_out_queue_that_counts_shortfalls():
    rng = np.random.default_rng(0)
    size, num_new, steps = 6, 2, 40
    # done patterns from none to all at once (so the pool runs dry), ids for the resets
    done_batches = [rng.random(size) < p for p in rng.choice([0.0, 0.2, 0.5, 1.0], steps)]
    new_batches = [list(range(100 + num_new * t, 100 + num_new * (t + 1))) for t in range(steps)]
    pool = ResetPool(
        obs=jnp.arange(size), state=jnp.arange(size) * 10, start=jnp.int32(4),
        count=jnp.int32(3), shortfall=jnp.int32(0),
    )  # fmt: skip
    step = jax.jit(take_resets)
    expected = _reference(list(range(size)), 4, 3, new_batches, done_batches)
    shortfalls = []
    for new, done, (given, queued, shortfall) in zip(
        new_batches, done_batches, expected, strict=True
    ):
        new = jnp.array(new)
        reset_obs, reset_state, pool = step(pool, new, new * 10, jnp.array(done))
        got = [int(o) if d else None for o, d in zip(np.asarray(reset_obs), done, strict=True)]
        assert got == given
        np.testing.assert_array_equal(
            np.asarray(reset_state)[done], np.asarray(reset_obs)[done] * 10
        )
        ring = [int(pool.obs[(int(pool.start) + i) % size]) for i in range(int(pool.count))]
        assert ring == queued
        assert int(pool.shortfall) == shortfall
        shortfalls.append(shortfall)
    assert shortfalls[-1] > 0  # the pool did run dry (all envs done at once)


class RandomStartEnv(environment.Environment):
    """Never terminates, truncates every ``max_steps_in_episode`` steps; its first
    observation is a uniform draw from the reset key, so every fresh reset is unique."""

    @property
    def default_params(self):
        return FixedHorizonParams()

    def step_env(self, key, state, action, params):
        obs = jnp.full(1, -1.0)  # never a first observation
        return obs, environment.EnvState(time=state.time + 1), jnp.float32(1.0), False, {}

    def reset_env(self, key, params):
        return jax.random.uniform(key, (1,)), environment.EnvState(time=0)

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params):
        return spaces.Box(-1.0, 1.0, (1,))


def _pool_count_reference(num_envs, resets_per_step, done_counts):
    """The pool's shortfall after each step, from the number of episodes ending in it."""
    count, shortfall, out = num_envs, 0, []
    for done in done_counts:
        queued = count + resets_per_step
        shortfall += max(done - queued, 0)
        count = min(max(queued - done, 0), num_envs)
        out.append(shortfall)
    return out


@pytest.mark.parametrize("resets_per_step", [4, 1])
def test_episodes_start_from_fresh_resets_and_share_one_only_when_the_pool_is_dry(
    resets_per_step,
):
    """8 envs that all truncate at the same step: with 4 new resets per step the pool
    absorbs it and every episode starts from its own draw; with 1 it runs dry, and the
    shortfall counts exactly the episodes that had to share a start."""
    num_envs, steps = 8, 16
    vec = VecEnv(
        RandomStartEnv(),
        FixedHorizonParams(max_steps_in_episode=5),
        num_envs,
        resets_per_step=resets_per_step,
    )

    @jax.jit
    def run(key):
        obs, state = vec.reset(key)

        def step(state, key):
            out, state = vec.step(key, state, jnp.zeros(num_envs, jnp.int32), 0.99)
            return state, (out, state.reset_pool.shortfall)

        return obs, jax.lax.scan(step, state, jax.random.split(key, steps))[1]

    first_obs, (out, shortfall) = run(jax.random.key(0))
    done = np.asarray(out.done)
    assert done.sum(axis=1).tolist() == [0, 0, 0, 0, 8] * 3 + [0]  # all at once
    expected = _pool_count_reference(num_envs, resets_per_step, done.sum(axis=1))
    np.testing.assert_array_equal(shortfall, expected)
    restarts = np.asarray(out.obs)[done][:, 0]
    np.testing.assert_array_equal(np.asarray(out.final_obs)[done], -1.0)  # true final obs
    assert np.all((restarts >= 0) & (restarts < 1))
    starts = np.concatenate([np.asarray(first_obs)[:, 0], restarts])
    assert len(np.unique(starts)) == len(starts) - expected[-1]
    if resets_per_step == 4:
        assert expected[-1] == 0
    else:
        assert expected[-1] == 2 + 3  # 6 of 8 waiting at step 10, 5 at step 15


def test_the_trainer_reports_the_shortfall_and_resumes_bit_exactly():
    """One-step CartPole episodes: all 4 envs restart at every step. With 2 resets per step
    the pool empties and the metric counts 2 shared starts per step from then on."""
    from gymnax.environments.classic_control.cartpole import CartPole

    env = CartPole()
    params = env.default_params.replace(max_steps_in_episode=1)
    config = PPOConfig(
        num_envs=4, num_steps=8, total_timesteps=64, num_minibatches=1, update_epochs=1,
        hidden_sizes=(8,), resets_per_step=2,
    )  # fmt: skip
    trainer = make_trainer(config, env=env, env_params=params)
    run = jax.jit(trainer.run, static_argnums=1)
    start = trainer.init(jax.random.key(0))
    whole, metrics = run(start, 2)
    half, first = run(start, 1)
    half, second = run(half, 1)
    assert tree_equal(whole, half)
    assert tree_equal(metrics, jax.tree.map(lambda a, b: jnp.concatenate([a, b]), first, second))
    expected = _pool_count_reference(4, 2, [4] * 16)
    np.testing.assert_array_equal(metrics["reset_pool_shortfall"], [expected[7], expected[15]])
    assert expected[15] == 2 * 14  # dry from the third step on


def test_resets_per_step_is_validated_before_tracing():
    with pytest.raises(ValueError, match=r"resets_per_step = 5 exceeds num_envs = 4"):
        PPOConfig(resets_per_step=5)
    with pytest.raises(ValueError, match="resets_per_step must be a positive integer"):
        PPOConfig(resets_per_step=0)
    # DeepSea overrides gymnax's step: its resets happen inside it, the pool cannot replace them
    with pytest.raises(ValueError, match="resets_per_step=2 needs an env that steps with"):
        make_trainer(PPOConfig(env_name="DeepSea-bsuite", resets_per_step=2))
    with pytest.raises(ValueError, match=r"resets_per_step must be None or an integer in \[1, "):
        VecEnv(RandomStartEnv(), FixedHorizonParams(), 2, resets_per_step=3)
