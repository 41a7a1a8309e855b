"""Smoke tests: every benchmark script runs in its quickest mode, so none of them rots."""

import importlib.util
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_script

from purejaxppo import LossCoefficients, PPOConfig, make_trainer, ppo_loss_terms

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str):
    """Import ``benchmarks/<name>.py`` (with benchmarks/ on the path, for ``bench_util``)."""
    return load_script(BENCHMARKS / f"{name}.py")


def test_throughput_quick(tmp_path):
    report = load("throughput").main(["--quick", "--repeats", "1", "--out", str(tmp_path)])
    written = json.loads((tmp_path / "throughput_cpu_quick.json").read_text())
    assert written["machine"]["backend"] == "cpu" and written["machine"]["cpu_count"] >= 1
    assert [r["case"] for r in written["results"]] == [r["case"] for r in report["results"]]
    for result in written["results"]:
        assert result["train"]["compile_s"] > 0 and len(result["train"]["run_s"]) == 1
        assert result["train_sps"] > 0 and result["env_sps"] > 0
        assert result["train_over_env"] == result["train_sps"] / result["env_sps"]
        assert result["train"]["memory"]["temp_bytes"] > 0  # XLA's analysis of the program
        assert result["train_flops"] >= result["train_matmul_flops"] > 0
        assert (
            result["train_flops_per_s"] == result["train_flops"] / result["train"]["run_s_median"]
        )
        peak = written["matmul_peak"]["flops_per_s"]
        assert result["fraction_of_matmul_peak"] == pytest.approx(
            result["train_flops_per_s"] / peak
        )
        config = PPOConfig.from_dict(result["config"])  # the JSON round-trips to a config
        assert result["env_steps"] == result["seeds"] * config.trained_timesteps
    assert (tmp_path / "throughput_cpu_quick.png").stat().st_size > 1000


def test_flop_count_agrees_with_xla_without_loops_and_multiplies_scan_bodies():
    """XLA's cost analysis is the reference where it is right (a program without loops:
    one PPO gradient on a batch); a scan's body counts once per iteration."""
    bench_util = load("bench_util")
    trainer = make_trainer(PPOConfig(num_envs=4, num_steps=32, num_minibatches=1))
    state = trainer.init(jax.random.key(0))
    batch = trainer.make_batch(*trainer.collect(state))
    train_state = state.runner.train_state
    coefficients = LossCoefficients(0.2, 0.5, 0.01, 1.0)

    def gradient(params, batch):
        return jax.grad(lambda p: ppo_loss_terms(p, train_state.apply_fn, batch, coefficients)[0])(
            params
        )

    ours = bench_util.flop_count(gradient, train_state.params, batch)
    xla = jax.jit(gradient).lower(train_state.params, batch).compile().cost_analysis()
    xla = xla[0] if isinstance(xla, list) else xla
    assert ours["flops"] == pytest.approx(xla["flops"], rel=0.05)

    def repeated(x):
        return jax.lax.scan(lambda c, _: (jnp.tanh(c @ x), None), x, None, length=10)[0]

    counted = bench_util.flop_count(repeated, jnp.ones((8, 8)))
    assert counted == {"flops": 10 * (2 * 8**3 + 8 * 8), "matmul_flops": 10 * 2 * 8**3}


def test_grad_clip_quick(tmp_path):
    report = load("grad_clip").main(["--quick", "--out", str(tmp_path)])
    written = json.loads((tmp_path / "grad_clip_cpu_quick.json").read_text())
    assert set(written["cells"]) == {"value_clip_off/global", "value_clip_on/per_network"}
    for cell in report["cells"].values():
        assert len(cell["final_return"]) == report["seeds"] == 2
        assert cell["summary"]["mean"] == pytest.approx(np.mean(cell["final_return"]))


def test_sweep_quick_is_one_trace(tmp_path):
    report = load("sweep").main(["--quick", "--seeds", "2", "--out", str(tmp_path)])
    assert report["timing"]["traces"] == 1
    assert np.asarray(report["final_return"]).shape == (2, 2, 2)
    assert json.loads((tmp_path / "sweep_CartPole-v1_cpu_quick.json").read_text()) == report
    assert (tmp_path / "sweep_CartPole-v1_cpu_quick.png").stat().st_size > 1000


