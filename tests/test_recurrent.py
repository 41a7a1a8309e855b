"""Recurrent PPO: the carry resets at every episode start inside the rollout, the update
re-runs whole env sequences from the rollout's first carry, truncation bootstraps with
the carry after the final step, and everything else (objectives, sweeps, checkpoints,
evaluation, make_policy) works with a recurrent network."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import QUICK_COMPILE, ClockEnv, tree_equal

from purejaxppo import (
    PPOConfig,
    evaluate,
    load_checkpoint,
    make_policy,
    make_trainer,
    save_checkpoint,
)
from purejaxppo.losses import Batch
from purejaxppo.networks import make_distribution
from purejaxppo.update import gather_minibatch

TINY_GRU = PPOConfig(
    env_name="CartPole-v1",
    network="gru",
    rnn_hidden_size=8,
    hidden_sizes=(8,),
    num_envs=4,
    num_steps=64,
    num_minibatches=2,
    update_epochs=2,
    total_timesteps=4 * 64 * 4,
)


@functools.cache
def tiny_trainer(network: str = "gru"):
    return make_trainer(TINY_GRU.replace(network=network))


def env_carry(carry, n):
    """Env ``n``'s carry from a batched one (leaves ``[N, ...]``)."""
    return jax.tree.map(lambda x: x[n], carry)


def run_network(trainer, params, carry, obs, starts):
    """The network over one sequence ``obs [L, *obs_shape]`` of one env from ``carry``."""
    batch_carry = jax.tree.map(lambda x: x[None], carry)
    _, policy, value = trainer.network.apply(params, batch_carry, obs[:, None], starts[:, None])
    return policy.logits_or_mean[:, 0], value[:, 0]


@pytest.mark.parametrize("network", ["gru", "lstm"])
def test_rollout_outputs_equal_each_episode_run_alone_from_a_fresh_carry(network):
    """Several episodes per env in one rollout (random CartPole lasts ~20 steps): the
    policy and value the rollout stored at every step equal the network run over that
    episode alone from the initial carry (the first, unfinished one from the rollout's
    stored start carry), so the carry was reset inside the scan, for each env on its own."""
    trainer = tiny_trainer(network)
    state, _ = trainer.collect(trainer.init(jax.random.key(0)))
    state, traj = trainer.collect(state)  # the second rollout starts mid-episode
    params = state.runner.train_state.params
    starts = np.asarray(traj.episode_start)
    assert starts[1:].sum() >= 2 * TINY_GRU.num_envs  # several episodes per env
    initial = jax.tree.map(lambda x: x[0], trainer.network.initial_carry(1))
    episodes = []  # (env, first step, end): every episode piece of the rollout
    for n in range(TINY_GRU.num_envs):
        bounds = [0, *np.flatnonzero(starts[1:, n]) + 1, TINY_GRU.num_steps]
        episodes += [(n, begin, end) for begin, end in itertools.pairwise(bounds)]
    # each episode alone, as its own sequence (zero-padded at the end to a common length;
    # no episode-start flags, so nothing but its fresh carry resets it): one network call
    length = max(end - begin for _, begin, end in episodes)
    obs = jnp.stack(
        [
            jnp.pad(traj.obs[begin:end, n], ((0, length - (end - begin)), (0, 0)))
            for n, begin, end in episodes
        ],
        axis=1,
    )
    carries = [
        initial if starts[begin, n] else env_carry(traj.start_carry, n) for n, begin, _ in episodes
    ]
    assert all(begin == 0 or starts[begin, n] for n, begin, _ in episodes)
    carry = jax.tree.map(lambda *leaves: jnp.stack(leaves), *carries)
    _, policy, values = jax.jit(trainer.network.apply)(
        params, carry, obs, jnp.zeros(obs.shape[:2], bool)
    )
    for i, (n, begin, end) in enumerate(episodes):
        np.testing.assert_allclose(
            policy.logits_or_mean[: end - begin, i],
            traj.policy_params.logits_or_mean[begin:end, n],
            rtol=1e-5,
            atol=1e-6,
        )
        np.testing.assert_allclose(
            values[: end - begin, i], traj.value[begin:end, n], rtol=1e-5, atol=1e-6
        )


