"""make_train: one pure, jittable, vmappable function for a whole PPO run."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax.training.train_state import TrainState

from purejaxppo import counters
from purejaxppo.collectives import LOCAL, Collectives
from purejaxppo.config import PPOConfig, PPOHyperparams, as_config, check_sequence_minibatches
from purejaxppo.envs import VecEnv, VecEnvState, make_env, observation_layout
from purejaxppo.gae import compute_gae
from purejaxppo.losses import Batch, LossCoefficients, flatten_steps
from purejaxppo.networks import (
    apply_network,
    builtin_network,
    check_network,
    init_variables,
    is_recurrent,
    make_distribution,
)
from purejaxppo.progress import UpdateCallback, combine_callbacks, report_to_host
from purejaxppo.rollout import RunnerState, Transition, collect_rollout, per_sample_policy
from purejaxppo.update import (
    adapt_kl_beta,
    clip_eps_at,
    learning_rate_at,
    make_optimizer,
    set_optimizer_hyperparams,
    update_policy,
)


class TrainOutput(NamedTuple):
    """What ``train(rng)`` returns (every leaf gains a leading axis per ``vmap``).

    ``train_state``: flax TrainState; ``apply_fn`` is the network's ``apply``
    (``(params, carry, obs, episode_start) -> (carry, PolicyParams, value)``).
    ``metrics``: dict of ``(num_updates,)`` arrays, one entry per update.
    ``env_state``: final env state, including the observation/reward normalisation
    statistics that a trained policy must be evaluated with.
    """

    train_state: TrainState
    metrics: dict[str, jax.Array]
    env_state: VecEnvState


def build_network(config: PPOConfig, vec_env: VecEnv, network: Any = None) -> Any:
    """The network to train: ``network`` (any module following the protocol,
    :mod:`purejaxppo.networks.protocol`) or else the built-in ``config.network`` for this
    env's observations and actions. Checked against the env (abstractly, before any
    tracing): ``ValueError`` saying what was expected if it does not fit."""
    spec = vec_env.action_spec
    if network is None:
        layout = observation_layout(vec_env.obs_spec)
        network = builtin_network(config, layout, spec.dim, spec.discrete, spec.nvec)
    elif config.network != "mlp":
        raise ValueError(
            f"config.network = {config.network!r} and network={type(network).__name__}(...) "
            "both choose the network: leave config.network at its default 'mlp' when "
            "passing your own"
        )
    check_network(network, vec_env.policy_obs_spec, None, spec.dim, spec.discrete, spec.nvec)
    if is_recurrent(network):
        # data parallel: each device's envs split into minibatches (vec_env may also be
        # an evaluation's, whose num_envs is not the trainer's)
        envs_per_device = config.num_envs // vec_env.collectives.size
        check_sequence_minibatches(envs_per_device, config.num_minibatches, type(network).__name__)
    return network


def rollout_metrics(traj: Transition, collectives: Collectives = LOCAL) -> dict[str, jax.Array]:
    """Episode statistics of one rollout ``[T, N]``: means over episodes that finished
    (data parallel: on every device).

    ``episode_return`` / ``episode_length`` are NaN when no episode finished.
    """
    done = traj.done

    def mean(values: jax.Array) -> jax.Array:  # NaN when no episode finished
        return collectives.mean_of(values.astype(jnp.float32), where=done)

    return {
        "episode_return": mean(traj.episode_return),
        "episode_length": mean(traj.episode_length),
        "episodes": collectives.sum(done.sum().astype(jnp.int32)),
    }


def policy_kl(
    apply_fn: Callable[..., Any], params: Any, batch: Batch, collectives: Collectives = LOCAL
) -> jax.Array:
    """Mean exact KL(pi_old || pi_params) over the batch's samples (the paper's d; data
    parallel: every device's samples); ``pi_old`` is the policy that collected them,
    ``batch.policy_params``."""
    new_policy = apply_network(apply_fn, params, batch.carry, batch.obs, batch.episode_start).policy
    old_pi = make_distribution(flatten_steps(batch.policy_params))
    return collectives.mean_of(old_pi.kl_divergence(make_distribution(flatten_steps(new_policy))))


def explained_variance(
    predictions: jax.Array, targets: jax.Array, collectives: Collectives = LOCAL
) -> jax.Array:
    """``1 - Var(targets - predictions) / Var(targets)``; NaN when ``Var(targets) = 0``."""
    target_var = collectives.var_of(targets)
    residual_var = collectives.var_of(targets - predictions)
    return jnp.where(target_var > 0, 1.0 - residual_var / target_var, jnp.nan)


def final_return(episode_return: Any, fraction: float = 0.1) -> np.ndarray:
    """Mean of ``episode_return`` ``[..., num_updates]`` over the last ``fraction`` of
    updates (at least one), ignoring updates in which no episode finished (NaN).

    The summary used throughout the README, tests and benchmarks; on host, with NumPy.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    returns = np.asarray(episode_return, dtype=np.float64)
    last = max(1, int(returns.shape[-1] * fraction))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slice -> NaN, on purpose
        return np.nanmean(returns[..., -last:], axis=-1)


