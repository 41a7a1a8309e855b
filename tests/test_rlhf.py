"""RLHF in miniature (purejaxppo.rlhf): the language, the per-token rewards and GAE, the
reward model's loss, and a short PPO run that raises the reward model's score."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxppo import rlhf
from purejaxppo.rlhf.language import EOS, PAD, WORDS, last_token_index, response_mask

TINY = rlhf.RLHFConfig(
    width=32,
    heads=2,
    layers=1,
    sft_steps=300,
    preference_pairs=1024,
    preference_held_out=256,
    rm_epochs=6,
    rm_lr=1e-3,
    num_prompts=32,
    num_updates=25,
    update_epochs=2,
    num_minibatches=2,
    lr=3e-4,
)


def _tokens(text: str, length: int = 12) -> np.ndarray:
    ids = [WORDS.index(word) for word in text.split()]
    return np.asarray(ids + [PAD] * (length - len(ids)), np.int32)


def _prompt(count: int = 1) -> jnp.ndarray:
    return jnp.asarray([[1, WORDS.index("the"), WORDS.index("movie")]] * count, jnp.int32)


def test_sampled_sentences_are_grammatical_and_end():
    sentences = rlhf.sample_sentences(jax.random.key(0), 256, 12)
    assert sentences.prompt.shape == (256, 3) and sentences.response.shape == (256, 12)
    assert np.all(np.any(np.asarray(sentences.response) == EOS, axis=1))
    # fluency 1 and an EOS: the true quality is tanh(s / 2), inside (-1, 1)
    quality = np.asarray(rlhf.true_quality(*sentences))
    assert np.all(np.abs(quality) < 1)
    assert rlhf.decode(sentences.prompt[0]).split()[0] in ("the", "a")


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("was very good <eos>", np.tanh(1.0)),  # s = 2
        ("was good and the plot was bad <eos>", 0.0),  # s = 1 - 1
        ("was long <eos>", 0.0),  # neutral
        # bigrams movie -> good and good -> good break the grammar, good -> EOS does not:
        # fluency 1/3, s = 2
        ("good good <eos>", np.tanh(1.0) - (1 - 1 / 3)),
        # all 12 tokens and no EOS: s = 2, fluency 1, never ends
        ("was good and the plot was simple and the plot was good", np.tanh(1.0) - 1.0),
    ],
)
def test_true_quality_by_hand(response, expected):
    quality = rlhf.true_quality(_prompt(), jnp.asarray(_tokens(response))[None])
    np.testing.assert_allclose(quality[0], expected, rtol=1e-6, atol=1e-6)


def test_response_mask_and_last_token():
    responses = jnp.asarray(
        np.stack([_tokens("was good <eos>", 5), _tokens("was good good good good", 5)])
    )
    np.testing.assert_array_equal(response_mask(responses), [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(last_token_index(responses), [2, 4])


def test_per_token_rewards_and_masking_by_hand():
    """r_t = -beta * log_ratio_t on the response's tokens, the score added at the last;
    nothing after EOS."""
    mask = jnp.asarray([[True, True, True, False], [True, True, True, True]])
    log_ratio = jnp.asarray([[0.2, -0.4, 1.0, 9.0], [0.0, 0.5, 0.5, -1.0]])
    score = jnp.asarray([3.0, -2.0])
    rewards = rlhf.per_token_rewards(score, log_ratio, mask, jnp.float32(0.5))
    expected = [[-0.1, 0.2, -0.5 + 3.0, 0.0], [0.0, -0.25, -0.25, 0.5 - 2.0]]
    np.testing.assert_allclose(rewards, expected, rtol=1e-6)


def test_exact_kl_by_hand_and_zero_for_the_same_model():
    logits = jnp.log(jnp.asarray([[0.5, 0.5], [0.9, 0.1]]))
    reference = jnp.log(jnp.asarray([[0.25, 0.75], [0.9, 0.1]]))
    expected = 0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75)
    np.testing.assert_allclose(rlhf.exact_kl(logits, reference), [expected, 0.0], atol=1e-7)
    random_logits = jax.random.normal(jax.random.key(0), (3, 5, 7))
    kl = rlhf.exact_kl(random_logits, random_logits)
    assert kl.shape == (3, 5) and np.allclose(kl, 0.0, atol=1e-6)


def test_token_gae_equals_a_numpy_loop_over_each_response():
    """GAE over tokens, the last token terminal and padding zero, against a plain loop:
    A_t = delta_t + gamma lambda A_{t+1}, delta_t = r_t + gamma V_{t+1} - V_t, V after
    the last token 0."""
    rng = np.random.default_rng(0)
    batch, length, gamma, lam = 5, 7, 0.9, 0.8
    ends = np.asarray([0, 3, 6, 2, 5])
    mask = np.arange(length)[None, :] <= ends[:, None]
    rewards = np.where(mask, rng.normal(size=(batch, length)), 0.0).astype(np.float32)
    values = rng.normal(size=(batch, length)).astype(np.float32)
    advantages, targets = rlhf.token_advantages(
        jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(mask), gamma, lam
    )
    expected = np.zeros((batch, length))
    for b in range(batch):
        next_advantage = 0.0
        for t in range(ends[b], -1, -1):
            next_value = values[b, t + 1] if t < ends[b] else 0.0
            delta = rewards[b, t] + gamma * next_value - values[b, t]
            next_advantage = delta + gamma * lam * next_advantage
            expected[b, t] = next_advantage
    np.testing.assert_allclose(advantages, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        targets, np.where(mask, expected + values, 0.0), rtol=1e-5, atol=1e-6
    )


def test_bradley_terry_loss_by_hand():
    chosen, rejected = jnp.asarray([2.0, 0.0]), jnp.asarray([0.0, 1.0])
    expected = np.mean([np.log1p(np.exp(-2.0)), np.log1p(np.exp(1.0))])
    np.testing.assert_allclose(rlhf.bradley_terry_loss(chosen, rejected), expected, rtol=1e-6)


@pytest.fixture(scope="module")
def tiny_models():
    reference, sft_losses = jax.jit(rlhf.pretrain_reference, static_argnums=0)(
        TINY, jax.random.key(0)
    )
    reward = jax.jit(rlhf.train_reward_model, static_argnums=0)(TINY, reference, jax.random.key(1))
    return reference, sft_losses, reward


def test_pretraining_and_the_reward_model_learn(tiny_models):
    _, sft_losses, reward = tiny_models
    assert sft_losses[-20:].mean() < 0.6 * sft_losses[:5].mean()
    # held-out preferences: better than chance against the labels and the truth
    assert reward.held_out_accuracy > 0.6 and reward.held_out_true_accuracy > 0.6


def test_a_short_ppo_run_raises_the_reward_model_score(tiny_models):
    """Two vmapped seeds at a fixed beta: the score of the last updates' responses is
    higher than the reference policy's, and the KL to the reference left zero."""
    reference, _, reward = tiny_models
    train = rlhf.make_rlhf_train(TINY, reference, reward.params)
    _, metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(2), 2))
    score = np.asarray(metrics["score"])
    assert score.shape == (2, TINY.num_updates)
    assert np.all(score[:, -5:].mean(axis=1) > score[:, 0] + 0.2)
    assert np.all(np.asarray(metrics["kl_to_reference"])[:, 0] < 1e-4)  # starts at pi_ref
    assert np.all(np.asarray(metrics["kl_to_reference"])[:, -1] > 0)
    assert np.all(np.asarray(metrics["beta"]) == TINY.beta)


