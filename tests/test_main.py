"""The command line end to end: train a tiny run, evaluate it, and refuse bad input (exit 2)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from purejaxppo.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    args = ["train", "--seeds", "2", "--total-timesteps", "2048", "--no-progress"]
    assert main([*args, "--lr", "1e-3", "--out", str(out)]) == 0
    return out


def test_train_writes_a_complete_run_folder(run_dir):
    names = {"config.json", "metrics.npz", "summary.json", "learning_curve.png", "checkpoint"}
    assert {p.name for p in run_dir.iterdir()} == names
    config = json.loads((run_dir / "config.json").read_text())
    assert config["lr"] == 1e-3 and config["env_name"] == "CartPole-v1"  # flag over default
    metrics = np.load(run_dir / "metrics.npz")
    updates = 2048 // (4 * 128)
    assert metrics["episode_return"].shape == metrics["total_loss"].shape == (2, updates)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["seeds"] == 2 and len(summary["final_return"]) == 2
    assert summary["base_seed"] == 0
    low, high = summary["summary"]["ci_low"], summary["summary"]["ci_high"]
    assert low <= summary["summary"]["mean"] <= high
    assert (run_dir / "learning_curve.png").stat().st_size > 1000


def test_evaluate_a_saved_run(run_dir, capsys):
    assert main(["evaluate", "--run", str(run_dir), "--episodes", "3"]) == 0
    assert "2 seeds x 3 greedy episodes" in capsys.readouterr().out
    report = json.loads((run_dir / "eval_greedy.json").read_text())
    assert np.asarray(report["episode_return"]).shape == (2, 3)
    assert report["deterministic"] is True


def test_config_file_then_flags(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("env_name: Pendulum-v1\nnum_envs: 2\nnum_steps: 8\nlr: 0.01\n")
    out = tmp_path / "run"
    args = ["train", "--config", str(config), "--lr", "0.002", "--total-timesteps", "32"]
    assert main([*args, "--seeds", "1", "--no-progress", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["env_name"], saved["num_envs"], saved["lr"]) == ("Pendulum-v1", 2, 0.002)
    # 16 steps per env, Pendulum episodes last 200: saved and reported, not a crash
    assert "no episode ended (1 seed(s))" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["summary"] is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--bogus", "3"], "error: unrecognized arguments: --bogus 3"),
        (["train", "--lr", "-1"], "error: lr must be a finite number"),
        (["train", "--lr", "fast"], "error: argument --lr: expected a number, got 'fast'"),
        (["train", "--hidden-sizes", "64,x"], "expected comma-separated integers, got '64,x'"),
        (["train", "--normalize-obs", "maybe"], "expected true or false, got 'maybe'"),
        (["train", "--env", "Cartpole"], "error: env_name='Cartpole' is not a registered"),
        (["train", "--seeds", "0"], "error: --seeds must be a positive integer, got 0"),
        (["evaluate", "--run", "nowhere"], "error: --run nowhere is not a run folder"),
        (["fly"], "error: argument command: invalid choice: 'fly'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_unknown_config_key_in_file(tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"learning_rate": 0.1}))
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'learning_rate'" in err and err.count("\n") == 1


def test_module_and_console_script_entry_points():
    result = subprocess.run(
        [sys.executable, "-m", "purejaxppo", "--lr", "-1"], capture_output=True, text=True
    )
    assert result.returncode == 2 and result.stderr.startswith("error: lr must be")
