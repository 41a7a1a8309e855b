"""The command line: ``purejaxppo train``, ``purejaxppo evaluate`` and ``purejaxppo plot``.

Also ``python -m purejaxppo``; with no command (or only flags) it trains.

    purejaxppo train [--env CartPole-v1] [--seeds 4] [--seed 0] [--total-timesteps 5e5]
                     [--config FILE.json|.yaml] [--FIELD VALUE ...] [--out runs/NAME]
                     [--checkpoint-every UPDATES] [--checkpoint-every-s SECONDS]
                     [--keep-checkpoints 3] [--on-nonfinite stop|warn]
                     [--log csv] [--log tensorboard] [--no-progress] [--no-compile-cache]
    purejaxppo train --resume runs/NAME [--no-progress] [--checkpoint-every ...] [--log ...]
    purejaxppo evaluate --run runs/NAME [--episodes 100] [--stochastic] [--no-compile-cache]
    purejaxppo plot runs/A runs/B ... [--metric episode_return] [--out FILE.png]

Every ``PPOConfig`` field is a flag (``--lr 1e-3``, ``--normalize-obs true``,
``--hidden-sizes 128,128``, ``--target-kl none``), its parser derived from the field's type;
flags override the config file (PureJaxRL's UPPERCASE keys work there too; YAML floats
follow YAML 1.2, so ``lr: 1e-3`` is a number), which overrides the defaults; the merged
values are validated once. A run folder (:mod:`purejaxppo.runs`) holds ``config.json`` and
``run.json`` from the start, periodic ``checkpoints/`` and streamed logs while it trains,
and ``metrics.npz`` (every metric, ``[seeds, updates]``), ``summary.json``,
``learning_curve.png`` and ``checkpoint/`` (the whole final training state, for
``evaluate``) at the end. ``--resume`` continues a run from its newest complete
checkpoint, bit-identically. Bad input is one line on stderr and exit code 2; a run the
divergence guard stops exits with code 3.

Compiled programs are kept in JAX's persistent compilation cache (see
:mod:`purejaxppo.compile_cache`; ``--no-compile-cache`` turns it off), so a second run of
the same config loads them instead of compiling. A program with a host callback is
never cached, so training runs as a few dozen calls of ``run_many``
(:func:`purejaxppo.runs.chunk_plan`) and the progress, logs, guard and checkpoints happen
on the host between them, not from inside the program; chunked or not, the results are
bit-identical (``Trainer.run``'s guarantee).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

DEFAULT_SEEDS = 4


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


class UsageError(ValueError):
    """Bad input found after parsing: one line on stderr, exit 2."""


def _parse_bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse_int(text: str) -> int | float:
    """An int; a whole number in float syntax is that int (``5e5`` -> 500000). Any other
    number comes back as a float, for ``PPOConfig`` to refuse naming the field."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    return int(number) if number.is_integer() else number


def _parse_devices(text: str) -> int | str:
    if text == "all":
        return text
    try:
        return _parse_positive_int(text)
    except argparse.ArgumentTypeError:
        message = f"expected 'all' or a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def _parse_positive_int(text: str) -> int:
    value = _parse_int(text)
    if not isinstance(value, int) or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _parse_int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _parse_str(text: str) -> str:
    return text


# Field type -> (text -> value, metavar). A field of type ``X | None`` also takes "none".
_PARSERS: dict[Any, tuple[Callable[[str], Any], str]] = {
    bool: (_parse_bool, "true|false"),
    int: (_parse_int, "INT"),
    float: (_parse_float, "FLOAT"),
    str: (_parse_str, "NAME"),
    tuple[int, ...]: (_parse_int_tuple, "INT,INT,..."),
}


