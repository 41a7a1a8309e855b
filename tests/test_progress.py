"""Live progress from inside jit: one host call per update, right values, also under vmap."""

import io

import jax
import numpy as np
import pytest
from conftest import primitive_counts

from purejaxppo import PPOConfig, make_train
from purejaxppo.progress import ProgressBar

CONFIG = PPOConfig(env_name="CartPole-v1", num_envs=4, num_steps=32, total_timesteps=4 * 32 * 5)


def _count_callbacks(jaxpr) -> int:
    return sum(n for name, n in primitive_counts(jaxpr).items() if "callback" in name)


def test_callback_once_per_update_with_the_returned_metrics():
    calls = []
    train = make_train(CONFIG, on_update=calls.append)
    out = jax.jit(train)(jax.random.key(0))
    assert [c["update"] for c in calls] == list(range(CONFIG.num_updates))
    for name in ("env_steps", "total_loss", "kl", "learning_rate"):
        np.testing.assert_array_equal([c[name] for c in calls], out.metrics[name])
    plain = jax.jit(make_train(CONFIG))(jax.random.key(0))  # reporting changes no number
    np.testing.assert_array_equal(plain.metrics["total_loss"], out.metrics["total_loss"])


def test_callback_under_vmap_is_one_call_per_update_for_all_seeds():
    calls = []
    train = jax.jit(jax.vmap(make_train(CONFIG, on_update=calls.append)))
    out = train(jax.random.split(jax.random.key(0), 3))
    assert [c["update"] for c in calls] == list(range(CONFIG.num_updates))
    assert all(np.shape(c["total_loss"]) == (3,) for c in calls)
    np.testing.assert_array_equal(np.stack([c["kl"] for c in calls], axis=1), out.metrics["kl"])


def test_no_callback_in_the_program_unless_asked():
    key = jax.random.key(0)
    assert _count_callbacks(jax.make_jaxpr(make_train(CONFIG))(key).jaxpr) == 0
    with_bar = make_train(CONFIG, progress=True)
    assert _count_callbacks(jax.make_jaxpr(with_bar)(key).jaxpr) == 1


def test_progress_bar_counts_updates_and_shows_the_return():
    bar = ProgressBar(total_updates=3)
    stream = io.StringIO()
    bar._tqdm = lambda **kwargs: __import__("tqdm").tqdm(file=stream, **kwargs)
    for update in range(3):
        bar({"update": update, "episode_return": np.array([10.0, np.nan, 30.0])})
    assert bar.bar.n == 3
    assert "3/3" in stream.getvalue() and "episode_return=20.0" in stream.getvalue()


def test_on_update_must_be_callable():
    with pytest.raises(ValueError, match="on_update must be callable"):
        make_train(CONFIG, on_update="print")
