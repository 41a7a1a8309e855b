"""What every benchmark script shares: the machine description and compile/run timing."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp


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
    ``{"compile_s", "compile_stages", "run_s": [per call], "run_s_median", "memory"}``:
    ``compile_s`` is everything before the first call (trace, lower, XLA's compilation;
    ``compile_stages`` splits it, see :func:`compile_stages`), ``memory`` see :func:`memory`."""
    compiled, stages = compile_stages(fn, args)
    if warmup:
        jax.block_until_ready(compiled(*args))
    run_s = []
    for _ in range(repeats):
        start = time.perf_counter()
        output = jax.block_until_ready(compiled(*args))
        run_s.append(time.perf_counter() - start)
    timing = {
        "compile_s": stages["startup"],  # trace + lower + XLA's compilation
        "compile_stages": stages,
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
    calls: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]],
    repeats: int,
    compile_repeats: int = 1,
) -> dict[str, dict[str, Any]]:
    """Like :func:`time_compiled` for several ``name -> (fn, args)`` at once, with one
    warm-up call each, but the timed calls alternate between them (round ``r`` runs them
    in order, reversed on odd rounds), so that a machine getting slower or faster during
    the measurement affects all alike. Compilation is measured the same way:
    ``compile_repeats`` rounds, each from scratch (``jax.clear_caches()``), split into
    tracing, lowering to StableHLO and XLA's compilation (:func:`compile_stages`).
    Returns ``{name: timing}`` with ``compile_s`` (the median of the rounds' XLA
    compilations), ``trace_s``, ``lower_s``, ``startup_s`` (the median of the rounds'
    trace + lower + compile: what a user waits for before the first step) and their
    per-round lists under ``compile_rounds``."""
    compiled: dict[str, Any] = {}
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in calls}
    names = list(calls)
    for round_index in range(compile_repeats):
        for name in names if round_index % 2 == 0 else reversed(names):
            jax.clear_caches()
            compiled[name], stages = compile_stages(*calls[name])
            rounds[name].append(stages)
    timings = {}
    for name in names:
        stage_medians = {
            f"{stage}_s": statistics.median(r[stage] for r in rounds[name])
            for stage in ("trace", "lower", "compile", "startup")
        }
        timings[name] = {**stage_medians, "compile_rounds": rounds[name], "run_s": []}
        jax.block_until_ready(compiled[name](*calls[name][1]))
    for round_index in range(repeats):
        for name in names if round_index % 2 == 0 else reversed(names):
            args = calls[name][1]
            start = time.perf_counter()
            jax.block_until_ready(compiled[name](*args))
            timings[name]["run_s"].append(time.perf_counter() - start)
    for timing in timings.values():
        timing["run_s_median"] = statistics.median(timing["run_s"])
    return timings


def compile_stages(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, dict[str, float]]:
    """``jax.jit(fn)`` compiled ahead of time for ``args``, and the seconds of each stage
    (``jax.stages``): ``trace`` (Python to jaxpr), ``lower`` (jaxpr to StableHLO),
    ``compile`` (XLA), and their sum ``startup``."""
    start = time.perf_counter()
    traced = jax.jit(fn).trace(*args)
    traced_at = time.perf_counter()
    lowered = traced.lower()
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    done = time.perf_counter()
    stages = {
        "trace": traced_at - start,
        "lower": lowered_at - traced_at,
        "compile": done - lowered_at,
        "startup": done - start,
    }
    return compiled, stages


def write_json(out: Path, stem: str, report: Any, default: Callable | None = None) -> Path:
    """Write ``report`` to ``out/<stem>.json`` (indent 2), creating ``out``; the path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.json"
    path.write_text(json.dumps(report, indent=2, default=default))
    return path


# Primitives counted as one floating-point operation per output element (XLA's cost
# analysis counts elementwise arithmetic the same way; transcendentals as one each too).
ELEMENTWISE_FLOPS = frozenset(
    {"add", "add_any", "sub", "mul", "div", "max", "min", "neg", "abs", "square", "sqrt"}
    | {"rsqrt", "exp", "exp2", "expm1", "log", "log1p", "tanh", "logistic", "pow"}
    | {"integer_pow", "erf_inv", "sin", "cos"}
)
REDUCTION_FLOPS = frozenset({"reduce_sum", "reduce_max", "reduce_min", "argmax", "argmin"})


def flop_count(fn: Callable[..., Any], *args: Any) -> dict[str, float]:
    """Floating-point operations of one call of ``fn(*args)``, counted on its jaxpr:
    ``{"flops", "matmul_flops"}``.

    XLA's ``cost_analysis()`` counts the body of a loop once, whatever its trip count
    (checked: a ``scan`` of 100 matmuls reports the flops of one), so for a training
    program, which is loops in loops, it is off by orders of magnitude. This walks the
    jaxpr instead and multiplies a ``scan`` body by its length: ``dot_general`` is
    ``2 x batch x M x N x K``; elementwise arithmetic one per output element, reductions
    one per input element (as XLA counts them); a ``cond`` counts its most expensive
    branch; random-number generation, data movement, comparisons and selects count 0. A
    ``while`` loop of unknown trip count raises. ``tests/test_benchmarks.py`` checks the
    count against XLA's on a loop-free program.
    """
    closed = jax.make_jaxpr(fn)(*args)
    flops = _jaxpr_flops(closed.jaxpr)
    return {"flops": flops[0], "matmul_flops": flops[1]}


def _jaxpr_flops(jaxpr: Any) -> tuple[float, float]:
    total = matmul = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            k = math.prod(lhs[d] for d in contract)
            flops = 2.0 * math.prod(eqn.outvars[0].aval.shape) * k
            total, matmul = total + flops, matmul + flops
        elif name in ELEMENTWISE_FLOPS:
            total += math.prod(eqn.outvars[0].aval.shape)
        elif name in REDUCTION_FLOPS:
            total += math.prod(eqn.invars[0].aval.shape)
        elif name == "scan":
            body = _jaxpr_flops(eqn.params["jaxpr"].jaxpr)
            total += eqn.params["length"] * body[0]
            matmul += eqn.params["length"] * body[1]
        elif name == "cond":
            branch = max(_jaxpr_flops(b.jaxpr) for b in eqn.params["branches"])
            total, matmul = total + branch[0], matmul + branch[1]
        elif name == "while":
            raise ValueError("flop_count: a while loop of unknown trip count")
        else:
            for value in eqn.params.values():  # jit, custom_jvp/vjp calls, remat...
                sub = getattr(value, "jaxpr", value)
                if hasattr(sub, "eqns"):
                    inner = _jaxpr_flops(sub)
                    total, matmul = total + inner[0], matmul + inner[1]
    return total, matmul


def matmul_peak(size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """The machine's measured float32 matmul rate: ``[size, size] @ [size, size]``
    (``2 size^3`` flops) jitted, best of ``repeats`` timed calls after a warm-up.
    The reference the training programs' achieved FLOP/s are compared with."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    jax.block_until_ready(matmul(a))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(matmul(a))
        best = min(best, time.perf_counter() - start)
    return {"size": size, "seconds": best, "flops_per_s": 2.0 * size**3 / best}
