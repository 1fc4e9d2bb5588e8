"""Checks for the exercises of notebook 14 (the continuous view: scores, SDEs and ODEs).

The Euler step and the velocity are checked against diffusers'
EulerDiscreteScheduler and DDPMScheduler inside the checks, so the reference
cannot drift from the library.
"""

import numpy as np
import torch
from diffusers import DDPMScheduler, EulerDiscreteScheduler

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed
from sdnotes.schedule import SD_TRAINING_SCHEDULE


def _reference_ode_euler_step(x_bar, noise_pred, sigma, sigma_next):
    return x_bar + (sigma_next - sigma) * noise_pred


def _ode_euler_step_wrong_sign(x_bar, noise_pred, sigma, sigma_next):
    """A wrong answer the check recognises: adding the noise instead of removing it."""
    return x_bar + (sigma - sigma_next) * noise_pred


def check_ode_euler_step(ode_euler_step):
    """Exercise 1: one Euler step of the probability-flow ODE, against EulerDiscreteScheduler.step."""
    exercise = "Exercise 1 (an Euler step of the probability-flow ODE)"
    if is_unanswered(ode_euler_step) or is_unanswered(ode_euler_step(torch.zeros(1, 2), torch.zeros(1, 2), 1.0, 0.5)):
        return not_answered(exercise)
    scheduler = EulerDiscreteScheduler(**SD_TRAINING_SCHEDULE, timestep_spacing="trailing")
    scheduler.set_timesteps(10)
    generator = torch.Generator().manual_seed(0)
    for index in (0, 4, 9):
        x_bar = torch.randn(2, 4, 8, 8, generator=generator) * 3
        noise_pred = torch.randn(2, 4, 8, 8, generator=generator)
        sigma, sigma_next = scheduler.sigmas[index].item(), scheduler.sigmas[index + 1].item()
        answer = ode_euler_step(x_bar, noise_pred, sigma, sigma_next)
        if not torch.is_tensor(answer) or answer.shape != x_bar.shape:
            raise AssertionError(f"{exercise}: return a tensor shaped like x_bar {tuple(x_bar.shape)}.")
        scheduler._step_index = index  # the step below is the scheduler's step number `index`
        scheduler.scale_model_input(x_bar, scheduler.timesteps[index])  # as a loop would (silences a warning)
        library = scheduler.step(noise_pred, scheduler.timesteps[index], x_bar).prev_sample
        if torch.allclose(answer, _ode_euler_step_wrong_sign(x_bar, noise_pred, sigma, sigma_next), atol=1e-4):
            raise AssertionError(f"{exercise}: the sign is flipped. Going down in σ removes noise: "
                                 "dx̄/dσ = ε̂ and σ_next − σ is negative.")
        assert torch.allclose(answer, library, atol=1e-4, rtol=1e-4), (
            f"{exercise}: at step {index} (σ {sigma:.3f} -> {sigma_next:.3f}) your step differs from "
            "EulerDiscreteScheduler.step. The velocity of the ODE in x̄ and σ is the noise prediction."
        )
    passed(exercise, "x̄' = x̄ + (σ' − σ)·ε̂: the same as EulerDiscreteScheduler.step, and as DDIM with η = 0.")


def check_heun_slope_prediction(answer):
    """Exercise 2, part 1: the slope of a second-order method on a log-log error plot."""
    exercise = "Exercise 2, part 1 (predict Heun's slope)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    if answer > 0:
        raise AssertionError(f"{exercise}: the error falls as the number of calls grows, so the slope is negative.")
    if abs(answer + 1) < 0.3:
        raise AssertionError(f"{exercise}: −1 is Euler's slope (first order: double the steps, halve the error). "
                             "Second order means error ∝ step².")
    assert abs(answer + 2) < 0.3, (
        f"{exercise}: {answer} is not it. If the error is proportional to N^(−k), the slope on log–log axes is −k."
    )
    passed(exercise, "error ∝ N⁻², a slope of −2: double the calls, a quarter of the error. Now measure it.")


def _reference_log_log_slope(calls, errors):
    return np.polyfit(np.log(calls), np.log(errors), 1)[0]


def _slope_without_logs(calls, errors):
    """A wrong answer the check recognises: fitting the line to the numbers themselves."""
    return np.polyfit(calls, errors, 1)[0]