def make_trainer(
    config: PPOConfig | Mapping[str, Any] | None = None,
    env: Any = None,
    env_params: Any = None,
    on_update: UpdateCallback | None = None,
    progress: bool = False,
    network: Any = None,
    collectives: Collectives = LOCAL,
) -> Trainer:
    """A :class:`Trainer` for ``config``: ``init`` a run, then ``run`` it in chunks.

    ``config`` is a :class:`PPOConfig` or a dict (field names or PureJaxRL's UPPERCASE
    keys). ``env`` / ``env_params``: any gymnax Environment, instead of ``env_name``.
    ``on_update(metrics)``: called on the host after every update, from inside the
    compiled loop, with that update's metrics as NumPy arrays (``[seeds]`` under
    ``vmap``: one call for all seeds) plus ``update`` (0-based). ``progress``: a tqdm bar
    over the updates. With neither, the compiled program has no callback at all.
    ``network``: your own flax module following the network protocol
    (:mod:`purejaxppo.networks.protocol`) instead of the built-in ``config.network``.
    ``collectives``: one agent on several devices (:mod:`purejaxppo.collectives`); the
    trainer is then one device's part, stepping ``num_envs / collectives.size`` envs, to
    be run under ``jax.shard_map`` over ``collectives.axis_name``: use
    :func:`purejaxppo.parallel.make_data_parallel_trainer`, which does that.
    Everything is validated here, before tracing.
    """
    config = PPOConfig() if config is None else as_config(config)
    num_envs = local_num_envs(config, collectives)
    host_callback = combine_callbacks(
        on_update, progress, config.num_updates, f"PPO {config.env_name}"
    )
    env, env_params = make_env(config.env_name, env, env_params)
    vec_env = VecEnv(
        env=env,
        env_params=env_params,
        num_envs=num_envs,
        normalize_obs=config.normalize_obs,
        normalize_reward=config.normalize_reward,
        obs_clip=config.obs_clip,
        reward_clip=config.reward_clip,
        resets_per_step=config.resets_per_step,
        collectives=collectives,
    )
    network = build_network(config, vec_env, network)
    # a recurrent network learns from whole rollouts of each env, a feed-forward one
    # from single steps: the batch is [L, S] sequences, L = T or 1 (see Batch)
    sequence_length = config.num_steps if is_recurrent(network) else 1
    evaluate_now = _make_periodic_evaluation(config, env, env_params, network)
    # one optimizer object: it is static metadata of TrainState, so a new one per init
    # would make every state from init a new pytree structure (a recompile of run)
    optimizer = make_optimizer(config.grad_clip)
    batch_size = config.batch_size

    def collect(state: TrainerState) -> tuple[TrainerState, Transition]:
        """Act ``num_steps`` steps in every env with the current policy: ``Transition[T, N]``."""
        runner, traj = collect_rollout(
            vec_env, config.num_steps, state.hyperparams.gamma, state.runner
        )
        env_state = vec_env.merge_statistics(state.runner.env_state, runner.env_state)
        return state._replace(runner=runner._replace(env_state=env_state)), traj

    def make_batch(state: TrainerState, traj: Transition) -> Batch:
        """GAE advantages and value targets for ``traj``, as ``Batch[L, S]`` sequences:
        ``[T, N]`` for a recurrent network, ``[1, T * N]`` for a feed-forward one.

        Bootstraps with ``traj.next_value``, the collecting critic's V(final observation).
        """
        advantages, targets = compute_gae(
            rewards=traj.reward,
            values=traj.value,
            next_values=traj.next_value,
            terminations=traj.terminated,
            dones=traj.done,
            gamma=state.hyperparams.gamma,
            gae_lambda=state.hyperparams.gae_lambda,
        )
        steps = Batch(
            traj.obs,
            traj.action,
            per_sample_policy(traj.policy_params),
            traj.log_prob,
            traj.value,
            advantages,
            targets,
            traj.episode_start,
        )
        steps = jax.tree.map(lambda x: x.reshape(sequence_length, -1, *x.shape[2:]), steps)
        return steps._replace(carry=traj.start_carry)

    def learn(
        state: TrainerState, traj: Transition, batch: Batch | None = None
    ) -> tuple[TrainerState, dict[str, jax.Array]]:
        """One PPO update on ``traj`` (``batch`` defaults to ``make_batch(state, traj)``):
        ``update_epochs x num_minibatches`` gradient steps, then this update's metrics."""
        runner, hyperparams, update_index = state.runner, state.hyperparams, state.update_index
        if batch is None:
            batch = make_batch(state, traj)
        learning_rate = learning_rate_at(config, hyperparams.lr, update_index)
        train_state = set_optimizer_hyperparams(runner.train_state, learning_rate)
        coefficients = LossCoefficients(
            clip_eps=clip_eps_at(config, hyperparams.clip_eps, update_index),
            vf_coef=hyperparams.vf_coef,
            ent_coef=hyperparams.ent_coef,
            kl_beta=runner.kl_beta,
            value_clip_eps=config.value_clip_eps,
        )
        rng, update_key = jax.random.split(runner.rng)
        train_state, info = update_policy(
            config, coefficients, train_state, batch, update_key, collectives
        )
        kl = policy_kl(network.apply, train_state.params, batch, collectives)
        kl_beta = runner.kl_beta
        if config.policy_objective == "kl_penalty":
            kl_beta = adapt_kl_beta(kl_beta, kl, hyperparams.kl_target)

        losses = info.loss._asdict()
        del losses["kl"]  # per-step values; "kl" below is the whole update's
        metrics = {
            **rollout_metrics(traj, collectives),
            "env_steps": counters.env_steps(update_index + 1, batch_size),
            "learning_rate": learning_rate,
            "clip_eps": coefficients.clip_eps,
            **losses,
            "kl": kl,
            "grad_norm": info.grad_norm,
            "minibatches_done": info.minibatches_done,
            "explained_variance": explained_variance(
                flatten_steps(batch.value), flatten_steps(batch.target), collectives
            ),
        }
        if config.policy_objective in ("kl_penalty", "kl_fixed"):
            metrics["kl_beta"] = runner.kl_beta
        if runner.env_state.reset_pool is not None:  # so far in the run
            metrics["reset_pool_shortfall"] = runner.env_state.reset_pool.shortfall
        if evaluate_now is not None:
            # a real conditional while update_index is unbatched (see Trainer.run_many)
            due = (update_index + 1) % config.eval_every == 0
            metrics["eval_return"], metrics["eval_length"] = jax.lax.cond(
                due,
                evaluate_now,
                _no_evaluation,
                train_state,
                runner.env_state,
                evaluation_key(runner, update_index),
            )
        if host_callback is not None:  # data parallel: from the first device, once
            report_to_host(host_callback, update_index, metrics, collectives.is_first_device())
        runner = runner._replace(train_state=train_state, rng=rng, kl_beta=kl_beta)
        return TrainerState(runner, hyperparams, update_index + 1), metrics

    def init(rng: jax.Array, hyperparams: PPOHyperparams | None = None) -> TrainerState:
        if hyperparams is None:
            hyperparams = config.hyperparams()
        # split(rng, 4)[:3] == split(rng, 3): evaluation's stream leaves training's as it was
        rng, init_key, reset_key, eval_rng = jax.random.split(rng, 4)
        params = init_variables(network, init_key, vec_env.policy_obs_spec)
        train_state = TrainState.create(apply_fn=network.apply, params=params, tx=optimizer)
        train_state = set_optimizer_hyperparams(
            train_state, hyperparams.lr, hyperparams.max_grad_norm
        )
        obs, env_state = vec_env.reset(reset_key)
        runner = RunnerState(
            train_state,
            env_state,
            obs,
            rng,
            hyperparams.kl_beta_init,
            eval_rng,
            carry=network.initial_carry(num_envs),
            episode_start=jnp.ones(num_envs, bool),
        )
        return TrainerState(runner, hyperparams, jnp.zeros((), jnp.int32))

    def run(state: TrainerState, num_updates: int) -> tuple[TrainerState, dict[str, jax.Array]]:
        num_updates = int(num_updates)
        if num_updates < 1:
            raise ValueError(f"num_updates must be a positive integer, got {num_updates}")
        if jnp.ndim(state.update_index) != 0:
            raise ValueError(
                f"state.update_index has shape {jnp.shape(state.update_index)}: run takes one "
                "run's state; for a batch of runs use Trainer.run_many (or jax.vmap with "
                "in_axes=Trainer.STATE_AXES)"
            )

        def update(carry: tuple[RunnerState, jax.Array], _: None):
            # the hyperparams stay out of the carry: loop-invariant, XLA can fold them
            runner, update_index = carry
            after, metrics = learn(*collect(TrainerState(runner, state.hyperparams, update_index)))
            return (after.runner, after.update_index), metrics

        (runner, update_index), metrics = jax.lax.scan(
            update, (state.runner, state.update_index), None, length=num_updates
        )
        return TrainerState(runner, state.hyperparams, update_index), metrics

    # jitted, so that calling them eagerly (a notebook, a test) is one compiled program
    # each rather than hundreds of op-by-op dispatches; inside a caller's jit they inline.
    # run uses the plain functions and is the caller's to jit (num_updates is static).
    return Trainer(
        config=config,
        vec_env=vec_env,
        network=network,
        init=jax.jit(init),
        run=run,
        collect=jax.jit(collect),
        make_batch=jax.jit(make_batch),
        learn=jax.jit(learn),
    )


