"""Policy objectives and diagnostics: identities from the PPO paper and hand-computed values."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxppo import (
    ActorCritic,
    Batch,
    LossCoefficients,
    PolicyParams,
    clipped_surrogate,
    make_distribution,
    policy_loss,
    ppo_loss,
    ppo_objective_with_diagnostics,
    value_loss,
)
from purejaxppo.config import POLICY_OBJECTIVES
from purejaxppo.losses import LossTerms, ppo_loss_terms, summarize_loss_terms
from purejaxppo.update import KL_BETA_MIN, adapt_kl_beta


def _categorical_batch(seed=0, batch=64, actions=5):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    logits = jax.random.normal(k1, (batch, actions))
    chosen = jax.random.randint(k2, (batch,), 0, actions)
    advantages = jax.random.normal(k3, (batch,))
    return logits, chosen, advantages


@pytest.mark.parametrize("objective", POLICY_OBJECTIVES)
def test_gradient_at_ratio_one_is_the_vanilla_policy_gradient(objective):
    """At theta = theta_old (r = 1, KL = 0 with zero gradient), every objective's gradient
    equals that of the vanilla policy gradient E[log pi(a|s) A]."""
    logits, chosen, advantages = _categorical_batch()

    def objective_loss(theta):
        pi = distrax.Categorical(logits=theta)
        old = distrax.Categorical(logits=jax.lax.stop_gradient(theta))
        log_ratio = pi.log_prob(chosen) - old.log_prob(chosen)
        kl = old.kl_divergence(pi)
        return policy_loss(objective, log_ratio, advantages, kl, clip_eps=0.2, kl_beta=3.0)

    def vanilla_pg_loss(theta):
        return -jnp.mean(distrax.Categorical(logits=theta).log_prob(chosen) * advantages)

    grad_objective = jax.grad(objective_loss)(logits)
    grad_pg = jax.grad(vanilla_pg_loss)(logits)
    assert float(jnp.abs(grad_pg).max()) > 1e-3
    np.testing.assert_allclose(grad_objective, grad_pg, rtol=1e-5, atol=1e-7)


ratio_grid = jnp.linspace(0.05, 3.0, 300)


@pytest.mark.parametrize("advantage", [-2.0, -0.3, 0.3, 2.0])
@pytest.mark.parametrize("eps", [0.1, 0.2, 0.3])
def test_clipped_objective_is_a_pessimistic_bound(advantage, eps):
    """L^CLIP <= L^CPI = r A for every sample; equal inside [1 - eps, 1 + eps]."""
    a = jnp.full_like(ratio_grid, advantage)
    clipped = clipped_surrogate(ratio_grid, a, eps)
    unclipped = ratio_grid * a
    assert bool(jnp.all(clipped <= unclipped + 1e-7))
    inside = (ratio_grid >= 1 - eps) & (ratio_grid <= 1 + eps)
    np.testing.assert_allclose(clipped[inside], unclipped[inside], rtol=1e-6)
    assert bool(jnp.any(clipped < unclipped - 1e-3))  # and strictly below somewhere


@pytest.mark.parametrize("advantage", [-1.5, 1.5])
def test_clipped_objective_gradient_vanishes_only_where_the_ratio_left_in_the_advantage_direction(
    advantage,
):
    eps = 0.2
    grad = jax.vmap(jax.grad(lambda r: clipped_surrogate(r, jnp.float32(advantage), eps)))(
        ratio_grid
    )
    flat = ratio_grid > 1 + eps if advantage > 0 else ratio_grid < 1 - eps
    np.testing.assert_array_equal(grad[flat], 0.0)
    np.testing.assert_allclose(grad[~flat], advantage)  # d(r A)/dr = A, non-zero


def test_ppo_objective_with_diagnostics_hand_computed():
    old = jnp.log(jnp.array([0.5, 0.5, 0.5, 0.5]))
    new = jnp.log(jnp.array([0.5, 0.75, 0.25, 0.65]))  # ratios 1, 1.5, 0.5, 1.3
    advantages = jnp.array([1.0, 1.0, -1.0, -2.0])
    d = ppo_objective_with_diagnostics(old, new, advantages, epsilon=0.2)
    # min(rA, clip(r)A): 1, min(1.5, 1.2) = 1.2, min(-0.5, -0.8) = -0.8, min(-2.6, -2.4) = -2.6
    assert float(d["loss"]) == pytest.approx(-(1.0 + 1.2 - 0.8 - 2.6) / 4, rel=1e-5)
    assert float(d["clip_fraction"]) == pytest.approx(0.75)
    ratios = np.array([1.0, 1.5, 0.5, 1.3])
    assert float(d["approx_kl"]) == pytest.approx(np.mean(ratios - 1 - np.log(ratios)), rel=1e-5)
    assert float(d["approx_kl"]) == pytest.approx(0.0813295, rel=1e-5)
    assert float(d["ratio_mean"]) == pytest.approx(1.075, rel=1e-6)
    assert float(d["ratio_std"]) == pytest.approx(np.sqrt(0.141875), rel=1e-5)
    assert set(d) == {"loss", "clip_fraction", "approx_kl", "ratio_mean", "ratio_std"}


def test_exact_kl_of_diagonal_gaussians_matches_closed_form():
    mu1, mu2 = jnp.array([[0.0, 1.0]]), jnp.array([[0.5, -1.0]])
    ls1, ls2 = jnp.array([[0.0, -0.5]]), jnp.array([[0.3, 0.2]])
    kl = make_distribution(PolicyParams(mu1, ls1)).kl_divergence(
        make_distribution(PolicyParams(mu2, ls2))
    )
    s1, s2 = np.exp(ls1), np.exp(ls2)
    expected = np.sum(np.log(s2 / s1) + (s1**2 + (mu1 - mu2) ** 2) / (2 * s2**2) - 0.5, axis=-1)
    np.testing.assert_allclose(kl, expected, rtol=1e-5)


def test_exact_kl_of_categoricals_matches_closed_form():
    p_logits, q_logits = jnp.array([[0.0, 1.0, 2.0]]), jnp.array([[0.5, 0.0, 2.0]])
    kl = make_distribution(PolicyParams(p_logits)).kl_divergence(
        make_distribution(PolicyParams(q_logits))
    )
    p, q = jax.nn.softmax(p_logits), jax.nn.softmax(q_logits)
    np.testing.assert_allclose(kl, np.sum(p * np.log(p / q), axis=-1), rtol=1e-5)


@pytest.mark.parametrize(
    "kl,expected",
    [(0.1, 2.0), (0.016, 2.0), (0.014, 1.0), (0.01, 1.0), (0.0067, 1.0), (0.0066, 0.5), (0.0, 0.5)],
)
def test_adaptive_beta_moves_the_right_way(kl, expected):
    """target 0.01: double above 0.015, halve below 0.00667, keep in between."""
    assert float(adapt_kl_beta(jnp.float32(1.0), jnp.float32(kl), 0.01)) == expected


def test_adaptive_beta_cannot_underflow_to_zero():
    beta = jnp.float32(1.0)
    for _ in range(200):
        beta = adapt_kl_beta(beta, jnp.float32(0.0), 0.01)
    assert float(beta) == pytest.approx(KL_BETA_MIN)
    assert float(adapt_kl_beta(beta, jnp.float32(1.0), 0.01)) == pytest.approx(2 * KL_BETA_MIN)


def test_value_loss_hand_computed():
    values, old, targets = jnp.array([1.0, 0.0]), jnp.array([0.0, 0.0]), jnp.array([2.0, -1.0])
    # Unclipped: 0.5 * mean((1-2)^2, (0+1)^2) = 0.5.
    assert float(value_loss(values, old, targets, 0.2, clip=False)) == pytest.approx(0.5)
    # Clipped V for sample 0 is 0.2: max(1, (0.2 - 2)^2 = 3.24); sample 1 unchanged (1).
    assert float(value_loss(values, old, targets, 0.2, clip=True)) == pytest.approx(
        0.5 * (3.24 + 1.0) / 2
    )


def test_summarize_loss_terms_describes_the_samples_of_the_steps_taken():
    """Stacked terms ``[epochs, minibatches, B]``: losses are means over the steps taken,
    ratio/KL statistics are over all their samples; skipped steps (here filled with
    junk) do not count. Checked against NumPy on the selected samples."""
    rng = np.random.default_rng(0)
    steps, samples = (2, 3), 5
    log_ratio = rng.normal(0.0, 0.3, (*steps, samples)).astype(np.float32)
    kl = rng.uniform(0.0, 0.1, (*steps, samples)).astype(np.float32)
    scalars = rng.normal(size=(4, *steps)).astype(np.float32)
    taken = np.array([[True, True, True], [True, False, False]])
    log_ratio[~taken] = 50.0  # a skipped step's ratios would dominate every statistic
    terms = LossTerms(*scalars, jnp.asarray(log_ratio), jnp.asarray(kl))
    info = summarize_loss_terms(terms, 0.2, jnp.asarray(taken))

    kept_log_ratio, kept_ratio = log_ratio[taken], np.exp(log_ratio[taken])  # [4, B]
    names = ("total_loss", "policy_loss", "value_loss", "entropy")
    for name, values in zip(names, scalars, strict=True):
        assert float(getattr(info, name)) == pytest.approx(values[taken].mean(), rel=1e-5)
    assert float(info.ratio_mean) == pytest.approx(kept_ratio.mean(), rel=1e-5)
    assert float(info.ratio_std) == pytest.approx(kept_ratio.std(), rel=1e-4)
    assert float(info.ratio_max) == pytest.approx(kept_ratio.max(), rel=1e-6)
    assert float(info.kl) == pytest.approx(kl[taken].mean(), rel=1e-5)
    expected_approx_kl = np.mean(np.expm1(kept_log_ratio) - kept_log_ratio)
    assert float(info.approx_kl) == pytest.approx(expected_approx_kl, rel=1e-5)
    assert float(info.clip_fraction) == pytest.approx(np.mean(np.abs(kept_ratio - 1) > 0.2))


def test_ppo_loss_reports_the_summary_of_its_own_terms():
    """``ppo_loss`` (one minibatch) == ``summarize_loss_terms`` of ``ppo_loss_terms``."""
    network = ActorCritic(action_dim=3, discrete=True, obs_shape=(4,))
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    obs = jax.random.normal(k1, (16, 4))
    params = network.init_params(k2)
    old_logits = jax.random.normal(k3, (16, 3))
    actions = jax.random.randint(k4, (16,), 0, 3)
    old_log_prob = make_distribution(PolicyParams(old_logits)).log_prob(actions)
    value, advantage, target = obs[:, 0], obs[:, 1], obs[:, 2]
    starts = jnp.zeros(16, bool)
    steps = (obs, actions, PolicyParams(old_logits), old_log_prob, value, advantage, target, starts)
    batch = Batch(*jax.tree.map(lambda x: x[None], steps))  # one step of 16 sequences
    coefficients = LossCoefficients(
        clip_eps=jnp.float32(0.2),
        vf_coef=jnp.float32(0.5),
        ent_coef=jnp.float32(0.01),
        kl_beta=jnp.float32(1.0),
    )
    total, info = ppo_loss(params, network.apply, batch, coefficients)
    total_from_terms, terms = ppo_loss_terms(params, network.apply, batch, coefficients)
    assert float(total) == float(total_from_terms) == float(info.total_loss)
    assert terms.log_ratio.shape == terms.kl.shape == (16,)
    expected = summarize_loss_terms(terms, 0.2)
    for name, value in info._asdict().items():
        assert float(value) == pytest.approx(float(getattr(expected, name)), rel=1e-6), name
    assert float(info.clip_fraction) > 0  # the old policy is far from the new: ratios move
