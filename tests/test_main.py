"""The command line end to end: train a tiny run, evaluate it, and refuse bad input (exit 2)."""

import dataclasses
import json
import subprocess
import sys
import typing

import jax
import numpy as np
import pytest
import yaml

from purejaxppo import PPOConfig, make_trainer
from purejaxppo.cli import (
    _compile_cache,
    _field_parser,
    _load_config_file,
    build_parser,
    main,
    resolve_config,
)
from purejaxppo.runs import chunk_lengths


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    args = ["train", "--seeds", "2", "--total-timesteps", "2048", "--no-progress"]
    assert main([*args, "--lr", "1e-3", "--out", str(out)]) == 0
    return out


def test_train_writes_a_complete_run_folder(run_dir):
    names = {"config.json", "run.json", "metrics.npz", "summary.json", "learning_curve.png"}
    names.add("checkpoint")
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


def test_chunked_run_equals_one_call_of_run_many(run_dir):
    """The command line trains in chunks (one update each at this size), with progress
    reported between them; its metrics are bit-identical to one call for all updates."""
    assert chunk_lengths(4) == [1, 1, 1, 1]
    config = PPOConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    trainer = make_trainer(config)
    keys = jax.random.split(jax.random.key(0), 2)
    _, expected = jax.jit(lambda k: trainer.run_many(trainer.init_many(k), 4))(keys)
    saved = np.load(run_dir / "metrics.npz")
    assert set(saved.files) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(saved[name], np.asarray(value), err_msg=name)


@pytest.mark.parametrize(
    ("updates", "lengths"),
    [
        (1, [1]),
        (24, [1] * 24),
        (976, [16] * 61),  # the default config: 61 calls of one program
        (100, [4] * 25),
        (1009, [40] * 25 + [9]),  # prime: the largest divisor (1) is too small, a remainder
    ],
)
def test_chunk_lengths(updates, lengths):
    assert chunk_lengths(updates) == lengths