def _field_parser(name: str, annotation: Any) -> tuple[Callable[[str], Any], str, bool]:
    """``(text -> value, metavar, optional)`` for the PPOConfig field ``name`` of type
    ``annotation`` (resolved, from ``typing.get_type_hints``; ``PPOConfig`` validates the
    value). ``optional``: the type is ``X | None`` and the text "none" gives None.

    Raises ``TypeError`` naming the field for a type the command line cannot parse.
    """
    members = typing.get_args(annotation)
    optional = (
        typing.get_origin(annotation) in (typing.Union, types.UnionType)
        and len(members) == 2
        and type(None) in members
    )
    if optional:
        annotation = next(member for member in members if member is not type(None))
    try:
        parse, metavar = _PARSERS[annotation]
    except (KeyError, TypeError):  # TypeError: an unhashable annotation
        raise TypeError(
            f"PPOConfig field {name!r} has type {annotation!r}, which the command line "
            "cannot parse; supported: bool, int, float, str, tuple[int, ...] and X | None "
            "of these (add a parser to purejaxppo.cli._PARSERS)"
        ) from None
    if not optional:
        return parse, metavar, False

    def parse_optional(text: str) -> Any:
        return None if text.lower() == "none" else parse(text)

    return parse_optional, metavar, True


def build_parser() -> argparse.ArgumentParser:
    from purejaxppo.config import PPOConfig

    parser = _Parser(prog="purejaxppo", description="Train, evaluate and compare PPO runs.")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    train = commands.add_parser("train", help="train vmapped seeds and save a run folder")
    # Field flags default to "not given" (absent from the namespace), so a flag can also set
    # a field to None (`--target-kl none`) over a config file's value.
    train.add_argument(
        "--env",
        dest="env_name",
        default=argparse.SUPPRESS,
        metavar="NAME",
        help="env name: gymnax, or a suite's with its prefix (brax:ant); default CartPole-v1",
    )
    # run-defining flags default to "not given" too, so --resume can refuse them
    suppress = argparse.SUPPRESS
    train.add_argument(
        "--seeds",
        type=int,
        default=suppress,
        help=f"seeds trained at once (default {DEFAULT_SEEDS})",
    )
    train.add_argument(
        "--seed", type=int, default=suppress, help="base seed: keys are split from it (default 0)"
    )
    train.add_argument(
        "--config", type=Path, default=suppress, help="a .json or .yaml file of PPOConfig fields"
    )
    train.add_argument(
        "--out", type=Path, default=suppress, help="run folder (default runs/ENV_TIME)"
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    long_runs = train.add_argument_group("long runs")
    long_runs.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue the run in this folder from its newest checkpoint, with its own config",
    )
    long_runs.add_argument(
        "--checkpoint-every",
        type=_parse_positive_int,
        default=suppress,
        metavar="UPDATES",
        help="save the whole state every UPDATES updates (default: only at the end)",
    )
    long_runs.add_argument(
        "--checkpoint-every-s",
        type=_parse_float,
        default=suppress,
        metavar="SECONDS",
        help="also save when SECONDS have passed since the last save",
    )
    long_runs.add_argument(
        "--keep-checkpoints",
        type=_parse_positive_int,
        default=suppress,
        metavar="N",
        help="how many of the newest periodic checkpoints to keep (default 3)",
    )
    long_runs.add_argument(
        "--on-nonfinite",
        choices=("stop", "warn"),
        default=suppress,
        help="when a loss, the gradient norm or the parameters become NaN or infinite: stop "
        "(default; exit code 3, the last good checkpoint kept) or warn and go on",
    )
    long_runs.add_argument(
        "--log",
        action="append",
        choices=("csv", "tensorboard"),
        default=suppress,
        help="stream the metrics to log.csv or tensorboard/ while training (repeatable)",
    )
    scale = train.add_argument_group("devices and hosts")
    scale.add_argument(
        "--devices",
        type=_parse_devices,
        default=suppress,
        metavar="all|N",
        help="split the seeds over all (or N) devices of all processes (default: one device)",
    )
    scale.add_argument(
        "--vmap-width",
        type=_parse_positive_int,
        default=suppress,
        metavar="W",
        help="with --devices, compute each device's seeds W at a time: results are then "
        "bit-identical for any device count (default: all at once)",
    )
    scale.add_argument(
        "--split",
        choices=("seeds", "envs"),
        default=suppress,
        help="with --devices, what the devices split: the seeds (independent runs, default) "
        "or every seed's envs (one agent, data parallel: gradients averaged over devices)",
    )
    scale.add_argument(
        "--coordinator", metavar="HOST:PORT", help="process 0's address, for several processes"
    )
    scale.add_argument("--num-processes", type=_parse_positive_int, metavar="N")
    scale.add_argument("--process-id", type=int, metavar="I", help="this process, 0 to N-1")
    _add_compile_cache_flag(train)
    fields = train.add_argument_group("PPOConfig fields (override --config)")
    types_ = typing.get_type_hints(PPOConfig)
    for field in dataclasses.fields(PPOConfig):
        parse, metavar, optional = _field_parser(field.name, types_[field.name])
        if field.name == "env_name":
            continue
        fields.add_argument(
            f"--{field.name.replace('_', '-')}",
            dest=field.name,
            type=parse,
            default=argparse.SUPPRESS,
            metavar=metavar,
            help=f"default {field.default!r}" + ("; none for None" if optional else ""),
        )

    evaluate = commands.add_parser("evaluate", help="evaluate a saved run's final policies")
    evaluate.add_argument("--run", type=Path, required=True, help="a folder written by train")
    evaluate.add_argument("--episodes", type=int, default=100, help="episodes per seed")
    evaluate.add_argument(
        "--stochastic", action="store_true", help="sample actions (default: the mode)"
    )
    _add_compile_cache_flag(evaluate)

    plot = commands.add_parser("plot", help="draw runs' learning curves on one figure")
    plot.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders")
    plot.add_argument(
        "--metric", default="episode_return", help="the metric to draw (default episode_return)"
    )
    plot.add_argument("--out", type=Path, help="the PNG to write (default compare_METRIC.png)")
    return parser


