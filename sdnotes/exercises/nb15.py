"""Checks for the exercises of notebook 15 (after Stable Diffusion: flow matching, transformers, few steps).

Exercises 2 and 3 are checked against diffusers' FlowMatchEulerDiscreteScheduler
inside the checks, so the reference cannot drift from the library. Exercise 2
runs the learner's velocity in the scheduler's sampling loop on a Gaussian blob,
whose exact velocity has a closed form, and reports where the samples end.
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


# Exercise 2's data: one Gaussian blob, whose exact flow velocity has a closed form at every t.
BLOB_MEAN = (1.5, -1.0)
BLOB_SPREAD = 0.3
CHECK_STEPS = 32


def _exact_velocity(x, t):
    """The exact flow velocity E[ε − x0 | x_t = x] in the notebook's convention (data at t = 0), for the blob.

    x_t = (1 − t) x0 + t ε with x0 ~ N(mean, spread²) and ε ~ N(0, 1), per coordinate: x0 and ε given x_t
    are Gaussian, and their expectations are linear in x_t.
    """
    mean = torch.tensor(BLOB_MEAN)
    variance = (1 - t) ** 2 * BLOB_SPREAD**2 + t**2  # Var(x_t)
    centred = x - (1 - t) * mean
    expected_x0 = mean + (1 - t) * BLOB_SPREAD**2 / variance * centred
    expected_noise = t / variance * centred
    return expected_noise - expected_x0


def lipman_velocity(x, t_lipman):
    """The same exact velocity, as a network trained in Lipman et al.'s convention would give it:
    noise at t_lipman = 0, data at t_lipman = 1, velocity x0 − ε."""
    return -_exact_velocity(x, 1 - t_lipman)


def _reference_velocity_for_diffusers(v_lipman, x, t):
    return -v_lipman(x, 1 - t)


def _velocity_without_the_sign(v_lipman, x, t):
    """A wrong answer the check recognises: the clock turned round, the velocity not."""
    return v_lipman(x, 1 - t)


def _velocity_without_the_clock(v_lipman, x, t):
    """A wrong answer the check recognises: the velocity turned round, the clock not."""
    return -v_lipman(x, t)


def _run_sampler(velocity_for_diffusers, noise):
    """CHECK_STEPS Euler steps of FlowMatchEulerDiscreteScheduler (FluxPipeline's sigmas), from `noise`."""
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / CHECK_STEPS, CHECK_STEPS))
    x = noise
    for timestep, t in zip(scheduler.timesteps, scheduler.sigmas[:-1]):
        velocity = velocity_for_diffusers(lipman_velocity, x, float(t))
        if not torch.is_tensor(velocity) or velocity.shape != x.shape:
            return None
        x = scheduler.step(velocity, timestep, x).prev_sample
    return x


def check_velocity_for_diffusers(velocity_for_diffusers):
    """Exercise 2: use a velocity network trained in the other time convention with diffusers' flow sampler."""
    exercise = "Exercise 2 (a model from the other convention)"
    if is_unanswered(velocity_for_diffusers) or is_unanswered(
            velocity_for_diffusers(lipman_velocity, torch.zeros(1, 2), 0.5)):
        return not_answered(exercise)
    noise = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0))
    samples = _run_sampler(velocity_for_diffusers, noise)
    if samples is None:
        raise AssertionError(f"{exercise}: return a tensor shaped like x, the velocity at every point.")
    for wrong, hint in [(_velocity_without_the_sign, "you turned the clock round but not the velocity: in "
                         "Lipman's convention it points from noise to data, x0 − ε; ours is ε − x0."),
                        (_velocity_without_the_clock, "you turned the velocity round but not the clock: our t "
                         "(data at 0) is Lipman's 1 − t.")]:
        if torch.allclose(samples, _run_sampler(wrong, noise), atol=1e-5):
            raise AssertionError(f"{exercise}: {hint}")
    expected = _run_sampler(_reference_velocity_for_diffusers, noise)
    mean, spread = samples.mean(dim=0), samples.std(dim=0)
    assert torch.allclose(samples, expected, atol=1e-4), (
        f"{exercise}: the sampler ended with points of mean {mean.numpy().round(2)} and spread "
        f"{spread.numpy().round(2)}; the data's are {BLOB_MEAN} and {BLOB_SPREAD}. Ask v_lipman at its own time "
        "for the same point, and turn its velocity into ours."
    )
    passed(exercise, f"{CHECK_STEPS} Euler steps of FlowMatchEulerDiscreteScheduler with your velocity end on points "
           f"of mean ({mean[0]:.2f}, {mean[1]:.2f}) and spread ({spread[0]:.2f}, {spread[1]:.2f}); the data's: "
           f"{BLOB_MEAN}, {BLOB_SPREAD} (Euler's steps leave the spread a little small; more steps come closer).")


def _reference_unshifted(t_shifted, shift):
    return t_shifted / (shift - (shift - 1) * t_shifted)


def _unshift_by_dividing(t_shifted, shift):
    """A wrong answer the check recognises: dividing by the shift, which does not undo the bend."""
    return t_shifted / shift


def _shifted(t, shift):
    return shift * t / (1 + (shift - 1) * t)


def check_unshifted(unshifted):
    """Exercise 3: undo SD3's timestep shift; applied to FlowMatchEulerDiscreteScheduler's sigmas."""
    exercise = "Exercise 3 (undo the timestep shift)"
    if is_unanswered(unshifted) or is_unanswered(unshifted(0.5, 3.0)):
        return not_answered(exercise)
    for shift in (1.0, 3.0):
        scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
        scheduler.set_timesteps(8)
        shifted = scheduler.sigmas[:-1].numpy()  # the shifted schedule, without the final 0
        answer = np.asarray([as_number(exercise, unshifted(float(value), shift)) for value in shifted])
        if shift == 3.0 and np.allclose(answer, _unshift_by_dividing(shifted, shift), atol=1e-6):
            raise AssertionError(f"{exercise}: dividing by the shift does not undo it (t = 1 would become 1/3). "
                                 "Solve t' = shift·t / (1 + (shift − 1)·t) for t.")
        evenly_spaced = np.linspace(1.0, _shifted(1 / scheduler.config.num_train_timesteps, shift), 8)
        assert np.allclose(answer, evenly_spaced, atol=1e-5), (
            f"{exercise}: with shift {shift:g}, the scheduler's times {np.round(shifted, 4)} gave "
            f"{np.round(answer, 4)}; undone, they should be evenly spaced, {np.round(evenly_spaced, 4)}. "
            "Solve t' = shift·t / (1 + (shift − 1)·t) for t."
        )
    passed(exercise, "t = t' / (shift − (shift − 1)·t'): the scheduler's 8 times, unshifted, are evenly spaced; "
           "the shift only moved them towards t = 1.")


REFERENCE_SOLUTIONS = {
    "check_token_count": {"right": 2304, "wrong": 9216},
    "check_velocity_for_diffusers": {"right": _reference_velocity_for_diffusers, "wrong": _velocity_without_the_sign},
    "check_unshifted": {"right": _reference_unshifted, "wrong": _unshift_by_dividing},
}
