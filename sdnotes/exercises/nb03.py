"""Checks for the exercises of notebook 03 (the VAE and latent space).

The learner's functions are tested on seeded random tensors against reference
versions written here; the numbers are computed, not typed in.
"""

import math

import torch

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed

SD_VAE_FACTOR = 8  # Stable Diffusion 1.x/2.x: the VAE halves width and height three times
SD_LATENT_CHANNELS = 4


def check_latent_values_768(answer):
    """Exercise 1: how many numbers a 768×768 SD 2.x latent holds."""
    exercise = "Exercise 1 (a 768×768 latent)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    latent_side = 768 // SD_VAE_FACTOR
    expected = SD_LATENT_CHANNELS * latent_side * latent_side
    if answer == 3 * 768 * 768:
        raise AssertionError(f"{exercise}: {answer:,} is the number of values in the picture, not the latent.")
    if answer == latent_side * latent_side:
        raise AssertionError(f"{exercise}: {answer:,} is one channel only; the latent has {SD_LATENT_CHANNELS}.")
    if answer == 3 * latent_side * latent_side:
        raise AssertionError(f"{exercise}: close, but the latent has {SD_LATENT_CHANNELS} channels, not 3.")
    assert answer == expected, (
        f"{exercise}: {answer!r} is not it. The VAE divides width and height by {SD_VAE_FACTOR} "
        f"and keeps {SD_LATENT_CHANNELS} channels: channels × (768 / {SD_VAE_FACTOR}) × (768 / {SD_VAE_FACTOR})."
    )
    passed(exercise, f"4 × 96 × 96 = {expected:,}, again 48 times fewer than 3 × 768 × 768 = {3 * 768 * 768:,}.")


def reference_psnr(a, b):
    """PSNR in dB of two tensors with values in [0, 1]."""
    mean_squared_error = ((a.float() - b.float()) ** 2).mean()
    return 10 * torch.log10(1 / mean_squared_error)


def _psnr_natural_log(a, b):
    """A wrong answer the check recognises: ln instead of log10."""
    mean_squared_error = ((a - b) ** 2).mean()
    return 10 * torch.log(1 / mean_squared_error)


def _psnr_for_0_to_255(a, b):
    """A wrong answer the check recognises: peak value 255 instead of 1."""
    mean_squared_error = ((a - b) ** 2).mean()
    return 10 * torch.log10(255**2 / mean_squared_error)


def check_psnr(my_psnr):
    """Exercise 2: the learner's PSNR for pictures in [0, 1]."""
    exercise = "Exercise 2 (PSNR)"
    if is_unanswered(my_psnr):
        return not_answered(exercise)
    if not callable(my_psnr):
        raise AssertionError(f"{exercise}: expected a function my_psnr(a, b).")
    generator = torch.Generator().manual_seed(3)
    for noise_level in (0.01, 0.05, 0.2):
        a = torch.rand(2, 3, 16, 16, generator=generator)  # (2, 3, 16, 16) in [0, 1]
        b = (a + noise_level * torch.randn(a.shape, generator=generator)).clamp(0, 1)
        answer = my_psnr(a, b)
        if is_unanswered(answer):
            return not_answered(exercise)
        answer = as_number(exercise, answer)
        expected = reference_psnr(a, b).item()
        if math.isclose(answer, expected, rel_tol=1e-4):
            continue
        if math.isclose(answer, _psnr_natural_log(a, b).item(), rel_tol=1e-4):
            raise AssertionError(f"{exercise}: use log base 10 (torch.log10), not the natural log.")
        if math.isclose(answer, _psnr_for_0_to_255(a, b).item(), rel_tol=1e-4):
            raise AssertionError(f"{exercise}: the pictures are in [0, 1], so the peak value is 1, not 255.")
        if math.isclose(answer, -expected, rel_tol=1e-4):
            raise AssertionError(f"{exercise}: the sign is flipped: PSNR = 10 log10(1 / MSE), so it is positive.")
        raise AssertionError(
            f"{exercise}: got {answer:.3f} dB where {expected:.3f} dB was expected. "
            f"PSNR = 10 * log10(1 / MSE), MSE = mean of (a - b) ** 2 over all values."
        )
    passed(exercise, "Each halving of the error (a quarter of the MSE) adds about 6 dB.")