def _add_compile_cache_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="compile from scratch and keep nothing: no persistent compilation cache "
        "(default: the cache in $PUREJAXPPO_COMPILE_CACHE, else ~/.cache/purejaxppo/jax-compile)",
    )


def _compile_cache(args: argparse.Namespace) -> Any:
    """The persistent compilation cache for a command: its default folder, or off with
    ``--no-compile-cache`` or when that folder cannot be created (said on stderr); the
    caller's settings come back after the command."""
    from purejaxppo.compile_cache import compile_cache_scope, default_cache_dir

    folder = None if args.no_compile_cache else default_cache_dir()
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            print(
                f"warning: no compilation cache ({error}); set PUREJAXPPO_COMPILE_CACHE to a "
                "writable folder, or pass --no-compile-cache",
                file=sys.stderr,
            )
            folder = None
    return compile_cache_scope(folder)


def _yaml_loader() -> type:
    """PyYAML's SafeLoader, plus YAML 1.2's float syntax: ``1e-3``, ``5e5`` and ``-2E+4`` are
    floats (YAML 1.1, which PyYAML implements, needs a dot and a signed exponent, so it
    reads them as strings). Everything else is SafeLoader's YAML 1.1."""
    import yaml

    class Yaml12FloatLoader(yaml.SafeLoader):
        pass

    Yaml12FloatLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)$"),
        list("-+.0123456789"),
    )
    return Yaml12FloatLoader


def _load_config_file(path: Path) -> dict[str, Any]:
    """A ``--config`` file's mapping (JSON, or YAML with YAML 1.2 floats), not validated."""
    if not path.is_file():
        raise UsageError(f"--config {path}: no such file")
    if path.suffix not in (".json", ".yaml", ".yml"):
        raise UsageError(f"--config {path}: expected a .json, .yaml or .yml file")
    text = path.read_text()
    if path.suffix == ".json":
        parse, errors = json.loads, (json.JSONDecodeError,)
    else:
        import yaml

        loader = _yaml_loader()  # a SafeLoader: builds no arbitrary objects
        parse, errors = (lambda text: yaml.load(text, Loader=loader)), (yaml.YAMLError,)
    try:
        data = parse(text)
    except errors as error:
        raise UsageError(f"--config {path}: cannot parse: {error}".splitlines()[0]) from error
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: expected a mapping of config fields")
    return data


def resolve_config(args: argparse.Namespace) -> Any:
    """Defaults < config file < flags, validated once by ``PPOConfig`` after merging.

    The file's keys are mapped to field names as ``PPOConfig.from_dict`` maps them
    (PureJaxRL's UPPERCASE keys, ``NORMALIZE_ENV``) but not validated on their own, so flags
    can fix a file that is invalid by itself (``--num-minibatches 2``).
    """
    from purejaxppo.config import PPOConfig, map_config_keys

    values: dict[str, Any] = {}
    config_file = getattr(args, "config", None)
    if config_file is not None:
        values.update(map_config_keys(_load_config_file(config_file)))
    flags = vars(args)
    for field in dataclasses.fields(PPOConfig):
        if field.name in flags:  # given on the command line (absent otherwise)
            values[field.name] = flags[field.name]
    return PPOConfig.from_dict(values)


