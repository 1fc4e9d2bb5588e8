"""Checks for the exercises of notebook 01 (forward noising).

The expected values are computed here from Stable Diffusion's own training
schedule in diffusers, not typed in, so they cannot drift from the library.
"""

import torch
from diffusers import DDPMScheduler

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed
from sdnotes.schedule import stable_diffusion_scheduler

SCHEDULE_NAMES = ("linear", "scaled_linear", "cosine")


def schedule_by_name(name):
    """The three schedules compared in the notebook, by their short names."""
    if name == "linear":
        return DDPMScheduler(
            num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear"
        )
    if name == "scaled_linear":
        return stable_diffusion_scheduler()
    if name == "cosine":
        return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    raise ValueError(f"schedule must be one of {SCHEDULE_NAMES}, got {name!r}")


def _first_t_with_snr_below_one():
    alphas_cumprod = stable_diffusion_scheduler().alphas_cumprod
    snr = alphas_cumprod / (1 - alphas_cumprod)
    return int((snr < 1).nonzero()[0].item())


def check_snr_below_one(answer):
    """Exercise 1: the first t at which SD's signal-to-noise ratio drops below 1."""
    exercise = "Exercise 1 (SNR below 1)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = _first_t_with_snr_below_one()
    if answer == expected + 1:
        raise AssertionError(
            f"{exercise}: {answer} is one too high. Timesteps count from 0, "
            f"and tensor index i is timestep t = i."
        )
    assert answer == expected, (
        f"{exercise}: {answer} is not it. Compute snr = alphas_cumprod / (1 - alphas_cumprod) "
        f"for Stable Diffusion's schedule and find the first index where snr < 1, "
        f"e.g. with (snr < 1).nonzero()."
    )
    passed(exercise, f"From t = {expected} on, there is more noise than picture.")


def check_sqrt_alphabar_last(answer):
    """Exercise 2: sqrt(alphabar) at t = 999, to 3 decimals."""
    exercise = "Exercise 2 (signal left at t = 999)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = stable_diffusion_scheduler().alphas_cumprod[999].sqrt().item()
    if abs(answer - expected**2) < 0.0006:
        raise AssertionError(
            f"{exercise}: {answer} is alphabar itself. The photo is multiplied by "
            f"its square root."
        )
    assert abs(answer - expected) < 0.0006, (
        f"{exercise}: {answer} is not it. Take scheduler.alphas_cumprod[999], then its "
        f"square root, and round to 3 decimals. Hint: it is small, but not zero."
    )
    passed(
        exercise,
        f"About {expected:.1%} of the photo is still in x_999: "
        f"SD's schedule never reaches pure noise.",
    )


def check_most_signal_at_500(answer):
    """Exercise 3: which schedule keeps the most of the image at t = 500."""
    exercise = "Exercise 3 (most signal at t = 500)"
    if is_unanswered(answer):
        return not_answered(exercise)
    if not isinstance(answer, str):
        raise AssertionError(f"{exercise}: answer with a name in quotes, one of {SCHEDULE_NAMES}.")
    name = answer.strip().lower()
    if name == "squaredcos_cap_v2":
        name = "cosine"
    if name not in SCHEDULE_NAMES:
        raise AssertionError(f"{exercise}: {answer!r} is not one of {SCHEDULE_NAMES}.")
    best_name = SCHEDULE_NAMES[0]
    best_value = -1.0
    for schedule_name in SCHEDULE_NAMES:
        value = schedule_by_name(schedule_name).alphas_cumprod[500].item()
        if value > best_value:
            best_name = schedule_name
            best_value = value
    assert name == best_name, (
        f"{exercise}: not {answer!r}. Read the alphabar plot at t = 500 (or print "
        f"alphas_cumprod[500] for each schedule): the highest curve keeps the most signal."
    )
    passed(
        exercise,
        f"alphabar_500 = {best_value:.2f}: the {best_name} schedule destroys the image more slowly.",
    )


def _add_noise_without_sqrt(x0, noise, t):
    """A wrong answer the check recognises: alphabar used without square roots."""
    alphabar = stable_diffusion_scheduler().alphas_cumprod[t]
    return alphabar * x0 + (1 - alphabar) * noise


def check_add_noise(my_add_noise):
    """Exercise 4: the learner's own x_t = sqrt(alphabar_t) x_0 + sqrt(1 - alphabar_t) eps."""
    exercise = "Exercise 4 (x_t yourself)"
    if is_unanswered(my_add_noise):
        return not_answered(exercise)
    if not callable(my_add_noise):
        raise AssertionError(f"{exercise}: expected a function my_add_noise(x0, noise, t).")
    scheduler = stable_diffusion_scheduler()
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 3, 8, 8, generator=generator) * 2 - 1  # (2, 3, 8, 8), like images in [-1, 1]
    noise = torch.randn(2, 3, 8, 8, generator=generator)  # (2, 3, 8, 8)
    for t in (0, 100, 500, 999):
        mine = my_add_noise(x0, noise, t)
        if is_unanswered(mine):
            return not_answered(exercise)
        if not isinstance(mine, torch.Tensor) or mine.shape != x0.shape:
            raise AssertionError(
                f"{exercise}: my_add_noise should return a tensor shaped like x0 {tuple(x0.shape)}, "
                f"got {type(mine).__name__} {tuple(getattr(mine, 'shape', ()))}."
            )
        expected = scheduler.add_noise(x0, noise, torch.tensor([t]))
        if torch.allclose(mine, expected, atol=1e-5):
            continue
        if torch.allclose(mine, _add_noise_without_sqrt(x0, noise, t), atol=1e-5):
            raise AssertionError(f"{exercise}: close! Both weights need a square root (at t = {t}).")
        raise AssertionError(
            f"{exercise}: wrong at t = {t}. Use alphabar = scheduler.alphas_cumprod[t], then "
            f"x_t = alphabar ** 0.5 * x0 + (1 - alphabar) ** 0.5 * noise."
        )
    passed(exercise, "Your x_t matches scheduler.add_noise at t = 0, 100, 500 and 999.")


def _reference_add_noise(x0, noise, t):
    alphabar = stable_diffusion_scheduler().alphas_cumprod[t]
    return alphabar.sqrt() * x0 + (1 - alphabar).sqrt() * noise


# For every check: a right and a wrong answer (used by tests/test_exercises.py).
REFERENCE_SOLUTIONS = {
    "check_snr_below_one": {"right": 354, "wrong": 500},
    "check_sqrt_alphabar_last": {"right": 0.068, "wrong": 0.0},
    "check_most_signal_at_500": {"right": "cosine", "wrong": "linear"},
    "check_add_noise": {"right": _reference_add_noise, "wrong": _add_noise_without_sqrt},
}
