"""Chunked training and checkpoints: N updates == N/2 + save + load + N/2, bit for bit."""

import json

import jax
import jax.numpy as jnp
import pytest
from conftest import tree_equal

from purejaxppo import PPOConfig, make_train
from purejaxppo.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from purejaxppo.train import make_trainer

# continuous actions, obs + reward normalisation statistics, adaptive-KL beta, lr annealing
CONFIG = PPOConfig(
    env_name="Pendulum-v1",
    num_envs=4,
    num_steps=16,
    num_minibatches=2,
    total_timesteps=4 * 16 * 6,
    normalize_obs=True,
    normalize_reward=True,
    policy_objective="kl_penalty",
)


@pytest.fixture(scope="module")
def trainer():
    return make_trainer(CONFIG)


@pytest.fixture(scope="module")
def run_chunk(trainer):
    return jax.jit(trainer.run, static_argnums=1)


@pytest.fixture(scope="module")
def uninterrupted(trainer, run_chunk):
    return run_chunk(trainer.init(jax.random.key(0)), CONFIG.num_updates)


def test_chunks_equal_one_run_and_make_train(trainer, run_chunk, uninterrupted):
    state, metrics = uninterrupted
    first, m1 = run_chunk(trainer.init(jax.random.key(0)), 3)  # one program for both chunks
    second, m2 = run_chunk(first, 3)
    assert int(second.update_index) == 6
    assert tree_equal(second, state)
    assert tree_equal(jax.tree.map(lambda a, b: jnp.concatenate([a, b]), m1, m2), metrics)
    out = jax.jit(make_train(CONFIG))(jax.random.key(0))  # make_train is init + one chunk
    assert tree_equal(out.train_state.params, state.runner.train_state.params)


def test_collect_then_learn_is_one_step_of_run(trainer, run_chunk, uninterrupted):
    state, metrics = uninterrupted
    first, _ = run_chunk(trainer.init(jax.random.key(0)), 3)

    @jax.jit
    def one_update(state):
        collected, traj = trainer.collect(state)
        batch = trainer.make_batch(collected, traj)
        assert batch.obs.shape == (1, CONFIG.batch_size, 3)  # Pendulum: [1, T * N, 3] steps
        assert traj.obs.shape == (CONFIG.num_steps, CONFIG.num_envs, 3)
        # the state-independent log-std is stored once per rollout, per sample in the batch
        assert traj.policy_params.log_std.shape == (1,)
        assert batch.policy_params.log_std.shape == (1, CONFIG.batch_size, 1)
        return trainer.learn(collected, traj, batch)

    last, steps = first, []
    for _ in range(3):  # updates 4, 5 and 6, one at a time
        last, step_metrics = one_update(last)
        steps.append(step_metrics)
    assert int(last.update_index) == 6
    assert tree_equal(last, state)
    assert tree_equal(steps, [jax.tree.map(lambda m, i=i: m[i], metrics) for i in (3, 4, 5)])


def test_resume_from_checkpoint_is_bit_identical(tmp_path, trainer, run_chunk, uninterrupted):
    state, metrics = uninterrupted
    half, m1 = run_chunk(trainer.init(jax.random.key(0)), 3)
    save_checkpoint(tmp_path / "ckpt", half, CONFIG)
    restored = load_checkpoint(tmp_path / "ckpt", make_trainer(CONFIG))
    assert tree_equal(restored, half)  # params, opt state, env + normalisation, rng, beta
    resumed, m2 = run_chunk(restored, 3)
    assert tree_equal(resumed, state)
    assert tree_equal(jax.tree.map(lambda a, b: jnp.concatenate([a, b]), m1, m2), metrics)


def test_vmapped_seeds_checkpoint_round_trip(tmp_path, trainer):
    keys = jax.random.split(jax.random.key(1), 2)
    state, _ = jax.jit(trainer.run_many, static_argnums=1)(trainer.init_many(keys), 1)
    assert state.update_index.shape == ()  # one counter shared by the seeds
    save_checkpoint(tmp_path / "seeds", state, CONFIG)
    restored = load_checkpoint(tmp_path / "seeds", trainer, batch_shape=(2,))
    assert tree_equal(restored, state)
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(tmp_path / "seeds", trainer)  # saved with a seed axis


def test_a_plainly_vmapped_state_is_saved_with_one_shared_counter(tmp_path, trainer):
    keys = jax.random.split(jax.random.key(1), 2)
    state = jax.vmap(trainer.init)(keys)  # update_index batched: [0, 0]
    save_checkpoint(tmp_path / "seeds", state, CONFIG)
    restored = load_checkpoint(tmp_path / "seeds", trainer, batch_shape=(2,))
    assert restored.update_index.shape == ()
    assert tree_equal(restored._replace(update_index=state.update_index), state)
    uneven = state._replace(update_index=jnp.array([0, 1], jnp.int32))
    with pytest.raises(ValueError, match=r"different counts \[0, 1\]"):
        save_checkpoint(tmp_path / "uneven", uneven, CONFIG)


@pytest.fixture
def saved(tmp_path, trainer):
    return save_checkpoint(tmp_path / "ckpt", trainer.init(jax.random.key(0)), CONFIG)


def _largest_state_file(path):
    return max(
        (p for p in (path / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )


def test_flipped_byte_fails_loudly(saved, trainer):
    victim = _largest_state_file(saved)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its SHA-256"):
        load_checkpoint(saved, trainer)


def test_truncated_or_missing_file_fails_loudly(saved, trainer):
    victim = _largest_state_file(saved)
    victim.write_bytes(victim.read_bytes()[:10])
    with pytest.raises(CheckpointError, match="corrupt checkpoint"):
        load_checkpoint(saved, trainer)
    victim.unlink()
    with pytest.raises(CheckpointError, match="is missing"):
        load_checkpoint(saved, trainer)


def test_other_format_version_and_config_are_refused(saved, trainer):
    with pytest.raises(CheckpointError, match=r"another config.*'lr'"):
        load_checkpoint(saved, make_trainer(CONFIG.replace(lr=1e-3)))
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["format_version"] = 99
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=rf"format version 99.*reads format {FORMAT_VERSION}"):
        load_checkpoint(saved, trainer)
    manifest["format_version"] = 1  # batched update counter, float32 normalisation counts
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        CheckpointError, match=rf"format version 1, .*reads format {FORMAT_VERSION}"
    ):
        load_checkpoint(saved, trainer)
    (saved / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="not a purejaxppo checkpoint"):
        load_checkpoint(saved, trainer)


def test_existing_folder_is_not_overwritten(saved, trainer):
    with pytest.raises(FileExistsError, match="already exists"):
        save_checkpoint(saved, trainer.init(jax.random.key(0)), CONFIG)


def test_states_from_init_share_one_structure(trainer):
    """The optimizer is static metadata of the state: one object per trainer, so states of
    other seeds (or reloaded ones) reuse a compiled run instead of recompiling it."""
    first, second = trainer.init(jax.random.key(0)), trainer.init(jax.random.key(1))
    assert jax.tree.structure(first) == jax.tree.structure(second)