def test_returns_configs_cover_the_suite_and_load():
    returns = load("returns")
    files = sorted(p.stem for p in (BENCHMARKS / "configs").glob("*.json"))
    envs = set(returns.SUITE) | set(returns.NETWORK_ABLATIONS) | set(returns.SUITE_ENVS)
    assert files == sorted(returns.config_path(name).stem for name in envs)
    for env_name in returns.SUITE_ENVS:  # configs load without their suite installed
        assert returns.load_config(env_name).env_name == env_name
    for env_name in returns.NETWORK_ABLATIONS:
        assert returns.load_config(env_name).trained_timesteps > 0
    for env_name in returns.SUITE:
        config = returns.load_config(env_name)  # validated PPOConfig, env_name matches file
        assert config.trained_timesteps > 0
    referenced = {r["env_name"] for r in json.loads(returns.REFERENCES.read_text())["references"]}
    assert referenced <= set(returns.SUITE) | set(returns.SUITE_ENVS)


def test_returns_verdicts():
    verdict = load("returns").verdict
    assert verdict(ci_low=-85.0, ci_high=-75.0, reference=-80.0) == "matches"
    assert verdict(ci_low=-79.0, ci_high=-70.0, reference=-80.0) == "beats"
    assert verdict(ci_low=-95.0, ci_high=-81.0, reference=-80.0) == "below"
    # bounds equal to the reference are inside the CI: 500 at CartPole's cap matches 500
    assert verdict(ci_low=500.0, ci_high=500.0, reference=500.0) == "matches"
    assert verdict(ci_low=-80.0, ci_high=-70.0, reference=-80.0) == "matches"
    assert verdict(ci_low=-90.0, ci_high=-80.0, reference=-80.0) == "matches"


def test_returns_quick(tmp_path):
    envs = ["CartPole-v1", "Pendulum-v1"]  # one discrete, one continuous (all envs: test_envs)
    report = load("returns").main(
        ["--quick", "--seeds", "2", "--envs", *envs, "--out", str(tmp_path)]
    )
    written = json.loads((tmp_path / "returns_cpu_quick.json").read_text())
    assert written == json.loads(json.dumps(report))
    assert [r["env_name"] for r in report["results"]] == envs
    for result in report["results"]:
        scores = np.asarray(result["final_return"])
        assert scores.shape == (2,) and np.isfinite(scores).all()
        summary = result["summary"]
        assert summary["mean"] == pytest.approx(scores.mean())
        assert summary["ci_low"] <= summary["mean"] <= summary["ci_high"]
        assert result["compile_s"] > 0 and result["run_s"] > 0
        assert len(result["curve"]["env_steps"]) == len(result["curve"]["mean"]) == 2
        assert result["curve"]["env_steps"][-1] == result["trained_timesteps"]
        # quick runs are far below every reference budget and return
        assert all(ref["verdict"] == "below" for ref in result["references"])
        assert len(result["references"]) >= 1
        assert (tmp_path / "curves" / f"{result['env_name']}_cpu_quick.png").stat().st_size > 1000
    assert (tmp_path / "returns_grid_cpu_quick.png").stat().st_size > 1000
    assert "| CartPole-v1 |" in (tmp_path / "returns_cpu_quick.md").read_text()


def test_returns_network_ablation_quick(tmp_path):
    """``--networks mlp gru``: each env trained with each network, drawn on one axes."""
    args = "--quick --seeds 2 --envs MemoryChain-bsuite --networks mlp gru --tag memory"
    report = load("returns").main([*args.split(), "--out", str(tmp_path)])
    assert [(r["env_name"], r["network"]) for r in report["results"]] == [
        ("MemoryChain-bsuite", "mlp"),
        ("MemoryChain-bsuite", "gru"),
    ]
    assert report["results"][1]["config"]["network"] == "gru"
    assert "| MemoryChain-bsuite | gru |" in (tmp_path / "returns_cpu_memory_quick.md").read_text()
    assert (tmp_path / "curves" / "MemoryChain-bsuite_cpu_memory_quick.png").stat().st_size > 1000


def test_vs_sb3_quick(tmp_path):
    pytest.importorskip("stable_baselines3", reason='needs the bench extra: pip install ".[bench]"')
    report = load("vs_sb3").main(["--quick", "--seeds", "2", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "vs_sb3_CartPole-v1_quick.json").read_text()) == json.loads(
        json.dumps(report)
    )
    steps = 2 * report["trained_timesteps"]
    for side in ("purejaxppo", "purejaxppo_value_clip", "sb3"):
        assert len(report[side]["final_return"]) == 2
        assert np.isfinite(report[side]["final_return"]).all()
        assert report[side]["sps"] == pytest.approx(steps / report[side]["run_s"])
    assert report["speedup"] == pytest.approx(report["purejaxppo"]["sps"] / report["sb3"]["sps"])
    assert report["config"]["clip_value_loss"] is False  # identical to SB3's value loss


