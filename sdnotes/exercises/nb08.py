"""Checks for the exercises of notebook 08 (image-to-image and inpainting).

The expected values follow diffusers' own image-to-image arithmetic
(`get_timesteps`: int(steps × strength) steps, starting at index
steps - that) with a DDIM scheduler built from Stable Diffusion 1.5's
scheduler settings.
"""

import torch
from diffusers import DDIMScheduler

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed
from sdnotes.schedule import SD_SCHEDULER_CONFIG  # SD 1.5's scheduler/scheduler_config.json

EXERCISE_STEPS = 50
EXERCISE_STRENGTH = 0.75


def sd_ddim(num_steps):
    scheduler = DDIMScheduler.from_config(SD_SCHEDULER_CONFIG)
    scheduler.set_timesteps(num_steps)
    return scheduler


def img2img_steps(num_steps, strength):
    """How many denoising steps diffusers' image-to-image runs."""
    return min(int(num_steps * strength), num_steps)


def check_img2img_steps(answer):
    """Exercise 1: denoising steps for 50 steps at strength 0.75."""
    exercise = "Exercise 1 (image-to-image steps)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = img2img_steps(EXERCISE_STEPS, EXERCISE_STRENGTH)
    if answer == expected + 1:
        raise AssertionError(f"{exercise}: close! diffusers uses int(), which rounds 37.5 down, not to the nearest.")
    if answer == EXERCISE_STEPS:
        raise AssertionError(f"{exercise}: not all {EXERCISE_STEPS}: the strength says how much of the run is left.")
    assert answer == expected, (
        f"{exercise}: {answer} is not it. The pipeline runs int(num_inference_steps × strength) steps."
    )
    passed(exercise, f"{expected} steps: the first {EXERCISE_STEPS - expected} timesteps are skipped.")


def check_start_timestep(answer):
    """Exercise 2: the timestep the denoising starts from, for 50 DDIM steps at strength 0.75."""
    exercise = "Exercise 2 (start timestep)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    scheduler = sd_ddim(EXERCISE_STEPS)
    skipped = EXERCISE_STEPS - img2img_steps(EXERCISE_STEPS, EXERCISE_STRENGTH)
    expected = int(scheduler.timesteps[skipped])
    if answer == round(EXERCISE_STRENGTH * 1000) or answer == round(EXERCISE_STRENGTH * 1000) - 1:
        raise AssertionError(
            f"{exercise}: strength × 1000 is a good guess, but the run can only start at one of the "
            f"{EXERCISE_STEPS} timesteps it visits: scheduler.timesteps[50 - int(50 × 0.75)]."
        )
    if answer == int(scheduler.timesteps[skipped - 1]) or answer == int(scheduler.timesteps[skipped + 1]):
        raise AssertionError(f"{exercise}: one timestep off. The index of the first kept step is 50 - 37.")
    assert answer == expected, (
        f"{exercise}: {answer} is not it. Build DDIMScheduler.from_config(pipe.scheduler.config), "
        "call set_timesteps(50) and read scheduler.timesteps[50 - int(50 × 0.75)]."
    )
    passed(exercise, f"t = {expected}: the input is noised to this level, then denoised from there.")


def check_signal_at_strength_one(answer):
    """Exercise 3: sqrt(alphabar) at the first timestep of 20 DDIM steps."""
    exercise = "Exercise 3 (input left at strength 1)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    scheduler = sd_ddim(20)
    first_t = int(scheduler.timesteps[0])
    alphabar = scheduler.alphas_cumprod[first_t].item()
    expected = alphabar**0.5
    if answer == 0:
        raise AssertionError(
            f"{exercise}: not zero: the image-to-image pipeline adds noise to the input even at strength 1, "
            "and Stable Diffusion's schedule never removes the signal completely."
        )
    if abs(answer - alphabar) < 0.006:
        raise AssertionError(f"{exercise}: that is alphabar itself; the latent is multiplied by its square root.")
    assert abs(answer - expected) < 0.006, (
        f"{exercise}: {answer} is not it. Take the first of the 20 timesteps (scheduler.timesteps[0]) "
        "and compute scheduler.alphas_cumprod[t] ** 0.5."
    )
    passed(exercise, f"About {expected:.0%} of the input's latent is in the start at t = {first_t}.")


def _reference_blend(generated, known, latent_mask):
    return (1 - latent_mask) * known + latent_mask * generated


def _swapped_blend(generated, known, latent_mask):
    """A wrong answer the check recognises: the mask used the wrong way round."""
    return latent_mask * known + (1 - latent_mask) * generated


def check_blend(my_blend):
    """Exercise 4: the inpainting blend (1 - m) * known + m * generated."""
    exercise = "Exercise 4 (the inpainting blend)"
    if is_unanswered(my_blend):
        return not_answered(exercise)
    if not callable(my_blend):
        raise AssertionError(f"{exercise}: expected a function my_blend(generated, known, latent_mask).")
    generator = torch.Generator().manual_seed(0)
    generated = torch.randn(2, 4, 8, 8, generator=generator)  # (2, 4, 8, 8)
    known = torch.randn(2, 4, 8, 8, generator=generator)  # (2, 4, 8, 8)
    latent_mask = torch.zeros(2, 1, 8, 8)  # (2, 1, 8, 8)
    latent_mask[:, :, 2:6, 1:5] = 1
    mine = my_blend(generated, known, latent_mask)
    if is_unanswered(mine):
        return not_answered(exercise)
    if not isinstance(mine, torch.Tensor) or mine.shape != generated.shape:
        raise AssertionError(
            f"{exercise}: return a tensor shaped like the latents {tuple(generated.shape)}, "
            f"got {type(mine).__name__} {tuple(getattr(mine, 'shape', ()))}."
        )
    if torch.allclose(mine, _swapped_blend(generated, known, latent_mask)):
        raise AssertionError(f"{exercise}: the mask is the wrong way round: 1 means 'repaint here'.")
    assert torch.allclose(mine, _reference_blend(generated, known, latent_mask)), (
        f"{exercise}: not right. Outside the mask (latent_mask == 0) keep `known`, inside keep `generated`; "
        "one multiplication by latent_mask and one by (1 - latent_mask)."
    )
    passed(exercise, "This is the line diffusers runs after every step for 4-channel U-Nets.")


# For every check: a right and a wrong answer (used by tests/test_exercises.py).
REFERENCE_SOLUTIONS = {
    "check_img2img_steps": {"right": 37, "wrong": 38},
    "check_start_timestep": {"right": 721, "wrong": 750},
    "check_signal_at_strength_one": {"right": 0.09, "wrong": 0.0},
    "check_blend": {"right": _reference_blend, "wrong": _swapped_blend},
}