def check_log_log_slope(log_log_slope):
    """Exercise 2, part 2: the least-squares slope on log-log axes."""
    exercise = "Exercise 2, part 2 (a log–log slope)"
    if is_unanswered(log_log_slope) or is_unanswered(log_log_slope([1.0, 2.0], [1.0, 0.5])):
        return not_answered(exercise)
    generator = np.random.default_rng(0)
    calls = [8, 16, 32, 64]
    for true_slope in (-1.0, -2.0):
        errors = [0.3 * c**true_slope * np.exp(0.05 * generator.standard_normal()) for c in calls]
        answer = as_number(exercise, log_log_slope(calls, errors))
        expected = _reference_log_log_slope(calls, errors)
        if abs(answer - _slope_without_logs(calls, errors)) < 1e-9:
            raise AssertionError(f"{exercise}: fit the line to the logarithms of both lists, not to the numbers.")
        assert abs(answer - expected) < 1e-6, (
            f"{exercise}: for errors ∝ calls^{true_slope:g} (with a little noise) you get {answer:.3f}, "
            f"the least-squares line through (log c, log e) has slope {expected:.3f}. "
            "np.polyfit(x, y, 1)[0] is the slope."
        )
    passed(exercise, "now apply it to the toy's Heun errors (next cell).")


def _reference_velocity_from_noise(x_t, noise_pred, t, alphas_cumprod):
    alphabar = alphas_cumprod[t]
    x0_pred = (x_t - (1 - alphabar).sqrt() * noise_pred) / alphabar.sqrt()
    return alphabar.sqrt() * noise_pred - (1 - alphabar).sqrt() * x0_pred


def _velocity_wrong_sign(x_t, noise_pred, t, alphas_cumprod):
    """A wrong answer the check recognises: v with the opposite sign."""
    return -_reference_velocity_from_noise(x_t, noise_pred, t, alphas_cumprod)


def check_velocity_from_noise(velocity_from_noise):
    """Exercise 3: v from x_t and the noise, against DDPMScheduler.get_velocity."""
    exercise = "Exercise 3 (from ε to v)"
    scheduler = DDPMScheduler(**SD_TRAINING_SCHEDULE, clip_sample=False)
    alphas_cumprod = scheduler.alphas_cumprod
    if is_unanswered(velocity_from_noise) or is_unanswered(
            velocity_from_noise(torch.zeros(1, 2), torch.zeros(1, 2), 10, alphas_cumprod)):
        return not_answered(exercise)
    generator = torch.Generator().manual_seed(0)
    for t in (20, 500, 980):
        x0 = torch.randn(2, 4, 8, 8, generator=generator)
        noise = torch.randn(2, 4, 8, 8, generator=generator)
        timesteps = torch.full((2,), t)
        x_t = scheduler.add_noise(x0, noise, timesteps)
        answer = velocity_from_noise(x_t, noise, t, alphas_cumprod)
        if not torch.is_tensor(answer) or answer.shape != x_t.shape:
            raise AssertionError(f"{exercise}: return a tensor shaped like x_t {tuple(x_t.shape)}.")
        library = scheduler.get_velocity(x0, noise, timesteps)
        if torch.allclose(answer, -library, atol=1e-4):
            raise AssertionError(f"{exercise}: the sign is flipped: v = √ᾱ·ε − √(1−ᾱ)·x̂0.")
        assert torch.allclose(answer, library, atol=1e-4), (
            f"{exercise}: at t = {t} your v differs from DDPMScheduler.get_velocity. Get x̂0 from x_t and ε first, "
            "then v = √ᾱ·ε − √(1−ᾱ)·x̂0."
        )
    passed(exercise, "v = √ᾱ·ε − √(1−ᾱ)·x̂0 = (ε − √(1−ᾱ)·x_t)/√ᾱ, as DDPMScheduler.get_velocity computes it.")


REFERENCE_SOLUTIONS = {
    "check_ode_euler_step": {"right": _reference_ode_euler_step, "wrong": _ode_euler_step_wrong_sign},
    "check_heun_slope_prediction": {"right": -2, "wrong": -1},
    "check_log_log_slope": {"right": _reference_log_log_slope, "wrong": _slope_without_logs},
    "check_velocity_from_noise": {"right": _reference_velocity_from_noise, "wrong": _velocity_wrong_sign},
}
