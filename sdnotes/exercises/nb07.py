"""Checks for the exercises of notebook 07 (the sampling loop and its schedulers).

The expected values are computed here with diffusers' own schedulers, built
from Stable Diffusion 1.5's scheduler settings, so they cannot drift from the
library.
"""

import torch
from diffusers import DDIMScheduler, PNDMScheduler

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed
from sdnotes.schedule import SD_SCHEDULER_CONFIG  # SD 1.5's scheduler/scheduler_config.json

# The labels of the notebook's SCHEDULER_SETTINGS, and which of them add fresh noise at every step.
SCHEDULER_LABELS = ("DDPM", "DDIM eta=0", "DDIM eta=1", "PNDM", "Euler", "Euler a", "DPM-Solver++")
STOCHASTIC_LABELS = frozenset({"DDPM", "DDIM eta=1", "Euler a"})


def sd_ddim():
    return DDIMScheduler.from_config(SD_SCHEDULER_CONFIG)


def sd_pndm():
    return PNDMScheduler.from_config(SD_SCHEDULER_CONFIG)


def check_first_timestep(answer):
    """Exercise 1: the first timestep of a 25-step DDIM run with SD's config."""
    exercise = "Exercise 1 (first timestep of 25 DDIM steps)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    scheduler = sd_ddim()
    scheduler.set_timesteps(25)
    expected = int(scheduler.timesteps[0])
    if answer == 999:
        raise AssertionError(
            f"{exercise}: 999 is the last training step, but 'leading' spacing does not start there. "
            "Build DDIMScheduler.from_config(pipe.scheduler.config), call set_timesteps(25) and "
            "look at scheduler.timesteps[0]."
        )
    if answer == expected - 1:
        raise AssertionError(f"{exercise}: close! You forgot steps_offset = 1, which adds 1 to every timestep.")
    assert answer == expected, (
        f"{exercise}: {answer} is not it. With leading spacing the timesteps are "
        f"0, 1000 // 25, 2 × (1000 // 25), ... plus steps_offset, run backwards; or just call "
        f"set_timesteps(25) and read scheduler.timesteps[0]."
    )
    passed(exercise, f"{expected}: the run never visits the noisiest training steps {expected + 1}..999.")


def check_pndm_unet_calls(answer):
    """Exercise 2: how many U-Net calls PNDM makes for 20 steps."""
    exercise = "Exercise 2 (PNDM's U-Net calls)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    scheduler = sd_pndm()
    scheduler.set_timesteps(20)
    expected = len(scheduler.timesteps)
    if answer == 20:
        raise AssertionError(
            f"{exercise}: not quite 20. Print PNDMScheduler's timesteps after set_timesteps(20): "
            "one of them appears twice. The loop makes one U-Net call per entry."
        )
    if answer == 40 or answer == 2 * expected:
        raise AssertionError(
            f"{exercise}: that counts noise predictions. The course counts U-Net calls (notebook 00): "
            "guidance puts both halves into one batch, so each entry of scheduler.timesteps is one call."
        )
    assert answer == expected, (
        f"{exercise}: {answer} is not it. Build PNDMScheduler.from_config(pipe.scheduler.config), "
        "call set_timesteps(20) and count scheduler.timesteps."
    )
    passed(exercise, f"{expected} calls: PNDM's first step needs one extra U-Net call to start its multistep method.")


def _reference_predicted_x0(latents, noise_pred, t, alphas_cumprod):
    alphabar = alphas_cumprod[t]
    return (latents - (1 - alphabar).sqrt() * noise_pred) / alphabar.sqrt()


def _predicted_x0_without_sqrt(latents, noise_pred, t, alphas_cumprod):
    """A wrong answer the check recognises: alphabar used without square roots."""
    alphabar = alphas_cumprod[t]
    return (latents - (1 - alphabar) * noise_pred) / alphabar


