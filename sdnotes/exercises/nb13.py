"""Checks for the exercises of notebook 13 (Imagen, DeepFloyd IF, dynamic thresholding).

The thresholding reference is checked against diffusers' own implementation
(DDPMScheduler with thresholding=True) inside the check, so it cannot drift
from the library.
"""

import torch
from diffusers import DDPMScheduler

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed

BASE_SIDE = 64  # Imagen's base model
FINAL_SIDE = 1024  # after the second super-resolution model
TENSOR_CHOICES = ("x0", "noise", "x_t")


def check_pixel_ratio(answer):
    """Exercise 1: pixel values of the 1024x1024 picture over those of the 64x64 one."""
    exercise = "Exercise 1 (how much bigger the last stage is)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = (FINAL_SIDE * FINAL_SIDE * 3) / (BASE_SIDE * BASE_SIDE * 3)
    if answer == FINAL_SIDE / BASE_SIDE:
        raise AssertionError(
            f"{exercise}: {answer:g} is how much longer each *side* is. A picture has side × side pixels."
        )
    assert answer == expected, (
        f"{exercise}: {answer} is not it. Count the values: 3 × {FINAL_SIDE} × {FINAL_SIDE} against "
        f"3 × {BASE_SIDE} × {BASE_SIDE}, and divide."
    )
    passed(exercise, f"{expected:g} times as many values: the last super-resolution stage is the expensive one.")


def check_thresholded_tensor(answer):
    """Exercise 2: which tensor dynamic thresholding acts on."""
    exercise = "Exercise 2 (what gets thresholded)"
    if is_unanswered(answer):
        return not_answered(exercise)
    if not isinstance(answer, str):
        raise AssertionError(f"{exercise}: answer with a string in quotes, one of {TENSOR_CHOICES}.")
    name = answer.strip().lower().replace(" ", "")
    if name in ("x_0", "x0_pred", "x̂0", "x̂₀", "x₀"):
        name = "x0"
    if name in ("eps", "epsilon", "noise_pred"):
        name = "noise"
    if name not in TENSOR_CHOICES:
        raise AssertionError(f"{exercise}: {answer!r} is not one of {TENSOR_CHOICES}.")
    if name == "noise":
        raise AssertionError(
            f"{exercise}: not the noise. The predicted noise is Gaussian and has no natural range to clip to; "
            f"the range [-1, 1] belongs to pictures. Which prediction is a picture?"
        )
    if name == "x_t":
        raise AssertionError(
            f"{exercise}: not x_t. The noisy sample is supposed to hold noise and may leave [-1, 1]; "
            f"thresholding acts on the model's guess of the finished picture."
        )
    passed(exercise, "It clips and rescales the predicted clean picture x̂₀, which must lie in [-1, 1].")


def _dynamic_threshold(x0_pred, ratio):
    flat = x0_pred.reshape(x0_pred.shape[0], -1)
    s = torch.quantile(flat.abs(), ratio, dim=1).clamp(min=1)[:, None]
    return (torch.maximum(torch.minimum(flat, s), -s) / s).reshape(x0_pred.shape)


def _reference_thresholded_noise(x_t, noise_pred, alphabar, ratio):
    alphabar = torch.as_tensor(alphabar, dtype=x_t.dtype)
    x0_pred = (x_t - (1 - alphabar).sqrt() * noise_pred) / alphabar.sqrt()
    x0_thresholded = _dynamic_threshold(x0_pred, ratio)
    return (x_t - alphabar.sqrt() * x0_thresholded) / (1 - alphabar).sqrt()


def _thresholding_the_noise(x_t, noise_pred, alphabar, ratio):
    """A wrong answer the check recognises: dynamic thresholding applied to the noise prediction."""
    return _dynamic_threshold(noise_pred, ratio)


def check_thresholded_noise(my_thresholded_noise):
    """Exercise 3: noise prediction -> x0 -> dynamic thresholding -> noise prediction again."""
    exercise = "Exercise 3 (thresholding through x̂₀)"
    if is_unanswered(my_thresholded_noise):
        return not_answered(exercise)
    if not callable(my_thresholded_noise):
        raise AssertionError(f"{exercise}: expected a function my_thresholded_noise(x_t, noise_pred, alphabar, ratio).")
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", thresholding=True,
                              dynamic_thresholding_ratio=0.995, sample_max_value=float("inf"))
    generator = torch.Generator().manual_seed(10)
    for t, noise_scale in ((100, 1.0), (500, 3.0), (900, 3.0)):
        x_t = torch.randn(3, 3, 8, 8, generator=generator)  # (3, 3, 8, 8)
        noise_pred = noise_scale * torch.randn(3, 3, 8, 8, generator=generator)  # (3, 3, 8, 8)
        alphabar = scheduler.alphas_cumprod[t]
        expected = _reference_thresholded_noise(x_t, noise_pred, alphabar, 0.995)
        # the reference's x0 must be what diffusers' step uses
        x0_of_expected = (x_t - (1 - alphabar).sqrt() * expected) / alphabar.sqrt()
        library_x0 = scheduler.step(noise_pred, t, x_t, generator=torch.Generator().manual_seed(0)).pred_original_sample
        assert torch.allclose(x0_of_expected, library_x0, atol=1e-4)
        mine = my_thresholded_noise(x_t.clone(), noise_pred.clone(), alphabar.item(), 0.995)
        if is_unanswered(mine):
            return not_answered(exercise)
        if not isinstance(mine, torch.Tensor) or mine.shape != noise_pred.shape:
            raise AssertionError(
                f"{exercise}: return a tensor shaped like noise_pred {tuple(noise_pred.shape)}, "
                f"got {type(mine).__name__} {tuple(getattr(mine, 'shape', ()))}."
            )
        if torch.allclose(mine, expected, atol=1e-4):
            continue
        if torch.allclose(mine, _thresholding_the_noise(x_t, noise_pred, alphabar, 0.995), atol=1e-4):
            raise AssertionError(
                f"{exercise}: you thresholded the noise prediction itself. First compute "
                f"x0 = (x_t - sqrt(1 - alphabar) * noise_pred) / sqrt(alphabar), threshold x0, then turn it back: "
                f"noise = (x_t - sqrt(alphabar) * x0_thresholded) / sqrt(1 - alphabar)."
            )
        if torch.allclose(mine, _dynamic_threshold((x_t - (1 - alphabar).sqrt() * noise_pred) / alphabar.sqrt(),
                                                   0.995), atol=1e-4):
            raise AssertionError(f"{exercise}: that is the thresholded x̂₀; the function should return the "
                                 f"matching *noise* prediction (convert back at the same x_t).")
        raise AssertionError(
            f"{exercise}: wrong at t = {t}. Per picture: s = quantile(|x0|, ratio) over all its values, "
            f"s = max(s, 1), x0 = clamp(x0, -s, s) / s; then convert x0 back to a noise prediction."
        )
    passed(exercise, "Your noise prediction leads to the same x̂₀ as DDPMScheduler(thresholding=True).")


# For every check: a right and a wrong answer (used by tests/test_exercises.py).
REFERENCE_SOLUTIONS = {
    "check_pixel_ratio": {"right": 256, "wrong": 16},
    "check_thresholded_tensor": {"right": "x0", "wrong": "noise"},
    "check_thresholded_noise": {"right": _reference_thresholded_noise, "wrong": _thresholding_the_noise},
}
