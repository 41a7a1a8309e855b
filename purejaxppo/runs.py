"""Run folders that survive: training in chunks with periodic checkpoints, resuming after
a crash, the divergence guard and streamed logs. The command line's ``train`` is built
on this; the library's Python API (``make_train``, ``Trainer``) does not depend on it.

A run folder holds, from its start, ``config.json`` (the ``PPOConfig``) and ``run.json``
(the seeds and the run options below). While it trains: ``checkpoints/update-<N>/``
(the whole state after ``N`` updates and the metrics so far, written atomically, the
last ``keep_checkpoints`` kept) and the logs (:mod:`purejaxppo.logging`). When it ends:
``metrics.npz``, ``summary.json``, ``learning_curve.png`` and ``checkpoint/`` (the final
state).

Resuming loads the newest complete checkpoint with the run's own config and seeds and
trains the remaining updates; ``Trainer.run``'s guarantee (chunked or not, the same
bits) makes the parameters and metrics of a resumed run bit-identical to an
uninterrupted one on the same machine and software.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from purejaxppo.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    newest_checkpoint,
    read_extra_file,
    save_checkpoint,
    save_in_series,
    series_checkpoints,
    series_path,
)
from purejaxppo.config import PPOConfig
from purejaxppo.guard import NonFinite, describe, finite_parameters, first_nonfinite
from purejaxppo.logging import LOG_FORMATS, open_logs

RUN_FILE = "run.json"
RUN_FORMAT = 1  # the layout of a run folder and of run.json
CHECKPOINTS = "checkpoints"
FINAL_CHECKPOINT = "checkpoint"
METRICS_FILE = "metrics.npz"
TARGET_CHUNKS = 25  # progress reports per run, about
ON_NONFINITE = ("stop", "warn")


class RunError(ValueError):
    """A run folder that cannot be created or resumed as asked: one line for the user."""


SPLITS = ("seeds", "envs")  # what --devices split: independent runs, or one agent's envs


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a run folder trains, beyond its ``PPOConfig``.

    ``seeds`` / ``seed``: how many runs are vmapped, and the key they are split from (these
    define the run; a resume keeps them). ``checkpoint_every``: save after every that many
    updates (None: only at the end). ``checkpoint_every_s``: also save when that many
    seconds have passed since the last save (checked after each chunk). ``keep_checkpoints``:
    how many of the newest periodic checkpoints to keep. ``on_nonfinite``: ``"stop"`` the
    run when a loss, the gradient norm or the parameters become non-finite, or ``"warn"``
    and go on. ``log``: the logs to stream (:data:`purejaxppo.logging.LOG_FORMATS`).
    ``devices``: None trains on the default device (one program, as ``jax.jit``);
    ``"all"`` or ``N`` splits the seeds over a mesh of devices (:mod:`purejaxppo.parallel`).
    ``vmap_width``: on a mesh, compute each device's seeds this many at a time, which makes
    the results bit-identical for any number of devices (None: all at once). ``split``:
    what the devices split, the ``"seeds"`` (independent runs) or every seed's ``"envs"``
    (one agent data parallel, :func:`purejaxppo.parallel.make_data_parallel_trainer`).
    """

    seeds: int = 4
    seed: int = 0
    checkpoint_every: int | None = None
    checkpoint_every_s: float | None = None
    keep_checkpoints: int = 3
    on_nonfinite: str = "stop"
    log: tuple[str, ...] = ()
    devices: int | str | None = None
    vmap_width: int | None = None
    split: str = "seeds"

    def __post_init__(self) -> None:
        for name in ("seeds", "keep_checkpoints", "checkpoint_every", "vmap_width"):
            value = getattr(self, name)
            if value is None and name in ("checkpoint_every", "vmap_width"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                flag = "--" + name.replace("_", "-")
                raise RunError(f"{flag} must be a positive integer, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise RunError(f"--seed must be an integer, got {self.seed!r}")
        seconds = self.checkpoint_every_s
        if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
            raise RunError(f"--checkpoint-every-s must be a positive number, got {seconds!r}")
        if self.on_nonfinite not in ON_NONFINITE:
            raise RunError(
                f"--on-nonfinite must be one of {', '.join(ON_NONFINITE)}, "
                f"got {self.on_nonfinite!r}"
            )
        devices = self.devices
        if devices not in (None, "all") and (
            isinstance(devices, bool) or not isinstance(devices, int) or devices < 1
        ):
            raise RunError(f"--devices must be 'all' or a positive integer, got {devices!r}")
        if self.split not in SPLITS:
            raise RunError(f"--split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.split == "envs" and self.vmap_width is not None:
            raise RunError("--vmap-width splits seeds: it does not apply with --split envs")
        unknown = [name for name in self.log if name not in LOG_FORMATS]
        if unknown:
            raise RunError(f"--log {unknown[0]}: valid logs are {', '.join(LOG_FORMATS)}")
        object.__setattr__(self, "log", tuple(dict.fromkeys(self.log)))

    @property
    def checkpoints(self) -> bool:
        """Whether the run saves checkpoints while it trains."""
        return self.checkpoint_every is not None or self.checkpoint_every_s is not None


# What a resume may change: how the run is saved, logged and guarded, never what it trains.
RESUMABLE_OPTIONS = (
    "checkpoint_every",
    "checkpoint_every_s",
    "keep_checkpoints",
    "on_nonfinite",
    "log",
    "devices",
    "vmap_width",
    "split",
)


def chunk_plan(start: int, num_updates: int, checkpoint_every: int | None = None) -> list[int]:
    """How many updates each compiled call does, from update ``start`` to ``num_updates``.

    About :data:`TARGET_CHUNKS` calls per run (progress is reported between them) of one
    length ``c``, the largest divisor of ``checkpoint_every`` (when given) no longer than
    ``num_updates // TARGET_CHUNKS``, so that every multiple of ``checkpoint_every`` ends a
    call. Calls are aligned to multiples of ``c`` from update 0: after a resume from an
    update that is not one, a shorter first call realigns; a shorter last call does the
    rest. Without ``checkpoint_every`` from the start, this is :func:`chunk_lengths`.
    """
    if checkpoint_every is None and start == 0:
        return chunk_lengths(num_updates)
    longest = max(1, num_updates // TARGET_CHUNKS)
    if checkpoint_every is None:
        length = chunk_lengths(num_updates)[0]
    else:
        divisors = range(1, min(longest, checkpoint_every) + 1)
        length = max(d for d in divisors if checkpoint_every % d == 0)
    plan = []
    update = start
    if update % length:
        first = min(length - update % length, num_updates - update)
        plan.append(first)
        update += first
    full, rest = divmod(num_updates - update, length)
    return plan + [length] * full + ([rest] if rest else [])


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


# --- the folder ------------------------------------------------------------------------


def create_run_folder(out: Path, config: PPOConfig, options: RunOptions) -> None:
    """Write ``config.json`` and ``run.json`` into the new (or empty) folder ``out``."""
    from purejaxppo import __version__

    if out.exists() and any(out.iterdir()):
        raise RunError(f"--out {out} exists and is not empty; pick a new run folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    write_run_file(out, options, __version__)


def write_run_file(out: Path, options: RunOptions, version: str) -> None:
    """``run.json``: the formats this run folder is written in, the version that wrote it
    and its options (a resume rewrites it with the options it goes on with)."""
    run = {
        "run_format": RUN_FORMAT,
        "checkpoint_format": FORMAT_VERSION,
        "purejaxppo_version": version,
        "options": {**dataclasses.asdict(options), "log": list(options.log)},
    }
    (out / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n")


@dataclasses.dataclass(frozen=True)
class Resume:
    """Where a resumed run starts: its checkpoint, update count and metrics so far."""

    checkpoint: Path
    update: int
    metrics: dict[str, np.ndarray]
    skipped: tuple[str, ...]  # why newer checkpoints could not be used


def read_run_folder(folder: Path) -> tuple[PPOConfig, RunOptions]:
    """The config and options of the run folder ``folder``; :class:`RunError` if it is
    not one, or was written by an incompatible version."""
    if not (folder / RUN_FILE).is_file() or not (folder / "config.json").is_file():
        what = "no such folder" if not folder.is_dir() else f"no {RUN_FILE} and config.json"
        raise RunError(
            f"--resume {folder}: not a run folder written by 'purejaxppo train' ({what})"
        )
    try:
        run = json.loads((folder / RUN_FILE).read_text())
        saved = json.loads((folder / "config.json").read_text())
    except (json.JSONDecodeError, OSError) as error:
        raise RunError(f"--resume {folder}: unreadable run folder: {error}") from error
    made_by = run.get("purejaxppo_version", "an unknown version")
    if run.get("run_format") != RUN_FORMAT or run.get("checkpoint_format") != FORMAT_VERSION:
        raise RunError(
            f"--resume {folder}: written by purejaxppo {made_by} (run format "
            f"{run.get('run_format')}, checkpoint format {run.get('checkpoint_format')}); this "
            f"version resumes run format {RUN_FORMAT}, checkpoint format {FORMAT_VERSION}"
        )
    try:
        config = PPOConfig.from_dict(saved)
        options = dict(run["options"])
        options = RunOptions(**{**options, "log": tuple(options.get("log", ()))})
    except (ValueError, TypeError, KeyError) as error:
        raise RunError(
            f"--resume {folder}: its config or options do not fit this version (written by "
            f"purejaxppo {made_by}): {error}"
        ) from error
    return config, options


def find_resume(folder: Path, config: PPOConfig, seeds: int) -> Resume:
    """The newest complete checkpoint of the run in ``folder`` and its metrics;
    :class:`RunError` if the run has finished or has no usable checkpoint."""
    if (folder / "summary.json").is_file():
        raise RunError(f"--resume {folder}: the run has finished (summary.json); nothing to do")
    try:
        path, manifest, skipped = newest_checkpoint(folder / CHECKPOINTS)
        if PPOConfig.from_dict(manifest["config"]) != config:
            raise CheckpointError(f"{path} was written for another config than config.json")
        data = np.load(io.BytesIO(read_extra_file(path, METRICS_FILE)))
        metrics = {name: data[name] for name in data.files}
    except CheckpointError as error:
        hint = ""
        if "holds no checkpoint" in str(error):
            hint = " (was it started with --checkpoint-every?)"
        raise RunError(f"--resume {folder}: {error}{hint}".splitlines()[0]) from error
    update = int(manifest["update_index"])
    shapes = {value.shape for value in metrics.values()}
    if shapes != {(seeds, update)}:
        raise RunError(
            f"--resume {folder}: {path}'s metrics have shapes {shapes}, expected "
            f"({seeds}, {update})"
        )
    return Resume(path, update, metrics, tuple(skipped))


def clean_up_for_resume(folder: Path, resume: Resume) -> list[Path]:
    """Before a resume trains on: delete the temporary folders of saves a crash
    interrupted, and move the checkpoints newer than ``resume``'s (unreadable: they were
    skipped) out of the series, to ``unreadable-update-<N>``, kept for a look. Returns the
    folders moved."""
    for parent in (folder / CHECKPOINTS, folder):
        if parent.is_dir():
            for path in parent.glob(".*.tmp-*"):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
    moved = []
    for path in series_checkpoints(folder / CHECKPOINTS):
        if int(path.name.split("-")[1]) > resume.update:
            target = path.with_name(f"unreadable-{path.name}")
            if target.exists():
                shutil.rmtree(target)
            path.rename(target)
            moved.append(target)
    return moved


# --- training ----------------------------------------------------------------------------


@dataclasses.dataclass
class ChunkedRun:
    """What :func:`train_in_chunks` did. ``metrics``: every metric, ``[seeds, updates]``
    from update 0 (the resumed ones included) to the last update trained. ``diverged``:
    where the run went non-finite (``None`` if it did not, or went on with "warn").
    ``last_checkpoint``: the newest checkpoint saved (or resumed from)."""

    state: Any
    metrics: dict[str, np.ndarray]
    compile_s: float
    run_s: float
    save_s: float
    saves: int
    diverged: NonFinite | None
    last_checkpoint: Path | None
    started_at: float = 0.0  # time.perf_counter() when the first chunk was dispatched


def _metrics_npz(metrics: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **metrics)
    return buffer.getvalue()


def _joined(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([part[name] for part in parts], axis=1) for name in parts[0]}


def train_in_chunks(
    trainer: Any,
    state: Any,
    out: Path,
    options: RunOptions,
    start_update: int = 0,
    metrics_so_far: dict[str, np.ndarray] | None = None,
    last_checkpoint: Path | None = None,
    on_chunk: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    warn: Callable[[str], None] | None = None,
    mesh: Any = None,
) -> ChunkedRun:
    """Train ``state`` (from ``Trainer.init_many``, or a resumed checkpoint after
    ``start_update`` updates) to the config's ``num_updates``, in chunks (:func:`chunk_plan`).

    After each chunk, on the host: ``on_chunk(updates_done, chunk_metrics)`` (progress),
    the logs, the divergence guard (metrics and parameters), and a checkpoint when one is
    due. The next chunk is dispatched before the last one is looked at, so the device does
    not wait for the host. With ``on_nonfinite="stop"`` a non-finite chunk ends the run
    before its state is saved: the newest checkpoint stays the last good one.

    ``mesh``: split the seeds over these devices (:func:`purejaxppo.parallel.shard_vmap`,
    ``options.vmap_width`` at a time). In a multi-process run every process calls this
    alike; the metrics and the saved states are gathered in all of them (collectives), and
    only process 0 writes files, logs and calls ``on_chunk``.
    """
    import jax

    from purejaxppo.parallel import gather, shard_vmap

    config = trainer.config
    primary = jax.process_index() == 0
    warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))
    plan = chunk_plan(start_update, config.num_updates, options.checkpoint_every)
    start = time.perf_counter()
    programs: dict[int, Callable[..., Any]] = {}
    for length in sorted(set(plan)):
        if mesh is None:
            programs[length] = (
                jax.jit(trainer.run_many, static_argnums=1).lower(state, length).compile()
            )
            continue
        program = shard_vmap(
            functools.partial(trainer.run, num_updates=length),
            mesh,
            in_axes=(trainer.STATE_AXES,),
            out_axes=(trainer.STATE_AXES, 0),
            width=options.vmap_width,
        )
        program.compile_for(state)
        programs[length] = program
    compile_s = time.perf_counter() - start

    purge_from = None  # TensorBoard drops what a killed process logged after the checkpoint
    if start_update and metrics_so_far:
        purge_from = int(np.asarray(metrics_so_far["env_steps"])[0, -1]) + 1
    logs = open_logs(options.log, out, start_update or None, purge_from) if primary else []
    parts = [metrics_so_far] if metrics_so_far and start_update else []
    warned: set[int] = set()
    result = ChunkedRun(state, {}, compile_s, 0.0, 0.0, 0, None, last_checkpoint)
    last_save = time.perf_counter()

    def finish_chunk(first: int, state_after: Any, chunk: dict[str, Any]) -> bool:
        """Look at one finished chunk; False when the run must stop."""
        nonlocal last_save
        host = gather(chunk)  # a collective in a multi-process run: every process is here
        done = first + next(iter(host.values())).shape[1]
        parts.append(host)
        if on_chunk is not None and primary:
            on_chunk(done, host)
        for log in logs:
            log.write(host, first)
        params = state_after.runner.train_state.params
        found = first_nonfinite(host, first, gather(finite_parameters(params)))
        if found is not None:
            if options.on_nonfinite == "stop":
                result.diverged = found
                return False
            new = [seed for seed in found.seeds if seed not in warned]
            if new:
                warned.update(new)
                where = describe(found, options.seeds, options.seed)
                warn(f"non-finite training at {where}; going on (--on-nonfinite warn)")
        result.state = state_after
        every, seconds = options.checkpoint_every, options.checkpoint_every_s
        due = (every is not None and done % every == 0) or (
            seconds is not None and time.perf_counter() - last_save >= seconds
        )
        if due:
            save_start = time.perf_counter()
            # several processes: gathered whole in every one (a collective), process 0 writes
            whole = gather(state_after) if jax.process_count() > 1 else state_after
            path = series_path(out / CHECKPOINTS, done)
            if primary:
                metrics_file = {METRICS_FILE: _metrics_npz(_joined(parts))}
                save_in_series(
                    out / CHECKPOINTS, whole, config, options.keep_checkpoints, metrics_file
                )
            result.last_checkpoint = path
            last_save = time.perf_counter()
            result.save_s += last_save - save_start
            result.saves += 1
        return True

    start = result.started_at = time.perf_counter()
    pending = None
    update = start_update
    try:
        for length in plan:
            next_state, chunk = programs[length](state)  # dispatched: runs while we look
            if pending is not None and not finish_chunk(*pending):
                pending = None
                break
            pending, state, update = (update, next_state, chunk), next_state, update + length
        if pending is not None:
            finish_chunk(*pending)
        jax.block_until_ready(result.state)
    finally:
        for log in logs:
            log.close()
    result.run_s = time.perf_counter() - start
    result.metrics = _joined(parts)
    return result


def save_final_checkpoint(out: Path, state: Any, config: PPOConfig) -> Path:
    """``checkpoint/``: the final state. One left by a process killed before it finished the
    run's last files is replaced, the new one written in full before the old one goes. In
    a multi-process run every process calls this (the state is gathered in all) and
    process 0 writes."""
    import jax

    from purejaxppo.parallel import gather

    final = out / FINAL_CHECKPOINT
    state = gather(state) if jax.process_count() > 1 else state
    if jax.process_index() != 0:
        return final
    if not final.exists():
        return save_checkpoint(final, state, config)
    replacement = save_checkpoint(out / f".{FINAL_CHECKPOINT}.new-{os.getpid()}", state, config)
    old = final.with_name(f".{FINAL_CHECKPOINT}.old-{os.getpid()}")
    final.rename(old)
    replacement.rename(final)
    shutil.rmtree(old)
    return final


def load_resumed_state(trainer: Any, resume: Resume, seeds: int) -> Any:
    """The state of ``resume``'s checkpoint for ``trainer``, with ``seeds`` vmapped runs."""
    try:
        return load_checkpoint(resume.checkpoint, trainer, batch_shape=(seeds,))
    except CheckpointError as error:
        raise RunError(f"--resume: {error}".splitlines()[0]) from error
