"""The command line: ``purejaxppo train`` and ``purejaxppo evaluate``.

Also ``python -m purejaxppo``; with no command (or only flags) it trains.

    purejaxppo train [--env CartPole-v1] [--seeds 4] [--seed 0] [--total-timesteps 5e5]
                     [--config FILE.json|.yaml] [--FIELD VALUE ...] [--out runs/NAME]
                     [--no-progress] [--no-compile-cache]
    purejaxppo evaluate --run runs/NAME [--episodes 100] [--stochastic] [--no-compile-cache]

Every ``PPOConfig`` field is a flag (``--lr 1e-3``, ``--normalize-obs true``,
``--hidden-sizes 128,128``, ``--target-kl none``), its parser derived from the field's type;
flags override the config file (PureJaxRL's UPPERCASE keys work there too; YAML floats
follow YAML 1.2, so ``lr: 1e-3`` is a number), which overrides the defaults; the merged
values are validated once. A run folder holds ``config.json``, ``metrics.npz`` (every metric,
``[seeds, updates]``), ``summary.json``, ``learning_curve.png`` and ``checkpoint/``
(the whole final training state, for ``evaluate`` or for resuming). Bad input is one
line on stderr and exit code 2.

Compiled programs are kept in JAX's persistent compilation cache (see
:mod:`purejaxppo.compile_cache`; ``--no-compile-cache`` turns it off), so a second run of
the same config loads them instead of compiling. A program with a host callback is
never cached, so training runs as a few dozen calls of ``run_many`` (:func:`chunk_lengths`)
and the progress is reported from the host between them, not from inside the program;
chunked or not, the results are bit-identical (``Trainer.run``'s guarantee).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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

    parser = _Parser(prog="purejaxppo", description="Train and evaluate PPO on gymnax envs.")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    train = commands.add_parser("train", help="train vmapped seeds and save a run folder")
    # Field flags default to "not given" (absent from the namespace), so a flag can also set
    # a field to None (`--target-kl none`) over a config file's value.
    train.add_argument(
        "--env",
        dest="env_name",
        default=argparse.SUPPRESS,
        metavar="NAME",
        help="gymnax env name (default CartPole-v1)",
    )
    train.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help="seeds trained at once")
    train.add_argument("--seed", type=int, default=0, help="base seed: keys are split from it")
    train.add_argument("--config", type=Path, help="a .json or .yaml file of PPOConfig fields")
    train.add_argument("--out", type=Path, help="run folder (default runs/ENV_TIME)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
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


TARGET_CHUNKS = 25  # progress reports per run, about


def chunk_lengths(num_updates: int, target_chunks: int = TARGET_CHUNKS) -> list[int]:
    """How many updates each call of ``run_many`` does, summing to ``num_updates``.

    About ``target_chunks`` calls of one length ``c`` (one compiled program): ``c`` is
    the largest divisor of ``num_updates`` up to ``num_updates // target_chunks``, unless
    that is below a quarter of it (``num_updates`` prime, say); then the calls have that
    length and one last, shorter call does the rest (a second program).
    """
    if num_updates < 1:
        raise ValueError(f"num_updates must be a positive integer, got {num_updates}")
    longest = max(1, num_updates // target_chunks)
    divisor = max(d for d in range(1, longest + 1) if num_updates % d == 0)
    if 4 * divisor >= longest:
        return [divisor] * (num_updates // divisor)
    full, rest = divmod(num_updates, longest)
    return [longest] * full + ([rest] if rest else [])


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
    if args.config is not None:
        values.update(map_config_keys(_load_config_file(args.config)))
    flags = vars(args)
    for field in dataclasses.fields(PPOConfig):
        if field.name in flags:  # given on the command line (absent otherwise)
            values[field.name] = flags[field.name]
    return PPOConfig.from_dict(values)


def train_command(args: argparse.Namespace) -> int:
    command_start = time.perf_counter()
    import jax
    import numpy as np

    from purejaxppo.checkpoint import save_checkpoint
    from purejaxppo.progress import ProgressBar
    from purejaxppo.stats import learning_curve, summarize
    from purejaxppo.train import final_return, make_trainer

    if args.seeds < 1:
        raise UsageError(f"--seeds must be a positive integer, got {args.seeds}")
    try:
        config = resolve_config(args)
        trainer = make_trainer(config)  # no callback in the program: it can be cached
    except ValueError as error:  # invalid config values, unknown env
        raise UsageError(str(error)) from error
    run_name = config.env_name.replace(":", "-")  # "brax:ant" -> "brax-ant"
    out = args.out or Path("runs") / f"{run_name}_{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--out {out} exists and is not empty; pick a new run folder")
    keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    print(
        f"Training PPO on {config.env_name}: {args.seeds} seeds x "
        f"{config.trained_timesteps:,} steps ({jax.default_backend()}) -> {out}",
        flush=True,
    )
    lengths = chunk_lengths(config.num_updates)

    start = time.perf_counter()
    state = jax.jit(trainer.init_many)(keys)
    run_many = jax.jit(trainer.run_many, static_argnums=1)
    runs = {n: run_many.lower(state, n).compile() for n in sorted(set(lengths))}
    compile_s = time.perf_counter() - start  # init's compile and run, run_many's compile

    progress = None
    if not args.no_progress:
        progress = ProgressBar(config.num_updates, f"PPO {config.env_name}")
    start = time.perf_counter()
    startup_s = start - command_start  # imports, config, compilation (or cache loads), init
    chunks: list[dict[str, jax.Array]] = []
    for length in lengths:
        state, chunk = runs[length](state)  # dispatched: runs while the host reports
        if progress is not None:
            _report(progress, chunks, lengths)
        chunks.append(chunk)
    state = jax.block_until_ready(state)
    run_s = time.perf_counter() - start
    if progress is not None:
        _report(progress, chunks, lengths)
    metrics = {
        name: np.concatenate([np.asarray(chunk[name]) for chunk in chunks], axis=1)
        for name in chunks[0]
    }
    scores = final_return(metrics["episode_return"])
    finished = np.isfinite(scores)
    summary = summarize(scores) if finished.all() else None
    sps = args.seeds * config.trained_timesteps / run_s
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    np.savez_compressed(out / "metrics.npz", **metrics)
    save_checkpoint(out / "checkpoint", state, config)
    report = {
        "env_name": config.env_name,
        "seeds": args.seeds,
        "base_seed": args.seed,
        "trained_timesteps": config.trained_timesteps,
        "final_return": scores.tolist(),
        "summary": summary._asdict() if summary else None,
        "startup_s": startup_s,
        "compile_s": compile_s,
        "run_s": run_s,
        "env_steps_per_s": sps,
        "compile_cache": args.compile_cache,
        "backend": jax.default_backend(),
        "jax": jax.__version__,
    }
    (out / "summary.json").write_text(json.dumps(report, indent=2) + "\n")
    curve = learning_curve(metrics["episode_return"], metrics["env_steps"][0])
    _plot(curve, args.seeds, f"PPO on {config.env_name}", out / "learning_curve.png")

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
        f"{config.env_name:<20} {args.seeds:>5} {mean:>12.1f} {iqm:>9.1f} "
        f"{ci:>21} {sps:>11,.0f} {compile_s:>7.1f}s {run_s:>7.1f}s"
    )
    print("per seed: " + " ".join(f"{score:.1f}" for score in scores))
    print(f"wrote {out}/: config.json metrics.npz summary.json learning_curve.png checkpoint/")
    return 0


def _report(progress: Any, chunks: list[dict[str, Any]], lengths: list[int]) -> None:
    """Show the last finished chunk of ``chunks`` (metrics ``[seeds, length]``) on the
    progress bar: the updates done and their last episode return."""
    import numpy as np

    if not chunks:
        return
    done = sum(lengths[: len(chunks)])
    returns = np.asarray(chunks[-1]["episode_return"])  # waits for that chunk only
    finished = np.isfinite(returns).any(axis=0)
    latest = returns[:, np.flatnonzero(finished)[-1]] if finished.any() else returns[:, -1]
    progress({"update": done - 1, "episode_return": latest})


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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["train", *argv]  # `python -m purejaxppo [--flags]` trains
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _compile_cache(args) as cache_dir:
            args.compile_cache = None if cache_dir is None else str(cache_dir)
            if args.command == "evaluate":
                return evaluate_command(args)
            return train_command(args)
    except UsageError as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