def test_truncation_bootstraps_with_the_carry_after_the_final_step():
    """ClockEnv is truncated every 5 steps and its final observation ([5]) differs from
    the restart ([0]). Where an episode ends, next_value is V(final observation) with the
    carry after the episode's last step (not reset): the network run over the episode
    followed by its final observation."""
    config = TINY_GRU.replace(env_name="CartPole-v1", num_envs=2, num_steps=12, num_minibatches=1)
    trainer = make_trainer(config, env=ClockEnv())
    state, traj = trainer.collect(trainer.init(jax.random.key(0)))
    params = state.runner.train_state.params
    initial = jax.tree.map(lambda x: x[0], trainer.network.initial_carry(1))
    done = np.asarray(traj.done)
    assert done[:, 0].tolist() == [t % 5 == 4 for t in range(12)]
    for t, n in zip(*np.nonzero(done), strict=True):
        begin = t - 4
        episode = jnp.concatenate([traj.obs[begin : t + 1, n], jnp.array([[5.0]])])
        _, values = run_network(trainer, params, initial, episode, jnp.zeros(6, bool))
        assert float(traj.next_value[t, n]) == pytest.approx(float(values[-1]), rel=1e-5)
        _, reset = run_network(trainer, params, initial, jnp.array([[5.0]]), jnp.zeros(1, bool))
        assert abs(float(values[-1]) - float(reset[0])) > 1e-4  # the carry matters here


def test_minibatches_are_whole_env_sequences():
    """A recurrent batch is [T, N] sequences: a minibatch takes whole columns (every step
    of the chosen envs, in time order) and the chosen envs' start carries."""
    trainer = tiny_trainer()
    state, traj = trainer.collect(trainer.init(jax.random.key(1)))
    batch = trainer.make_batch(state, traj)
    assert batch.obs.shape == (TINY_GRU.num_steps, TINY_GRU.num_envs, 4)
    assert batch.carry.shape == (TINY_GRU.num_envs, TINY_GRU.rnn_hidden_size)
    envs = jnp.array([3, 1])
    minibatch = gather_minibatch(batch, envs)
    np.testing.assert_array_equal(minibatch.obs, traj.obs[:, envs])
    np.testing.assert_array_equal(minibatch.episode_start, traj.episode_start[:, envs])
    np.testing.assert_array_equal(minibatch.carry, traj.start_carry[envs])


def test_gradient_flows_through_time_within_the_rollout():
    """The loss of a late step depends on the observation at step 0 of the same env
    (through the carry), and on no other env's."""
    trainer = tiny_trainer()
    state, traj = trainer.collect(trainer.init(jax.random.key(2)))
    batch = trainer.make_batch(state, traj)
    batch = batch._replace(episode_start=jnp.zeros_like(batch.episode_start))
    params = state.runner.train_state.params

    def last_value(obs: jax.Array) -> jax.Array:
        _, _, value = trainer.network.apply(params, batch.carry, obs, batch.episode_start)
        return value[-1, 0]

    grad = jax.grad(last_value)(batch.obs)
    assert float(jnp.abs(grad[0, 0]).sum()) > 0
    np.testing.assert_array_equal(grad[:, 1:], 0.0)


@pytest.mark.parametrize("objective", ["clip", "kl_penalty", "kl_fixed", "unclipped"])
def test_every_objective_learns_with_a_recurrent_policy_and_reports_the_exact_kl(objective):
    """One update per objective: finite losses, and the reported KL is the exact
    KL(pi_old || pi_new) recomputed env by env from the stored start carries."""
    config = TINY_GRU.replace(num_steps=16, total_timesteps=4 * 16, policy_objective=objective)
    trainer = make_trainer(config)
    state, traj = trainer.collect(trainer.init(jax.random.key(3)))
    after, metrics = trainer.learn(state, traj)
    assert all(np.isfinite(np.asarray(v)).all() for k, v in metrics.items() if "episode" not in k)
    new_params = after.runner.train_state.params
    kls = []
    for n in range(config.num_envs):
        carry = env_carry(traj.start_carry, n)
        logits, _ = run_network(
            trainer, new_params, carry, traj.obs[:, n], traj.episode_start[:, n]
        )
        old = make_distribution(
            traj.policy_params.replace(logits_or_mean=traj.policy_params.logits_or_mean[:, n])
        )
        kls.append(
            old.kl_divergence(make_distribution(traj.policy_params.replace(logits_or_mean=logits)))
        )
    assert float(metrics["kl"]) == pytest.approx(float(jnp.mean(jnp.stack(kls))), rel=1e-4)
    assert float(metrics["kl"]) > 0