def local_num_envs(config: PPOConfig, collectives: Collectives) -> int:
    """The envs each device steps when ``collectives.size`` devices share the agent's
    ``num_envs`` (``ValueError`` unless they and every minibatch split evenly)."""
    devices = collectives.size
    if devices == 1:
        return config.num_envs
    if config.num_envs % devices:
        fitting = [d for d in range(1, devices + 1) if config.num_envs % d == 0]
        below, above = (
            (config.num_envs // devices) * devices,
            -(-config.num_envs // devices) * devices,
        )
        multiples = " or ".join(str(m) for m in (below, above) if m)
        raise ValueError(
            f"num_envs = {config.num_envs} cannot be split evenly over {devices} devices: "
            f"use a multiple of {devices} ({multiples}), or "
            f"{', '.join(map(str, fitting))} device(s)"
        )
    num_envs = config.num_envs // devices
    samples = num_envs * config.num_steps
    if samples % config.num_minibatches:
        raise ValueError(
            f"num_minibatches = {config.num_minibatches} must divide each device's "
            f"num_steps * num_envs / devices = {config.num_steps} * {num_envs} = {samples}"
        )
    return num_envs


def _make_periodic_evaluation(
    config: PPOConfig, env: Any, env_params: Any, network: Any
) -> Callable | None:
    """``(train_state, env_state, key) -> (mean return, mean length)`` of
    ``config.eval_episodes`` greedy episodes, or None when ``eval_every`` is unset."""
    if config.eval_every is None:
        return None
    from purejaxppo.evaluate import episode_limit, policy_step_fn, run_episodes  # imports us

    eval_env = VecEnv(env=env, env_params=env_params, num_envs=config.eval_episodes)
    max_steps = episode_limit(config.env_name, env_params, env)

    def evaluate_now(
        train_state: TrainState, env_state: VecEnvState, key: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        step = policy_step_fn(config, eval_env, network, train_state.params, env_state.obs_stats)
        carry = network.initial_carry(config.eval_episodes)
        result = run_episodes(eval_env, step, carry, key, max_steps)
        return result.episode_return.mean(), result.episode_length.mean(dtype=jnp.float32)

    return evaluate_now


def _no_evaluation(*_: Any) -> tuple[jax.Array, jax.Array]:
    return jnp.float32(jnp.nan), jnp.float32(jnp.nan)


class TrainerState(NamedTuple):
    """Everything a run carries from one update to the next: checkpoint this to resume.

    ``runner``: params, optimiser state, env states (with normalisation statistics), RNG
    streams and the adaptive-KL beta. ``hyperparams``: the run's float hyperparameters.
    ``update_index``: updates done so far, int32 (it drives the learning-rate and clip
    schedules and the evaluation period). For a batch of runs it is shared, unbatched:
    every run of a batch has done the same number of updates (see ``Trainer.run_many``).
    """

    runner: RunnerState
    hyperparams: PPOHyperparams
    update_index: jax.Array


def state_layout(per_env: Any, shared: Any) -> TrainerState:
    """A :class:`TrainerState`-shaped prefix tree that marks which parts have an env axis:
    ``per_env`` where every leaf's first axis (after any batch axes of runs) is one of the
    ``num_envs`` envs (their env states, episode counters, observations, network carries,
    episode starts), ``shared`` elsewhere (parameters, optimiser state, normalisation
    statistics, RNG streams, hyperparameters, the update counter). Data parallelism splits
    the former over devices and replicates the latter (e.g. ``shard_map`` specs)."""
    envs = VecEnvState(
        env_state=per_env,
        episode_return=per_env,
        episode_length=per_env,
        obs_stats=shared,
        return_stats=shared,
        discounted_return=per_env,
        reset_pool=shared,
    )
    runner = RunnerState(
        train_state=shared,
        env_state=envs,
        obs=per_env,
        rng=shared,
        kl_beta=shared,
        eval_rng=shared,
        carry=per_env,
        episode_start=per_env,
    )
    return TrainerState(runner=runner, hyperparams=shared, update_index=shared)


def evaluation_key(runner: RunnerState, update_index: jax.Array) -> jax.Array:
    """The key of the periodic evaluation after update ``update_index``: from the
    evaluation's own stream (``runner.eval_rng``, split off once at ``init``), so it is
    never a key that training uses."""
    return jax.random.fold_in(runner.eval_rng, update_index)


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
    """``init(rng, hyperparams=None) -> TrainerState`` and
    ``run(state, num_updates) -> (state, metrics)`` for one run, both pure (jit ``run``
    with ``static_argnums=1``); ``init_many`` / ``run_many`` for a batch of runs (seeds,
    a sweep grid). Running ``N`` updates at once or as ``N/2`` and ``N/2`` gives
    bit-identical parameters and metrics; schedules follow ``config.num_updates`` either
    way, and stay at their final values for updates past it.

    One update, in the pieces ``run`` is made of (to look inside one, e.g. in a notebook):
    ``collect(state) -> (state, Transition[T, N])``, ``make_batch(state, traj) ->
    Batch[L, S]`` (GAE; see :class:`Batch`) and ``learn(state, traj, batch=None) ->
    (state, metrics)``;
    ``learn(*collect(state))`` is exactly one step of ``run``.

    Under ``jax.vmap`` a ``lax.cond`` whose predicate is batched runs both branches (a
    select). The evaluation period depends only on ``update_index``, so it stays a real
    conditional as long as ``update_index`` is not batched: ``run_many`` keeps it so,
    plain ``jax.vmap(run)`` over a state with a batched ``update_index`` (e.g. from
    ``jax.vmap(init)``) evaluates at every update. ``target_kl``'s early stop depends on
    each run's own KL, so under ``vmap`` it is always a select: the stopped runs' steps
    are computed and discarded (the results are right, the compute is not saved)."""

    config: PPOConfig
    vec_env: VecEnv
    network: Any
    init: Callable[..., TrainerState]
    run: Callable[[TrainerState, int], tuple[TrainerState, dict[str, jax.Array]]]
    collect: Callable[[TrainerState], tuple[TrainerState, Transition]]
    make_batch: Callable[[TrainerState, Transition], Batch]
    learn: Callable[..., tuple[TrainerState, dict[str, jax.Array]]]

    # vmap axes of a batched TrainerState: the update counter is shared
    STATE_AXES: ClassVar[TrainerState] = TrainerState(runner=0, hyperparams=0, update_index=None)

    def init_many(self, keys: jax.Array, hyperparams: PPOHyperparams | None = None) -> TrainerState:
        """``init`` for a batch of runs, one per key: ``keys`` ``[*batch]`` (typed keys, or
        legacy ``uint32[*batch, 2]``) -> a state whose leaves are ``[*batch, ...]``, except
        the shared, unbatched ``update_index``. ``hyperparams``: leaves ``[*batch]`` (a
        sweep) or scalars (broadcast)."""
        legacy = not jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key)
        batch_shape = keys.shape[:-1] if legacy else keys.shape
        if hyperparams is None:
            hyperparams = self.config.hyperparams()
        hyperparams = jax.tree.map(lambda x: jnp.broadcast_to(x, batch_shape), hyperparams)
        init = self.init
        for _ in batch_shape:
            init = jax.vmap(init, out_axes=self.STATE_AXES)
        return init(keys, hyperparams)

    def run_many(
        self, state: TrainerState, num_updates: int
    ) -> tuple[TrainerState, dict[str, jax.Array]]:
        """``run`` for a batch of runs (a state from ``init_many``, leaves ``[*batch, ...]``):
        metrics ``[*batch, num_updates]``. Jit it with ``static_argnums=1``."""
        if jnp.ndim(state.update_index) != 0:
            raise ValueError(
                f"state.update_index has shape {jnp.shape(state.update_index)}; run_many "
                "takes a state from init_many or load_checkpoint, whose update counter is "
                "one shared scalar"
            )

        def run(state: TrainerState) -> tuple[TrainerState, dict[str, jax.Array]]:
            return self.run(state, num_updates)

        for _ in jnp.shape(state.hyperparams.lr):
            run = jax.vmap(run, in_axes=(self.STATE_AXES,), out_axes=(self.STATE_AXES, 0))
        return run(state)

    def output(self, state: TrainerState, metrics: dict[str, jax.Array]) -> TrainOutput:
        """The :class:`TrainOutput` of a (possibly chunked) run."""
        return TrainOutput(state.runner.train_state, metrics, state.runner.env_state)


def make_train(
    config: PPOConfig | Mapping[str, Any] | None = None,
    env: Any = None,
    env_params: Any = None,
    on_update: UpdateCallback | None = None,
    progress: bool = False,
    network: Any = None,
) -> Callable[..., TrainOutput]:
    """Return ``train(rng, hyperparams=None) -> TrainOutput`` for ``config``.

    ``config`` is a :class:`PPOConfig` or a dict (field names or PureJaxRL's UPPERCASE
    keys). ``env`` / ``env_params``: any gymnax Environment, instead of ``env_name``.
    Everything is validated here, before tracing. ``train`` is pure: jit it, vmap it
    over keys (seeds) and, optionally, over a batched :class:`PPOHyperparams`
    (a sweep, with no retrace per value). ``on_update`` / ``progress``: live reports
    from inside the compiled loop (see :func:`make_trainer`). For chunked runs and
    resuming, see :func:`make_trainer`. ``network``: your own flax module following
    the network protocol (:mod:`purejaxppo.networks.protocol`) instead of the built-in
    ``config.network``.
    """
    trainer = make_trainer(config, env, env_params, on_update, progress, network)

    def train(rng: jax.Array, hyperparams: PPOHyperparams | None = None) -> TrainOutput:
        """Train from ``rng`` (a ``jax.random.key`` or legacy ``PRNGKey``)."""
        state, metrics = trainer.run(trainer.init(rng, hyperparams), trainer.config.num_updates)
        return trainer.output(state, metrics)

    return train
