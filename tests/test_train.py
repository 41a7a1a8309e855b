"""make_train: shapes, one trace, determinism, vmap over seeds and hyperparameters."""

import json
import os
import subprocess
import sys

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ConstantRewardEnv, tree_equal

from purejaxppo import PPOConfig, TrainOutput, final_return, make_distribution, make_train

TINY = PPOConfig(
    num_envs=4, num_steps=16, num_minibatches=2, update_epochs=2, total_timesteps=4 * 16 * 3
)
METRIC_KEYS = {
    "episode_return",
    "episode_length",
    "episodes",
    "env_steps",
    "learning_rate",
    "total_loss",
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clip_fraction",
    "explained_variance",
    "clip_eps",
    "kl",
    "grad_norm",
    "minibatches_done",
    "ratio_mean",
    "ratio_std",
    "ratio_max",
}


@pytest.fixture(scope="module")
def tiny_train():
    return jax.jit(make_train(TINY))


@pytest.fixture(scope="module")
def tiny_out(tiny_train):
    return tiny_train(jax.random.key(0))


_AT_DEFAULT_LEVEL = """
import json, os, sys
assert "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", "")
import jax
import numpy as np
from purejaxppo import PPOConfig, make_train
config = PPOConfig.from_dict(json.loads(sys.argv[1]))
out = jax.jit(make_train(config))(jax.random.key(0))
np.savez(sys.argv[2], *[np.asarray(leaf) for leaf in jax.tree.leaves(out)])
"""


def test_the_suites_optimisation_level_changes_results_only_by_rounding(tiny_out, tmp_path):
    """conftest.py compiles the suite at XLA's backend optimisation level 1; a run at the
    default level (a fresh process without the flag and without the compilation cache)
    gives the same results up to float rounding (LLVM vectorises some reductions
    differently, as two CPUs with different vector units do)."""
    assert "--xla_backend_optimization_level=1" in os.environ["XLA_FLAGS"]
    env = dict(os.environ)
    env["XLA_FLAGS"] = env["XLA_FLAGS"].replace("--xla_backend_optimization_level=1", "")
    saved = tmp_path / "default_level.npz"
    config = json.dumps(TINY.to_dict())
    subprocess.run(
        [sys.executable, "-c", _AT_DEFAULT_LEVEL, config, str(saved)], env=env, check=True
    )
    default = np.load(saved)
    leaves = jax.tree.leaves(tiny_out)
    assert len(default.files) == len(leaves)
    for i, leaf in enumerate(leaves):
        np.testing.assert_allclose(default[f"arr_{i}"], np.asarray(leaf), rtol=1e-4, atol=1e-6)


def test_output_structure_and_shapes(tiny_out):
    assert isinstance(tiny_out, TrainOutput)
    assert set(tiny_out.metrics) == METRIC_KEYS
    for name, value in tiny_out.metrics.items():
        assert value.shape == (TINY.num_updates,), name
    np.testing.assert_array_equal(tiny_out.metrics["env_steps"], [64, 128, 192])
    assert tiny_out.metrics["env_steps"].dtype == jnp.int64  # exact past 2**31 steps


def test_apply_fn_is_the_network_protocol(tiny_out):
    """``apply_fn(params, carry, obs [T, B, ...], episode_start [T, B]) -> (carry,
    PolicyParams, value)``; the default MLP's carry is empty."""
    ts = tiny_out.train_state
    obs = jnp.zeros((3, 7, 4))
    carry, policy, value = ts.apply_fn(ts.params, (), obs, jnp.zeros((3, 7), bool))
    assert carry == ()
    assert isinstance(make_distribution(policy), distrax.Categorical)
    assert policy.logits_or_mean.shape == (3, 7, 2) and value.shape == (3, 7)


def test_learning_rate_anneals_linearly(tiny_out):
    n = TINY.num_updates
    expected = TINY.lr * (1 - np.arange(n) / n)
    np.testing.assert_allclose(tiny_out.metrics["learning_rate"], expected, rtol=1e-6)
    assert tiny_out.train_state.step == n * TINY.update_epochs * TINY.num_minibatches


def test_traces_once_and_is_deterministic(tiny_train, tiny_out):
    again = tiny_train(jax.random.key(0))
    other = tiny_train(jax.random.key(1))
    assert tiny_train._cache_size() == 1
    assert tree_equal(again, tiny_out)
    assert not tree_equal(other.train_state.params, tiny_out.train_state.params)