# Flags that define what a run trains: refused with --resume (the run keeps its own).
_RUN_DEFINING_FLAGS = {"seeds": "--seeds", "seed": "--seed", "config": "--config", "out": "--out"}


# the run options a resume may change (purejaxppo.runs.RESUMABLE_OPTIONS); cli imports
# nothing heavy at module level, so they are read when needed
def _run_option_flags() -> tuple[str, ...]:
    from purejaxppo.runs import RESUMABLE_OPTIONS

    return RESUMABLE_OPTIONS


def _given(args: argparse.Namespace, name: str) -> bool:
    """Whether the flag of ``name`` was on the command line (absent from ``args`` if not)."""
    return name in vars(args)


def _run_options(args: argparse.Namespace, saved: Any = None) -> Any:
    """The run's options: ``saved`` (a resumed run's) or the defaults, then the flags."""
    from purejaxppo.runs import RunOptions

    values = dataclasses.asdict(saved if saved is not None else RunOptions())
    for name in ("seeds", "seed", *_run_option_flags()):
        if _given(args, name):
            values[name] = getattr(args, name)
    values["log"] = tuple(values["log"])
    return RunOptions(**values)


def _refuse_run_flags_on_resume(args: argparse.Namespace) -> None:
    from purejaxppo.config import PPOConfig

    changing = [flag for name, flag in _RUN_DEFINING_FLAGS.items() if _given(args, name)]
    changing += [
        "--" + field.name.replace("_", "-") if field.name != "env_name" else "--env"
        for field in dataclasses.fields(PPOConfig)
        if _given(args, field.name)
    ]
    if changing:
        option_flags = ["--" + name.replace("_", "-") for name in _run_option_flags()]
        allowed = ", ".join(["--no-progress", "--no-compile-cache", *option_flags])
        raise UsageError(
            f"--resume continues {args.resume} with its own config and seeds; "
            f"{' '.join(changing)} would change the run (allowed with --resume: {allowed})"
        )


def _join_processes(args: argparse.Namespace) -> None:
    """``jax.distributed.initialize`` from the multi-host flags (or their environment
    variables), before anything starts a JAX backend."""
    from purejaxppo import parallel

    flags = (args.coordinator, args.num_processes, args.process_id)
    variables = (parallel.COORDINATOR_ENV, parallel.NUM_PROCESSES_ENV, parallel.PROCESS_ID_ENV)
    if all(flag is None for flag in flags) and not any(v in os.environ for v in variables):
        return
    try:
        parallel.initialize(*flags)
    except ValueError as error:
        raise UsageError(str(error)) from error