# Stand-ins for PureJaxRL's purejaxrl/wrappers.py and purejaxrl/ppo.py (at commit
# 31756b1): the same layout and module-level imports, the names ppo.py takes from
# wrappers.py, the old 5-tuple env API, and a trivial train.
STAND_IN_WRAPPERS = '''
"""Stands in for PureJaxRL's wrappers.py: its module-level imports, trivial wrappers."""
import jax
import jax.numpy as jnp
import chex
import numpy as np
from flax import struct
from functools import partial
from typing import Optional, Tuple, Union, Any
from gymnax.environments import environment, spaces
from brax import envs
from brax.envs.wrappers.training import EpisodeWrapper, AutoResetWrapper
import navix as nx


class GymnaxWrapper(object):
    def __init__(self, env):
        self._env = env

    def __getattr__(self, name):
        return getattr(self._env, name)


class FlattenObservationWrapper(GymnaxWrapper):
    def step(self, key, state, action, params=None):
        obs, state, reward, done, info = self._env.step(key, state, action, params)
        return jnp.reshape(obs, (-1,)), state, reward, done, info


class LogWrapper(GymnaxWrapper):
    pass
'''

STAND_IN_PPO = '''
"""Stands in for PureJaxRL's ppo.py: its module-level imports, a trivial train."""
import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np
import optax
from flax.linen.initializers import constant, orthogonal
from typing import Sequence, NamedTuple, Any
from flax.training.train_state import TrainState
import distrax
import gymnax
from wrappers import LogWrapper, FlattenObservationWrapper


def make_train(config):
    env, env_params = gymnax.make(config["ENV_NAME"])
    env = LogWrapper(FlattenObservationWrapper(env))
    steps = int(config["TOTAL_TIMESTEPS"]) // config["NUM_ENVS"]

    def train(rng):
        obs, state = env.reset(rng, env_params)

        def step(carry, key):
            state, total = carry
            obs, state, reward, done, info = env.step(key, state, 0, env_params)  # 5-tuple
            return (state, total + reward), done

        (_, total), dones = jax.lax.scan(step, (state, 0.0), jax.random.split(rng, steps))
        return {"return": total, "episodes": jnp.sum(dones)}

    return train
'''


