"""Checks for the exercises of notebook 06 (classifier-free guidance)."""

import torch

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed

DEFAULT_GUIDANCE_SCALE = 7.5  # Stable Diffusion's usual default


def _reference_guidance(noise_pred_uncond, noise_pred_text, guidance_scale):
    return noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)


def _guidance_from_the_text_side(noise_pred_uncond, noise_pred_text, guidance_scale):
    """A wrong answer the check recognises: starting from the conditional prediction."""
    return noise_pred_text + guidance_scale * (noise_pred_text - noise_pred_uncond)


def _guidance_swapped(noise_pred_uncond, noise_pred_text, guidance_scale):
    """A wrong answer the check recognises: the two predictions swapped."""
    return noise_pred_text + guidance_scale * (noise_pred_uncond - noise_pred_text)


def check_classifier_free_guidance(classifier_free_guidance):
    """Exercise 1: eps = eps_uncond + s * (eps_text - eps_uncond)."""
    exercise = "Exercise 1 (the CFG line)"
    if is_unanswered(classifier_free_guidance):
        return not_answered(exercise)
    if not callable(classifier_free_guidance):
        raise AssertionError(
            f"{exercise}: expected a function classifier_free_guidance(noise_pred_uncond, noise_pred_text, "
            "guidance_scale)."
        )
    generator = torch.Generator().manual_seed(0)
    noise_pred_uncond = torch.randn(2, 4, 8, 8, generator=generator)  # (2, 4, 8, 8)
    noise_pred_text = torch.randn(2, 4, 8, 8, generator=generator)  # (2, 4, 8, 8)
    for guidance_scale in (0.0, 1.0, 7.5):
        mine = classifier_free_guidance(noise_pred_uncond, noise_pred_text, guidance_scale)
        if is_unanswered(mine):
            return not_answered(exercise)
        if not isinstance(mine, torch.Tensor) or mine.shape != noise_pred_text.shape:
            raise AssertionError(
                f"{exercise}: return a tensor shaped like the predictions {tuple(noise_pred_text.shape)}, "
                f"got {type(mine).__name__} {tuple(getattr(mine, 'shape', ()))}."
            )
        expected = _reference_guidance(noise_pred_uncond, noise_pred_text, guidance_scale)
        if torch.allclose(mine, expected, atol=1e-5):
            continue
        if torch.allclose(mine, _guidance_from_the_text_side(noise_pred_uncond, noise_pred_text, guidance_scale),
                          atol=1e-5):
            raise AssertionError(
                f"{exercise}: you start from noise_pred_text. CFG starts from the *unconditional* prediction "
                "and adds guidance_scale times the difference."
            )
        if torch.allclose(mine, _guidance_swapped(noise_pred_uncond, noise_pred_text, guidance_scale), atol=1e-5):
            raise AssertionError(f"{exercise}: the two predictions are swapped.")
        raise AssertionError(
            f"{exercise}: wrong for guidance_scale = {guidance_scale}. Check: at scale 1 the result must equal "
            "noise_pred_text, at scale 0 it must equal noise_pred_uncond."
        )
    passed(exercise, "noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond).")


def check_plain_conditional_scale(answer):
    """Exercise 2: s = 1 gives the conditional prediction."""
    exercise = "Exercise 2 (no guidance at all)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    if answer == 0:
        raise AssertionError(
            f"{exercise}: at s = 0 the line gives noise_pred_uncond: the prompt is ignored, a common "
            "mix-up. Put s into eps_uncond + s * (eps_text - eps_uncond) and see which s leaves eps_text."
        )
    assert answer == 1, (
        f"{exercise}: {answer} is not it. Put s into eps_uncond + s * (eps_text - eps_uncond): "
        "for which s is the result exactly eps_text?"
    )
    passed(exercise, "At s = 1 the unconditional prediction cancels out (diffusers then skips it).")


def check_extra_weight(answer):
    """Exercise 3: eps_text + w (eps_text - eps_uncond) equals CFG with s = 1 + w, so w = s - 1 = 6.5."""
    exercise = "Exercise 3 (the extra weight)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = DEFAULT_GUIDANCE_SCALE - 1
    if abs(answer - DEFAULT_GUIDANCE_SCALE) < 1e-6:
        raise AssertionError(
            f"{exercise}: 7.5 is s itself. Expand both forms: eps_uncond + s (eps_text - eps_uncond) "
            "= eps_text + (s - ?) (eps_text - eps_uncond)."
        )
    assert abs(answer - expected) < 1e-6, (
        f"{exercise}: {answer} is not it. Write eps_uncond + s (eps_text - eps_uncond) as "
        "eps_text + (something) * (eps_text - eps_uncond) and read off the something for s = 7.5."
    )
    passed(exercise, "w = s - 1: Ho & Salimans' paper uses w, diffusers uses s = 1 + w.")


# For every check: a right and a wrong answer (used by tests/test_exercises.py).
REFERENCE_SOLUTIONS = {
    "check_classifier_free_guidance": {"right": _reference_guidance, "wrong": _guidance_from_the_text_side},
    "check_plain_conditional_scale": {"right": 1, "wrong": 0},
    "check_extra_weight": {"right": 6.5, "wrong": 7.5},
}