def train_command(args: argparse.Namespace) -> int:
    command_start = time.perf_counter()
    _join_processes(args)
    import jax
    import numpy as np

    from purejaxppo import parallel, runs
    from purejaxppo.guard import describe
    from purejaxppo.progress import ProgressBar
    from purejaxppo.train import make_trainer

    resume = None
    primary = jax.process_index() == 0
    try:
        if args.resume is not None:
            _refuse_run_flags_on_resume(args)
            out = args.resume
            config, saved_options = runs.read_run_folder(out)
            options = _run_options(args, saved_options)
            resume = runs.find_resume(out, config, options.seeds)
        else:
            options = _run_options(args)
            config = resolve_config(args)
        data_parallel = options.split == "envs"
        if data_parallel and options.devices is None:
            raise UsageError("--split envs needs --devices all (or N)")
        axis = parallel.DATA_AXIS if data_parallel else parallel.RUNS_AXIS
        mesh = None if options.devices is None else parallel.device_mesh(options.devices, axis)
        if mesh is None and jax.process_count() > 1:
            raise UsageError("a run of several processes needs --devices all (or N)")
        if mesh is not None and not data_parallel:
            per_device = parallel.runs_per_device(options.seeds, mesh)
            if options.vmap_width is not None and per_device % options.vmap_width:
                raise UsageError(
                    f"--vmap-width {options.vmap_width} does not divide the {per_device} "
                    f"seeds each of the {mesh.devices.size} devices holds"
                )
        if jax.process_count() > 1 and options.checkpoint_every_s is not None:
            raise UsageError(
                "--checkpoint-every-s is not available with several processes (their clocks "
                "would disagree on when to save); use --checkpoint-every"
            )
        # no callback in the program: it can be cached
        if data_parallel:
            trainer = parallel.make_data_parallel_trainer(config, mesh)
        else:
            trainer = make_trainer(config)
        if resume is None:
            run_name = config.env_name.replace(":", "-")  # "brax:ant" -> "brax-ant"
            out = getattr(args, "out", None)
            if out is None:
                out = Path("runs") / f"{run_name}_{time.strftime('%Y%m%d-%H%M%S')}"
            if primary:
                runs.create_run_folder(out, config, options)
    except ValueError as error:  # invalid config values, unknown env, bad run folder
        raise UsageError(str(error)) from error
    placement = ""
    if mesh is not None:
        devices, processes = mesh.devices.size, jax.process_count()
        placement = f", {devices} device{'s' * (devices > 1)} in {processes} process"
        placement += "es" * (processes > 1)
        placement += ", envs split" if data_parallel else ""

    if resume is None:
        if primary:
            print(
                f"Training PPO on {config.env_name}: {options.seeds} seeds x "
                f"{config.trained_timesteps:,} steps ({jax.default_backend()}{placement}) "
                f"-> {out}",
                flush=True,
            )
        keys = jax.random.split(jax.random.key(options.seed), options.seeds)
        if data_parallel:  # the same keys in every process, one global array
            keys = parallel.place(keys, parallel.replicated(mesh))
        state = jax.jit(trainer.init_many)(keys)
    else:
        for problem in resume.skipped:
            print(f"warning: skipped a checkpoint: {problem}", file=sys.stderr)
        try:
            state = runs.load_resumed_state(trainer, resume, options.seeds)
        except ValueError as error:
            raise UsageError(str(error)) from error
        if data_parallel:  # host copies onto the mesh: envs split, the rest replicated
            state = parallel.place(state, parallel.data_parallel_shardings(mesh, state, 1))
        if primary:
            for moved in runs.clean_up_for_resume(out, resume):
                print(
                    f"warning: moved the unreadable checkpoint out of the way: {moved}",
                    file=sys.stderr,
                )
            runs.write_run_file(out, options, _version())
            print(
                f"Resuming PPO on {config.env_name} in {out} from update {resume.update} of "
                f"{config.num_updates} ({resume.checkpoint.name}; {jax.default_backend()}"
                f"{placement})",
                flush=True,
            )
    start_update = 0 if resume is None else resume.update

    progress = None
    if not args.no_progress and primary:
        progress = ProgressBar(config.num_updates, f"PPO {config.env_name}")

    def on_chunk(done: int, chunk: dict[str, Any]) -> None:
        if progress is not None:
            returns = chunk["episode_return"]
            finished = np.isfinite(returns).any(axis=0)
            latest = returns[:, np.flatnonzero(finished)[-1]] if finished.any() else returns[:, -1]
            progress({"update": done - 1, "episode_return": latest})

    try:
        result = runs.train_in_chunks(
            trainer,
            state,
            out,
            options,
            start_update,
            None if resume is None else resume.metrics,
            None if resume is None else resume.checkpoint,
            on_chunk,
            mesh=None if data_parallel else mesh,  # a data-parallel trainer places itself
        )
    except ValueError as error:  # a log that cannot be opened (its extra missing)
        raise UsageError(str(error)) from error
    startup_s = result.started_at - command_start  # to the first update: compiling included
    metrics = result.metrics
    if result.diverged is not None:
        if not primary:
            return 3
        np.savez_compressed(out / runs.METRICS_FILE, **metrics)
        where = describe(result.diverged, options.seeds, options.seed)
        kept = (
            f"the last good checkpoint is {result.last_checkpoint}"
            if result.last_checkpoint is not None
            else "no checkpoint was saved (--checkpoint-every K saves one every K updates)"
        )
        message = f"training diverged at {where}; {kept}; metrics so far in {out}/metrics.npz"
        print(f"error: {message}", file=sys.stderr)
        return 3
    save_start = time.perf_counter()
    runs.save_final_checkpoint(out, result.state, config)
    save_s = result.save_s + time.perf_counter() - save_start
    if not primary:
        return 0
    return _finish_run(args, out, config, options, metrics, result, start_update, startup_s, save_s)


