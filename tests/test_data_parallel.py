"""One agent across devices (purejaxppo.parallel.make_data_parallel_trainer and
purejaxppo.collectives). The multi-device runs happen in a subprocess with 4 virtual CPU
devices (tests/data_parallel_worker.py), so the rest of the suite keeps its single device;
what needs no devices is tested here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxppo import PPOConfig, make_trainer
from purejaxppo.collectives import LOCAL, Collectives
from purejaxppo.envs.vec_env import RunningMeanStd, merge_running_stats
from purejaxppo.losses import normalize_advantages

WORKER = Path(__file__).with_name("data_parallel_worker.py")
TIMEOUT_S = 300
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data_parallel")
    flags = os.environ.get("XLA_FLAGS", "")
    # level 0: the worker's programs run a few updates, compiling is its cost
    flags += " --xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
    out, checkpoint = str(folder / "out"), str(folder / "checkpoint")
    subprocess.run(
        [sys.executable, str(WORKER), "--out", out, "--checkpoint", checkpoint],
        env={**os.environ, "XLA_FLAGS": flags},
        check=True,
        timeout=TIMEOUT_S,
        capture_output=True,
    )
    results = dict(np.load(folder / "out.npz"))
    return results, json.loads((folder / "out.json").read_text())


def _run(results: dict, name: str) -> dict[str, np.ndarray]:
    return {key[len(name) :]: value for key, value in results.items() if key.startswith(name)}


def _assert_close(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys() and got
    for key in expected:
        if expected[key].dtype == bool or np.issubdtype(expected[key].dtype, np.integer):
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
        else:
            np.testing.assert_allclose(got[key], expected[key], **TOLERANCE, err_msg=key)


def test_with_one_minibatch_four_devices_train_as_one(worker):
    """num_minibatches = 1 (2 epochs), no normalisation: 3 updates of 2 vmapped seeds on
    4 devices give one device's parameters, optimiser state, env states and every metric,
    up to float rounding (the reductions sum in another order); integers exactly."""
    results, _ = worker
    one, dp4 = _run(results, "exact_one"), _run(results, "exact_dp4")
    _assert_close(dp4, one)
    # not vacuous: the agent changed and episodes ended
    assert np.abs(one["[1]['policy_loss']"]).max() > 0 and one["[1]['episodes']"].sum() > 0


def test_the_state_splits_the_envs_and_replicates_the_rest(worker):
    _, report = worker
    assert report["env_sharding"] == "P(None, 'data')"  # [seeds, envs, ...]
    assert report["params_sharding"] == "P()"


def test_progress_is_reported_once_per_update_for_all_seeds(worker):
    """The host callback of the 4-device run: one call per update (not one per device),
    with both seeds."""
    _, report = worker
    assert report["calls"] == [[0, 2], [1, 2], [2, 2]]


def test_a_checkpoint_from_four_devices_resumes_on_two_and_on_one(worker):
    """Saved after 2 updates on 4 devices, the third update on 2 devices and on one device
    (the plain trainer) equals the third on 4, to float rounding."""
    results, _ = worker
    uninterrupted = _run(results, "exact_dp4")
    for name in ("resumed_dp2", "resumed_one"):
        _assert_close(_run(results, name), uninterrupted)


def test_a_recurrent_agent_trains_on_four_devices_as_on_one(worker):
    """GRU, whole env sequences per device, through make_data_parallel_train."""
    results, _ = worker
    _assert_close(_run(results, "gru_dp4"), _run(results, "gru_one"))


def test_normalisation_statistics_after_a_rollout_are_those_of_all_envs(worker):
    """Each device normalises with its own running statistics during a rollout; merged at
    its end they equal one device's statistics of the same observations and returns."""
    results, _ = worker
    one, dp4 = _run(results, "stats_one"), _run(results, "stats_dp4")
    _assert_close(dp4, one)
    counts = [value for key, value in one.items() if key.endswith(".count")]
    assert counts and all(np.all(count > 8 * 16) for count in counts)


def test_every_device_keeps_the_same_parameters_and_statistics(worker):
    """Several minibatches shuffled per device, normalisation, the adaptive penalty and
    target_kl: after 2 updates every device's copy of the parameters, the optimiser
    state, the statistics, beta and the metrics are the same bits."""
    results, report = worker
    assert report["replicas_differ"] == []
    assert np.all(np.isfinite(results["reduced_dp4['total_loss']"]))


def test_merged_running_statistics_equal_those_of_all_the_data(worker):
    """merge_running_stats over 4 devices (each folding 3 batches into a common start)
    against the mean and variance of all the data, in float64 NumPy."""
    results, _ = worker
    np.testing.assert_allclose(results["merged_mean"], results["numpy_mean"], rtol=1e-5)
    np.testing.assert_allclose(results["merged_var"], results["numpy_var"], rtol=1e-5)
    assert results["merged_count"] == results["numpy_count"]


# --- what needs no devices --------------------------------------------------------------


def test_one_device_collectives_are_the_plain_operations():
    x = jnp.asarray([1.0, 2.0, 4.0, 9.0])
    where = jnp.asarray([True, False, True, True])
    assert LOCAL.mean_of(x, where) == jnp.mean(x, where=where)
    assert LOCAL.std_of(x) == jnp.std(x)
    assert LOCAL.max_of(x, where) == 9.0
    assert LOCAL.take_block(x) is x
    np.testing.assert_array_equal(normalize_advantages(x), (x - x.mean()) / (x.std() + 1e-8))
    stats = RunningMeanStd.create(())
    assert merge_running_stats(LOCAL, stats, stats.update(x)).count == stats.update(x).count


