"""Independent runs over devices and hosts (purejaxppo.parallel). The multi-device runs
happen in subprocesses with their own XLA_FLAGS (virtual CPU devices), so the rest of the
suite keeps its single device: tests/parallel_worker.py trains a tiny config's 8 seeds."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from purejaxppo import parallel

WORKER = Path(__file__).with_name("parallel_worker.py")
TIMEOUT_S = 240


def _env(devices: int) -> dict[str, str]:
    flags = os.environ.get("XLA_FLAGS", "")
    return {**os.environ, "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={devices}"}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """One process with 4 devices: the runs on meshes of 1 and 4 of them."""
    out = tmp_path_factory.mktemp("parallel") / "one"
    env = _env(4)
    # level 0: the worker's programs run a few updates, compiling is its cost (everything
    # it compares is computed in it, at the same level)
    env["XLA_FLAGS"] += " --xla_backend_optimization_level=0"
    subprocess.run(
        [sys.executable, str(WORKER), "--out", str(out)],
        env=env,
        check=True,
        timeout=TIMEOUT_S,
        capture_output=True,
    )
    return dict(np.load(f"{out}.npz")), json.loads(Path(f"{out}.json").read_text())


def _run(results: dict, name: str) -> dict[str, np.ndarray]:
    return {key[len(name) :]: value for key, value in results.items() if key.startswith(name)}


def _assert_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_runs_are_bit_identical_on_any_number_of_devices_with_a_fixed_width(one_process):
    """8 seeds on 1 and on 4 devices, 2 at a time on each: the same bits (params, env
    states, every metric), and the same as the library's own vmap of 2 seeds at a time.
    (Across two processes: the command-line test below.)"""
    results, report = one_process
    reference = _run(results, "devices1_width2")
    _assert_equal(_run(results, "devices4_width2"), reference)
    library = _run(results, "library_width2")
    assert library
    for key, joined in library.items():
        np.testing.assert_array_equal(reference[key], joined, err_msg=key)
    assert [m["devices"] for m in report["meshes"]] == [1, 4]


def test_all_runs_in_one_program_agree_to_rounding_and_report_once_per_update(one_process):
    """Without a width all 8 runs are one vmap that XLA splits over the 4 devices: its
    rounding depends on how many runs a device holds, so results agree with the width-2
    runs to float tolerance, not bitwise; the host callback is called once per update
    with all 8 seeds."""
    results, report = one_process
    reference = _run(results, "devices1_width2")
    run = _run(results, "devices4_widthNone")
    for key, value in reference.items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(run[key], value, rtol=1e-4, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(run[key], value, err_msg=key)
    assert report["calls"]["devices4_widthNone"] == [[u, 8] for u in range(3)]
    # with a width each device calls back for each group of 2 (4 groups x 3 updates)
    for devices in (1, 4):
        assert len(report["calls"][f"devices{devices}_width2"]) == 4 * 3


def test_an_uneven_split_says_what_would_work(one_process):
    _, report = one_process
    assert report["uneven"] == (
        "10 runs cannot be split evenly over 4 devices: use a multiple of 4 (8 or 12), "
        "or 1 or 2 device(s)"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def test_initialize_needs_all_three_or_none():
    with pytest.raises(ValueError, match="needs all of the coordinator address"):
        parallel.initialize("localhost:1234", None, None)
    with pytest.raises(ValueError, match=r"process_id must be in \[0, 2\), got 2"):
        parallel.initialize("localhost:1234", 2, 2)


def test_device_mesh_refuses_more_devices_than_there_are():
    with pytest.raises(ValueError, match="this run has 1 device"):
        parallel.device_mesh(2)
    assert parallel.device_mesh().devices.size == 1


# --- the command line over devices and processes ----------------------------------------

CLI = [
    "-m", "purejaxppo", "train", "--seeds", "4", "--num-envs", "4", "--num-steps", "16",
    "--num-minibatches", "2", "--total-timesteps", str(8 * 64), "--hidden-sizes", "16",
    "--checkpoint-every", "2", "--keep-checkpoints", "4", "--vmap-width", "1", "--no-progress",
]  # fmt: skip


def _cli(args: list[str], devices: int, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *CLI, *args], env=_env(devices), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, **kwargs,
    )  # fmt: skip


def _finish(*processes: subprocess.Popen) -> list[str]:
    try:
        outputs = [p.communicate(timeout=TIMEOUT_S) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in processes] == [0] * len(processes), outputs
    return [out for out, _ in outputs]


def _final(run: Path):
    from purejaxppo import PPOConfig, load_checkpoint, make_trainer

    config = PPOConfig.from_dict(json.loads((run / "config.json").read_text()))
    return load_checkpoint(run / "checkpoint", make_trainer(config), batch_shape=(4,))


def _same_run(run: Path, reference: Path) -> None:
    from conftest import tree_equal

    got, expected = np.load(run / "metrics.npz"), np.load(reference / "metrics.npz")
    assert sorted(got.files) == sorted(expected.files)
    for name in expected.files:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert tree_equal(_final(run), _final(reference))


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """The same run three ways: two processes x 2 devices, one process x 4 devices, and
    one process x 1 device (4 seeds, each device computing 1 seed at a time)."""
    folder = tmp_path_factory.mktemp("cli")
    coordinator = f"localhost:{_free_port()}"
    multi = ["--out", str(folder / "two"), "--devices", "all", "--coordinator", coordinator]
    multi += ["--num-processes", "2", "--process-id"]
    out = _finish(
        _cli([*multi, "0"], 2), _cli([*multi, "1"], 2),
        _cli(["--out", str(folder / "four"), "--devices", "all"], 4),
    )  # fmt: skip
    assert "(cpu, 4 devices in 2 processes)" in out[0]
    assert "Training PPO" not in out[1] and "wrote" not in out[1]  # process 1 reports nothing
    return folder


def test_the_cli_over_two_processes_equals_one_process_with_all_the_devices(cli_runs):
    _same_run(cli_runs / "two", cli_runs / "four")
    summary = json.loads((cli_runs / "two" / "summary.json").read_text())
    assert (summary["devices"], summary["processes"], summary["vmap_width"]) == (4, 2, 1)


def test_a_run_saved_on_four_devices_resumes_on_one_with_the_same_bits(tmp_path, cli_runs, capsys):
    """The two-process run's checkpoint after 4 of 8 updates (4 devices over 2 processes),
    resumed on this test process's single device: the same final parameters and metrics
    as the uninterrupted run on 4 devices."""
    from purejaxppo.cli import main

    run = tmp_path / "run"
    shutil.copytree(cli_runs / "two", run)
    for name in ("summary.json", "metrics.npz", "learning_curve.png"):
        (run / name).unlink()
    shutil.rmtree(run / "checkpoint")
    for checkpoint in ("update-000000006", "update-000000008"):
        shutil.rmtree(run / "checkpoints" / checkpoint)
    assert main(["train", "--resume", str(run), "--devices", "1", "--no-progress"]) == 0
    assert (
        "from update 4 of 8 (update-000000004; cpu, 1 device in 1 process)"
        in capsys.readouterr().out
    )
    _same_run(run, cli_runs / "four")


def test_the_cli_refuses_seeds_that_do_not_split_over_its_devices(tmp_path):
    process = subprocess.run(
        [sys.executable, *CLI, "--seeds", "3", "--devices", "2", "--out", str(tmp_path / "x")],
        env=_env(2), capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert process.returncode == 2
    assert process.stderr.startswith("error: 3 runs cannot be split evenly over 2 devices")
    assert not (tmp_path / "x").exists()
