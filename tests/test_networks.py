"""ActorCritic heads and initialisation."""

from pathlib import Path

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import primitive_counts

from purejaxppo import PPOConfig, make_env, make_policy, make_train
from purejaxppo.networks import (
    ActorCritic,
    PolicyParams,
    action_noise,
    make_distribution,
    orthogonal_init,
    orthogonal_kernels,
    sample_with_noise,
)
from purejaxppo.networks.cnn import PatchConv
from purejaxppo.networks.init import _orthonormal_columns


def flax_init(net, key, obs):
    """flax's own init of a protocol network on ``obs`` ``[B, *obs_shape]`` (one step)."""
    return net.init(
        key, net.initial_carry(obs.shape[0]), obs[None], jnp.ones((1, obs.shape[0]), bool)
    )


def policy_and_value(net, params, obs):
    """``(pi, value)`` of a feed-forward protocol network on ``obs`` ``[B, *obs_shape]``."""
    _, policy, value = net.apply(params, (), obs[None], jnp.zeros((1, obs.shape[0]), bool))
    return make_distribution(jax.tree.map(lambda x: x[0] if x.ndim > 1 else x, policy)), value[0]


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
    flax_params = flax_init(net, jax.random.key(1), jnp.zeros((1, *obs_shape)))
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
        params = flax_init(net, jax.random.key(0), obs)
        pi, value = policy_and_value(net, params, obs)
        assert isinstance(pi, dist_type) and value.shape == (3,)
        if not discrete:
            np.testing.assert_allclose(pi.stddev(), np.exp(-0.5), rtol=1e-6)
        # Policy head gain 0.01: a near-uniform / near-zero-mean initial policy.
        head = params["params"]["actor"]["Dense_2"]["kernel"]
        np.testing.assert_allclose(jnp.linalg.norm(head, axis=0), 0.01, rtol=1e-4)


def test_observations_of_any_shape_are_flattened():
    net = ActorCritic(action_dim=3, discrete=True, obs_shape=(10, 10, 4))
    obs = jnp.zeros((2, 10, 10, 4), jnp.int32)
    params = flax_init(net, jax.random.key(0), obs)
    pi, value = policy_and_value(net, params, obs)
    assert pi.logits.shape == (2, 3) and value.shape == (2,)
    with pytest.raises(ValueError, match=r"does not end in the env's observation shape"):
        policy_and_value(net, params, jnp.zeros((2, 10, 4)))


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


class ReturnsTwoThings(nn.Module):
    @nn.nowrap
    def initial_carry(self, batch_size):
        return ()

    @nn.compact
    def __call__(self, carry, obs, episode_start):
        return PolicyParams(nn.Dense(2)(obs)), nn.Dense(1)(obs)[..., 0]


class WrongLogitsShape(ReturnsTwoThings):
    @nn.compact
    def __call__(self, carry, obs, episode_start):
        return carry, PolicyParams(nn.Dense(3)(obs)), nn.Dense(1)(obs)[..., 0]


class ChangesItsCarry(ReturnsTwoThings):
    @nn.nowrap
    def initial_carry(self, batch_size):
        return jnp.zeros((batch_size, 4))

    @nn.compact
    def __call__(self, carry, obs, episode_start):
        return carry[:, :2], PolicyParams(nn.Dense(2)(obs)), nn.Dense(1)(obs)[..., 0]


class UnhashableFields(ReturnsTwoThings):
    sizes: list = None


@pytest.mark.parametrize(
    ("network", "message"),
    [
        (
            ReturnsTwoThings(),
            r"returned .*; expected \(carry, PolicyParams\(logits_or_mean=\[T, B, 2\]",
        ),
        (WrongLogitsShape(), r"returned policy .*float32\[2, 3, 3\].*expected"),
        (
            ChangesItsCarry(),
            r"returned the carry .*float32\[3, 2\].*initial_carry\(3\).*float32\[3, 4\]",
        ),
        (UnhashableFields(sizes=[1]), r"must be hashable"),
        (nn.Dense(2), r"has no initial_carry\(\)"),
    ],
)
def test_a_network_that_breaks_the_protocol_is_refused_saying_what_was_expected(network, message):
    with pytest.raises(ValueError, match=message):
        make_train(PPOConfig(), network=network)


def test_two_choices_of_network_and_a_cnn_without_an_image_are_refused():
    with pytest.raises(ValueError, match=r"both choose the network"):
        make_train(PPOConfig(network="gru"), network=ActorCritic(2, True, (4,)))
    with pytest.raises(ValueError, match=r"network='cnn' needs image observations .* \(4,\)"):
        make_train(PPOConfig(network="cnn"))


def test_cnn_sees_the_image_and_trains_on_minatar():
    """The conv torso gets MinAtar's [10, 10, C] grid (kernel [3, 3, C, 16]), not a
    flattened vector; one update runs and a policy acts on a raw observation."""
    config = PPOConfig(
        env_name="Breakout-MinAtar",
        network="cnn",
        hidden_sizes=(32,),
        num_envs=4,
        num_steps=8,
        num_minibatches=2,
        total_timesteps=32,
    )
    out = jax.jit(make_train(config))(jax.random.key(0))
    params = out.train_state.params["params"]
    assert params["torso"]["kernel"].shape == (3, 3, 4, 16)
    assert params["actor"]["Dense_0"]["kernel"].shape == (8 * 8 * 16, 32)
    assert np.isfinite(out.metrics["total_loss"]).all()
    obs, _ = make_env_reset("Breakout-MinAtar")
    assert make_policy(out, config)(obs).shape == ()


def make_env_reset(env_name):
    env, env_params = make_env(env_name)
    return env.reset(jax.random.key(0), env_params)


def test_readme_network_example_runs():
    """The README's user-defined network, as printed there, trains and evaluates."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Your own network", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert np.isfinite(float(namespace["score"]))


@pytest.mark.parametrize("batch_shape", [(5,), (2, 3)])
def test_patch_conv_is_flax_conv(batch_shape):
    """The CNN torso's matmul-of-patches convolution equals nn.Conv (VALID, stride 1) with
    the same parameters, on any batch axes."""
    x = jax.random.normal(jax.random.key(0), (*batch_shape, 10, 10, 4))
    ours = PatchConv(16, 3)
    params = ours.init(jax.random.key(1), x)
    flax_conv = nn.Conv(16, (3, 3), padding="VALID")
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(
        jnp.shape, flax_conv.init(jax.random.key(1), x)
    )
    np.testing.assert_allclose(
        ours.apply(params, x), flax_conv.apply(params, x), rtol=1e-5, atol=1e-5
    )
