"""Checks for the exercises of notebook 11 (textual inversion, LoRA, DreamBooth).

Exercise 1 runs the learner's `add_new_word` on the pocket model's own CLIP
tokenizer and text encoder (assets/pocket/) and checks the new embedding row.
Exercise 2 uses SD 1.5's sizes: text context width 768 (CLIP ViT-L/14's text
encoder), first-stage U-Net channels 320; a LoRA of rank r on a
d_out x d_in matrix holds A (r, d_in) and B (d_out, r) (Hu et al. 2021,
section 4.1). Exercise 3 compares the learner's merge with the weight peft
itself writes when it merges a LoRA layer (`LoraLayer.merge`, what
`pipe.fuse_lora()` calls).
"""

import torch

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed

SD15_CONTEXT_WIDTH = 768
SD15_FIRST_CHANNELS = 320
EXERCISE_RANK = 4
EXERCISE_PLACEHOLDER = "<my-ball>"
EXERCISE_INITIALIZER = "ball"


def _pocket_tokenizer_and_text_encoder():
    """The pocket model's CLIP tokenizer and text encoder, read from assets/pocket/ (no download)."""
    from transformers import CLIPTextModel, CLIPTokenizer
    from transformers.utils import logging

    from sdnotes.paths import POCKET_DIR

    bars_were_on = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        tokenizer = CLIPTokenizer.from_pretrained(POCKET_DIR / "tokenizer")
        text_encoder = CLIPTextModel.from_pretrained(POCKET_DIR / "text_encoder")
    finally:
        if bars_were_on:
            logging.enable_progress_bar()
    return tokenizer, text_encoder


def _reference_add_new_word(tokenizer, text_encoder, placeholder, initializer):
    tokenizer.add_tokens(placeholder)  # 1. the tokenizer learns the new word
    placeholder_id = tokenizer.convert_tokens_to_ids(placeholder)
    text_encoder.resize_token_embeddings(len(tokenizer))  # 2. the table gets one more row
    initializer_id = tokenizer(initializer, add_special_tokens=False).input_ids[0]
    table = text_encoder.get_input_embeddings().weight  # (vocabulary + 1, d)
    with torch.no_grad():
        table[placeholder_id] = table[initializer_id]  # 3. the new row starts as the initializer's
    return placeholder_id


def _add_new_word_without_copying(tokenizer, text_encoder, placeholder, initializer):
    """A wrong answer the check recognises: the row is added but left as resize_token_embeddings made it."""
    tokenizer.add_tokens(placeholder)
    text_encoder.resize_token_embeddings(len(tokenizer))
    return tokenizer.convert_tokens_to_ids(placeholder)


def check_new_word(add_new_word):
    """Exercise 1: add a placeholder token whose embedding row starts as the initializer word's."""
    exercise = "Exercise 1 (a new word for textual inversion)"
    if is_unanswered(add_new_word):
        return not_answered(exercise)
    if not callable(add_new_word):
        raise AssertionError(f"{exercise}: expected a function add_new_word(tokenizer, text_encoder, placeholder, "
                             "initializer).")
    tokenizer, text_encoder = _pocket_tokenizer_and_text_encoder()
    old_table = text_encoder.get_input_embeddings().weight.detach().clone()  # (vocabulary, d)
    initializer_id = tokenizer(EXERCISE_INITIALIZER, add_special_tokens=False).input_ids[0]
    try:
        returned_id = add_new_word(tokenizer, text_encoder, EXERCISE_PLACEHOLDER, EXERCISE_INITIALIZER)
    except IndexError as error:
        raise AssertionError(f"{exercise}: the table has no row for the new token ({error}). After "
                             "tokenizer.add_tokens, grow the table with "
                             "text_encoder.resize_token_embeddings(len(tokenizer)).") from None
    if is_unanswered(returned_id):
        return not_answered(exercise)
    if tokenizer.tokenize(f"a {EXERCISE_PLACEHOLDER}")[-1] != EXERCISE_PLACEHOLDER:
        raise AssertionError(f"{exercise}: the tokenizer still splits {EXERCISE_PLACEHOLDER!r} into pieces: "
                             "add it with tokenizer.add_tokens(placeholder).")
    placeholder_id = tokenizer.convert_tokens_to_ids(EXERCISE_PLACEHOLDER)
    table = text_encoder.get_input_embeddings().weight.detach()
    if table.shape[0] != len(tokenizer):
        raise AssertionError(f"{exercise}: the embedding table has {table.shape[0]} rows for {len(tokenizer)} "
                             "tokens: call text_encoder.resize_token_embeddings(len(tokenizer)).")
    if as_number(exercise, returned_id) != placeholder_id:
        raise AssertionError(f"{exercise}: return the new token's id, tokenizer.convert_tokens_to_ids(placeholder) "
                             f"= {placeholder_id}; got {returned_id!r}.")
    if not torch.equal(table[:len(old_table)], old_table):
        raise AssertionError(f"{exercise}: a row of the old vocabulary changed; only the new row may be written.")
    if not torch.allclose(table[placeholder_id], old_table[initializer_id]):
        raise AssertionError(f"{exercise}: the new row is not the embedding of {EXERCISE_INITIALIZER!r}; copy "
                             "table[initializer_id] into table[placeholder_id] (inside torch.no_grad()).")
    ids = tokenizer([f"a {EXERCISE_PLACEHOLDER}", f"a {EXERCISE_INITIALIZER}"], padding="max_length",
                    max_length=tokenizer.model_max_length, return_tensors="pt").input_ids  # (2, 77)
    with torch.no_grad():
        context = text_encoder(ids)[0]  # (2, 77, d)
    assert torch.allclose(context[0], context[1], atol=1e-5), (
        f"{exercise}: the text encoder reads 'a {EXERCISE_PLACEHOLDER}' differently from 'a {EXERCISE_INITIALIZER}'."
    )
    passed(exercise, f"token {placeholder_id}; the text encoder reads 'a {EXERCISE_PLACEHOLDER}' exactly as "
                     f"'a {EXERCISE_INITIALIZER}' until training moves the new row.")