def test_vs_purejaxrl_quick_against_a_stand_in(tmp_path):
    """The loader (upstream's layout: ppo.py does ``from wrappers import ...``; stubs for
    the brax and navix that wrappers.py imports, where they are not installed), the
    gymnax 1.0 step -> PureJaxRL's 5-tuple shim and the timing harness, with stand-ins
    for PureJaxRL's files (CI has no PureJaxRL checkout)."""
    package = tmp_path / "purejaxrl_checkout" / "purejaxrl"
    package.mkdir(parents=True)  # no __init__.py, as upstream
    (package / "wrappers.py").write_text(STAND_IN_WRAPPERS)
    (package / "ppo.py").write_text(STAND_IN_PPO)
    before = set(sys.modules)
    stubbed = {name for name in ("brax", "navix") if importlib.util.find_spec(name) is None}
    report = load("vs_purejaxrl").main(
        [
            "--purejaxrl-dir",
            str(package.parent),
            "--quick",
            "--repeats",
            "2",
            "--compile-repeats",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    scoped = stubbed | {"ppo", "wrappers", "purejaxrl"}  # stubs and the checkout's modules
    leaked = {name for name in set(sys.modules) - before if name.split(".")[0] in scoped}
    assert not leaked, f"the loader left these in sys.modules: {sorted(leaked)}"
    assert str(package) not in sys.path and str(package.parent) not in sys.path
    assert report["config"]["TOTAL_TIMESTEPS"] == 1024
    assert report["trained_timesteps"] == 1024
    for side in ("purejaxppo", "purejaxrl"):
        assert report[side]["compile_s"] > 0 and len(report[side]["run_s"]) == 2
        (stages,) = report[side]["compile_rounds"]
        assert report[side]["startup_s"] == pytest.approx(
            stages["trace"] + stages["lower"] + stages["compile"]
        )
    ours, theirs = report["purejaxppo"]["compile_s"], report["purejaxrl"]["compile_s"]
    assert report["compile_ratio"] == pytest.approx(ours / theirs)
    ratios = np.divide(report["purejaxrl"]["run_s"], report["purejaxppo"]["run_s"])
    assert report["run_speedup_paired_median"] == pytest.approx(np.median(ratios))
    assert (tmp_path / "vs_purejaxrl_cpu_quick.json").exists()


def test_five_tuple_step_folds_truncation_into_done():
    from purejaxppo import make_env

    patched = load("vs_purejaxrl")._five_tuple_make(lambda name: make_env(name))
    env, params = patched("CartPole-v1")
    params = params.replace(max_steps_in_episode=3)
    _, state = env.reset(jax.random.key(0), params)
    dones = []
    for i in range(3):  # action 0 for 3 steps: no termination yet, truncation at step 3
        out = env.step(jax.random.key(i), state, 0, params)
        assert len(out) == 5
        _obs, state, _reward, done, info = out
        dones.append(bool(done))
    assert dones == [False, False, True] and bool(info["truncated"])


def test_startup_quick(tmp_path):
    """Two fresh processes (cold cache, then warm) of a tiny train command."""
    flags = ["--seeds", "1", "--total-timesteps", "512", "--num-envs", "2", "--num-steps", "128"]
    report = load("startup").main(["--quick", "--out", str(tmp_path), "--", *flags])
    written = json.loads((tmp_path / "startup_cpu_quick.json").read_text())
    assert written["train_flags"] == flags and set(written["runs"]) == {"cold", "warm"}
    for mode in ("cold", "warm"):
        (run,) = report["runs"][mode]
        assert run["process_s"] > run["startup_s"] >= run["compile_s"] > 0
    assert report["import_cli_s"] > 0


def test_brax_reference_counts_brax_steps_and_its_committed_summary_is_its_seeds():
    """benchmarks/brax_reference.py runs only in its own venv (an older jax): here its step
    arithmetic (Brax stops at the first multiple of 163,840 steps at or past 1M) and the
    committed result's summaries, recomputed from the per-seed returns."""
    reference = load("brax_reference")
    hparams, derived = reference.effective_hparams("inverted_pendulum", 1_000_000)
    assert derived["env_steps_per_training_step"] == 1024 * 5 * 32
    assert derived["total_env_steps"] == 7 * 163_840 == 1_146_880 and hparams["num_evals"] == 8
    saved = json.loads((BENCHMARKS / "results" / "brax_reference_cpu.json").read_text())
    for env_name, result in saved["envs"].items():
        finals = [run["final_return"] for run in result["runs"]]
        assert finals == result["final_returns"] and len(finals) >= 5, env_name
        assert reference.summary(finals) == result["final"], env_name
        assert result["hyperparameters"]["num_timesteps"] == 1_000_000


def test_rlhf_quick(tmp_path):
    """benchmarks/rlhf.py end to end at its tiny budget: every experiment's curves and
    final summaries, the reward model's accuracies, the figure."""
    report = load("rlhf").main(["--quick", "--seeds", "2", "--betas", "0", "0.1",
                                "--out", str(tmp_path)])  # fmt: skip
    written = json.loads((tmp_path / "rlhf_cpu_quick.json").read_text())
    assert written == json.loads(json.dumps(report))
    experiments = report["experiments"]
    assert experiments["leash"]["config"]["kl_target"] == 3.0
    assert experiments["sweep"]["betas"] == [0.0, 0.1]
    assert sorted(experiments["clipping"]["runs"]) == ["clip", "unclipped"]
    updates = experiments["leash"]["config"]["num_updates"]
    for described in [experiments["leash"], *experiments["sweep"]["runs"],
                      *experiments["clipping"]["runs"].values()]:  # fmt: skip
        curve = described["curves"]["kl_to_reference"]
        assert len(curve["mean"]) >= 2 and curve["ci_low"][0] <= curve["mean"][0]
        final = described["final"]["score"]
        assert final["num_seeds"] == 2 and final["ci_low"] <= final["mean"] <= final["ci_high"]
    assert len(experiments["leash"]["curves"]["beta"]["mean"]) == updates
    assert 0.0 <= report["reward_model"]["held_out_accuracy"] <= 1.0
    assert len(experiments["leash"]["samples_after"]) == 6
    assert (tmp_path / "rlhf_cpu_quick.png").stat().st_size > 1000
