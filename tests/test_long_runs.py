"""Long runs from the command line: periodic atomic checkpoints, resuming after SIGKILL
(bit-identical to an uninterrupted run), the divergence guard, streamed CSV and
TensorBoard logs read back with their own readers, and ``purejaxppo plot``."""

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ConstantRewardEnv, FixedHorizonParams, tree_equal

from purejaxppo import PPOConfig, load_checkpoint, make_trainer
from purejaxppo.checkpoint import series_checkpoints
from purejaxppo.cli import main
from purejaxppo.envs.registry import EXTRA_ENVS
from purejaxppo.guard import first_nonfinite
from purejaxppo.runs import RunOptions, chunk_plan, train_in_chunks

# 24 updates of 2 seeds x 4 envs x 16 steps; a checkpoint every 3 updates, 2 kept
RUN = [
    "train", "--seeds", "2", "--num-envs", "4", "--num-steps", "16", "--num-minibatches", "2",
    "--total-timesteps", str(24 * 64), "--hidden-sizes", "16", "--checkpoint-every", "3",
    "--keep-checkpoints", "2", "--log", "csv", "--log", "tensorboard", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("runs") / "reference"
    assert main([*RUN, "--out", str(out)]) == 0
    return out


def _final_state(run: Path):
    config = PPOConfig.from_dict(json.loads((run / "config.json").read_text()))
    return load_checkpoint(run / "checkpoint", make_trainer(config), batch_shape=(2,))


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every TensorBoard scalar of the run, read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def _assert_same_run(run: Path, reference: Path) -> None:
    got, expected = np.load(run / "metrics.npz"), np.load(reference / "metrics.npz")
    assert set(got.files) == set(expected.files)
    for name in expected.files:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert tree_equal(_final_state(run), _final_state(reference))
    assert (run / "log.csv").read_text() == (reference / "log.csv").read_text()
    assert _scalars(run) == _scalars(reference)


def test_the_run_saves_every_k_updates_keeps_the_last_few_and_logs_every_update(reference):
    assert [p.name for p in series_checkpoints(reference / "checkpoints")] == [
        "update-000000024",
        "update-000000021",
    ]
    metrics = np.load(reference / "metrics.npz")
    with (reference / "log.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 24 * 2 and [r["update"] for r in rows[:4]] == ["0", "0", "1", "1"]
    for row in rows[-2:]:
        seed, update = int(row["seed"]), int(row["update"])
        assert int(row["env_steps"]) == metrics["env_steps"][seed, update] == 24 * 64
        assert float(row["value_loss"]) == metrics["value_loss"][seed, update]
    scalars = _scalars(reference)
    steps = metrics["env_steps"][0].tolist()
    assert [step for step, _ in scalars["value_loss/seed_1"]] == steps
    np.testing.assert_allclose(
        [value for _, value in scalars["value_loss/mean"]],
        metrics["value_loss"].mean(axis=0),
        rtol=1e-6,
    )


def _start(out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "purejaxppo", *RUN, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_when(process: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` is true (polled every millisecond)."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert process.poll() is None, f"the run ended first: {process.stderr.read()!r}"
            assert time.monotonic() < deadline, "timed out waiting for the kill point"
            time.sleep(0.001)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()


def _newest(folder: Path) -> int:
    """The update count of the newest complete checkpoint (0 if none yet)."""
    found = series_checkpoints(folder)
    return int(found[0].name.split("-")[1]) if found else 0


def _saving(folder: Path) -> bool:
    """A save is under way: its temporary folder exists."""
    try:
        return any(name.startswith(".update-") for name in os.listdir(folder))
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("point", ["during a save", "between saves"])
def test_a_run_killed_at_any_point_resumes_bit_identical_to_an_uninterrupted_one(
    tmp_path, reference, point
):
    """SIGKILL while a checkpoint is being written (its temporary folder exists) or at a
    random moment after one; ``--resume`` then ends with the same parameters, metrics,
    CSV rows and TensorBoard scalars, bit for bit, as the run that was never killed."""
    out, rng = tmp_path / "run", random.Random(f"kill {point}")
    checkpoints = out / "checkpoints"
    process = _start(out)
    if point == "during a save":
        saved = 3 * rng.randrange(1, 5)  # kill in the first save after update 3, ... 12's
        _kill_when(process, lambda: _newest(checkpoints) >= saved and _saving(checkpoints))
        assert _saving(checkpoints), "the kill was meant to land inside a save"
    else:
        saved = 3 * rng.randrange(1, 7)  # once update 3, ... 18 is saved, wait 0-50 ms
        delay = rng.uniform(0.0, 0.05)
        _kill_when(process, lambda: _newest(checkpoints) >= saved and not time.sleep(delay))
    assert not (out / "summary.json").exists(), f"killed too late ({point})"
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert not any(name.startswith(".") for name in os.listdir(checkpoints))  # cleaned up
    _assert_same_run(out, reference)


def test_resume_skips_a_corrupt_newest_checkpoint_and_still_matches(tmp_path, reference, capsys):
    """A checkpoint whose file no longer matches its hash is passed over for the one
    before it (said on stderr); resuming from that one ends the same."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    for name in ("summary.json", "metrics.npz", "learning_curve.png"):
        (out / name).unlink()
    shutil.rmtree(out / "checkpoint")
    newest = series_checkpoints(out / "checkpoints")[0]  # after update 24: damage it
    damaged = next(p for p in sorted((newest / "state").rglob("*")) if p.is_file())
    damaged.write_bytes(damaged.read_bytes() + b"x")
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "skipped a checkpoint" in captured.err and "does not match its SHA-256" in captured.err
    assert "from update 21 of 24" in captured.out
    _assert_same_run(out, reference)


def test_a_run_killed_after_its_last_update_resumes_to_write_its_results(tmp_path, reference):
    """Killed after the final checkpoint but before summary.json: the resume trains
    nothing, replaces the final checkpoint and writes the same results."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    for name in ("summary.json", "metrics.npz", "learning_curve.png"):
        (out / name).unlink()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert not any(name.startswith(".") for name in os.listdir(out))
    _assert_same_run(out, reference)


def _listing(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def test_bad_resumes_are_one_line_and_exit_2_and_overwrite_nothing(tmp_path, reference, capsys):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    (run / "summary.json").unlink()

    def refused(folder: Path, *flags: str, match: str) -> None:
        before = _listing(folder) if folder.exists() else None
        assert main(["train", "--resume", str(folder), *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and match in err, err
        assert (_listing(folder) if folder.exists() else None) == before

    refused(tmp_path / "nothing", match="not a run folder")
    refused(tmp_path, match="not a run folder")  # a folder, but not a run's
    refused(run, "--lr", "1e-3", match="--lr would change the run")
    refused(run, "--seeds", "3", match="--seeds would change the run")
    refused(reference, match="the run has finished")
    no_checkpoints = tmp_path / "fresh"
    shutil.copytree(run, no_checkpoints, ignore=shutil.ignore_patterns("checkpoints"))
    refused(no_checkpoints, match="holds no checkpoint (was it started with --checkpoint-every?)")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(run, corrupt)
    for checkpoint in series_checkpoints(corrupt / "checkpoints"):
        (checkpoint / "manifest.json").write_text("{")
    refused(corrupt, match="none of the 2 checkpoints")
    old = tmp_path / "old"
    shutil.copytree(run, old)
    made = json.loads((old / "run.json").read_text())
    (old / "run.json").write_text(json.dumps({**made, "checkpoint_format": 3}))
    refused(old, match="checkpoint format 3); this version resumes")


class NaNRewardEnv(ConstantRewardEnv):
    """Rewards 1, except a NaN at the 41st step of every 50-step episode."""

    @property
    def default_params(self):
        return FixedHorizonParams(max_steps_in_episode=50)

    def step_env(self, key, state, action, params):
        obs, state, reward, terminated, info = super().step_env(key, state, action, params)
        return obs, state, jnp.where(state.time == 41, jnp.nan, reward), terminated, info


def test_divergence_stops_the_run_names_update_seeds_and_metric_and_keeps_the_good_checkpoint(
    tmp_path, capsys, monkeypatch
):
    """Every env's 41st step rewards NaN: it falls in update 2 (steps 32-47 of 16-step
    rollouts), so that update's losses are NaN for both seeds. Exit code 3, one line
    naming update 2, both seeds and the first watched metric; the newest checkpoint is
    the one after update 1 (2 updates done). With ``--on-nonfinite warn`` it goes on."""
    monkeypatch.setitem(EXTRA_ENVS, "NaNReward-v0", NaNRewardEnv)
    args = [*RUN, "--env", "NaNReward-v0", "--checkpoint-every", "1"]
    out = tmp_path / "stop"
    assert main([*args, "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert (
        "error: training diverged at update 2, seeds 0, 1 of 2 (keys split from --seed 0): " in err
    )
    metrics = np.load(out / "metrics.npz")
    found = first_nonfinite(metrics, 0)
    assert (found.update, found.seeds) == (2, (0, 1)) and f"{found.metric} = nan" in err
    assert np.isfinite(metrics["value_loss"][:, :2]).all()
    assert "the last good checkpoint is" in err and not (out / "summary.json").exists()
    saved = series_checkpoints(out / "checkpoints")
    assert saved[0].name == "update-000000002"  # updates 0 and 1
    config = PPOConfig.from_dict(json.loads((out / "config.json").read_text()))
    state = load_checkpoint(saved[0], make_trainer(config), batch_shape=(2,))
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state.runner.train_state))
    assert main([*args, "--on-nonfinite", "warn", "--out", str(tmp_path / "warn")]) == 0
    err = capsys.readouterr().err
    assert err.count("non-finite training at update 2, seeds 0, 1") == 1  # said once
    assert (tmp_path / "warn" / "summary.json").exists()


def test_one_diverging_seed_among_several_is_the_one_reported(tmp_path):
    """Seeds vmapped with their own learning rates: only seed 1's is absurd. The guard
    names seed 1 alone, at the first update where its metrics go non-finite; seed 0
    stays finite all along (a mean over seeds would have hidden which one it was)."""
    config = PPOConfig(
        num_envs=4, num_steps=16, num_minibatches=2, total_timesteps=12 * 64,
        hidden_sizes=(16,),
    )  # fmt: skip
    trainer = make_trainer(config)
    keys = jax.random.split(jax.random.key(0), 3)
    lrs = jnp.array([2.5e-4, 1e30, 2.5e-4])
    hyperparams = jax.tree.map(lambda x: jnp.full(3, x), config.hyperparams())._replace(lr=lrs)
    state = jax.jit(trainer.init_many)(keys, hyperparams)
    options = RunOptions(seeds=3, checkpoint_every=2)
    result = train_in_chunks(trainer, state, tmp_path, options)
    found = result.diverged
    assert found is not None and found.seeds == (1,)
    watched = ("policy_loss", "value_loss", "entropy", "total_loss", "kl", "grad_norm")
    per_update = np.stack([~np.isfinite(result.metrics[name]) for name in watched]).any(axis=0)
    assert not per_update[[0, 2]].any()  # the other seeds never
    assert found.update == int(np.flatnonzero(per_update[1])[0])
    # one update per chunk: a save after every second one, none of a non-finite state
    assert result.saves == found.update // options.checkpoint_every


def test_first_nonfinite_names_the_earliest_update_and_every_seed_at_it():
    finite = np.ones((3, 6))
    metrics = {"value_loss": finite.copy(), "grad_norm": finite.copy()}
    metrics["episode_return"] = finite.copy()
    metrics["episode_return"][:, :] = np.nan  # not watched: no episode ended
    assert first_nonfinite(metrics, 10) is None
    metrics["grad_norm"][0, 4] = np.inf
    metrics["grad_norm"][2, 2] = np.inf
    metrics["value_loss"][2, 2] = np.nan
    found = first_nonfinite(metrics, 10)  # update 12: seed 2, value_loss named before grad_norm
    assert (found.update, found.seeds, found.metric) == (12, (2,), "value_loss")
    assert np.isnan(found.value)
    metrics["grad_norm"][1, 2] = -np.inf
    found = first_nonfinite(metrics, 10)
    assert (found.update, found.seeds, found.metric, found.value) == (
        12,
        (1, 2),
        "grad_norm",
        -np.inf,
    )
    metrics = {"value_loss": finite.copy()}
    found = first_nonfinite(metrics, 0, params_finite=np.array([True, False, True]))
    assert (found.update, found.seeds, found.metric) == (5, (1,), "parameters")


@pytest.mark.parametrize(
    ("start", "updates", "every", "plan"),
    [
        (0, 100, 10, [2] * 50),  # the largest divisor of 10 up to 100 // 25 = 4
        (0, 100, 7, [1] * 100),
        (0, 30, 12, [1] * 30),
        (6, 10, 4, [1] * 4),
        (5, 12, 4, [1] * 7),
        (0, 1000, 100, [25] * 40),  # 25: the largest divisor of 100 up to 40
        (30, 1000, 100, [20] + [25] * 38),  # resumed off the grid: realign first
        (10, 1000, None, [30] + [40] * 24),  # chunk_lengths(1000)'s length is 40
    ],
)
def test_chunk_plan_ends_a_call_at_every_checkpoint(start, updates, every, plan):
    got = chunk_plan(start, updates, every)
    assert got == plan and sum(got) == updates - start
    if every is not None:
        ends = set(np.cumsum([start, *got]).tolist())
        assert {k for k in range(every, updates + 1, every) if k > start} <= ends


def test_plot_draws_several_runs_and_refuses_unknown_metrics(tmp_path, reference, capsys):
    out = tmp_path / "both.png"
    assert main(["plot", str(reference), str(reference), "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert main(["plot", str(reference), "--metric", "value_loss", "--out", str(out)]) == 0
    assert main(["plot", str(reference), "--metric", "nope"]) == 2
    assert "--metric nope" in capsys.readouterr().err
    assert main(["plot", str(tmp_path)]) == 2
