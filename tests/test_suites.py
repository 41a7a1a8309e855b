"""Env suites behind prefixes (Brax, Craftax, pgx, Jumanji): each adapter keeps
termination and truncation apart, keeps the true final observation, steps exactly as the
native env does with the same keys, and trains a few updates. A suite that is not
installed skips its tests; naming it raises an error that says which extra to install."""

import importlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxppo import PPOConfig, make_env, make_train
from purejaxppo.envs import SUITES, VecEnv, suite_env_names


def _scan_steps(env, params, key, actions):
    """Step one env of the contract through ``actions`` ``[T, ...]`` from a reset;
    returns the pre-step states and the step outputs, stacked ``[T, ...]``."""
    reset_key, key = jax.random.split(key)
    _, state = env.reset(reset_key, params)

    def step(state, inputs):
        key, action = inputs
        obs, new_state, reward, terminated, truncated, info = env.step(key, state, action, params)
        out = (obs, reward, terminated, truncated, info["final_observation"])
        return new_state, (state, key, out)

    keys = jax.random.split(key, len(jax.tree.leaves(actions)[0]))
    return jax.lax.scan(step, state, (keys, actions))[1]


# --- the registry ---------------------------------------------------------------------


def test_a_suite_that_is_not_installed_names_its_extra(monkeypatch):
    for name in [n for n in sys.modules if n == "brax" or n.startswith("brax.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "brax", None)  # import brax -> ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "purejaxppo.envs.brax_suite", raising=False)
    with pytest.raises(
        ValueError,
        match=r"needs Brax, which is not installed: pip install "
        r"\"purejaxppo\[brax\]\"",
    ):
        make_env("brax:ant")


def test_unknown_prefixes_and_names_suggest_close_ones():
    with pytest.raises(ValueError, match=r"unknown suite prefix 'brx'\. Did you mean 'brax:'"):
        make_env("brx:ant")
    with pytest.raises(ValueError, match=r"Did you mean 'CartPole-v1'.*other suites with a prefix"):
        make_env("CartPol-v1")


def test_every_suite_has_an_extra_in_pyproject():
    with open("pyproject.toml") as file:
        text = file.read()
    for suite in SUITES.values():
        assert f"\n{suite.extra} = [" in text, suite.extra


# --- Brax ---------------------------------------------------------------------------


def test_brax_keeps_the_time_limit_apart_from_termination_and_steps_as_brax_does():
    brax_envs = pytest.importorskip("brax.envs")
    env, params = make_env("brax:inverted_pendulum")
    native = brax_envs.get_environment("inverted_pendulum")
    steps = 40

    @jax.jit
    def run(key, params, push):
        actions = jnp.full((steps, 1), push)
        states, keys, out = _scan_steps(env, params, key, actions)
        # Brax itself, from the same pre-step states; the reset the adapter kept
        native_next = jax.vmap(native.step)(states.brax_state, actions)
        reset_obs = jax.vmap(lambda k: native.reset(jax.random.split(k)[1]).obs)(keys)
        return out, native_next, reset_obs

    # pushed hard, the pole falls: termination, never a truncation
    (obs, reward, terminated, truncated, final_obs), native_next, reset_obs = run(
        jax.random.key(0), params, 1.0
    )
    ended = np.flatnonzero(np.asarray(terminated))
    assert len(ended) > 0 and not np.any(np.asarray(truncated))
    first = ended[0]
    np.testing.assert_array_equal(final_obs[: first + 1], native_next.obs[: first + 1])
    np.testing.assert_array_equal(reward[: first + 1], native_next.reward[: first + 1])
    np.testing.assert_array_equal(
        np.asarray(native_next.done[: first + 1]) > 0.5, terminated[: first + 1]
    )
    np.testing.assert_array_equal(obs[first], reset_obs[first])  # auto-reset, fresh key
    # a time limit of 3 steps, the pole upright: truncation every 3 steps, true final obs
    (obs, _, terminated, truncated, final_obs), native_next, reset_obs = run(
        jax.random.key(1), params.replace(max_steps_in_episode=3), 0.0
    )
    assert not np.any(np.asarray(terminated[:9]))
    np.testing.assert_array_equal(np.asarray(truncated[:9]), [False, False, True] * 3)
    np.testing.assert_array_equal(final_obs[2], native_next.obs[2])
    np.testing.assert_array_equal(obs[2], reset_obs[2])
    assert not np.array_equal(final_obs[2], obs[2])


def test_brax_env_objects_are_adapted_and_wrapped_ones_refused():
    brax_envs = pytest.importorskip("brax.envs")
    env, params = make_env("CartPole-v1", env=brax_envs.get_environment("inverted_pendulum"))
    assert env.name == "brax:InvertedPendulum" and params.max_steps_in_episode == 1000
    with pytest.raises(ValueError, match="pass the bare Brax env"):
        make_env("CartPole-v1", env=brax_envs.create("inverted_pendulum"))
    with pytest.raises(ValueError, match="Did you mean 'brax:ant'"):
        make_env("brax:antt")
    assert "brax:halfcheetah" in suite_env_names("brax")


# --- Craftax --------------------------------------------------------------------------


def test_craftax_splits_its_done_into_death_and_time_limit():
    pytest.importorskip("craftax")
    env, params = make_env("craftax:Craftax-Classic-Symbolic-v1")
    native = env.craftax_env

    @jax.jit
    def run(key, params):
        _, state = env.reset(key, params)
        limited = params.replace(max_timesteps=1)
        alive = env.step(key, state, 0, limited)  # noop on the last allowed step
        dead = env.step(
            key, state.replace(player_health=jnp.zeros_like(state.player_health)), 0, params
        )
        native_obs = native.step_env(jax.random.split(key)[0], state, 0, limited)[0]
        return alive, dead, native_obs

    alive, dead, native_obs = run(jax.random.key(0), params)
    assert bool(alive[4]) and not bool(alive[3])  # truncated, not terminated
    np.testing.assert_array_equal(alive[5]["final_observation"], native_obs)
    assert bool(dead[3])  # terminated
    assert not bool(dead[4])


# --- pgx ------------------------------------------------------------------------------


def test_pgx_2048_masks_steps_as_pgx_does_and_reports_termination():
    pytest.importorskip("pgx")
    env, params = make_env("pgx:2048")
    native = env.pgx_env
    steps = 300

    @jax.jit
    def run(key, params):
        # random legal moves: the first legal one after a random offset
        offsets = jax.random.randint(key, (steps,), 0, 4)
        states = []

        reset_key, key = jax.random.split(key)
        _, state = env.reset(reset_key, params)

        def step(state, inputs):
            key, offset = inputs
            mask = state.pgx_state.legal_action_mask
            action = (offset + jnp.argmax(jnp.roll(mask, -offset))) % 4
            out = env.step(key, state, action, params)
            native_next = native.step(state.pgx_state, action, jax.random.split(key)[0])
            return out[1], (out, native_next, mask[action])

        keys = jax.random.split(key, steps)
        del states
        return jax.lax.scan(step, state, (keys, offsets))[1]

    (obs, _, reward, terminated, truncated, info), native_next, legal = run(
        jax.random.key(0), params
    )
    assert np.all(np.asarray(legal))
    np.testing.assert_array_equal(info["final_observation"]["observation"], native_next.observation)
    np.testing.assert_array_equal(reward, native_next.rewards[:, 0])
    np.testing.assert_array_equal(terminated, native_next.terminated)
    assert np.any(np.asarray(terminated)) and not np.any(np.asarray(truncated))
    mask = np.asarray(obs["action_mask"])
    assert mask.dtype == bool and mask.shape == (steps, 4)
    # the adapter's own time limit is a truncation
    _, _, _, terminated, truncated, _ = run(
        jax.random.key(0), params.replace(max_steps_in_episode=2)
    )[0]
    np.testing.assert_array_equal(np.asarray(truncated[:4]), [False, True, False, True])
    with pytest.raises(ValueError, match="2 players; purejaxppo trains a single agent"):
        make_env("pgx:tic_tac_toe")


# --- Jumanji --------------------------------------------------------------------------


def test_jumanji_discount_tells_termination_from_truncation():
    pytest.importorskip("jumanji")
    # Jumanji's single-agent envs end their own time limit with discount 0 (a
    # termination, reported as such); the adapter's limit is the truncation
    env, params = make_env("jumanji:Snake-v1")
    params = params.replace(max_steps_in_episode=6)
    native = env.jumanji_env
    steps, batch = 40, 16

    @jax.jit
    def run(key):
        actions = jax.random.randint(key, (batch, steps), 0, 4)
        keys = jax.random.split(key, batch)
        states, _, out = jax.vmap(lambda k, a: _scan_steps(env, params, k, a))(keys, actions)
        _, timestep = jax.vmap(jax.vmap(native.step))(states.jumanji_state, actions)
        return states, out, timestep

    states, (obs, reward, terminated, truncated, final_obs), timestep = run(jax.random.key(0))
    last, discount = np.asarray(timestep.last()), np.asarray(timestep.discount)
    np.testing.assert_array_equal(terminated, last & (discount == 0))
    limit = np.asarray(states.time) + 1 >= 6
    np.testing.assert_array_equal(truncated, (last & (discount != 0)) | limit)
    assert np.any(np.asarray(terminated)) and np.any(
        np.asarray(truncated) & ~np.asarray(terminated)
    )
    np.testing.assert_array_equal(final_obs["grid"], timestep.observation.grid)
    np.testing.assert_array_equal(reward, timestep.reward)
    assert set(obs) == {"grid", "step_count", "action_mask"}


def test_jumanji_joint_multidiscrete_mask_becomes_one_discrete_choice():
    pytest.importorskip("jumanji")
    env, params = make_env("jumanji:Minesweeper-v0")
    spec = VecEnv(env, params, 1).action_spec
    assert spec.discrete and spec.dim == 100 and spec.nvec is None
    np.testing.assert_array_equal(env._env_action(jnp.int32(23)), [2, 3])


# --- every suite trains ---------------------------------------------------------------

SMOKE = {  # env name: (suite, config fields beyond the tiny budget)
    "brax:inverted_pendulum": ("brax", {}),
    # Craftax's reset generates a world: the benchmark config uses the reset pool
    "craftax:Craftax-Classic-Symbolic-v1": ("craftax", {"resets_per_step": 1}),
    "pgx:2048": ("pgx", {}),
    "jumanji:Snake-v1": ("jumanji", {}),
}


@pytest.mark.parametrize("env_name", list(SMOKE))
def test_each_suite_trains_a_few_updates(env_name):
    suite, fields = SMOKE[env_name]
    pytest.importorskip(suite)
    config = PPOConfig(
        env_name=env_name,
        num_envs=4,
        num_steps=8,
        total_timesteps=4 * 8 * 2,
        num_minibatches=2,
        update_epochs=1,
        hidden_sizes=(16,),
        **fields,
    )
    out = jax.jit(make_train(config))(jax.random.key(0))
    for name in ("policy_loss", "value_loss", "entropy", "kl"):
        assert np.all(np.isfinite(np.asarray(out.metrics[name]))), name
    assert np.all(np.asarray(out.metrics["kl"]) > 0)  # the policy moved


def test_suite_modules_import_their_suite_only_when_asked():
    suites = "('brax', 'craftax', 'pgx', 'jumanji')"
    code = f"import purejaxppo, sys; print([m for m in {suites} if m in sys.modules])"

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert importlib.util.find_spec("purejaxppo.envs.brax_suite") is not None
