"""Checks for the exercises of notebook 14 (the continuous view: scores, SDEs and ODEs).

The ancestral step and x̂0 from v are checked against diffusers'
EulerAncestralDiscreteScheduler (given the same noise) and a v_prediction
DDPMScheduler inside the checks, so the reference cannot drift from the
library. Neither is written out in the notebook before its exercise.
"""

import math

import numpy as np
import torch
from diffusers import DDPMScheduler, EulerAncestralDiscreteScheduler

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed
from sdnotes.schedule import SD_TRAINING_SCHEDULE


def _reference_ancestral_step(x_bar, noise_pred, sigma, sigma_next, z):
    sigma_up = math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2)
    sigma_down = math.sqrt(sigma_next**2 - sigma_up**2)
    return x_bar + (sigma_down - sigma) * noise_pred + sigma_up * z


def _ancestral_step_to_sigma_next(x_bar, noise_pred, sigma, sigma_next, z):
    """A wrong answer the check recognises: the ODE step all the way to sigma_next, then the noise on top."""
    sigma_up = math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2)
    return x_bar + (sigma_next - sigma) * noise_pred + sigma_up * z


def check_ancestral_step(ancestral_step):
    """Exercise 1: one step of Euler ancestral, against EulerAncestralDiscreteScheduler.step with the same noise."""
    exercise = "Exercise 1 (an Euler ancestral step)"
    probe = torch.ones(1, 2)
    if is_unanswered(ancestral_step) or is_unanswered(ancestral_step(probe, probe, 1.0, 0.5, probe)):
        return not_answered(exercise)
    scheduler = EulerAncestralDiscreteScheduler(**SD_TRAINING_SCHEDULE, timestep_spacing="trailing")
    scheduler.set_timesteps(10)
    generator = torch.Generator().manual_seed(0)
    for index in range(10):
        x_bar = torch.randn(2, 4, 8, 8, generator=generator) * 3
        noise_pred = torch.randn(2, 4, 8, 8, generator=generator)
        sigma, sigma_next = scheduler.sigmas[index].item(), scheduler.sigmas[index + 1].item()
        step_seed = 100 + index
        z = torch.randn(x_bar.shape, generator=torch.Generator().manual_seed(step_seed))  # the noise the step adds
        scheduler.scale_model_input(x_bar, scheduler.timesteps[index])  # as a loop would (silences a warning)
        library = scheduler.step(noise_pred, scheduler.timesteps[index], x_bar,
                                 generator=torch.Generator().manual_seed(step_seed)).prev_sample
        answer = ancestral_step(x_bar, noise_pred, sigma, sigma_next, z)
        if not torch.is_tensor(answer) or answer.shape != x_bar.shape:
            raise AssertionError(f"{exercise}: return a tensor shaped like x_bar {tuple(x_bar.shape)}.")
        if index < 9 and torch.allclose(answer, x_bar + (sigma_next - sigma) * noise_pred, atol=1e-4):
            raise AssertionError(f"{exercise}: that is the ODE's Euler step, with no fresh noise. Go down to "
                                 "σ_down instead, and add σ_up · z.")
        if index < 9 and torch.allclose(answer, _ancestral_step_to_sigma_next(x_bar, noise_pred, sigma, sigma_next, z),
                                        atol=1e-4):
            raise AssertionError(f"{exercise}: the Euler step must go further down, to σ_down, not to σ_next: the "
                                 "added noise brings it back up to σ_next.")
        assert torch.allclose(answer, library, atol=1e-4, rtol=1e-4), (
            f"{exercise}: at step {index} (σ {sigma:.3f} -> {sigma_next:.3f}) your step differs from "
            "EulerAncestralDiscreteScheduler.step given the same noise z. σ_up² = σ_next²(σ² − σ_next²)/σ², "
            "σ_down² = σ_next² − σ_up²."
        )
    passed(exercise, "x̄' = x̄ + (σ_down − σ)·ε̂ + σ_up·z, the same as EulerAncestralDiscreteScheduler.step: "
                     "σ_down² + σ_up² = σ_next², so the noise level lands on σ_next.")


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


def _reference_x0_from_velocity(x_t, v_pred, t, alphas_cumprod):
    alphabar = alphas_cumprod[t]
    return alphabar.sqrt() * x_t - (1 - alphabar).sqrt() * v_pred


def _x0_as_if_v_were_noise(x_t, v_pred, t, alphas_cumprod):
    """A wrong answer the check recognises: the ε formula for x̂0 applied to v."""
    alphabar = alphas_cumprod[t]
    return (x_t - (1 - alphabar).sqrt() * v_pred) / alphabar.sqrt()


def check_x0_from_velocity(x0_from_velocity):
    """Exercise 3: x̂0 from a v-model's prediction, against a v_prediction scheduler's pred_original_sample."""
    exercise = "Exercise 3 (x̂0 from v)"
    scheduler = DDPMScheduler(**SD_TRAINING_SCHEDULE, clip_sample=False, prediction_type="v_prediction")
    alphas_cumprod = scheduler.alphas_cumprod
    if is_unanswered(x0_from_velocity) or is_unanswered(
            x0_from_velocity(torch.zeros(1, 2), torch.zeros(1, 2), 10, alphas_cumprod)):
        return not_answered(exercise)
    generator = torch.Generator().manual_seed(0)
    for t in (20, 500, 980):
        x0 = torch.randn(2, 4, 8, 8, generator=generator)
        noise = torch.randn(2, 4, 8, 8, generator=generator)
        timesteps = torch.full((2,), t)
        x_t = scheduler.add_noise(x0, noise, timesteps)
        v_pred = scheduler.get_velocity(x0, noise, timesteps)  # what a perfect v-model predicts
        answer = x0_from_velocity(x_t, v_pred, t, alphas_cumprod)
        if not torch.is_tensor(answer) or answer.shape != x_t.shape:
            raise AssertionError(f"{exercise}: return a tensor shaped like x_t {tuple(x_t.shape)}.")
        if torch.allclose(answer, _x0_as_if_v_were_noise(x_t, v_pred, t, alphas_cumprod), atol=1e-4):
            raise AssertionError(f"{exercise}: that is the formula for an ε-prediction; v is not the noise. "
                                 "Write x_t and v in terms of x0 and ε and eliminate ε.")
        library = scheduler.step(v_pred, t, x_t).pred_original_sample
        assert torch.allclose(answer, library, atol=1e-4, rtol=1e-4), (
            f"{exercise}: at t = {t} your x̂0 differs from DDPMScheduler(prediction_type='v_prediction')'s "
            "pred_original_sample. With x_t = √ᾱ·x0 + √(1−ᾱ)·ε and v = √ᾱ·ε − √(1−ᾱ)·x0, combine the two to "
            "cancel ε."
        )
        assert torch.allclose(answer, x0, atol=1e-3), f"{exercise}: a perfect v gives back x0 exactly"
    passed(exercise, "x̂0 = √ᾱ·x_t − √(1−ᾱ)·v: no division by √ᾱ, which is why v-models stay accurate near "
                     "t = 999, where √ᾱ is tiny.")


REFERENCE_SOLUTIONS = {
    "check_ancestral_step": {"right": _reference_ancestral_step, "wrong": _ancestral_step_to_sigma_next},
    "check_heun_slope_prediction": {"right": -2, "wrong": -1},
    "check_log_log_slope": {"right": _reference_log_log_slope, "wrong": _slope_without_logs},
    "check_x0_from_velocity": {"right": _reference_x0_from_velocity, "wrong": _x0_as_if_v_were_noise},
}
