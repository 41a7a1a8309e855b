"""Live progress from inside jit: one host call per update, in order, right values, also
under vmap; nothing a callback does reaches the results; a few lines when not on a TTY."""

import io

import jax
import numpy as np
import pytest
from conftest import primitive_counts

from purejaxppo import PPOConfig, make_train
from purejaxppo.progress import ProgressBar, is_live_stream

CONFIG = PPOConfig(env_name="CartPole-v1", num_envs=4, num_steps=32, total_timesteps=4 * 32 * 5)


def _count_callbacks(jaxpr) -> int:
    return sum(n for name, n in primitive_counts(jaxpr).items() if "callback" in name)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_callback_once_per_update_with_the_returned_metrics():
    calls = []
    train = make_train(CONFIG, on_update=calls.append)
    out = jax.jit(train)(jax.random.key(0))
    jax.effects_barrier()  # dispatch is asynchronous: wait for every callback
    assert [c["update"] for c in calls] == list(range(CONFIG.num_updates))
    assert all(type(c["update"]) is int for c in calls)
    assert all(isinstance(c["kl"], np.ndarray) and c["kl"].shape == () for c in calls)
    for name in ("env_steps", "total_loss", "kl", "learning_rate"):
        np.testing.assert_array_equal([c[name] for c in calls], out.metrics[name])


def _vandal(metrics):
    """A callback that overwrites every array it is given, in place, and returns junk."""
    metrics["episode_return"][...] = 1e9
    for value in metrics.values():
        if isinstance(value, np.ndarray):
            value[...] = -1
    metrics["kl"] = "junk"
    return np.full(7, np.nan)


def test_a_callback_that_mutates_its_arrays_changes_no_result(capsys):
    key = jax.random.key(0)
    plain = jax.jit(make_train(CONFIG))(key)
    vandalised = jax.jit(make_train(CONFIG, on_update=_vandal, progress=True))(key)
    jax.effects_barrier()  # dispatch is asynchronous: wait for every callback
    assert plain.metrics.keys() == vandalised.metrics.keys()
    for name in plain.metrics:
        np.testing.assert_array_equal(plain.metrics[name], vandalised.metrics[name], err_msg=name)
    # the progress bar, called after the vandal, got its own copy: the true last return
    last = plain.metrics["episode_return"][-1]
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"episode_return={last:.1f}")


def test_callback_under_vmap_is_one_call_per_update_for_all_seeds():
    calls = []
    train = jax.jit(jax.vmap(make_train(CONFIG, on_update=calls.append)))
    out = train(jax.random.split(jax.random.key(0), 3))
    jax.effects_barrier()  # dispatch is asynchronous: wait for every callback
    assert [c["update"] for c in calls] == list(range(CONFIG.num_updates))
    assert all(type(c["update"]) is int for c in calls)
    # per-seed metrics, and the ones all seeds share (the schedule), are all [seeds]
    assert all(np.shape(c["total_loss"]) == np.shape(c["learning_rate"]) == (3,) for c in calls)
    for name in ("kl", "learning_rate", "episode_return"):
        stacked = np.stack([c[name] for c in calls], axis=1)
        np.testing.assert_array_equal(stacked, out.metrics[name])


def test_callback_under_nested_vmap_is_one_call_per_update_for_the_grid():
    calls = []
    train = jax.jit(jax.vmap(jax.vmap(make_train(CONFIG, on_update=calls.append))))
    out = train(jax.random.split(jax.random.key(0), 6).reshape(2, 3))
    jax.effects_barrier()  # dispatch is asynchronous: wait for every callback
    assert [c["update"] for c in calls] == list(range(CONFIG.num_updates))
    assert all(np.shape(c["kl"]) == np.shape(c["learning_rate"]) == (2, 3) for c in calls)
    np.testing.assert_array_equal(np.stack([c["kl"] for c in calls], axis=-1), out.metrics["kl"])


def test_no_callback_in_the_program_unless_asked():
    key = jax.random.key(0)
    assert _count_callbacks(jax.make_jaxpr(make_train(CONFIG))(key).jaxpr) == 0
    with_bar = make_train(CONFIG, progress=True)
    assert _count_callbacks(jax.make_jaxpr(with_bar)(key).jaxpr) == 1
    keys = jax.random.split(key, 3)
    assert _count_callbacks(jax.make_jaxpr(jax.vmap(with_bar))(keys).jaxpr) == 1


def _run_bar(bar: ProgressBar, updates: range, returns=(10.0, np.nan, 30.0)) -> None:
    for update in updates:
        bar({"update": update, "episode_return": np.array(returns) + update})


def test_progress_bar_on_a_terminal_is_a_tqdm_bar():
    stream = FakeTerminal()
    bar = ProgressBar(total_updates=3, file=stream)
    _run_bar(bar, range(3))
    assert bar.bar.n == 3 and bar.bar.disable  # closed at the end
    assert "\r" in stream.getvalue()  # redrawn in place
    assert "3/3" in stream.getvalue() and "episode_return=22.0" in stream.getvalue()


def test_progress_bar_in_a_log_is_a_few_lines_ending_with_the_final_state():
    stream = io.StringIO()  # not a TTY: a file, a CI log
    bar = ProgressBar(total_updates=1000, description="PPO CartPole-v1", file=stream)
    _run_bar(bar, range(999))
    bar({"update": 999, "episode_return": np.array([np.nan, np.nan])})  # no episode ended
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert [line.split()[2] for line in lines] == ["0%", "25%", "50%", "75%", "100%"]
    assert lines[0].startswith("PPO CartPole-v1:   0% 1/1000 updates")
    assert "1000/1000" in lines[-1] and lines[-1].endswith("episode_return=1018.0")
    assert len(stream.getvalue()) < 500


def test_progress_bar_in_a_log_starts_again_for_a_new_run_and_resumes_mid_run():
    stream = io.StringIO()
    bar = ProgressBar(total_updates=3, file=stream)
    _run_bar(bar, range(3))
    _run_bar(bar, range(3))  # update 0 again: a new run
    _run_bar(bar, range(2, 3))  # resumed from a checkpoint at update 2
    done = [line.split()[2] for line in stream.getvalue().splitlines()]
    assert done == ["1/3", "2/3", "3/3", "1/3", "2/3", "3/3", "3/3"]


def test_live_streams(tmp_path):
    assert is_live_stream(FakeTerminal())
    assert not is_live_stream(io.StringIO())
    with open(tmp_path / "log.txt", "w") as log:
        assert not is_live_stream(log)
    assert not is_live_stream(log)  # closed: isatty() raises


def test_on_update_must_be_callable():
    with pytest.raises(ValueError, match="on_update must be callable"):
        make_train(CONFIG, on_update="print")
