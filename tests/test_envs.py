"""The batched env layer: every gymnax env, action clipping, normalisation statistics."""

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import QUICK_COMPILE, ConstantRewardEnv, FixedHorizonParams, tree_equal
from gymnax.environments import environment, spaces

from purejaxppo import (
    PPOConfig,
    RunningMeanStd,
    VecEnv,
    make_env,
    make_trainer,
    offline_env_names,
)
from purejaxppo.envs import EXTRA_ENVS, MAX_RESET_DRAW_BYTES, EnvDraws


def test_offline_names_cover_registry_except_mnist():
    gymnax_names = set(gymnax.registered_envs) - {"MNISTBandit-bsuite"}
    assert set(offline_env_names()) == gymnax_names | set(EXTRA_ENVS)


def test_stateless_cartpole_is_cartpole_without_the_velocities():
    """Same keys, same actions: StatelessCartPole's observations are CartPole-v1's
    (x, theta), and its rewards, terminations, truncations and limit are CartPole's."""
    full, full_params = make_env("CartPole-v1")
    stateless, params = make_env("StatelessCartPole")
    assert make_env("StatelessCartPole-v1")[1] == params == full_params
    assert stateless.observation_space(params).shape == (2,)
    key = jax.random.key(0)
    obs_a, state_a = full.reset(key, full_params)
    obs_b, state_b = stateless.reset(key, params)
    np.testing.assert_array_equal(obs_b, obs_a[jnp.array([0, 2])])
    ended = 0
    for t in range(300):
        key, step_key = jax.random.split(key)
        action = t % 3 % 2
        obs_a, state_a, *outcome_a, info_a = full.step(step_key, state_a, action, full_params)
        obs_b, state_b, *outcome_b, info_b = stateless.step(step_key, state_b, action, params)
        np.testing.assert_array_equal(obs_b, obs_a[jnp.array([0, 2])])
        np.testing.assert_array_equal(
            info_b["final_observation"], info_a["final_observation"][jnp.array([0, 2])]
        )
        assert outcome_a == outcome_b  # reward, terminated, truncated
        ended += int(outcome_a[1])
    assert ended >= 2  # episodes ended, and the auto-reset matched too