def reference_slerp(a, b, fraction):
    """Spherical interpolation between two tensors of the same shape."""
    a_flat = a.flatten().double()
    b_flat = b.flatten().double()
    cos_angle = torch.dot(a_flat, b_flat) / (a_flat.norm() * b_flat.norm())
    angle = torch.arccos(cos_angle.clamp(-1, 1))
    weight_a = torch.sin((1 - fraction) * angle) / torch.sin(angle)
    weight_b = torch.sin(fraction * angle) / torch.sin(angle)
    return (weight_a * a.double() + weight_b * b.double()).to(a.dtype)


def _lerp(a, b, fraction):
    """A wrong answer the check recognises: linear interpolation."""
    return (1 - fraction) * a + fraction * b


def check_slerp(my_slerp):
    """Exercise 3: the learner's spherical interpolation."""
    exercise = "Exercise 3 (slerp)"
    if is_unanswered(my_slerp):
        return not_answered(exercise)
    if not callable(my_slerp):
        raise AssertionError(f"{exercise}: expected a function my_slerp(a, b, fraction).")
    generator = torch.Generator().manual_seed(4)
    a = torch.randn(4, 8, 8, generator=generator)  # (4, 8, 8), like a small noise latent
    b = torch.randn(4, 8, 8, generator=generator)
    for fraction in (0.0, 0.25, 0.5, 0.9, 1.0):
        mine = my_slerp(a, b, fraction)
        if is_unanswered(mine):
            return not_answered(exercise)
        if not isinstance(mine, torch.Tensor) or mine.shape != a.shape:
            raise AssertionError(
                f"{exercise}: my_slerp should return a tensor shaped like a {tuple(a.shape)}, "
                f"got {type(mine).__name__} {tuple(getattr(mine, 'shape', ()))}."
            )
        expected = reference_slerp(a, b, fraction)
        if torch.allclose(mine.float(), expected, atol=1e-4):
            continue
        if torch.allclose(mine.float(), _lerp(a, b, fraction), atol=1e-4):
            raise AssertionError(
                f"{exercise}: that is linear interpolation. Slerp weights a and b with "
                f"sin((1 - f) θ) / sin θ and sin(f θ) / sin θ, θ = the angle between them."
            )
        if torch.allclose(mine.float(), reference_slerp(a, b, 1 - fraction), atol=1e-4):
            raise AssertionError(f"{exercise}: a and b are swapped: fraction 0 should give a, fraction 1 give b.")
        raise AssertionError(
            f"{exercise}: wrong at fraction {fraction}. Flatten a and b, get cos θ = a·b / (|a| |b|), "
            f"θ = arccos(cos θ), then combine sin((1 - f) θ) / sin θ · a + sin(f θ) / sin θ · b."
        )
    passed(exercise, "Your path keeps the length of two noise latents; a straight line would shrink it.")


def check_scaling_factor(answer):
    """Exercise 4: the scaling factor for raw latents with standard deviation 4."""
    exercise = "Exercise 4 (scaling factor)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    raw_std = 4.0
    expected = 1 / raw_std
    if math.isclose(answer, raw_std):
        raise AssertionError(f"{exercise}: multiplying by {answer} would make the std 16. Invert it.")
    if math.isclose(answer, 1 / raw_std**2):
        raise AssertionError(f"{exercise}: {answer} is 1 / variance. The factor divides by the standard "
                             "deviation, not by the variance.")
    assert math.isclose(answer, expected, rel_tol=1e-3), (
        f"{exercise}: {answer!r} is not it. The scaled latents (raw × factor) should have "
        f"standard deviation 1."
    )
    passed(exercise, "Stable Diffusion's 0.18215 says its raw latents have a standard deviation of about 5.5.")


# For every check: a right and a wrong answer (used by tests/test_exercises.py).
REFERENCE_SOLUTIONS = {
    "check_latent_values_768": {"right": 36_864, "wrong": 3 * 768 * 768},
    "check_psnr": {"right": reference_psnr, "wrong": _psnr_natural_log},
    "check_slerp": {"right": reference_slerp, "wrong": _lerp},
    "check_scaling_factor": {"right": 0.25, "wrong": 4.0},
}