def _version() -> str:
    from purejaxppo import __version__

    return __version__


def _finish_run(
    args: argparse.Namespace,
    out: Path,
    config: Any,
    options: Any,
    metrics: dict[str, Any],
    result: Any,
    start_update: int,
    startup_s: float,
    save_s: float,
) -> int:
    """Write the metrics, the summary and the learning curve of a finished run; print it."""
    import jax
    import numpy as np

    from purejaxppo.stats import learning_curve, summarize
    from purejaxppo.train import final_return

    seeds = options.seeds
    scores = final_return(metrics["episode_return"])
    finished = np.isfinite(scores)
    summary = summarize(scores) if finished.all() else None
    trained_here = (config.num_updates - start_update) * config.batch_size  # per seed
    sps = seeds * trained_here / result.run_s
    np.savez_compressed(out / "metrics.npz", **metrics)
    report = {
        "env_name": config.env_name,
        "seeds": seeds,
        "base_seed": options.seed,
        "trained_timesteps": config.trained_timesteps,
        "final_return": scores.tolist(),
        "summary": summary._asdict() if summary else None,
        "startup_s": startup_s,
        "compile_s": result.compile_s,
        "run_s": result.run_s,
        "checkpoint_s": save_s,
        "checkpoints_saved": result.saves,
        "resumed_from_update": start_update or None,
        "env_steps_per_s": sps,
        "compile_cache": args.compile_cache,
        "devices": {None: 1, "all": jax.device_count()}.get(options.devices, options.devices),
        "processes": jax.process_count(),
        "vmap_width": options.vmap_width,
        "split": options.split if options.devices is not None else None,
        "backend": jax.default_backend(),
        "jax": jax.__version__,
    }
    (out / "summary.json").write_text(json.dumps(report, indent=2) + "\n")
    curve = learning_curve(metrics["episode_return"], metrics["env_steps"][0])
    _plot(curve, seeds, f"PPO on {config.env_name}", out / "learning_curve.png")

    print(
        f"\n{'env':<20} {'seeds':>5} {'final return':>12} {'IQM':>9} {'95% CI':>21} "
        f"{'steps/s':>11} {'compile':>8} {'run':>8}"
    )
    if summary is None:  # not an error: the run is saved, it was just too short to score
        mean = iqm = float("nan")
        ci = f"no episode ended ({int((~finished).sum())} seed(s))"
    else:
        mean, iqm, ci = summary.mean, summary.iqm, f"[{summary.ci_low:.1f}, {summary.ci_high:.1f}]"
    print(
        f"{config.env_name:<20} {seeds:>5} {mean:>12.1f} {iqm:>9.1f} "
        f"{ci:>21} {sps:>11,.0f} {result.compile_s:>7.1f}s {result.run_s:>7.1f}s"
    )
    print("per seed: " + " ".join(f"{score:.1f}" for score in scores))
    written = "config.json run.json metrics.npz summary.json learning_curve.png checkpoint/"
    for extra in ("checkpoints/", "log.csv", "tensorboard/"):
        if (out / extra.rstrip("/")).exists():
            written += f" {extra}"
    print(f"wrote {out}/: {written}")
    return 0