def test_progress_lines_and_a_second_run_loads_its_programs_from_the_cache(
    tmp_path, monkeypatch, capsys
):
    """Without host callbacks in the programs, JAX's persistent cache keeps them: a second
    identical run compiles nothing (it writes no new entry and reads its programs back)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("PUREJAXPPO_COMPILE_CACHE", str(cache))
    args = ["train", "--seeds", "1", "--total-timesteps", "1024", "--num-envs", "2"]
    hits = []
    jax.monitoring.register_event_listener(
        lambda event, **kwargs: hits.append(1) if event.endswith("cache_hits") else None
    )
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err  # not a terminal: the plain lines of a ProgressBar
    assert "PPO CartPole-v1: 100% 4/4 updates" in err
    entries = sorted(p.name.split("-")[0] for p in cache.iterdir())
    assert {"jit_init_many", "jit_run_many"} <= set(entries)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["compile_cache"] == str(cache)
    before = len(hits)
    assert main([*args, "--no-progress", "--out", str(tmp_path / "b")]) == 0
    assert sorted(p.name.split("-")[0] for p in cache.iterdir()) == entries
    assert len(hits) - before >= 2  # init_many and run_many, at least
    assert "updates" not in capsys.readouterr().err


def test_no_compile_cache_turns_it_off_for_the_command_only(tmp_path, monkeypatch):
    monkeypatch.setenv("PUREJAXPPO_COMPILE_CACHE", str(tmp_path / "cache"))
    before = jax.config.jax_compilation_cache_dir
    args = ["train", "--seeds", "1", "--total-timesteps", "1024", "--num-envs", "2"]
    assert main([*args, "--no-compile-cache", "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["compile_cache"] is None
    assert not (tmp_path / "cache").exists()
    assert jax.config.jax_compilation_cache_dir == before  # the caller's setting is back


def test_an_unwritable_cache_folder_is_a_warning_not_a_failure(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("PUREJAXPPO_COMPILE_CACHE", str(blocker / "cache"))
    args = build_parser().parse_args(["train"])
    before = jax.config.jax_compilation_cache_dir
    with _compile_cache(args) as folder:
        assert folder is None and jax.config.jax_compilation_cache_dir is None
    assert jax.config.jax_compilation_cache_dir == before
    assert "warning: no compilation cache" in capsys.readouterr().err


def test_evaluate_a_saved_run(run_dir, capsys):
    assert main(["evaluate", "--run", str(run_dir), "--episodes", "3"]) == 0
    assert "2 seeds x 3 greedy episodes" in capsys.readouterr().out
    report = json.loads((run_dir / "eval_greedy.json").read_text())
    assert np.asarray(report["episode_return"]).shape == (2, 3)
    assert report["deterministic"] is True


def test_train_and_evaluate_a_recurrent_policy(tmp_path, capsys):
    """``--network gru``: the run folder records it, its checkpoint holds the carries, and
    ``evaluate`` rebuilds the GRU from the saved config and threads its carry."""
    out = tmp_path / "gru"
    args = ["train", "--seeds", "2", "--total-timesteps", "256", "--num-steps", "32"]
    args += ["--network", "gru", "--rnn-hidden-size", "8", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    assert json.loads((out / "config.json").read_text())["network"] == "gru"
    assert np.load(out / "metrics.npz")["episode_return"].shape == (2, 2)
    assert main(["evaluate", "--run", str(out), "--episodes", "2"]) == 0
    assert np.asarray(
        json.loads((out / "eval_greedy.json").read_text())["episode_return"]
    ).shape == (
        2,
        2,
    )


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
        (["train", "--eval-every", "often"], "argument --eval-every: expected an integer"),
        (["train", "--eval-every", "0.5"], "error: eval_every must be a positive integer, got 0.5"),
        (["train", "--grad-clip", "layer"], "error: grad_clip must be one of ('global', "),
        (["train", "--value-clip-eps", "0"], "error: value_clip_eps must be a finite number"),
        (["train", "--env", "Cartpole"], "error: env_name='Cartpole' is not a registered"),
        (["train", "--seeds", "0"], "error: --seeds must be a positive integer, got 0"),
        (["train", "--network", "gur"], "error: network must be one of ('mlp', 'cnn', 'gru'"),
        (["train", "--network", "gru", "--num-envs", "6"], "must be divisible by num_minibatches"),
        (["train", "--network", "cnn"], "error: network='cnn' needs image observations"),
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


def _resolve(*argv: str) -> PPOConfig:
    return resolve_config(build_parser().parse_args(["train", *argv]))


# A valid non-default value of every PPOConfig field (each on top of the defaults).
_NON_DEFAULT = {
    "env_name": "Pendulum-v1",
    "total_timesteps": 1024,
    "num_envs": 8,
    "num_steps": 256,
    "update_epochs": 10,
    "num_minibatches": 8,
    "lr": 3e-4,
    "anneal_lr": False,
    "gamma": 0.995,
    "gae_lambda": 0.9,
    "clip_eps": 0.1 + 0.2,  # 0.30000000000000004: the text must round-trip exactly
    "ent_coef": 1 / 3,
    "vf_coef": 0.25,
    "max_grad_norm": 0.75,
    "activation": "relu",
    "hidden_sizes": (128, 32, 16),
    "normalize_advantages": False,
    "clip_value_loss": False,
    "normalize_obs": True,
    "normalize_reward": True,
    "obs_clip": 5.0,
    "reward_clip": 2.5,
    "log_std_init": -0.5,
    "policy_objective": "kl_penalty",
    "kl_target": 0.02,
    "kl_beta_init": 3.0,
    "clip_eps_final": 0.05,
    "target_kl": 0.015,
    "eval_every": 5,
    "eval_episodes": 4,
    "grad_clip": "per_network",
    "value_clip_eps": 1e-05,
    "network": "gru",
    "rnn_hidden_size": 32,
    "resets_per_step": 2,
}


def _as_text(value) -> str:
    """``value`` as a user would type it on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(part) for part in value)
    return repr(value) if isinstance(value, float) else str(value)


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(PPOConfig)])
def test_every_field_round_trips_through_its_flag(field):
    """For every field (a new one included), a non-default value typed as text on the
    command line comes back from the parser and resolve_config exactly."""
    assert field in _NON_DEFAULT, f"add a non-default value for the new field {field!r}"
    value = _NON_DEFAULT[field]
    assert value != getattr(PPOConfig(), field)
    flag = "--env" if field == "env_name" else f"--{field.replace('_', '-')}"
    got = getattr(_resolve(flag, _as_text(value)), field)
    assert got == value and type(got) is type(value)


