"""A tiny review language with a hidden "true quality": the data of RLHF in miniature.

Sentences follow one grammar::

    BOS DET NOUN | VERB [INTENSIFIER] ADJ ( CONJ DET NOUN VERB [INTENSIFIER] ADJ ) EOS
    ------------   ------------------------------------------------------------------
       prompt          response (one clause, or two joined by "and" / "but")

e.g. ``the plot | was very good but the ending felt dull``. Everything is generated
locally (nothing is downloaded) by :func:`sample_sentences`, a jittable sampler.

The *true quality* of a response (:func:`true_quality`) is what a human would judge and
what the preferences are sampled from; the reward model only ever sees preferences
between grammatical samples, so it is an imperfect proxy of it::

    q = tanh(s / 2) - (1 - fluency) - [no EOS]

``s``: the sentiment, the sum over adjectives of +1 (positive), -1 (negative) or 0
(neutral), doubled after an intensifier; ``fluency``: the fraction of the response's
bigrams (from the last prompt token to its EOS) that the grammar allows. A grammatical
sentence has ``q = tanh(s / 2)`` in ``(-1, 1)``; piling up positive words ("great great
great ...") raises ``s`` but destroys fluency, so its true quality falls while a reward
model that learned "positive words are good" keeps scoring it higher.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PAD, BOS, EOS = 0, 1, 2
DETERMINERS = ("the", "a")
NOUNS = ("movie", "film", "plot", "story", "actor", "music", "ending", "cast")
VERBS = ("was", "is", "felt")
INTENSIFIERS = ("very", "really", "quite")
POSITIVE = ("good", "great", "superb", "lovely", "brilliant", "fun")
NEGATIVE = ("bad", "awful", "dull", "poor", "boring", "weak")
NEUTRAL = ("long", "short", "odd", "simple")
CONJUNCTIONS = ("and", "but")

WORDS = (
    "<pad>", "<bos>", "<eos>", *DETERMINERS, *NOUNS, *VERBS, *INTENSIFIERS,
    *POSITIVE, *NEGATIVE, *NEUTRAL, *CONJUNCTIONS,
)  # fmt: skip
VOCAB_SIZE = len(WORDS)
PROMPT_LENGTH = 3  # BOS DET NOUN
# the longest response: VERB INT ADJ CONJ DET NOUN VERB INT ADJ EOS
MAX_SENTENCE_RESPONSE = 10


def _ids(words: tuple[str, ...]) -> np.ndarray:
    return np.asarray([WORDS.index(word) for word in words], np.int32)


DET_IDS, NOUN_IDS, VERB_IDS = _ids(DETERMINERS), _ids(NOUNS), _ids(VERBS)
INTENSIFIER_IDS, CONJ_IDS = _ids(INTENSIFIERS), _ids(CONJUNCTIONS)
ADJ_IDS = np.concatenate([_ids(POSITIVE), _ids(NEGATIVE), _ids(NEUTRAL)])
POSITIVE_IDS, NEGATIVE_IDS = _ids(POSITIVE), _ids(NEGATIVE)


def _sentiment_table() -> np.ndarray:
    """``[V]``: +1 for a positive adjective, -1 for a negative one, 0 otherwise."""
    table = np.zeros(VOCAB_SIZE, np.float32)
    table[POSITIVE_IDS] = 1.0
    table[NEGATIVE_IDS] = -1.0
    return table


def _grammar_table() -> np.ndarray:
    """``[V, V]`` bool: ``allowed[a, b]`` when the grammar lets ``b`` follow ``a``."""
    allowed = np.zeros((VOCAB_SIZE, VOCAB_SIZE), bool)
    follows = [
        ([BOS], DET_IDS),
        (DET_IDS, NOUN_IDS),
        (NOUN_IDS, VERB_IDS),
        (VERB_IDS, np.concatenate([INTENSIFIER_IDS, ADJ_IDS])),
        (INTENSIFIER_IDS, ADJ_IDS),
        (ADJ_IDS, np.concatenate([CONJ_IDS, [EOS]])),
        (CONJ_IDS, DET_IDS),
        ([EOS], [PAD]),
        ([PAD], [PAD]),
    ]
    for before, after in follows:
        allowed[np.ix_(np.asarray(before), np.asarray(after))] = True
    return allowed


SENTIMENT = _sentiment_table()
GRAMMAR = _grammar_table()
IS_INTENSIFIER = np.isin(np.arange(VOCAB_SIZE), INTENSIFIER_IDS)


class Sentences(NamedTuple):
    """A batch of sentences: ``prompt`` ``[B, P]`` and ``response`` ``[B, L]`` token ids
    (``PAD`` after ``EOS``)."""

    prompt: jax.Array
    response: jax.Array


def decode(tokens: np.ndarray) -> str:
    """The words of a 1-D array of token ids, up to the first EOS (PAD dropped)."""
    words = []
    for token in np.asarray(tokens).tolist():
        if token == EOS:
            break
        if token not in (PAD, BOS):
            words.append(WORDS[token])
    return " ".join(words)


def sample_prompts(key: jax.Array, count: int) -> jax.Array:
    """``[count, P]`` prompts ``BOS DET NOUN``, uniformly."""
    det_key, noun_key = jax.random.split(key)
    det = jax.random.choice(det_key, DET_IDS, (count,))
    noun = jax.random.choice(noun_key, NOUN_IDS, (count,))
    return jnp.stack([jnp.full((count,), BOS), det, noun], axis=1).astype(jnp.int32)


def sample_sentences(key: jax.Array, count: int, response_length: int) -> Sentences:
    """``count`` grammatical sentences: a prompt and a response of one clause or (with
    probability 1/2) two, each with an intensifier with probability 1/3 and an adjective
    that is positive, negative or neutral with probabilities 0.4, 0.4, 0.2. Responses are
    padded to ``response_length`` (at least :data:`MAX_SENTENCE_RESPONSE`)."""
    if response_length < MAX_SENTENCE_RESPONSE:
        raise ValueError(
            f"response_length must be at least {MAX_SENTENCE_RESPONSE} (the longest "
            f"sentence of the grammar), got {response_length}"
        )
    keys = jax.random.split(key, 10)
    prompt = sample_prompts(keys[0], count)

    def adjective(key: jax.Array) -> jax.Array:
        kind_key, word_key = jax.random.split(key)
        kind = jax.random.choice(kind_key, 3, (count,), p=jnp.asarray([0.4, 0.4, 0.2]))
        pos = jax.random.choice(word_key, POSITIVE_IDS, (count,))
        neg = jax.random.choice(jax.random.fold_in(word_key, 1), NEGATIVE_IDS, (count,))
        neutral = jax.random.choice(jax.random.fold_in(word_key, 2), _ids(NEUTRAL), (count,))
        return jnp.select([kind == 0, kind == 1], [pos, neg], neutral)

    def choice(key: jax.Array, ids: np.ndarray) -> jax.Array:
        return jax.random.choice(key, ids, (count,))

    def coin(key: jax.Array, p: float) -> jax.Array:
        return jax.random.bernoulli(key, p, (count,))

    two_clauses = coin(keys[1], 0.5)
    slots = [  # (token, present) in sentence order
        (choice(keys[2], VERB_IDS), jnp.ones(count, bool)),
        (choice(keys[3], INTENSIFIER_IDS), coin(keys[4], 1 / 3)),
        (adjective(keys[5]), jnp.ones(count, bool)),
        (choice(keys[6], CONJ_IDS), two_clauses),
        (choice(keys[7], DET_IDS), two_clauses),
        (choice(keys[8], NOUN_IDS), two_clauses),
        (choice(jax.random.fold_in(keys[9], 0), VERB_IDS), two_clauses),
        (choice(jax.random.fold_in(keys[9], 1), INTENSIFIER_IDS),
         two_clauses & coin(jax.random.fold_in(keys[9], 2), 1 / 3)),
        (adjective(jax.random.fold_in(keys[9], 3)), two_clauses),
        (jnp.full((count,), EOS), jnp.ones(count, bool)),
    ]  # fmt: skip
    tokens = jnp.stack([token for token, _ in slots], axis=1).astype(jnp.int32)
    present = jnp.stack([kept for _, kept in slots], axis=1)
    # move the present tokens to the front, in order; PAD after them
    order = jnp.argsort(~present, axis=1, stable=True)
    packed = jnp.take_along_axis(jnp.where(present, tokens, PAD), order, axis=1)
    padding = jnp.full((count, response_length - packed.shape[1]), PAD, jnp.int32)
    return Sentences(prompt, jnp.concatenate([packed, padding], axis=1))


def response_mask(response: jax.Array) -> jax.Array:
    """``[..., L]`` bool: the response's tokens up to and including its first EOS (all
    of them when it has none): the tokens that were generated and are scored."""
    is_eos = response == EOS
    ended_before = jnp.cumsum(is_eos, axis=-1) - is_eos  # EOS strictly before t
    return ended_before == 0


def last_token_index(response: jax.Array) -> jax.Array:
    """``[...]``: the index of the response's first EOS, or ``L - 1`` without one."""
    mask = response_mask(response)
    return mask.sum(axis=-1) - 1


def true_quality(prompt: jax.Array, response: jax.Array) -> jax.Array:
    """The hidden quality ``q = tanh(s / 2) - (1 - fluency) - [no EOS]`` of each response
    (see the module docstring): ``prompt`` ``[B, P]``, ``response`` ``[B, L]`` -> ``[B]``."""
    mask = response_mask(response)
    previous = jnp.concatenate([prompt[:, -1:], response[:, :-1]], axis=1)
    sentiment = jnp.asarray(SENTIMENT)[response]
    intensified = jnp.where(jnp.asarray(IS_INTENSIFIER)[previous], 2.0, 1.0)
    s = jnp.sum(sentiment * intensified * mask, axis=1)
    allowed = jnp.asarray(GRAMMAR)[previous, response]
    fluency = jnp.sum(allowed & mask, axis=1) / jnp.sum(mask, axis=1)
    ended = jnp.any(response == EOS, axis=1)
    return jnp.tanh(s / 2.0) - (1.0 - fluency) - (~ended).astype(jnp.float32)
