"""Checks for the exercises of notebook 04 (tokens and embeddings).

Token counts come from the course's offline CLIP tokenizer; the learner's
functions are tested on a small seeded random CLIP text encoder and a random
table, against the library or a reference written here.
"""

import torch
from transformers import CLIPTextConfig, CLIPTextModel

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed

SLOTS_PROMPT = "a dreambeach at sunset"


def _slots_used_by(prompt):
    from sdnotes.tokenizer import load_tokenizer

    return len(load_tokenizer("sd1")(prompt).input_ids)


def check_slots_used(answer):
    """Exercise 1: slots filled by SLOTS_PROMPT before padding (start and end included)."""
    exercise = "Exercise 1 (slots used)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = _slots_used_by(SLOTS_PROMPT)
    number_of_words = len(SLOTS_PROMPT.split())
    if answer == 77:
        raise AssertionError(f"{exercise}: every prompt fills all 77 slots with padding; "
                             "count only the slots before the padding starts.")
    if answer == expected - 2:
        raise AssertionError(f"{exercise}: close: you counted the prompt's pieces; add the start and end tokens.")
    if answer == number_of_words + 2:
        raise AssertionError(f"{exercise}: you counted one token per word. 'dreambeach' is not in the "
                             "vocabulary as a whole: how is it split?")
    assert answer == expected, (
        f"{exercise}: {answer!r} is not it. Print tokenizer.tokenize({SLOTS_PROMPT!r}) and "
        f"len(tokenizer({SLOTS_PROMPT!r}).input_ids)."
    )
    passed(exercise, f"start + {expected - 2} pieces (dream, beach</w> among them) + end = {expected}.")


def _small_text_encoder():
    """A seeded random CLIP text encoder, small enough to build in milliseconds."""
    config = CLIPTextConfig(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                            num_attention_heads=2, max_position_embeddings=16,
                            pad_token_id=1, bos_token_id=998, eos_token_id=999)
    with torch.random.fork_rng(devices=[]):  # seeded, without touching the notebook's random state
        torch.manual_seed(0)
        text_encoder = CLIPTextModel(config).eval()
    return text_encoder


def reference_embed(text_encoder, input_ids):
    """Token vectors plus position vectors, (batch, length, d)."""
    token_vectors = text_encoder.get_input_embeddings()(input_ids)  # (batch, length, d)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]  # (1, length)
    position_vectors = text_encoder.embeddings.position_embedding(positions)  # (1, length, d)
    return token_vectors + position_vectors


def _embed_tokens_only(text_encoder, input_ids):
    """A wrong answer the check recognises: the position vectors are missing."""
    return text_encoder.get_input_embeddings()(input_ids)


def check_embed(my_embed):
    """Exercise 2: the learner's embedding layer, compared with text_encoder.embeddings."""
    exercise = "Exercise 2 (embeddings by hand)"
    if is_unanswered(my_embed):
        return not_answered(exercise)
    if not callable(my_embed):
        raise AssertionError(f"{exercise}: expected a function my_embed(text_encoder, input_ids).")
    text_encoder = _small_text_encoder()
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, 1000, (2, 16), generator=generator)  # (2, 16)
    with torch.no_grad():
        mine = my_embed(text_encoder, input_ids)
        if is_unanswered(mine):
            return not_answered(exercise)
        expected = text_encoder.embeddings(input_ids)  # (2, 16, 32)
        tokens_only = _embed_tokens_only(text_encoder, input_ids)
        positions_only = expected - tokens_only
    if not isinstance(mine, torch.Tensor) or tuple(mine.shape) != tuple(expected.shape):
        raise AssertionError(
            f"{exercise}: expected a tensor of shape {tuple(expected.shape)} (batch, length, d), got "
            f"{type(mine).__name__} {tuple(getattr(mine, 'shape', ()))}."
        )
    if torch.allclose(mine, tokens_only, atol=1e-6):
        raise AssertionError(f"{exercise}: these are the token vectors only; add the position vectors "
                             "(text_encoder.embeddings.position_embedding of 0, 1, ..., length - 1).")
    if torch.allclose(mine, positions_only, atol=1e-6):
        raise AssertionError(f"{exercise}: these are the position vectors only; add the token vectors.")
    assert torch.allclose(mine, expected, atol=1e-6), (
        f"{exercise}: not the same as text_encoder.embeddings(input_ids). Look up the ids in "
        f"get_input_embeddings(), look up positions 0..length-1 in embeddings.position_embedding, add."
    )
    passed(exercise, "Your embeddings match the library's CLIPTextEmbeddings.")


