"""Checks for the exercises of notebook 15 (after Stable Diffusion: flow matching, transformers, few steps).

The shift exercise is checked against diffusers' FlowMatchEulerDiscreteScheduler
inside the check, so the reference cannot drift from the library.
"""

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed

LATENT_CHANNELS = 16  # SD3 and FLUX.1
LATENT_SIDE = 96  # a 768x768 picture, VAE factor 8
PATCH = 2


def check_token_count(answer):
    """Exercise 1: image tokens for a 16x96x96 latent cut into 2x2 patches."""
    exercise = "Exercise 1 (how many image tokens)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = (LATENT_SIDE // PATCH) ** 2
    if answer == LATENT_SIDE * LATENT_SIDE:
        raise AssertionError(f"{exercise}: {answer:g} counts latent positions; each token is a 2×2 patch of them.")
    if answer == expected * LATENT_CHANNELS or answer == LATENT_SIDE * LATENT_SIDE * LATENT_CHANNELS:
        raise AssertionError(f"{exercise}: the 16 channels do not make more tokens; they make each token longer.")
    assert answer == expected, (
        f"{exercise}: {answer} is not it. How many 2×2 patches fit in a {LATENT_SIDE}×{LATENT_SIDE} grid?"
    )
    passed(exercise, f"{expected:,} tokens of {LATENT_CHANNELS * PATCH * PATCH} numbers each; attention compares "
           f"every pair: {expected ** 2:,} pairs per head.")


def _reference_velocity_target(x0, noise):
    return noise - x0


def _velocity_pointing_the_wrong_way(x0, noise):
    """A wrong answer the check recognises: data minus noise (the direction the sampler walks, not the target)."""
    return x0 - noise


def check_velocity_target(velocity_target):
    """Exercise 2: the velocity a flow-matching model learns, for x_t = (1 - t) x0 + t noise."""
    exercise = "Exercise 2 (the velocity target)"
    if is_unanswered(velocity_target) or is_unanswered(velocity_target(torch.zeros(1, 2), torch.zeros(1, 2))):
        return not_answered(exercise)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 2, generator=generator)
    noise = torch.randn(5, 2, generator=generator)
    answer = velocity_target(x0, noise)
    if not torch.is_tensor(answer) or answer.shape != x0.shape:
        raise AssertionError(f"{exercise}: return a tensor shaped like x0 {tuple(x0.shape)}.")
    if torch.allclose(answer, x0 - noise):
        raise AssertionError(f"{exercise}: the sign is flipped. The target is d x_t / d t; as t grows, x_t moves "
                             "from x0 towards the noise.")
    assert torch.allclose(answer, _reference_velocity_target(x0, noise)), (
        f"{exercise}: not yet. Differentiate x_t = (1 − t)·x0 + t·noise with respect to t."
    )
    passed(exercise, "v = noise − x0: the same at every t along the straight line.")


def _reference_shifted_sigma(sigma, shift):
    return shift * sigma / (1 + (shift - 1) * sigma)


def _shift_by_multiplying(sigma, shift):
    """A wrong answer the check recognises: multiply and clip, which leaves [0, 1] badly bent at the top."""
    return np.minimum(shift * np.asarray(sigma), 1.0)


def check_shifted_sigma(shifted_sigma):
    """Exercise 3: SD3's timestep shift, checked against FlowMatchEulerDiscreteScheduler."""
    exercise = "Exercise 3 (the timestep shift)"
    if is_unanswered(shifted_sigma) or is_unanswered(shifted_sigma(0.5, 3.0)):
        return not_answered(exercise)
    for shift in (1.0, 3.0):
        scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
        scheduler.set_timesteps(8)
        sigma_min = 1 / scheduler.config.num_train_timesteps
        unshifted = np.linspace(1.0, _reference_shifted_sigma(sigma_min, shift), 8)
        answer = np.asarray([float(shifted_sigma(value, shift)) for value in unshifted])
        library = scheduler.sigmas[:-1].numpy()
        if shift == 3.0 and np.allclose(answer, np.asarray(_shift_by_multiplying(unshifted, shift)), atol=1e-5):
            raise AssertionError(f"{exercise}: multiplying by the shift and clipping at 1 is not it; SD3's shift "
                                 "keeps 0 at 0 and 1 at 1 and bends the values between.")
        assert np.allclose(answer, library, atol=1e-5), (
            f"{exercise}: with shift {shift:g} your sigmas {np.round(answer, 4)} differ from diffusers' "
            f"{np.round(library, 4)}. Use shift·σ / (1 + (shift − 1)·σ)."
        )
    passed(exercise, "σ' = shift·σ / (1 + (shift − 1)·σ): with shift 3, σ = 0.5 becomes 0.75, more steps at high noise.")


REFERENCE_SOLUTIONS = {
    "check_token_count": {"right": 2304, "wrong": 9216},
    "check_velocity_target": {"right": _reference_velocity_target, "wrong": _velocity_pointing_the_wrong_way},
    "check_shifted_sigma": {"right": _reference_shifted_sigma, "wrong": _shift_by_multiplying},
}