def test_flag_spellings():
    assert _resolve("--total-timesteps", "5e5").total_timesteps == 500_000
    assert _resolve("--eval-every", "1e1").eval_every == 10
    assert _resolve("--eval-every", "None").eval_every is None
    assert _resolve("--target-kl", "NONE", "--lr", "1E-3").lr == 1e-3
    assert _resolve("--normalize-obs", "1", "--clip-value-loss", "no").normalize_obs
    big = 2**60 + 1  # an int flag is parsed as an int, not through a float
    assert _resolve("--total-timesteps", str(big)).total_timesteps == big


def test_none_flag_overrides_the_config_file(tmp_path):
    config = tmp_path / "c.json"
    values = {"target_kl": 0.02, "eval_every": 5, "clip_eps_final": 0.1, "value_clip_eps": 0.3}
    config.write_text(json.dumps(values))
    from_file = _resolve("--config", str(config))
    assert {name: getattr(from_file, name) for name in values} == values
    flags = [arg for name in values for arg in (f"--{name.replace('_', '-')}", "none")]
    unset = _resolve("--config", str(config), *flags)
    assert {name: getattr(unset, name) for name in values} == dict.fromkeys(values)


def test_field_parsers_come_from_the_field_types():
    parse, metavar, optional = _field_parser("n", typing.Optional[int])  # noqa: UP045
    assert (parse("7"), parse("none"), metavar, optional) == (7, None, "INT", True)
    parse, metavar, optional = _field_parser("eps", float | None)
    assert (parse("1e-3"), parse("None"), metavar, optional) == (1e-3, None, "FLOAT", True)
    assert _field_parser("sizes", tuple[int, ...])[0]("3,4") == (3, 4)
    for annotation in (dict[str, float], int | str, list[int], "int"):
        with pytest.raises(TypeError, match=r"PPOConfig field 'schedule' has type .*cannot parse"):
            _field_parser("schedule", annotation)


def test_help_metavars_are_plain(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--eval-every INT default None; none for None" in help_text
    assert "--target-kl FLOAT" in help_text and "--lr FLOAT default 0.00025" in help_text
    assert "--hidden-sizes INT,INT,..." in help_text and "--anneal-lr true|false" in help_text
    assert "|NONE" not in help_text and "TUPLE" not in help_text


def test_yaml_floats_follow_yaml_1_2(tmp_path):
    """PyYAML's YAML 1.1 reads ``1e-3`` as a string; the CLI reads it as the float."""
    text = (
        "a: 1e-3\nb: 5e5\nc: -2E+4\nd: 1.0e5\ne: .5e1\nf: 8\ng: '1e-3'\nh: 1.5\n"
        "i: fast\nj: 1e\nk: true\n"
    )
    path = tmp_path / "c.yaml"
    path.write_text(text)
    loaded = _load_config_file(path)
    expected = {
        "a": 1e-3, "b": 5e5, "c": -2e4, "d": 1e5, "e": 5.0, "f": 8, "g": "1e-3", "h": 1.5,
        "i": "fast", "j": "1e", "k": True,
    }  # fmt: skip
    assert loaded == expected
    assert {key: type(value) for key, value in loaded.items()} == {
        key: type(value) for key, value in expected.items()
    }
    assert yaml.safe_load("a: 1e-3") == {"a": "1e-3"}  # PyYAML's own loader is untouched


def test_yaml_config_with_exponents(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\ntotal_timesteps: 5e5\n")
    config = _resolve("--config", str(path))
    assert (config.lr, config.total_timesteps) == (1e-3, 500_000)
    assert type(config.total_timesteps) is int
    path.write_text("lr: fast\n")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "error: lr must be a finite number in (0, inf), got 'fast'" in err


def test_config_file_is_validated_after_the_flags(tmp_path, capsys):
    """A file that is invalid alone (batch 30 is not divisible by 4 minibatches) but valid
    with the flags is accepted; the file's keys are mapped as from_dict maps them."""
    path = tmp_path / "c.yaml"
    path.write_text("NUM_ENVS: 3\nnum_steps: 10\nNORMALIZE_ENV: true\nDEBUG: true\n")
    assert main(["train", "--config", str(path)]) == 2
    assert "must be divisible by num_minibatches = 4" in capsys.readouterr().err
    config = _resolve("--config", str(path), "--num-minibatches", "2", "--normalize-reward", "no")
    assert (config.num_envs, config.num_steps, config.num_minibatches) == (3, 10, 2)
    assert config.normalize_obs and not config.normalize_reward


def test_unparsable_yaml_is_one_line(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("lr: [1e-3\n")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --config {path}: cannot parse") and err.count("\n") == 1
