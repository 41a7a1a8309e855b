"""Cold and warm starts of ``purejaxppo train``: what the persistent compilation cache saves.

Each round runs the same ``purejaxppo train`` command three times, each a fresh Python
process: with an empty cache folder (cold: every program compiled and written), again
with that folder (warm: the programs are read back), and with ``--no-compile-cache``.
Per run it records the process's wall time and, from the run's ``summary.json``,
``startup_s`` (from the start of the command, after Python's imports of the CLI module,
to the first update: config, tracing, compilation or cache loads, init) and ``compile_s``
(the part that compiles or loads the programs). Also the time to import the CLI in a
fresh process. Writes ``startup_<backend>.json``.

    python benchmarks/startup.py [--rounds 2] [--quick] [--out benchmarks/results]
        [-- TRAIN FLAGS...]

``--quick`` (the smoke test): one round, cold and warm only, written to
``startup_<backend>_quick.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
from bench_util import machine, write_json

HERE = Path(__file__).resolve().parent
MODES = ("cold", "warm", "no_cache")


def run_train(flags: list[str], cache: Path | None, out: Path) -> dict[str, Any]:
    """One ``python -m purejaxppo train`` in a fresh process; its timings."""
    env = dict(os.environ)
    command = [sys.executable, "-m", "purejaxppo", "train", *flags, "--no-progress"]
    command += ["--out", str(out)]
    if cache is None:
        command.append("--no-compile-cache")
    else:
        env["PUREJAXPPO_COMPILE_CACHE"] = str(cache)
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    return {
        "process_s": wall,
        "startup_s": summary["startup_s"],
        "compile_s": summary["compile_s"],
        "run_s": summary["run_s"],
    }


def import_time() -> float:
    """Seconds for a fresh Python to ``import purejaxppo.cli`` (jax, flax, gymnax...)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import purejaxppo.cli"], check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one round, cold and warm only")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("train_flags", nargs="*", help="flags for purejaxppo train (after --)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be a positive integer, got {args.rounds}")
    modes = MODES[:2] if args.quick else MODES
    rounds = 1 if args.quick else args.rounds
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    imports = []
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(rounds):
            cache = Path(scratch) / f"cache_{round_index}"  # empty: the cold run fills it
            for mode in modes:
                out = Path(scratch) / f"run_{round_index}_{mode}"
                runs[mode].append(
                    run_train(args.train_flags, None if mode == "no_cache" else cache, out)
                )
            imports.append(import_time())
    medians = {
        mode: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        for mode, rows in runs.items()
    }
    report = {
        "train_flags": args.train_flags,
        "rounds": rounds,
        "runs": runs,
        "medians": medians,
        "import_cli_s": statistics.median(imports),
        "machine": machine(),
    }
    for mode in modes:
        m = medians[mode]
        print(
            f"{mode:9s} process {m['process_s']:5.1f} s  startup {m['startup_s']:5.2f} s "
            f"(compile or load {m['compile_s']:5.2f} s)  run {m['run_s']:5.2f} s"
        )
    print(f"import purejaxppo.cli: {report['import_cli_s']:.2f} s")
    stem = f"startup_{jax.default_backend()}" + ("_quick" if args.quick else "")
    print(f"wrote {write_json(args.out, stem, report)}")
    return report


if __name__ == "__main__":
    main()
