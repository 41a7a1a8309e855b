"""Live progress from inside the jitted train loop: a host callback once per update.

``report_to_host`` sends one update's metrics to the host with ``jax.experimental.io_callback``
(``ordered=True``), JAX's primitive for side effects: it is never dropped as dead code,
never duplicated, and the calls arrive in program order (update 0, 1, 2, ...). Nothing
flows back: the program's metrics are the ones computed on the device, whatever the host
function does with the NumPy copies it is given.

An ordered ``io_callback`` cannot be ``vmap``-ed by JAX (and an unordered one would be
called once per seed, through ``lax.map``), so the call is wrapped in
``jax.custom_batching.custom_vmap``: under ``vmap`` over seeds (or nested ``vmap`` over a
sweep grid) the rule moves every metric's batch axis to the front, broadcasts the metrics
that are the same for all seeds, and makes the *one* callback again, one level up. The
host is called once per update with every seed's metrics stacked, ``[seeds]`` or the grid's
shape (outer axis first). With no callback requested, nothing is added to the program.

``ProgressBar`` is the ``progress=True`` host function: a tqdm bar on a terminal (or in
Jupyter), and a handful of plain lines (at 0%, 25%, 50%, 75% and 100%) when its stream is
a file or a CI log, where every redraw of a bar would be one more line.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap
from jax.experimental import io_callback

UpdateCallback = Callable[[dict[str, Any]], None]

LOG_MILESTONES = (0.0, 0.25, 0.5, 0.75, 1.0)  # fractions of the run that get a log line


def is_live_stream(stream: Any) -> bool:
    """Whether ``stream`` redraws a line in place: a terminal, or a Jupyter/Colab output
    stream (ipykernel renders ``\\r`` and tqdm's widget). Files, pipes and CI logs do not."""
    if type(stream).__module__.startswith("ipykernel"):
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:  # isatty() on a closed stream
        return False


class ProgressBar:
    """Progress over the run's updates, for all vmapped seeds at once, with the latest
    mean episode return across seeds (the last finite one: an update in which no episode
    ended shows the previous value).

    On a live stream (see :func:`is_live_stream`) it is one tqdm bar. Otherwise (stderr
    redirected to a file, a CI log) it writes one plain line after the first update and
    when the run passes 25%, 50%, 75% and 100%: at most five lines per run, the last one
    the final state. ``file`` defaults to ``sys.stderr`` as it is when the run starts.
    A call with an ``update`` below the last one seen starts a new run.
    """

    def __init__(self, total_updates: int, description: str = "PPO", file: IO[str] | None = None):
        try:
            from tqdm.auto import tqdm
        except ImportError as error:  # pragma: no cover - tqdm is a dependency
            raise ValueError("progress=True needs tqdm: pip install tqdm") from error
        self._tqdm = tqdm
        self.total = total_updates
        self.description = description
        self.file = file
        self.bar = None  # the tqdm bar of the current run, on a live stream
        self.done = 0  # updates done in the current run (0: no run started)
        self.latest_return = math.nan
        self._log = None  # (stream, start time, milestones still to print) when not live

    def __call__(self, metrics: Mapping[str, Any]) -> None:
        update = int(metrics["update"])
        if self.done == 0 or update < self.done:  # first call, or a new run
            self._start(update)
        self.done = update + 1
        episode_return = np.asarray(metrics["episode_return"], dtype=np.float64)
        if np.isfinite(episode_return).any():
            self.latest_return = float(np.nanmean(episode_return))
        if self._log is None:
            self._draw()
        else:
            self._write_line()

    def _start(self, update: int) -> None:
        """Close the previous run's bar, then open a bar or a log at ``update``."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.latest_return = math.nan
        stream = sys.stderr if self.file is None else self.file
        if is_live_stream(stream):
            self._log = None
            self.bar = self._tqdm(
                total=self.total, initial=update, desc=self.description, file=stream
            )
        else:
            milestones = [math.ceil(f * self.total) for f in LOG_MILESTONES]
            self._log = (stream, time.perf_counter(), [max(m, update + 1) for m in milestones])

    def _draw(self) -> None:
        """Advance the tqdm bar to ``self.done``; close it at the end of the run."""
        self.bar.update(self.done - self.bar.n)
        if math.isfinite(self.latest_return):
            self.bar.set_postfix(episode_return=f"{self.latest_return:.1f}")
        if self.bar.n >= self.total:
            self.bar.close()

    def _write_line(self) -> None:
        """One plain line if ``self.done`` reached the next milestone (several milestones
        passed at once, as by a resumed run, give one line)."""
        stream, start, milestones = self._log
        if not milestones or self.done < milestones[0]:
            return
        while milestones and self.done >= milestones[0]:
            milestones.pop(0)
        elapsed = time.perf_counter() - start
        percent = 100.0 * self.done / max(self.total, 1)
        line = f"{self.description}: {percent:3.0f}% {self.done}/{self.total} updates"
        line += f" [{elapsed:.1f}s]"
        if math.isfinite(self.latest_return):
            line += f" episode_return={self.latest_return:.1f}"
        stream.write(line + "\n")
        stream.flush()


def combine_callbacks(
    on_update: UpdateCallback | None, progress: bool, total_updates: int, description: str
) -> UpdateCallback | None:
    """The single host function to call per update, or None when nothing is requested.

    Each callback gets its own copy of the metrics, so one that mutates its arrays (or its
    dict) cannot change what the next one (the progress bar) sees; return values are
    ignored.
    """
    if on_update is not None and not callable(on_update):
        raise ValueError(f"on_update must be callable or None, got {on_update!r}")
    callbacks = [on_update] if on_update is not None else []
    if progress:
        callbacks.append(ProgressBar(total_updates, description))
    if not callbacks:
        return None

    def call_all(metrics: dict[str, Any]) -> None:
        for callback in callbacks:
            callback(_host_copy(metrics))

    return call_all


def _host_copy(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A fresh dict of writable NumPy copies (``update`` stays a Python int)."""
    return {k: v if k == "update" else np.array(v) for k, v in metrics.items()}


def report_to_host(
    host: UpdateCallback,
    update_index: jax.Array,
    metrics: dict[str, jax.Array],
    reporting: jax.Array | bool = True,
) -> None:
    """Call ``host`` with ``metrics`` (and ``update``, the 0-based update index) on the
    host, in update order.

    ``host`` receives a dict of writable NumPy copies: scalars for one run, ``[seeds]``
    (or the sweep's grid shape, outer ``vmap`` axis first) under ``vmap``, with metrics
    that are the same for every seed (e.g. ``learning_rate``) broadcast to that shape;
    ``update`` is a Python int. Its return value is ignored and nothing it does reaches
    the program's outputs. An exception in ``host`` fails the run.

    ``reporting``: a traced bool; where False the call reaches the host but ``host`` is
    not called (a data-parallel run reports from its first device only: a ``lax.cond``
    around the callback is not allowed under ``vmap``).
    """
    _make_sender(host)(jnp.asarray(update_index, jnp.int32), metrics, jnp.asarray(reporting))


def _make_sender(
    host: UpdateCallback,
) -> Callable[[jax.Array, dict[str, jax.Array], jax.Array], None]:
    """``send(update_index, metrics, reporting)``: the ordered ``io_callback`` to ``host``
    (skipped on the host where ``reporting`` is False), with a ``vmap`` rule that makes
    one call for the whole batch instead of one per seed."""

    def on_host(update_index: Any, metrics: dict[str, Any], reporting: Any) -> None:
        if bool(np.asarray(reporting)):
            host({"update": int(np.asarray(update_index)), **_host_copy(metrics)})
        # None whatever host returned: io_callback checks the result against "no outputs"

    @custom_vmap
    def send(update_index: jax.Array, metrics: dict[str, jax.Array], reporting: jax.Array) -> None:
        io_callback(on_host, None, update_index, metrics, reporting, ordered=True)

    @send.def_vmap
    def send_batched(
        axis_size: int,
        in_batched: list[Any],
        update_index: jax.Array,
        metrics: dict[str, Any],
        reporting: jax.Array,
    ) -> tuple[None, None]:
        """One call with the batch axis in front of every metric (metrics shared by all
        seeds broadcast to it). A batched ``update_index`` (every seed is at the same
        update) and ``reporting`` are read from the first seed. An enclosing ``vmap``
        batches ``send`` again."""
        index_batched, metrics_batched, reporting_batched = in_batched
        if index_batched:
            update_index = update_index[0]
        if reporting_batched:
            reporting = reporting[0]
        stacked = {
            name: value
            if metrics_batched[name]
            else jnp.broadcast_to(value, (axis_size, *value.shape))
            for name, value in metrics.items()
        }
        send(update_index, stacked, reporting)
        return None, None

    return send