def test_adaptive_beta_follows_the_papers_rule(tiny_models):
    """With kl_target the coefficient halves while the KL is below target / 1.5 (it
    starts at 0, the reference policy)."""
    reference, _, reward = tiny_models
    config = TINY.replace(kl_target=100.0, beta=0.4, num_updates=3)
    _, metrics = jax.jit(rlhf.make_rlhf_train(config, reference, reward.params))(jax.random.key(3))
    np.testing.assert_allclose(metrics["beta"], [0.4, 0.2, 0.1], rtol=1e-6)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"response_length": 6}, r"response_length = 6 cannot hold the language's longest"),
        ({"response_length": 14}, r"max_length = 16 positions cannot hold a prompt \(3 tokens\) "
         r"and response_length = 14; use max_length >= 17"),
        ({"kl_target": 0.0}, r"kl_target must be a finite number > 0, got 0.0"),
        ({"kl_target": 1.0, "beta": 0.0}, r"start from beta > 0"),
        ({"beta": -0.1}, r"beta must be a finite number >= 0"),
        ({"num_minibatches": 5}, r"num_minibatches = 5 must divide num_prompts = 64"),
        ({"objective": "kl_penalty"}, r"objective must be one of \('clip', 'unclipped'\)"),
        ({"width": 30}, r"width = 30 must be divisible by heads = 4"),
        ({"preference_held_out": 4096}, r"preference_held_out = 4096 must be smaller"),
        ({"num_updates": 0}, r"num_updates must be a positive integer, got 0"),
    ],
)  # fmt: skip
def test_bad_settings_are_refused_with_the_field_named(changes, message):
    with pytest.raises(ValueError, match=message):
        rlhf.RLHFConfig(**changes)
