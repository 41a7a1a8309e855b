"""Smoke tests: every benchmark script runs in its quickest mode, so none of them rots."""

import importlib.util
import json
from pathlib import Path

import numpy as np

from purejaxppo import PPOConfig

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_quick(tmp_path):
    report = load("throughput").main(["--quick", "--repeats", "1", "--out", str(tmp_path)])
    written = json.loads((tmp_path / "throughput_cpu_quick.json").read_text())
    assert written["machine"]["backend"] == "cpu" and written["machine"]["cpu_count"] >= 1
    assert [r["case"] for r in written["results"]] == [r["case"] for r in report["results"]]
    for result in written["results"]:
        assert result["train"]["compile_s"] > 0 and len(result["train"]["run_s"]) == 1
        assert result["train_sps"] > 0 and result["env_sps"] > 0
        assert result["train_over_env"] == result["train_sps"] / result["env_sps"]
        config = PPOConfig.from_dict(result["config"])  # the JSON round-trips to a config
        assert result["env_steps"] == result["seeds"] * config.trained_timesteps
    assert (tmp_path / "throughput_cpu_quick.png").stat().st_size > 1000


def test_sweep_quick_is_one_trace(tmp_path):
    report = load("sweep").main(["--quick", "--seeds", "2", "--out", str(tmp_path)])
    assert report["timing"]["traces"] == 1
    assert np.asarray(report["final_return"]).shape == (2, 2, 2)
    assert json.loads((tmp_path / "sweep_CartPole-v1_quick.json").read_text()) == report
    assert (tmp_path / "sweep_CartPole-v1_quick.png").stat().st_size > 1000