def lora_numbers(d_in, d_out, rank):
    return rank * d_in + d_out * rank


def check_lora_numbers(answer):
    """Exercise 2: numbers in a rank-4 LoRA on a 768 -> 320 projection."""
    exercise = "Exercise 2 (LoRA size of one layer)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = lora_numbers(SD15_CONTEXT_WIDTH, SD15_FIRST_CHANNELS, EXERCISE_RANK)
    if answer == SD15_CONTEXT_WIDTH * SD15_FIRST_CHANNELS:
        raise AssertionError(f"{exercise}: that is the frozen matrix W itself; count A (r × 768) and B (320 × r).")
    if answer in (EXERCISE_RANK * SD15_CONTEXT_WIDTH, EXERCISE_RANK * SD15_FIRST_CHANNELS):
        raise AssertionError(f"{exercise}: that is only one of the two matrices; add the other.")
    assert answer == expected, (
        f"{exercise}: {answer} is not it. A has shape (rank, d_in) and B has shape (d_out, rank)."
    )
    passed(exercise, f"{expected:,} numbers instead of {SD15_CONTEXT_WIDTH * SD15_FIRST_CHANNELS:,}: "
                     f"{expected / (SD15_CONTEXT_WIDTH * SD15_FIRST_CHANNELS):.1%} of the layer.")


def _reference_merge(W, A, B, alpha, rank):
    return W + (alpha / rank) * B @ A


def _unscaled_merge(W, A, B, alpha, rank):
    """A wrong answer the check recognises: the alpha / rank factor left out."""
    return W + B @ A


def _trained_peft_layer(rank, alpha, d_in=12, d_out=10):
    """A Linear wrapped by peft's LoRA, with B set to random numbers (as after training; B starts at zero)."""
    from peft import LoraConfig, inject_adapter_in_model

    generator = torch.Generator().manual_seed(0)
    model = torch.nn.Module()
    model.to_k = torch.nn.Linear(d_in, d_out, bias=False)
    with torch.no_grad():
        model.to_k.weight.copy_(torch.randn(d_out, d_in, generator=generator))  # (d_out, d_in)
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, target_modules=["to_k"],
                                       init_lora_weights="gaussian"), model)
    layer = model.to_k
    with torch.no_grad():
        layer.lora_B["default"].weight.copy_(torch.randn(d_out, rank, generator=generator))  # (d_out, rank)
    return layer


def check_lora_merge(my_merge):
    """Exercise 3: the merged LoRA weight W + (alpha / r) B A, against peft's own merge."""
    exercise = "Exercise 3 (merging a LoRA)"
    if is_unanswered(my_merge):
        return not_answered(exercise)
    if not callable(my_merge):
        raise AssertionError(f"{exercise}: expected a function my_merge(W, A, B, alpha, rank).")
    rank, alpha = EXERCISE_RANK, 2 * EXERCISE_RANK  # α / r = 2, so that a missing factor shows
    layer = _trained_peft_layer(rank, alpha)
    W = layer.base_layer.weight.detach().clone()  # (d_out, d_in)
    A = layer.lora_A["default"].weight.detach().clone()  # (rank, d_in)
    B = layer.lora_B["default"].weight.detach().clone()  # (d_out, rank)
    x = torch.randn(3, W.shape[1], generator=torch.Generator().manual_seed(1))  # (3, d_in)
    with torch.no_grad():
        unmerged_output = layer(x)  # W x + (α/r) B A x, computed by peft's forward
        mine = my_merge(W.clone(), A.clone(), B.clone(), alpha, rank)
        if is_unanswered(mine):
            return not_answered(exercise)
        if not isinstance(mine, torch.Tensor) or mine.shape != W.shape:
            raise AssertionError(
                f"{exercise}: return a tensor shaped like W {tuple(W.shape)}, got "
                f"{type(mine).__name__} {tuple(getattr(mine, 'shape', ()))}."
            )
        layer.merge()  # peft writes W + ΔW into the base layer (pipe.fuse_lora() does this for every layer)
        peft_merged = layer.base_layer.weight.detach().clone()
    if torch.allclose(mine, _unscaled_merge(W, A, B, alpha, rank)):
        raise AssertionError(f"{exercise}: almost: the correction B @ A is multiplied by alpha / rank "
                             f"(here {alpha} / {rank}).")
    if torch.allclose(mine, B @ A * alpha / rank):
        raise AssertionError(f"{exercise}: that is only the correction ΔW; the frozen W is still there.")
    assert torch.allclose(mine, peft_merged, atol=1e-5), (
        f"{exercise}: not what peft merges. B (d_out, rank) @ A (rank, d_in) has W's shape; scale it by "
        "alpha / rank and add W."
    )
    assert torch.allclose(x @ mine.T, unmerged_output, atol=1e-5)
    passed(exercise, "the same weight peft's merge writes, and the same outputs as the layer with its adapter: "
                     "after merging, the layer is an ordinary Linear again, with no extra cost per step.")


# For every check: a right and a wrong answer (used by tests/test_exercises.py).
REFERENCE_SOLUTIONS = {
    "check_new_word": {"right": _reference_add_new_word, "wrong": _add_new_word_without_copying},
    "check_lora_numbers": {"right": 4352, "wrong": 245760},
    "check_lora_merge": {"right": _reference_merge, "wrong": _unscaled_merge},
}
