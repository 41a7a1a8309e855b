"""ActorCritic heads and initialisation."""

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import primitive_counts

from purejaxppo import PPOConfig, make_train
from purejaxppo.networks import (
    ActorCritic,
    PolicyParams,
    _orthonormal_columns,
    action_noise,
    make_distribution,
    orthogonal_init,
    orthogonal_kernels,
    sample_with_noise,
)

# Linear-algebra primitives that lower to LAPACK custom calls on CPU.
LAPACK_PRIMITIVES = {"qr", "geqrf", "householder_product", "eigh", "svd", "cholesky", "lu", "schur"}


@pytest.mark.parametrize("shape", [(4, 64), (64, 64), (64, 2), (64, 1), (400, 16)])
@pytest.mark.parametrize("gain", [np.sqrt(2), 0.01, 1.0])
def test_orthogonal_init_equals_flax_qr_initialiser(shape, gain):
    key = jax.random.key(7)
    ours = orthogonal_init(gain)(key, shape)
    flax_qr = nn.initializers.orthogonal(gain)(key, shape)
    np.testing.assert_allclose(ours, flax_qr, atol=1e-5)
    small = min(shape)
    gram = ours.T @ ours if shape[0] >= shape[1] else ours @ ours.T
    np.testing.assert_allclose(gram, gain**2 * np.eye(small), atol=1e-5 * max(gain**2, 1))


@pytest.mark.parametrize(
    ("discrete", "obs_shape", "hidden_sizes"),
    [(True, (4,), (64, 64)), (False, (3,), (7,)), (True, (10, 10, 4), (64, 64))],
)
def test_init_params_is_flax_init_in_tree_shapes_and_gains(discrete, obs_shape, hidden_sizes):
    """The trainer's one-draw init against flax's layer-by-layer init of the same module:
    same tree, shapes and dtypes; every kernel orthogonal with flax's gain for that leaf
    (its Gram matrix); biases and log-std equal."""
    net = ActorCritic(3, discrete, obs_shape, hidden_sizes, log_std_init=-0.5)
    flax_params = net.init(jax.random.key(1), jnp.zeros((1, *obs_shape)))
    ours = net.init_params(jax.random.key(1))
    assert jax.tree.structure(ours) == jax.tree.structure(flax_params)
    for (path, theirs), mine in zip(
        jax.tree_util.tree_leaves_with_path(flax_params), jax.tree.leaves(ours), strict=True
    ):
        assert mine.shape == theirs.shape and mine.dtype == theirs.dtype, path
        if mine.ndim == 2:
            gram = lambda k: k.T @ k if k.shape[0] >= k.shape[1] else k @ k.T
            np.testing.assert_allclose(gram(mine), gram(theirs), atol=2e-5, err_msg=str(path))
        else:
            np.testing.assert_array_equal(mine, theirs, err_msg=str(path))


def test_orthogonal_kernels_padding_leaves_each_kernel_as_drawn_alone():
    """Kernels of one height are orthogonalised together, the narrower ones padded with
    zero columns: each equals the orthonormal columns of its own Gaussian block."""
    shapes, gains = [(4, 64), (64, 64), (64, 2)], [1.0, 2.0, 0.5]
    kernels = orthogonal_kernels(jax.random.key(5), shapes, gains)
    noise = jax.random.normal(jax.random.key(5), (64 * 4 + 64 * 64 + 64 * 2,))
    blocks = np.split(np.asarray(noise), [256, 256 + 4096])
    for (fan_in, fan_out), gain, block, kernel in zip(shapes, gains, blocks, kernels, strict=True):
        alone = _orthonormal_columns(jnp.asarray(block).reshape(64, min(fan_in, fan_out)))
        expected = gain * (alone.T if fan_in < fan_out else alone)
        np.testing.assert_allclose(kernel, expected, atol=1e-5)


