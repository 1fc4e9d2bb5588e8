"""Checks for the exercises of notebook 10 (editing a picture: DDIM inversion, prompt-to-prompt).

The inversion step is checked against diffusers' own `DDIMInverseScheduler`
with Stable Diffusion 1.5's scheduler settings (Song et al. 2021, DDIM,
equation 12 run backwards; Mokady et al. 2023, null-text inversion,
section 3). The guidance exercise follows the notebook's measured curve;
the injection exercise follows prompt-to-prompt's word swap (Hertz et al.
2022), where the source's maps are used for the first fraction of the steps.
"""

import torch
from diffusers import DDIMInverseScheduler

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed
from sdnotes.schedule import SD_SCHEDULER_CONFIG  # SD 1.5's scheduler/scheduler_config.json

# SD 1.5's settings without PNDM's skip_prk_steps, which DDIMInverseScheduler does not take (diffusers would warn)
INVERSE_SCHEDULER_CONFIG = {key: value for key, value in SD_SCHEDULER_CONFIG.items() if key != "skip_prk_steps"}
INVERSION_STEPS = 50
INVERSION_STEP_INDEX = 25  # a step in the middle of the inversion
INJECTION_STEPS = 50
INJECTION_FRACTION = 0.8


def _inversion_case():
    """A latent, a noise prediction, the two noise levels and the scheduler's answer."""
    scheduler = DDIMInverseScheduler.from_config(INVERSE_SCHEDULER_CONFIG, clip_sample=False)
    scheduler.set_timesteps(INVERSION_STEPS)
    timestep = int(scheduler.timesteps[INVERSION_STEP_INDEX])  # the noisier level we step to
    previous_timestep = timestep - scheduler.config.num_train_timesteps // INVERSION_STEPS
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 8, 8, generator=generator)  # (1, 4, h, w)
    noise_pred = torch.randn(1, 4, 8, 8, generator=generator)  # (1, 4, h, w)
    expected = scheduler.step(noise_pred, timestep, latents).prev_sample
    alphabar_from = scheduler.alphas_cumprod[previous_timestep]
    alphabar_to = scheduler.alphas_cumprod[timestep]
    return noise_pred, latents, alphabar_from, alphabar_to, expected


def _reference_inversion_step(noise_pred, latents, alphabar_from, alphabar_to):
    predicted_x0 = (latents - (1 - alphabar_from).sqrt() * noise_pred) / alphabar_from.sqrt()
    return alphabar_to.sqrt() * predicted_x0 + (1 - alphabar_to).sqrt() * noise_pred


def _denoising_step(noise_pred, latents, alphabar_from, alphabar_to):
    """A wrong answer the check recognises: the ordinary DDIM step (the levels swapped)."""
    return _reference_inversion_step(noise_pred, latents, alphabar_to, alphabar_from)


def check_inversion_step(my_inversion_step):
    """Exercise 1: one DDIM inversion step, x_t (less noisy) -> x_t+1 (noisier)."""
    exercise = "Exercise 1 (one DDIM inversion step)"
    if is_unanswered(my_inversion_step):
        return not_answered(exercise)
    if not callable(my_inversion_step):
        raise AssertionError(f"{exercise}: expected a function my_inversion_step(noise_pred, latents, "
                             "alphabar_from, alphabar_to).")
    noise_pred, latents, alphabar_from, alphabar_to, expected = _inversion_case()
    mine = my_inversion_step(noise_pred, latents, alphabar_from, alphabar_to)
    if is_unanswered(mine):
        return not_answered(exercise)
    if not isinstance(mine, torch.Tensor) or mine.shape != latents.shape:
        raise AssertionError(f"{exercise}: return a tensor shaped like the latents {tuple(latents.shape)}, "
                             f"got {type(mine).__name__} {tuple(getattr(mine, 'shape', ()))}.")
    if torch.allclose(mine, _denoising_step(noise_pred, latents, alphabar_from, alphabar_to), atol=1e-5):
        raise AssertionError(f"{exercise}: that is the ordinary (denoising) DDIM step. Inversion goes the other "
                             "way: x̂0 from the current, less noisy level (alphabar_from), then re-noise it to "
                             "alphabar_to.")
    assert torch.allclose(mine, expected, atol=1e-5), (
        f"{exercise}: not DDIMInverseScheduler's step. First x̂0 = (x - sqrt(1 - ᾱ_from) ε) / sqrt(ᾱ_from), "
        "then sqrt(ᾱ_to) x̂0 + sqrt(1 - ᾱ_to) ε, with the same ε."
    )
    passed(exercise, "It equals diffusers' DDIMInverseScheduler.step, and it reuses ε: that is the approximation.")


def check_faithful_guidance(answer):
    """Exercise 2: the guidance scale that regenerates an inverted picture most faithfully."""
    exercise = "Exercise 2 (guidance for a faithful reconstruction)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    if answer == 0:
        raise AssertionError(f"{exercise}: guidance 0 uses only the empty prompt's prediction, but the inversion "
                             "was run with the prompt's prediction. Which guidance gives exactly that one?")
    if answer > 1:
        raise AssertionError(f"{exercise}: read the curve again: the error grows with the guidance scale. "
                             "Which scale makes the regeneration use the same prediction as the inversion?")
    assert answer == 1, f"{exercise}: {answer} is not one of the measured scales; look at the first point."
    passed(exercise, "Guidance 1 is the prompt's own prediction, the one the inversion assumed at every step.")


def check_injected_steps(answer):
    """Exercise 3: steps that get the source's cross-attention, 50 steps, fraction 0.8."""
    exercise = "Exercise 3 (steps with the source's attention)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = int(INJECTION_STEPS * INJECTION_FRACTION)
    if answer == INJECTION_STEPS - expected:
        raise AssertionError(f"{exercise}: that is the number of steps *without* injection: the source's maps "
                             "are used at the start, where the layout is decided.")
    if answer == INJECTION_STEPS:
        raise AssertionError(f"{exercise}: not all {INJECTION_STEPS}: the last steps run with the edit's own maps, "
                             "so that its details can differ from the source's.")
    assert answer == expected, f"{exercise}: {answer} is not it: int(num_steps × fraction) steps."
    passed(exercise, f"{expected} steps: the first {expected} U-Net calls take the source's maps.")


# For every check: a right and a wrong answer (used by tests/test_exercises.py).
REFERENCE_SOLUTIONS = {
    "check_inversion_step": {"right": _reference_inversion_step, "wrong": _denoising_step},
    "check_faithful_guidance": {"right": 1.0, "wrong": 7.5},
    "check_injected_steps": {"right": 40, "wrong": 10},
}
