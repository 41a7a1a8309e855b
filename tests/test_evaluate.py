"""Evaluation and policy export: episodes counted right, normalisation applied, learning shown."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ConstantRewardEnv, primitive_counts, tree_equal

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


class CompileCounter:
    """Counts XLA compilations while active (a jax.monitoring listener)."""

    active: "CompileCounter | None" = None

    def __init__(self):
        self.count = 0

    def __enter__(self):
        CompileCounter.active = self
        return self

    def __exit__(self, *exc):
        CompileCounter.active = None


def _on_event(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration" and CompileCounter.active:
        CompileCounter.active.count += 1


jax.monitoring.register_event_duration_secs_listener(_on_event)


def test_other_parameters_do_not_compile_evaluate_or_make_policy_again():
    config = PPOConfig(env_name="CartPole-v1", num_envs=2, num_steps=8, total_timesteps=16)
    trainer = make_trainer(config)
    first, second = (trainer.init(jax.random.key(k)).runner.train_state for k in (1, 2))
    obs = jnp.zeros((3, 4))
    evaluate(first, config, jax.random.key(0), num_episodes=3)  # compiles once here
    make_policy(first, config)(obs)
    with CompileCounter() as compiles:
        again = evaluate(second, config, jax.random.key(0), num_episodes=3)
        actions = make_policy(second, config)(obs)
    assert compiles.count == 0
    assert again.episode_return.shape == (3,) and actions.shape == (3,)
    with CompileCounter() as compiles:  # the counter does count compilations
        evaluate(second, config, jax.random.key(0), num_episodes=5)
    assert compiles.count > 0


def _keys_training_uses(runner_rng, updates):
    """Every key training derives from ``runner.rng`` in its first ``updates`` updates:
    collect splits it in 3 (rng, noise, env), learn splits the new rng in 2."""
    keys, rng = [], runner_rng
    for _ in range(updates):
        rng, noise_key, env_key = jax.random.split(rng, 3)
        rng, update_key = jax.random.split(rng)
        keys += [noise_key, env_key, update_key, rng]
    return {tuple(np.asarray(jax.random.key_data(k)).tolist()) for k in keys}


def test_evaluation_keys_come_from_their_own_stream():
    from purejaxppo.train import evaluation_key

    trainer = make_trainer(PPOConfig(num_envs=2, num_steps=8, total_timesteps=16))
    runner = trainer.init(jax.random.key(0)).runner
    used = _keys_training_uses(runner.rng, 4)
    for update_index in range(4):
        key = evaluation_key(runner, jnp.int32(update_index))
        assert tuple(np.asarray(jax.random.key_data(key)).tolist()) not in used
    # what the evaluation used to take: fold_in(runner.rng, k) is a key of training's
    old = jax.random.fold_in(runner.rng, 1)
    assert tuple(np.asarray(jax.random.key_data(old)).tolist()) in used


def _conds(fn, *args):
    return primitive_counts(jax.make_jaxpr(fn)(*args))["cond"]


def test_periodic_evaluation_stays_a_conditional_for_a_batch_of_runs():
    """run_many keeps the shared update counter unbatched, so evaluating every 5 updates
    is a real lax.cond (not a select that evaluates at every update); a plain vmap over
    a state with a batched counter turns it into a select."""
    config = PPOConfig(num_envs=2, num_steps=8, total_timesteps=16, eval_every=5)
    trainer = make_trainer(config)
    keys = jax.random.split(jax.random.key(0), 3)
    state = trainer.init_many(keys)
    assert state.update_index.shape == ()
    assert _conds(lambda s: trainer.run_many(s, 2), state) == 1
    batched = jax.vmap(trainer.init)(keys)
    assert batched.update_index.shape == (3,)
    assert _conds(jax.vmap(lambda s: trainer.run(s, 2)), batched) == 0
    with pytest.raises(ValueError, match="run_many"):
        trainer.run(batched, 1)
    with pytest.raises(ValueError, match="init_many or load_checkpoint"):
        trainer.run_many(batched, 1)