def test_collectives_check_their_size():
    with pytest.raises(ValueError, match="without an axis_name has size 1"):
        Collectives(None, 2)
    with pytest.raises(ValueError, match="size must be a positive integer"):
        Collectives("data", 0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_envs": 6}, r"num_envs = 6 cannot be split evenly over 4 devices: use a "
         r"multiple of 4 \(4 or 8\), or 1, 2, 3 device\(s\)"),
        ({"num_envs": 8, "num_steps": 3, "num_minibatches": 4, "total_timesteps": 96},
         r"num_minibatches = 4 must divide each device's num_steps \* num_envs / devices "
         r"= 3 \* 2 = 6"),
        ({"num_envs": 8, "network": "gru", "num_minibatches": 4},
         r"recurrent: its minibatches split the envs \(whole rollouts of 2 envs\)"),
        ({"num_envs": 8, "resets_per_step": 2},
         r"resets_per_step \(a reset pool\) is not supported with data-parallel devices"),
    ],
)  # fmt: skip
def test_splits_that_do_not_fit_the_devices_are_refused_before_tracing(changes, message):
    config = PPOConfig(**{"num_steps": 16, **changes})
    with pytest.raises(ValueError, match=message):
        make_trainer(config, collectives=Collectives("data", 4))


def test_the_pieces_of_one_device_say_they_need_shard_map():
    from purejaxppo.parallel import device_mesh, make_data_parallel_trainer

    trainer = make_data_parallel_trainer(PPOConfig(num_envs=4), device_mesh(1, axis="data"))
    with pytest.raises(ValueError, match="run only under shard_map: use init and run"):
        trainer.learn(None, None)
    assert jax.eval_shape(trainer.init, jax.random.key(0)).runner.obs.shape == (4, 4)


# --- the command line: one agent over two processes -------------------------------------

CLI = [
    "-m", "purejaxppo", "train", "--seeds", "2", "--num-envs", "8", "--num-steps", "16",
    "--num-minibatches", "1", "--total-timesteps", str(4 * 8 * 16), "--hidden-sizes", "16",
    "--checkpoint-every", "2", "--split", "envs", "--no-progress",
]  # fmt: skip


def _cli(args: list[str], devices: int) -> subprocess.Popen:
    flags = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
    return subprocess.Popen(
        [sys.executable, *CLI, *args], env={**os.environ, "XLA_FLAGS": flags},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _close_runs(run: Path, reference: Path) -> None:
    from purejaxppo import load_checkpoint

    got, expected = np.load(run / "metrics.npz"), np.load(reference / "metrics.npz")
    _assert_close(dict(got), dict(expected))
    config = PPOConfig.from_dict(json.loads((run / "config.json").read_text()))
    trainer = make_trainer(config)

    def final(folder: Path) -> dict[str, np.ndarray]:
        state = load_checkpoint(folder / "checkpoint", trainer, batch_shape=(2,))
        leaves = jax.tree_util.tree_leaves_with_path(state.runner.train_state.params)
        return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}

    _assert_close(final(run), final(reference))


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """One agent's envs over 4 devices: two processes x 2 devices, and one process."""
    from test_parallel import _finish, _free_port

    folder = tmp_path_factory.mktemp("cli")
    multi = ["--out", str(folder / "two"), "--devices", "all"]
    multi += ["--coordinator", f"localhost:{_free_port()}", "--num-processes", "2"]
    out = _finish(
        _cli([*multi, "--process-id", "0"], 2), _cli([*multi, "--process-id", "1"], 2),
        _cli(["--out", str(folder / "four"), "--devices", "all"], 4),
    )  # fmt: skip
    assert "(cpu, 4 devices in 2 processes, envs split)" in out[0]
    return folder


def test_the_cli_trains_one_agent_over_two_processes_as_over_one(cli_runs):
    _close_runs(cli_runs / "two", cli_runs / "four")
    summary = json.loads((cli_runs / "two" / "summary.json").read_text())
    assert (summary["devices"], summary["processes"], summary["split"]) == (4, 2, "envs")


def test_a_data_parallel_run_resumes_on_one_device(tmp_path, cli_runs, capsys):
    """The two-process run's checkpoint after 2 of 4 updates, resumed here on one device
    with the plain trainer (one minibatch: the same agent to float rounding)."""
    import shutil

    from purejaxppo.cli import main

    run = tmp_path / "run"
    shutil.copytree(cli_runs / "two", run)
    for name in ("summary.json", "metrics.npz", "learning_curve.png"):
        (run / name).unlink()
    shutil.rmtree(run / "checkpoint")
    shutil.rmtree(run / "checkpoints" / "update-000000004")
    args = ["train", "--resume", str(run), "--split", "seeds", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "from update 2 of 4 (update-000000002; cpu, 1 device in 1 process)" in out
    _close_runs(run, cli_runs / "four")


def test_the_cli_needs_devices_to_split_envs(tmp_path, capsys):
    from purejaxppo.cli import main

    assert main(["train", "--split", "envs", "--out", str(tmp_path / "x")]) == 2
    assert "--split envs needs --devices all (or N)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