def _plot(curve: dict[str, list], seeds: int, title: str, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib not installed: no learning_curve.png", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from purejaxppo.plotting import draw_curve

    fig, ax = plt.subplots(figsize=(6, 4))
    draw_curve(ax, curve, seeds, title)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate_command(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    from purejaxppo.checkpoint import CheckpointError, load_checkpoint
    from purejaxppo.config import PPOConfig
    from purejaxppo.evaluate import evaluate
    from purejaxppo.stats import summarize
    from purejaxppo.train import make_trainer

    if args.episodes < 1:
        raise UsageError(f"--episodes must be a positive integer, got {args.episodes}")
    if not (args.run / "summary.json").is_file():
        raise UsageError(f"--run {args.run} is not a run folder written by 'purejaxppo train'")
    try:
        config = PPOConfig.from_dict(json.loads((args.run / "config.json").read_text()))
        seeds = json.loads((args.run / "summary.json").read_text())["seeds"]
        trainer = make_trainer(config)
    except (ValueError, KeyError, OSError) as error:
        raise UsageError(f"--run {args.run}: unreadable run folder: {error}") from error
    try:
        state = load_checkpoint(args.run / "checkpoint", trainer, batch_shape=(seeds,))
    except CheckpointError as error:
        raise UsageError(str(error)) from error
    output = trainer.output(state, {})

    def evaluate_seed(out, key):
        return evaluate(out, config, key, args.episodes, deterministic=not args.stochastic)

    keys = jax.random.split(jax.random.key(1), seeds)
    result = jax.jit(jax.vmap(evaluate_seed))(output, keys)
    per_seed = np.asarray(result.episode_return).mean(axis=1)
    summary = summarize(per_seed)
    mode = "sampled" if args.stochastic else "greedy"
    print(
        f"{config.env_name}: {seeds} seeds x {args.episodes} {mode} episodes: mean return "
        f"{summary.mean:.1f}, IQM {summary.iqm:.1f}, 95% CI [{summary.ci_low:.1f}, "
        f"{summary.ci_high:.1f}], mean length {float(np.mean(result.episode_length)):.1f}"
    )
    print("per seed: " + " ".join(f"{score:.1f}" for score in per_seed))
    report = {
        "episodes_per_seed": args.episodes,
        "deterministic": not args.stochastic,
        "mean_return_per_seed": per_seed.tolist(),
        "summary": summary._asdict(),
        "episode_return": np.asarray(result.episode_return).tolist(),
        "episode_length": np.asarray(result.episode_length).tolist(),
    }
    (args.run / f"eval_{mode}.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _run_metrics(run: Path) -> tuple[dict[str, Any], str]:
    """A run folder's metrics (``metrics.npz`` when it has finished, else its newest
    checkpoint's, for a run still training or killed) and its env name."""
    import io

    import numpy as np

    from purejaxppo.checkpoint import CheckpointError, newest_checkpoint, read_extra_file
    from purejaxppo.runs import CHECKPOINTS, METRICS_FILE

    if not (run / "config.json").is_file():
        raise UsageError(f"{run} is not a run folder written by 'purejaxppo train'")
    env_name = json.loads((run / "config.json").read_text()).get("env_name", "?")
    if (run / METRICS_FILE).is_file():
        data = np.load(run / METRICS_FILE)
    else:
        try:
            path, _, _ = newest_checkpoint(run / CHECKPOINTS)
            data = np.load(io.BytesIO(read_extra_file(path, METRICS_FILE)))
        except CheckpointError as error:
            raise UsageError(f"{run}: no metrics.npz and {error}") from error
    return {name: data[name] for name in data.files}, env_name


def plot_command(args: argparse.Namespace) -> int:
    """Learning curves of several runs on one figure: per run the mean over its seeds and
    a 95% bootstrap band of that mean, against environment steps."""
    from purejaxppo.stats import learning_curve

    loaded = [(run, *_run_metrics(run)) for run in args.runs]
    for run, metrics, _ in loaded:
        if args.metric not in metrics:
            available = ", ".join(sorted(name for name in metrics if name != "env_steps"))
            raise UsageError(
                f"--metric {args.metric}: {run} has no such metric; it has {available}"
            )
    try:
        import matplotlib
    except ImportError as error:
        raise UsageError('plot needs matplotlib: pip install "purejaxppo[notebooks]"') from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from purejaxppo.plotting import draw_curve

    out = args.out or Path(f"compare_{args.metric}.png")
    envs = sorted({env_name for _, _, env_name in loaded})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, (run, metrics, _) in enumerate(loaded):
        curve = learning_curve(metrics[args.metric], metrics["env_steps"][0])
        seeds = metrics[args.metric].shape[0]
        label = run.name or str(run)
        ylabel = args.metric.replace("_", " ")
        draw_curve(ax, curve, seeds, ", ".join(envs), f"C{index % 10}", label, ylabel)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}: {args.metric} of {len(loaded)} run(s) against environment steps")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["train", *argv]  # `python -m purejaxppo [--flags]` trains
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "plot":
            return plot_command(args)
        with _compile_cache(args) as cache_dir:
            args.compile_cache = None if cache_dir is None else str(cache_dir)
            if args.command == "evaluate":
                return evaluate_command(args)
            return train_command(args)
    except UsageError as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