def test_whole_run_is_one_program():
    """The jaxpr of train holds one scan over updates, with the rollout (num_steps) and the
    epoch (update_epochs) scans inside it: no Python loop was unrolled."""
    jaxpr = jax.make_jaxpr(make_train(TINY))(jax.random.key(0))
    updates = [
        e
        for e in jaxpr.eqns
        if e.primitive.name == "scan" and e.params["length"] == TINY.num_updates
    ]
    assert len(updates) == 1
    inner = [
        e.params["length"]
        for e in updates[0].params["jaxpr"].jaxpr.eqns
        if e.primitive.name == "scan"
    ]
    assert TINY.num_steps in inner and TINY.update_epochs in inner


def test_legacy_prng_key(tiny_out):
    out = jax.jit(make_train(TINY))(jax.random.PRNGKey(0))
    assert set(out.metrics) == METRIC_KEYS
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(out.train_state.params))


def test_vmap_over_seeds_equals_separate_runs(tiny_train):
    keys = jax.random.split(jax.random.key(42), 3)
    batched = jax.jit(jax.vmap(make_train(TINY)))(keys)
    for leaf in jax.tree.leaves(batched):
        assert leaf.shape[0] == 3
    for i in range(3):
        single = tiny_train(keys[i])
        jax.tree.map(
            lambda b, s, i=i: np.testing.assert_allclose(b[i], s, rtol=1e-4, atol=1e-5),
            (batched.train_state.params, batched.metrics),
            (single.train_state.params, single.metrics),
        )


def test_vmap_over_hyperparameters_is_a_sweep():
    """A batch of PPOHyperparams trains one agent per value, matching a run with that config."""
    lrs = (1e-3, 3e-3)
    base = TINY.replace(env_name="CartPole-v1")
    batched_hp = jax.tree.map(
        lambda *xs: jnp.stack(xs), *[base.replace(lr=lr).hyperparams() for lr in lrs]
    )
    train = make_train(base)
    sweep = jax.jit(jax.vmap(train, in_axes=(None, 0)))(jax.random.key(3), batched_hp)
    annealed = 1.0 - np.arange(base.num_updates) / base.num_updates
    for i, lr in enumerate(lrs):
        np.testing.assert_allclose(sweep.metrics["learning_rate"][i], lr * annealed, rtol=1e-6)
    # the second row equals a run configured with that learning rate (the first row differs)
    single = jax.jit(make_train(base.replace(lr=lrs[1])))(jax.random.key(3))
    jax.tree.map(
        lambda b, s: np.testing.assert_allclose(b[1], s, rtol=1e-4, atol=1e-5),
        sweep.train_state.params,
        single.train_state.params,
    )
    assert not np.allclose(
        jax.tree.leaves(sweep.train_state.params)[0][0],
        jax.tree.leaves(single.train_state.params)[0],
    )


def test_custom_env_episode_statistics():
    """Episodes of exactly 5 steps with reward 1: every finished episode returns 5."""
    config = PPOConfig(
        num_envs=3, num_steps=10, num_minibatches=2, update_epochs=1, total_timesteps=3 * 10 * 2
    )
    out = jax.jit(make_train(config, env=ConstantRewardEnv()))(jax.random.key(0))
    np.testing.assert_array_equal(out.metrics["episode_return"], [5.0, 5.0])
    np.testing.assert_array_equal(out.metrics["episode_length"], [5.0, 5.0])
    np.testing.assert_array_equal(out.metrics["episodes"], [6, 6])


def test_episode_return_is_nan_when_no_episode_finishes():
    config = PPOConfig(
        num_envs=2, num_steps=4, num_minibatches=1, update_epochs=1, total_timesteps=2 * 4 * 3
    )
    env = ConstantRewardEnv()
    out = jax.jit(
        make_train(config, env=env, env_params=env.default_params.replace(max_steps_in_episode=6))
    )(jax.random.key(0))
    # Episodes end at steps 6 and 12: none in update 0 (steps 1-4), both envs in 1 and 2.
    np.testing.assert_array_equal(out.metrics["episodes"], [0, 2, 2])
    assert np.isnan(out.metrics["episode_return"][0])
    np.testing.assert_array_equal(out.metrics["episode_return"][1:], [6.0, 6.0])


def test_final_return_is_the_nan_aware_mean_of_the_last_tenth():
    returns = np.array([[1.0] * 10 + [np.nan] * 9 + [7.0], [0.0] * 18 + [2.0, 4.0]])
    np.testing.assert_array_equal(final_return(returns), [7.0, 3.0])  # last 2 of 20 updates
    assert np.isnan(final_return(np.full((1, 5), np.nan)))[0]
    assert final_return(np.arange(5.0), fraction=1.0) == 2.0
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        final_return(returns, fraction=0.0)
