"""What every benchmark script shares: the machine description and compile/run timing."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax


def machine() -> dict[str, Any]:
    """The JSON description of where a benchmark ran."""
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }


def time_compiled(
    fn: Callable[..., Any], *args: Any, repeats: int = 1, warmup: bool = False
) -> tuple[Any, dict[str, Any]]:
    """Compile ``jax.jit(fn)`` for ``args`` ahead of time, then time ``repeats`` calls
    (after one untimed warm-up call if ``warmup``). Returns the last call's output and
    ``{"compile_s", "run_s": [per call], "run_s_median", "memory"}`` (see :func:`memory`)."""
    compiled, compile_s = _compile(fn, args)
    if warmup:
        jax.block_until_ready(compiled(*args))
    run_s = []
    for _ in range(repeats):
        start = time.perf_counter()
        output = jax.block_until_ready(compiled(*args))
        run_s.append(time.perf_counter() - start)
    timing = {
        "compile_s": compile_s,
        "run_s": run_s,
        "run_s_median": statistics.median(run_s),
        "memory": memory(compiled),
    }
    return output, timing


def memory(compiled: Any) -> dict[str, int] | None:
    """XLA's memory analysis of a compiled program, in bytes: ``temp`` (buffers live
    during the run: the rollout, the batch, activations), ``argument``, ``output``; None
    where the backend gives none."""
    analysis = compiled.memory_analysis()
    if analysis is None:
        return None
    return {
        "temp_bytes": int(analysis.temp_size_in_bytes),
        "argument_bytes": int(analysis.argument_size_in_bytes),
        "output_bytes": int(analysis.output_size_in_bytes),
    }


def time_compiled_interleaved(
    calls: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]], repeats: int
) -> dict[str, dict[str, Any]]:
    """Like :func:`time_compiled` for several ``name -> (fn, args)`` at once, with one
    warm-up call each, but the timed calls alternate between them (round ``r`` runs them
    in order, reversed on odd rounds), so that a machine getting slower or faster during
    the measurement affects all alike. Returns ``{name: timing}``."""
    compiled, timings = {}, {}
    for name, (fn, args) in calls.items():
        compiled[name], compile_s = _compile(fn, args)
        timings[name] = {"compile_s": compile_s, "run_s": []}
        jax.block_until_ready(compiled[name](*args))
    names = list(calls)
    for round_index in range(repeats):
        for name in names if round_index % 2 == 0 else reversed(names):
            args = calls[name][1]
            start = time.perf_counter()
            jax.block_until_ready(compiled[name](*args))
            timings[name]["run_s"].append(time.perf_counter() - start)
    for timing in timings.values():
        timing["run_s_median"] = statistics.median(timing["run_s"])
    return timings


def _compile(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, float]:
    """``jax.jit(fn)`` compiled ahead of time for ``args``, and the seconds it took."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def write_json(out: Path, stem: str, report: Any, default: Callable | None = None) -> Path:
    """Write ``report`` to ``out/<stem>.json`` (indent 2), creating ``out``; the path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.json"
    path.write_text(json.dumps(report, indent=2, default=default))
    return path
