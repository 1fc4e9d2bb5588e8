"""Checks for the exercises of notebook 11 (textual inversion, LoRA, DreamBooth).

Sizes are SD 1.5's: text context width 768 (CLIP ViT-L/14's text encoder),
first-stage U-Net channels 320. A LoRA of rank r on a d_out x d_in matrix
holds A (r, d_in) and B (d_out, r) (Hu et al. 2021, section 4.1).
"""

import torch

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed

SD15_CONTEXT_WIDTH = 768
SD15_FIRST_CHANNELS = 320
EXERCISE_RANK = 4
SD15_VOCABULARY = 49408


def check_textual_inversion_numbers(answer):
    """Exercise 1: numbers trained by textual inversion of one token on SD 1.5."""
    exercise = "Exercise 1 (textual inversion size)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    if answer == (SD15_VOCABULARY + 1) * SD15_CONTEXT_WIDTH or answer == SD15_VOCABULARY * SD15_CONTEXT_WIDTH:
        raise AssertionError(f"{exercise}: that is the whole embedding table; only the new token's row is trained.")
    if answer == 1024:
        raise AssertionError(f"{exercise}: 1024 is SD 2.x's text width (OpenCLIP); SD 1.5 uses OpenAI's CLIP.")
    if answer == 1:
        raise AssertionError(f"{exercise}: one token, yes, but its embedding is a vector: how long is it?")
    assert answer == SD15_CONTEXT_WIDTH, (
        f"{exercise}: {answer} is not it. One row of the text encoder's embedding table has as many numbers "
        "as the text context is wide (pipe.text_encoder.config.hidden_size)."
    )
    passed(exercise, f"{SD15_CONTEXT_WIDTH} numbers: about 3 kB in float32, the size of a learned_embeds file.")


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


def check_lora_merge(my_merge):
    """Exercise 3: the merged LoRA weight W + (alpha / r) B A."""
    exercise = "Exercise 3 (merging a LoRA)"
    if is_unanswered(my_merge):
        return not_answered(exercise)
    if not callable(my_merge):
        raise AssertionError(f"{exercise}: expected a function my_merge(W, A, B, alpha, rank).")
    generator = torch.Generator().manual_seed(0)
    rank, alpha = 4, 8
    W = torch.randn(6, 5, generator=generator)  # (d_out, d_in)
    A = torch.randn(rank, 5, generator=generator)  # (rank, d_in)
    B = torch.randn(6, rank, generator=generator)  # (d_out, rank)
    mine = my_merge(W, A, B, alpha, rank)
    if is_unanswered(mine):
        return not_answered(exercise)
    if not isinstance(mine, torch.Tensor) or mine.shape != W.shape:
        raise AssertionError(
            f"{exercise}: return a tensor shaped like W {tuple(W.shape)}, got "
            f"{type(mine).__name__} {tuple(getattr(mine, 'shape', ()))}."
        )
    if torch.allclose(mine, _unscaled_merge(W, A, B, alpha, rank)):
        raise AssertionError(f"{exercise}: almost: the correction B @ A is multiplied by alpha / rank.")
    if torch.allclose(mine, B @ A * alpha / rank):
        raise AssertionError(f"{exercise}: that is only the correction ΔW; the frozen W is still there.")
    assert torch.allclose(mine, _reference_merge(W, A, B, alpha, rank), atol=1e-5), (
        f"{exercise}: not right. B (d_out, rank) @ A (rank, d_in) has W's shape; scale it by alpha / rank "
        "and add W."
    )
    passed(exercise, "After merging, the layer is an ordinary Linear again: no extra cost per step.")


# For every check: a right and a wrong answer (used by tests/test_exercises.py).
REFERENCE_SOLUTIONS = {
    "check_textual_inversion_numbers": {"right": 768, "wrong": 1024},
    "check_lora_numbers": {"right": 4352, "wrong": 245760},
    "check_lora_merge": {"right": _reference_merge, "wrong": _unscaled_merge},
}