def check_predicted_x0(my_predicted_x0):
    """Exercise 3: x̂_0 = (x_t - sqrt(1 - alphabar_t) eps) / sqrt(alphabar_t), against DDIM's step."""
    exercise = "Exercise 3 (predicted x̂_0)"
    if is_unanswered(my_predicted_x0):
        return not_answered(exercise)
    if not callable(my_predicted_x0):
        raise AssertionError(f"{exercise}: expected a function my_predicted_x0(latents, noise_pred, t, alphas_cumprod).")
    scheduler = sd_ddim()
    scheduler.set_timesteps(20)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 8, 8, generator=generator)  # (2, 4, 8, 8)
    noise_pred = torch.randn(2, 4, 8, 8, generator=generator)  # (2, 4, 8, 8)
    for t in scheduler.timesteps[::6]:
        t = int(t)
        mine = my_predicted_x0(latents, noise_pred, t, scheduler.alphas_cumprod)
        if is_unanswered(mine):
            return not_answered(exercise)
        if not isinstance(mine, torch.Tensor) or mine.shape != latents.shape:
            raise AssertionError(
                f"{exercise}: return a tensor shaped like latents {tuple(latents.shape)}, "
                f"got {type(mine).__name__} {tuple(getattr(mine, 'shape', ()))}."
            )
        expected = scheduler.step(noise_pred, t, latents).pred_original_sample
        if torch.allclose(mine, expected, atol=1e-4):
            continue
        wrong = _predicted_x0_without_sqrt(latents, noise_pred, t, scheduler.alphas_cumprod)
        if torch.allclose(mine, wrong, atol=1e-4):
            raise AssertionError(f"{exercise}: close! Both alphabar terms need a square root (at t = {t}).")
        raise AssertionError(
            f"{exercise}: wrong at t = {t}. Solve x_t = sqrt(alphabar) x_0 + sqrt(1 - alphabar) eps for x_0, "
            "with alphabar = alphas_cumprod[t]."
        )
    passed(exercise, "Your x̂_0 equals DDIM's pred_original_sample.")


def check_stochastic_schedulers(answer):
    """Exercise 4: which scheduler settings inject fresh noise at every step."""
    exercise = "Exercise 4 (stochastic schedulers)"
    if is_unanswered(answer):
        return not_answered(exercise)
    if isinstance(answer, str) or not hasattr(answer, "__iter__"):
        raise AssertionError(f'{exercise}: answer with a set of labels, e.g. {{"PNDM", "Euler"}}.')
    labels_by_lower_case = {label.lower(): label for label in SCHEDULER_LABELS}
    chosen = set()
    for item in answer:
        if not isinstance(item, str) or item.strip().lower() not in labels_by_lower_case:
            raise AssertionError(f"{exercise}: {item!r} is not one of the labels {SCHEDULER_LABELS}.")
        chosen.add(labels_by_lower_case[item.strip().lower()])
    missing = STOCHASTIC_LABELS - chosen
    extra = chosen - STOCHASTIC_LABELS
    if extra:
        raise AssertionError(
            f"{exercise}: {sorted(extra)} never draw new noise after the starting latent: "
            "given x_T, their result is fixed."
        )
    assert not missing, (
        f"{exercise}: you are missing {len(missing)}. Look at the table in section 4: which ones "
        "say 'yes' under 'new noise at each step'? (eta scales DDIM's fresh noise.)"
    )
    passed(exercise, "Only these three use the generator after x_T; with the others the seed only picks x_T.")


# For every check: a right and a wrong answer (used by tests/test_exercises.py).
REFERENCE_SOLUTIONS = {
    "check_first_timestep": {"right": 961, "wrong": 960},
    "check_pndm_unet_calls": {"right": 21, "wrong": 20},
    "check_predicted_x0": {"right": _reference_predicted_x0, "wrong": _predicted_x0_without_sqrt},
    "check_stochastic_schedulers": {"right": {"DDPM", "DDIM eta=1", "Euler a"}, "wrong": {"DDPM", "Euler a"}},
}
