"""Metric logs written while a run trains: a tidy CSV and TensorBoard event files.

Both take the metrics of one chunk of updates at a time (``[seeds, updates]`` per metric,
host NumPy arrays) and flush after each, so a run that is still going, or that was
killed, can be read. A resumed run reopens its logs at the update of the checkpoint it
resumes from: what was logged after that update (and will be trained again) is dropped,
so the finished log holds each update once, as an uninterrupted run's would.

- ``csv``: one row per update and seed, ``update, env_steps, seed, <metric>, ...``
  (metric columns in sorted order; an empty cell where a value is NaN, e.g. the episode
  return of an update in which no episode ended).
- ``tensorboard`` (``pip install "purejaxppo[tensorboard]"``, tensorboardX): for every
  metric the mean over seeds as ``<metric>/mean`` (NaN-aware: the seeds that have a value)
  and each seed's value as ``<metric>/seed_<k>``, with the environment steps as the step.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

LOG_FORMATS = ("csv", "tensorboard")
CSV_NAME = "log.csv"
TENSORBOARD_DIR = "tensorboard"


class MetricLog(Protocol):
    """A log a run writes while it trains."""

    def write(self, metrics: Mapping[str, Any], first_update: int) -> None:
        """Append the updates of ``metrics`` (``[seeds, updates]`` each), numbered from
        ``first_update``; ``metrics["env_steps"]`` gives their environment steps."""

    def close(self) -> None: ...


def _names_and_steps(metrics: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """The metric names (sorted, without ``env_steps``) and the ``[seeds, updates]`` steps."""
    names = sorted(name for name in metrics if name != "env_steps")
    return names, np.asarray(metrics["env_steps"])


class CsvLog:
    """``log.csv`` in the run folder (see the module docstring)."""

    def __init__(self, folder: Path, resume_update: int | None = None):
        self.path = Path(folder) / CSV_NAME
        self.columns: list[str] | None = None
        if resume_update is not None and self.path.exists():
            self._truncate(resume_update)
        elif self.path.exists():
            raise FileExistsError(f"{self.path} exists: a new run starts a new log")

    def _truncate(self, resume_update: int) -> None:
        """Keep the rows of updates before ``resume_update`` (atomically rewritten)."""
        with self.path.open(newline="") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            kept = [row for row in reader if row and int(row[0]) < resume_update]
        temporary = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        with temporary.open("w", newline="") as file:
            writer = csv.writer(file)
            if header is not None:
                writer.writerow(header)
                self.columns = header[3:]
            writer.writerows(kept)
        os.replace(temporary, self.path)

    def write(self, metrics: Mapping[str, Any], first_update: int) -> None:
        names, steps = _names_and_steps(metrics)
        if self.columns is None:
            self.columns = names
        elif names != self.columns:
            raise ValueError(f"{self.path}: metrics {names} differ from the log's {self.columns}")
        values = {name: np.asarray(metrics[name]) for name in names}
        seeds, updates = steps.shape
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as file:
            writer = csv.writer(file)
            if new_file:
                writer.writerow(["update", "env_steps", "seed", *names])
            for u in range(updates):
                for seed in range(seeds):
                    cells = [_cell(values[name][seed, u]) for name in names]
                    writer.writerow([first_update + u, int(steps[seed, u]), seed, *cells])
            file.flush()
            os.fsync(file.fileno())

    def close(self) -> None:
        pass


def _cell(value: Any) -> str:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and math.isnan(value):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


class TensorBoardLog:
    """TensorBoard event files in ``tensorboard/`` of the run folder (tensorboardX)."""

    def __init__(self, folder: Path, resume_env_steps: int | None = None):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as error:
            raise ValueError(
                '--log tensorboard needs tensorboardX: pip install "purejaxppo[tensorboard]"'
            ) from error
        # purge_step: TensorBoard drops the events of later steps that an earlier, killed
        # process wrote after the checkpoint this run resumes from
        self.writer = SummaryWriter(
            str(Path(folder) / TENSORBOARD_DIR), purge_step=resume_env_steps, flush_secs=5
        )

    def write(self, metrics: Mapping[str, Any], first_update: int) -> None:
        names, steps = _names_and_steps(metrics)
        for u in range(steps.shape[1]):
            step = int(steps[0, u])
            for name in names:
                values = np.asarray(metrics[name], np.float64)[:, u]
                finite = values[~np.isnan(values)]
                if finite.size:
                    self.writer.add_scalar(f"{name}/mean", float(finite.mean()), step)
                for seed, value in enumerate(values):
                    if not np.isnan(value):
                        self.writer.add_scalar(f"{name}/seed_{seed}", float(value), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_logs(
    formats: tuple[str, ...],
    folder: Path,
    resume_update: int | None = None,
    resume_env_steps: int | None = None,
) -> list[MetricLog]:
    """The logs named by ``formats`` (each one of :data:`LOG_FORMATS`) for the run folder."""
    logs: list[MetricLog] = []
    for name in formats:
        if name == "csv":
            logs.append(CsvLog(folder, resume_update))
        elif name == "tensorboard":
            logs.append(TensorBoardLog(folder, resume_env_steps))
        else:
            raise ValueError(f"unknown log format {name!r}; valid: {', '.join(LOG_FORMATS)}")
    return logs