def reference_nearest(table, token_id, k):
    """Ids of the k rows most cosine-similar to row token_id, best first, without token_id itself."""
    unit_table = table / table.norm(dim=1, keepdim=True)
    similarity = unit_table @ unit_table[token_id]
    similarity[token_id] = -2.0
    return similarity.topk(k).indices.tolist()


def _nearest_by_dot_product(table, token_id, k):
    """A wrong answer the check recognises: dot product instead of cosine."""
    similarity = table @ table[token_id]
    similarity[token_id] = -float("inf")
    return similarity.topk(k).indices.tolist()


def _as_id_list(exercise, answer):
    if isinstance(answer, torch.Tensor):
        answer = answer.flatten().tolist()
    if not isinstance(answer, (list, tuple)):
        raise AssertionError(f"{exercise}: return a list (or 1-D tensor) of token ids, got {type(answer).__name__}.")
    ids = []
    for value in answer:
        ids.append(int(as_number(exercise, value)))
    return ids


def check_nearest(my_nearest):
    """Exercise 3: the learner's cosine nearest-neighbour search."""
    exercise = "Exercise 3 (nearest tokens)"
    if is_unanswered(my_nearest):
        return not_answered(exercise)
    if not callable(my_nearest):
        raise AssertionError(f"{exercise}: expected a function my_nearest(table, token_id, k).")
    generator = torch.Generator().manual_seed(2)
    directions = torch.randn(200, 8, generator=generator)  # (200, 8)
    lengths = torch.rand(200, 1, generator=generator) * 3 + 0.1  # rows of very different lengths
    table = directions * lengths  # (200, 8)
    k = 5
    for token_id in (0, 17, 123):
        answer = my_nearest(table.clone(), token_id, k)
        if is_unanswered(answer):
            return not_answered(exercise)
        answer = _as_id_list(exercise, answer)
        expected = reference_nearest(table.clone(), token_id, k)
        if answer == expected:
            continue
        if token_id in answer:
            raise AssertionError(f"{exercise}: leave the token itself out (it is always its own best match).")
        if answer == _nearest_by_dot_product(table.clone(), token_id, k):
            raise AssertionError(f"{exercise}: that ranks by dot product, which favours long rows. "
                                 "Divide every row by its length first (cosine similarity).")
        if sorted(answer) == sorted(expected):
            raise AssertionError(f"{exercise}: the right ids in the wrong order: most similar first.")
        if len(answer) != k:
            raise AssertionError(f"{exercise}: expected {k} ids, got {len(answer)}.")
        raise AssertionError(
            f"{exercise}: wrong for token {token_id}: expected {expected}, got {answer}. Normalise the rows, "
            f"take unit_table @ unit_table[token_id], exclude token_id, then topk."
        )
    passed(exercise, "Same neighbours as the reference, for three tokens.")


# For every check: a right and a wrong answer (used by tests/test_exercises.py).
REFERENCE_SOLUTIONS = {
    "check_slots_used": {"right": 7, "wrong": 6},
    "check_embed": {"right": reference_embed, "wrong": _embed_tokens_only},
    "check_nearest": {"right": reference_nearest, "wrong": _nearest_by_dot_product},
}