def test_recurrent_sweep_and_resume_are_bit_exact():
    """vmap over seeds and a learning-rate grid, with the adaptive KL penalty, target_kl
    and periodic evaluation; 2 + 2 updates through a checkpoint equal 4 in one call,
    carry included."""
    config = TINY_GRU.replace(
        num_steps=16,
        total_timesteps=4 * 16 * 4,
        policy_objective="kl_penalty",
        target_kl=0.02,
        eval_every=2,
        eval_episodes=2,
    )
    trainer = make_trainer(config)
    hyperparams = config.hyperparams()._replace(lr=jnp.array([1e-3, 3e-4]))
    state = trainer.init_many(jax.random.split(jax.random.key(4), 2), hyperparams)
    # compiled at XLA level 0 (QUICK_COMPILE): twice as fast to compile, and every
    # program compared here is compiled the same way
    programs = {
        n: jax.jit(trainer.run_many, static_argnums=1).lower(state, n).compile(QUICK_COMPILE)
        for n in (2, 4)
    }
    whole, whole_metrics = programs[4](state)
    half, first = programs[2](state)
    assert half.runner.carry.shape == (2, config.num_envs, config.rnn_hidden_size)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(f"{folder}/ckpt", half, config)
        restored = load_checkpoint(f"{folder}/ckpt", trainer, batch_shape=(2,))
    assert tree_equal(restored, half)
    resumed, second = programs[2](restored)
    assert tree_equal(resumed, whole)
    for name, values in whole_metrics.items():
        joined = np.concatenate([first[name], second[name]], axis=-1)
        np.testing.assert_array_equal(joined, values, err_msg=name)
    assert np.isfinite(whole_metrics["eval_return"][:, 1::2]).all()


def test_evaluate_and_make_policy_thread_the_carry():
    """make_policy's act(obs, carry) -> (action, carry) stepped over a sequence gives the
    network's greedy actions over it; evaluate plays whole episodes with the carry."""
    trainer = tiny_trainer()
    state, traj = trainer.collect(trainer.init(jax.random.key(5)))
    params = state.runner.train_state.params
    act = make_policy(params, TINY_GRU)
    assert act.recurrent
    carry = act.initial_carry()
    obs = traj.obs[:20, 0]
    starts = traj.episode_start[:20, 0]
    first_episode = int(np.argmax(np.asarray(starts[1:]))) + 1 if starts[1:].any() else 20
    logits, _ = run_network(
        trainer, params, act.initial_carry(), obs[:first_episode], jnp.zeros(first_episode, bool)
    )
    for t in range(first_episode):
        action, carry = act(obs[t], carry)
        assert int(action) == int(jnp.argmax(logits[t]))
    batched_action, batched_carry = act(obs[:3], act.initial_carry(3))
    assert batched_action.shape == (3,) and batched_carry.shape == (3, TINY_GRU.rnn_hidden_size)
    with pytest.raises(TypeError, match=r"policy\(obs, carry"):
        act(obs[0])
    result = evaluate(params, TINY_GRU, jax.random.key(6), num_episodes=3)
    assert result.episode_return.shape == (3,)
    assert np.all(np.asarray(result.episode_length) >= 8)


def test_recurrent_minibatches_must_split_the_envs():
    with pytest.raises(ValueError, match=r"num_envs = 6 must be divisible by num_minibatches = 4"):
        PPOConfig(network="gru", num_envs=6, num_steps=32, num_minibatches=4)
    PPOConfig(network="mlp", num_envs=6, num_steps=32, num_minibatches=4)  # samples split


def test_unknown_network_names_suggest_close_ones():
    with pytest.raises(ValueError, match=r"network must be one of .*did you mean 'gru'"):
        PPOConfig(network="gur")


def test_batch_is_sequences_for_recurrent_and_steps_for_feed_forward():
    mlp = make_trainer(TINY_GRU.replace(network="mlp"))
    state, traj = mlp.collect(mlp.init(jax.random.key(0)))
    batch = mlp.make_batch(state, traj)
    assert isinstance(batch, Batch)
    assert batch.obs.shape == (1, TINY_GRU.batch_size, 4) and batch.carry == ()
