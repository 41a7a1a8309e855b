"""Evaluation and policy export: episodes counted right, normalisation applied, learning shown."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ConstantRewardEnv, tree_equal

from purejaxppo import PPOConfig, evaluate, make_policy, make_train, make_trainer
from purejaxppo.envs import make_env

CARTPOLE = PPOConfig(env_name="CartPole-v1", total_timesteps=150_000, lr=3e-3)


@pytest.fixture(scope="module")
def cartpole_output():
    """One CartPole seed trained with the benchmark config (500 at 150k steps there)."""
    return jax.jit(make_train(CARTPOLE))(jax.random.key(0))


def test_deterministic_evaluation_reaches_the_cartpole_cap(cartpole_output):
    result = jax.jit(lambda k: evaluate(cartpole_output, CARTPOLE, k, num_episodes=20))(
        jax.random.key(1)
    )
    assert result.episode_return.shape == result.episode_length.shape == (20,)
    np.testing.assert_array_equal(result.episode_length, 500)  # truncated at the cap, all 20
    np.testing.assert_array_equal(result.episode_return, 500.0)


def test_untrained_policy_scores_low_and_sampled_differs_from_greedy():
    # the initial parameters: even one update at this lr can already balance the pole
    untrained = make_trainer(CARTPOLE).init(jax.random.key(0)).runner.train_state
    result = evaluate(untrained, CARTPOLE, jax.random.key(1), num_episodes=20)
    assert float(result.episode_return.mean()) < 100  # the evaluation can fail a policy
    np.testing.assert_array_equal(result.episode_return, result.episode_length)  # reward 1/step
    sampled = evaluate(untrained, CARTPOLE, jax.random.key(1), num_episodes=20, deterministic=False)
    assert not np.array_equal(sampled.episode_length, result.episode_length)


def test_each_env_counts_only_its_first_episode():
    env = ConstantRewardEnv()
    config = PPOConfig(env_name="custom", num_envs=2, num_steps=8, total_timesteps=32)
    out = make_train(config, env=env)(jax.random.key(0))
    # max_steps 12 > horizon 5: the env auto-resets at 5 but the episode is done
    result = evaluate(out, config, jax.random.key(0), num_episodes=3, env=env, max_steps=12)
    np.testing.assert_array_equal(result.episode_length, [5, 5, 5])
    np.testing.assert_array_equal(result.episode_return, [5.0, 5.0, 5.0])


def test_evaluate_vmaps_over_seeds():
    config = CARTPOLE.replace(total_timesteps=1024)
    outputs = jax.vmap(make_train(config))(jax.random.split(jax.random.key(0), 2))
    results = jax.jit(
        jax.vmap(lambda out, key: evaluate(out, config, key, num_episodes=4, max_steps=50))
    )(outputs, jax.random.split(jax.random.key(1), 2))
    assert results.episode_return.shape == (2, 4)
    # the second vmapped row is the second seed evaluated alone (second key of the split)
    split_key = jax.random.split(jax.random.key(1), 2)[1]
    alone = evaluate(jax.tree.map(lambda x: x[1], outputs), config, split_key, 4, max_steps=50)
    np.testing.assert_array_equal(results.episode_return[1], alone.episode_return)


def test_make_policy_applies_the_training_obs_normalisation():
    config = PPOConfig(
        env_name="Pendulum-v1", num_envs=4, num_steps=32, total_timesteps=1024, normalize_obs=True
    )
    out = jax.jit(make_train(config))(jax.random.key(0))
    act = make_policy(out, config)
    raw = jnp.array([[1.0, 0.0, 0.5], [0.0, 1.0, -3.0]])
    stats = out.env_state.obs_stats
    mean = out.train_state.apply_fn(
        out.train_state.params,
        stats.normalize(raw, config.obs_clip),
        method="policy_params",
    ).logits_or_mean
    np.testing.assert_allclose(act(raw), jnp.clip(mean, -2.0, 2.0), rtol=1e-6)
    assert act(raw[0]).shape == (1,)  # unbatched observation
    assert act(raw, jax.random.key(0)).shape == (2, 1)  # sampled
    with pytest.raises(ValueError, match="normalize_obs"):
        make_policy(out.train_state, config)


def test_make_policy_greedy_matches_argmax(cartpole_output):
    act = make_policy(cartpole_output, CARTPOLE)
    env, params = make_env("CartPole-v1")
    obs, _ = env.reset(jax.random.key(3), params)
    logits = cartpole_output.train_state.apply_fn(
        cartpole_output.train_state.params, obs[None], method="policy_params"
    ).logits_or_mean
    assert int(act(obs)) == int(jnp.argmax(logits[0]))


def test_evaluate_rejects_bad_episode_counts(cartpole_output):
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="num_episodes must be a positive integer"):
            evaluate(cartpole_output, CARTPOLE, jax.random.key(0), num_episodes=bad)


def test_periodic_evaluation_reports_without_changing_training():
    config = PPOConfig(env_name="CartPole-v1", num_envs=4, num_steps=32, total_timesteps=512)
    keys = jax.random.split(jax.random.key(0), 2)
    plain = jax.jit(jax.vmap(make_train(config)))(keys)
    with_eval = jax.jit(jax.vmap(make_train(config.replace(eval_every=2, eval_episodes=3))))(keys)
    assert tree_equal(plain.train_state.params, with_eval.train_state.params)
    assert tree_equal(plain.metrics["total_loss"], with_eval.metrics["total_loss"])
    due = np.isfinite(np.asarray(with_eval.metrics["eval_return"]))
    np.testing.assert_array_equal(due, [[False, True, False, True]] * 2)  # updates 2 and 4
    returns = np.asarray(with_eval.metrics["eval_return"])[due]
    lengths = np.asarray(with_eval.metrics["eval_length"])[due]
    np.testing.assert_array_equal(returns, lengths)  # CartPole: reward 1 per step


def test_periodic_evaluation_value_on_a_known_env():
    env = ConstantRewardEnv()  # every episode: 5 steps, return 5, whatever the policy
    config = PPOConfig(env_name="custom", num_envs=2, num_steps=8, total_timesteps=48)
    out = make_train(config.replace(eval_every=3, eval_episodes=4), env=env)(jax.random.key(0))
    np.testing.assert_array_equal(out.metrics["eval_return"], [np.nan, np.nan, 5.0])
    np.testing.assert_array_equal(out.metrics["eval_length"], [np.nan, np.nan, 5.0])


@pytest.mark.parametrize(
    ("field", "bad"), [("eval_every", 0), ("eval_every", 1.5), ("eval_episodes", 0)]
)
def test_periodic_evaluation_fields_are_validated(field, bad):
    with pytest.raises(ValueError, match=f"{field} must be a positive integer"):
        PPOConfig(**{field: bad})