@pytest.mark.parametrize("env_name", offline_env_names())
def test_every_offline_env_trains_by_name(env_name):
    """Two tiny updates on each env: any obs shape/dtype, Discrete or Box actions."""
    config = PPOConfig(
        env_name=env_name,
        num_envs=2,
        num_steps=8,
        num_minibatches=2,
        update_epochs=1,
        total_timesteps=32,
        hidden_sizes=(16,),
    )
    trainer = make_trainer(config)
    initial = trainer.init(jax.random.key(0))
    # two updates of 16 steps: compiling is nearly all of it, and at XLA's optimisation level
    # 0 it takes about half as long (on the 2-core CPU)
    run = jax.jit(trainer.run, static_argnums=1).lower(initial, config.num_updates)
    state, metrics = run.compile(QUICK_COMPILE)(initial)
    # it stepped the env and took every gradient step, with finite losses and parameters
    np.testing.assert_array_equal(metrics["env_steps"], [16, 32])
    np.testing.assert_array_equal(metrics["minibatches_done"], [2, 2])
    assert np.all(np.isfinite(metrics["total_loss"]))
    params = state.runner.train_state.params
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params))
    # and the gradient steps changed the policy and the critic
    before = initial.runner.train_state.params["params"]
    after = params["params"]
    for network in ("actor", "critic"):
        assert not tree_equal(before[network], after[network]), network


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(3.0, 2.0, size=(n, 3)).astype(np.float32) for n in (5, 17, 1, 40)]
    stats = RunningMeanStd.create((3,))
    for chunk in chunks:
        stats = stats.update(jnp.asarray(chunk))
    everything = np.concatenate(chunks)
    # The prior (mean 0, var 1, count 1e-4) shifts the result by O(1e-4 / 63).
    np.testing.assert_allclose(stats.mean, everything.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats.var, everything.var(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats.count, len(everything) + 1e-4, rtol=1e-6)


def _vec_env(name, num_envs=3, **kwargs):
    env, params = make_env(name)
    return VecEnv(env=env, env_params=params, num_envs=num_envs, **kwargs)


def test_continuous_actions_are_clipped_to_the_box():
    vec = _vec_env("Pendulum-v1")
    _obs, state = vec.reset(jax.random.key(0))
    key = jax.random.key(1)
    huge, _ = vec.step(key, state, jnp.full((3, 1), 100.0), 0.99)
    at_bound, _ = vec.step(key, state, jnp.full((3, 1), 2.0), 0.99)
    inside, _ = vec.step(key, state, jnp.full((3, 1), 1.0), 0.99)
    np.testing.assert_array_equal(huge.obs, at_bound.obs)
    np.testing.assert_array_equal(huge.reward, at_bound.reward)
    assert not np.array_equal(inside.obs, at_bound.obs)


class _EchoActionEnv(ConstantRewardEnv):
    """Observes the action it was given; a 3-D Box with different bounds per dimension."""

    def step_env(self, key, state, action, params):
        _, state, reward, terminated, info = super().step_env(key, state, action, params)
        return jnp.asarray(action, jnp.float32), state, reward, terminated, info

    def reset_env(self, key, params):
        return jnp.zeros(3), environment.EnvState(time=0)

    def action_space(self, params=None):
        return spaces.Box(jnp.array([-1.0, 0.0, -3.0]), jnp.array([1.0, 5.0, -2.0]), (3,))


def test_box_actions_are_clipped_per_dimension_to_their_own_bounds():
    vec = VecEnv(
        env=_EchoActionEnv(), env_params=FixedHorizonParams(max_steps_in_episode=9), num_envs=2
    )
    np.testing.assert_array_equal(vec.action_spec.low, [-1.0, 0.0, -3.0])
    _obs, state = vec.reset(jax.random.key(0))
    action = jnp.array([[2.0, -1.0, -2.5], [-7.0, 9.0, 0.0]])
    step, _ = vec.step(jax.random.key(1), state, action, 0.99)
    np.testing.assert_array_equal(step.obs, [[1.0, 0.0, -2.5], [-1.0, 5.0, -2.0]])


def test_integer_observations_keep_their_dtype_unless_normalised():
    """Stored as the env gives them (the network casts): no 4x widening of small ints."""
    vec = _vec_env("FourRooms-misc")
    assert vec.obs_dtype == jnp.int32
    obs, state = vec.reset(jax.random.key(0))
    assert obs.dtype == jnp.int32 and obs.shape == (3, 4)
    step, _ = vec.step(jax.random.key(1), state, jnp.zeros(3, jnp.int32), 0.99)
    assert step.obs.dtype == jnp.int32 and step.final_obs.dtype == jnp.int32
    normalised = _vec_env("FourRooms-misc", normalize_obs=True)
    assert normalised.reset(jax.random.key(0))[0].dtype == jnp.float32


def test_observation_dtype_covers_reset_and_step():
    """An env (with its own auto-resetting step) whose reset gives int8 and whose step
    gives float32 observations is stored as float32 throughout (the rollout's carry needs
    one dtype)."""
    from conftest import ConstantRewardEnv

    class MixedEnv(ConstantRewardEnv):
        def reset_env(self, key, params):
            obs, state = super().reset_env(key, params)
            return obs.astype(jnp.int8), state

        def step(self, key, state, action, params=None):
            _, state, reward, terminated, info = self.step_env(key, state, action, params)
            obs = jnp.full((1,), 0.5, jnp.float32)
            info = {**info, "final_observation": obs}
            return obs, state, reward, terminated, jnp.bool_(False), info

    vec = VecEnv(env=MixedEnv(), env_params=MixedEnv().default_params, num_envs=2)
    assert vec.obs_dtype == jnp.float32
    obs, state = vec.reset(jax.random.key(0))
    step, _ = vec.step(jax.random.key(1), state, jnp.zeros(2, jnp.int32), 0.99)
    assert obs.dtype == step.obs.dtype == jnp.float32
    np.testing.assert_array_equal(step.final_obs, 0.5)


def test_final_obs_differs_from_obs_only_where_done():
    vec = _vec_env("CartPole-v1", num_envs=8)
    _obs, state = vec.reset(jax.random.key(0))
    step_fn = jax.jit(vec.step)
    saw_done = False
    for i in range(60):
        step, state = step_fn(jax.random.key(i), state, jnp.zeros(8, jnp.int32), 0.99)
        done = np.asarray(step.terminated | step.truncated)
        same = np.all(np.asarray(step.obs) == np.asarray(step.final_obs), axis=1)
        np.testing.assert_array_equal(same[~done], True)
        saw_done |= bool(done.any())
        if done.any():
            assert not same[done].any()
    assert saw_done  # always pushing left ends CartPole episodes within 60 steps


def test_observation_normalisation_uses_running_statistics():
    vec = _vec_env("CartPole-v1", num_envs=16, normalize_obs=True)
    raw = _vec_env("CartPole-v1", num_envs=16)
    key = jax.random.key(0)
    obs, state = vec.reset(key)
    raw_obs, _ = raw.reset(key)
    expected = (raw_obs - state.obs_stats.mean) / jnp.sqrt(state.obs_stats.var + 1e-8)
    np.testing.assert_allclose(obs, jnp.clip(expected, -10, 10), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.obs_stats.mean, raw_obs.mean(0), rtol=1e-3, atol=1e-6)


def test_reward_normalisation_scales_by_discounted_return_std():
    """Reference loop: G <- gamma G + r; update stats with G; reward / sqrt(var(G))."""
    gamma = 0.9
    vec = _vec_env("Pendulum-v1", num_envs=4, normalize_reward=True)
    raw = _vec_env("Pendulum-v1", num_envs=4)
    _, state = vec.reset(jax.random.key(0))
    _, raw_state = raw.reset(jax.random.key(0))
    returns = np.zeros(4)
    history = []
    for i in range(5):
        action = jnp.full((4, 1), 0.5)
        step, state = vec.step(jax.random.key(i), state, action, gamma)
        raw_step, raw_state = raw.step(jax.random.key(i), raw_state, action, gamma)
        returns = gamma * returns + np.asarray(raw_step.reward, np.float64)
        history.append(returns.copy())
        seen = np.concatenate(history)
        # Variance of the prior (mean 0, var 1, weight 1e-4) pooled with every G seen.
        prior = 1e-4
        mean = seen.sum() / (prior + seen.size)
        var = (prior * (1.0 + mean**2) + np.sum((seen - mean) ** 2)) / (prior + seen.size)
        np.testing.assert_allclose(step.reward, raw_step.reward / np.sqrt(var + 1e-8), rtol=2e-3)
        np.testing.assert_array_equal(step.episode_return, raw_step.episode_return)


def _gymnax_split_draws(vec, key):
    """The draws gymnax's own step makes from ``key``: per env, split it into the step
    key and the reset key, and reset from the latter."""
    env_keys = jax.random.split(key, vec.num_envs)
    step_keys, reset_keys = jax.vmap(jax.random.split, out_axes=1)(env_keys)
    reset_obs, reset_state = jax.vmap(vec.env.reset_env, in_axes=(0, None))(
        reset_keys, vec.env_params
    )
    return EnvDraws(step_keys, reset_obs, reset_state)


def _assert_same(actual, desired):
    """Equal; floats to 1e-6 relative (two compiled programs may round a sum differently)."""
    if jnp.issubdtype(jnp.asarray(desired).dtype, jnp.floating):
        np.testing.assert_allclose(actual, desired, rtol=1e-6, atol=0)
    else:
        np.testing.assert_array_equal(actual, desired)


@pytest.mark.parametrize(
    ("env_name", "param_overrides", "action_of"),
    [
        ("CartPole-v1", {}, lambda i, n: jnp.zeros(n, jnp.int32)),  # falls within ~10 steps
        ("Pendulum-v1", {"max_steps_in_episode": 7}, lambda i, n: jnp.full((n, 1), 0.1 * i)),
        # random rewards in step_env, random arm mean at reset
        (
            "GaussianBandit-misc",
            {"max_steps_in_episode": 6},
            lambda i, n: jnp.full(n, i % 2, jnp.int32),
        ),
    ],
)
def test_step_drawn_is_gymnax_step_given_the_same_draws(env_name, param_overrides, action_of):
    """With the reset drawn from the key gymnax's step would use, ``step_drawn`` returns
    what ``step`` (gymnax's own auto-resetting step) returns, episode ends included: exactly,
    up to float rounding."""
    env, params = make_env(env_name)
    vec = VecEnv(env=env, env_params=params.replace(**param_overrides), num_envs=5)
    _obs, state = vec.reset(jax.random.key(0))
    drawn_state = state
    step_fn, drawn_fn = jax.jit(vec.step), jax.jit(vec.step_drawn)
    ended = 0
    for i in range(16):
        key, action = jax.random.key(100 + i), action_of(i, vec.num_envs)
        expected, state = step_fn(key, state, action, 0.99)
        got, drawn_state = drawn_fn(_gymnax_split_draws(vec, key), drawn_state, action, 0.99)
        jax.tree.map(_assert_same, got, expected)
        jax.tree.map(_assert_same, drawn_state, state)
        ended += int(np.sum(expected.done))
    assert ended >= vec.num_envs  # the reset branch was exercised


def test_resets_are_drawn_ahead_only_for_gymnax_step_within_the_memory_bound():
    cartpole = _vec_env("CartPole-v1", num_envs=4)
    assert cartpole.draws_resets(128)
    draws = cartpole.draw(jax.random.key(0), 128)
    assert draws.step_key.shape == (128, 4)
    assert draws.reset_obs.shape == (128, 4, 4) and draws.reset_state.x.shape == (128, 4)
    # DeepSea overrides gymnax's step: it keeps resetting itself inside env.step.
    deep_sea = _vec_env("DeepSea-bsuite", num_envs=4)
    assert not deep_sea.draws_resets(128)
    assert deep_sea.draw(jax.random.key(0), 128).reset_state is None
    # 64 MinAtar envs x 128 steps of ~2 KB resets exceed the bound.
    breakout = _vec_env("Breakout-MinAtar", num_envs=64)
    assert breakout.reset_nbytes * 128 * 64 > MAX_RESET_DRAW_BYTES
    assert not breakout.draws_resets(128) and breakout.draws_resets(8)


def test_rollout_restarts_every_ended_episode_from_its_own_fresh_reset():
    """With one-step episodes every env restarts at every step: all T x N restart
    observations must be distinct draws from CartPole's reset distribution U(-0.05, 0.05)."""
    _env, params = make_env("CartPole-v1")
    config = PPOConfig(num_envs=4, num_steps=32, total_timesteps=128, num_minibatches=1)
    trainer = make_trainer(config, env_params=params.replace(max_steps_in_episode=1))
    assert trainer.vec_env.draws_resets(config.num_steps)
    state, traj = jax.jit(trainer.collect)(trainer.init(jax.random.key(0)))
    assert bool(np.all(traj.truncated))
    # each step's restart is the observation the policy acts on at the next step
    restarts = np.concatenate([traj.obs[1:], state.runner.obs[None]]).reshape(-1, 4)
    assert np.all(np.abs(restarts) <= 0.05)
    assert len(np.unique(restarts, axis=0)) == restarts.shape[0] == 32 * 4