def test_vmapped_training_program_has_no_lapack_call():
    """Batched LAPACK kernels on CPU can deadlock XLA's intra-op pool (see networks.py)."""
    tiny = PPOConfig(num_envs=2, num_steps=8, num_minibatches=2, total_timesteps=16)
    jaxpr = jax.make_jaxpr(jax.vmap(make_train(tiny)))(jax.random.split(jax.random.key(0), 2))
    names = set(primitive_counts(jaxpr))
    assert {"scan", "dot_general"} <= names  # the walk does reach the training loop
    assert not names & LAPACK_PRIMITIVES
    # The check can fail: flax's own orthogonal initialiser does call QR.
    flax_init = jax.make_jaxpr(jax.vmap(lambda k: nn.initializers.orthogonal()(k, (4, 4))))
    flax_names = set(primitive_counts(flax_init(jax.random.split(jax.random.key(0), 2))))
    assert flax_names & LAPACK_PRIMITIVES


def test_heads_and_initial_scales():
    obs = jnp.ones((3, 5))
    for discrete, dist_type in [
        (True, distrax.Categorical),
        (False, distrax.MultivariateNormalDiag),
    ]:
        net = ActorCritic(action_dim=2, discrete=discrete, obs_shape=(5,), log_std_init=-0.5)
        params = net.init(jax.random.key(0), obs)
        pi, value = net.apply(params, obs)
        assert isinstance(pi, dist_type) and value.shape == (3,)
        if not discrete:
            np.testing.assert_allclose(pi.stddev(), np.exp(-0.5), rtol=1e-6)
        # Policy head gain 0.01: a near-uniform / near-zero-mean initial policy.
        head = params["params"]["actor"]["Dense_2"]["kernel"]
        np.testing.assert_allclose(jnp.linalg.norm(head, axis=0), 0.01, rtol=1e-4)


def test_observations_of_any_shape_are_flattened():
    net = ActorCritic(action_dim=3, discrete=True, obs_shape=(10, 10, 4))
    obs = jnp.zeros((2, 10, 10, 4), jnp.int32)
    params = net.init(jax.random.key(0), obs)
    pi, value = net.apply(params, obs)
    assert pi.logits.shape == (2, 3) and value.shape == (2,)
    with pytest.raises(ValueError, match=r"does not end in the env's observation shape"):
        net.apply(params, jnp.zeros((2, 10, 4)))


def test_sampling_from_noise_is_the_distributions_own_sample():
    """``sample_with_noise(pi, action_noise(key, ...))`` is exactly the sample that
    ``jax.random.categorical`` (Gumbel-max) and distrax's Gaussian draw with that key."""
    logits = jax.random.normal(jax.random.key(1), (5, 7, 4))
    log_std = 0.3 * jax.random.normal(jax.random.key(2), (5, 7, 4))
    for seed in range(3):
        key = jax.random.key(seed)
        discrete = sample_with_noise(PolicyParams(logits), action_noise(key, logits.shape, True))
        np.testing.assert_array_equal(discrete, jax.random.categorical(key, logits))
        gaussian = PolicyParams(logits, log_std)
        continuous = sample_with_noise(gaussian, action_noise(key, logits.shape, False))
        np.testing.assert_allclose(
            continuous, make_distribution(gaussian).sample(seed=key), rtol=1e-6, atol=1e-6
        )


def test_gumbel_max_samples_follow_the_softmax():
    """Frequencies of 200k Gumbel-max samples match softmax(logits) (4 sigma)."""
    logits = jnp.array([1.0, 0.0, -1.0, 2.0])
    n = 200_000
    noise = action_noise(jax.random.key(0), (n, 4), discrete=True)
    counts = np.bincount(np.asarray(sample_with_noise(PolicyParams(logits), noise)), minlength=4)
    p = np.asarray(jax.nn.softmax(logits))
    np.testing.assert_array_less(np.abs(counts / n - p), 4 * np.sqrt(p * (1 - p) / n))
