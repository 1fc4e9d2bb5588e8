"""Checks for the exercises of notebook 10 (editing a picture: DDIM inversion, prompt-to-prompt).

The inversion step is checked against diffusers' own `DDIMInverseScheduler`
with Stable Diffusion 1.5's scheduler settings (Song et al. 2021, DDIM,
equation 12 run backwards; Mokady et al. 2023, null-text inversion,
section 3). The guidance exercise follows the notebook's measured curve.
The last two follow prompt-to-prompt's reference code (Hertz et al. 2022,
github.com/google/prompt-to-prompt): the replacement mapper of
`seq_aligner.py` (a swapped word's maps shared out over the edit's tokens)
and `LocalBlend`'s mask (dilate with a max-pool, scale to a maximum of 1,
threshold, union of the source's and the edit's word).
"""

import torch
import torch.nn.functional as F
from diffusers import DDIMInverseScheduler

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed
from sdnotes.schedule import SD_SCHEDULER_CONFIG  # SD 1.5's scheduler/scheduler_config.json

# SD 1.5's settings without PNDM's skip_prk_steps, which DDIMInverseScheduler does not take (diffusers would warn)
INVERSE_SCHEDULER_CONFIG = {key: value for key, value in SD_SCHEDULER_CONFIG.items() if key != "skip_prk_steps"}
INVERSION_STEPS = 50
INVERSION_STEP_INDEX = 25  # a step in the middle of the inversion


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


ALIGNMENT_SOURCE = "a slice of pizza on the left and a rocket on the right"
ALIGNMENT_EDIT = "a fish on the left and a rocket on the right"
ALIGNMENT_ANSWER = {2: 1.0, 3: 1.0, 4: 1.0}  # "slice", "of", "pizza" (positions 2-4) all go to "fish" (position 2)


def check_fish_column(answer):
    """Exercise 3: which source columns, with which weights, make the edit's "fish" column (3 tokens -> 1)."""
    exercise = "Exercise 3 (a swapped word's column)"
    if is_unanswered(answer):
        return not_answered(exercise)
    if not isinstance(answer, dict):
        raise AssertionError(f"{exercise}: expected a dict {{source position: weight}}, e.g. {{5: 1.0}}, "
                             f"got {type(answer).__name__}.")
    try:
        mine = {int(position): float(as_number(exercise, weight)) for position, weight in answer.items()}
    except (TypeError, ValueError):
        raise AssertionError(f"{exercise}: positions must be whole numbers and weights numbers.") from None
    if set(mine) == {2}:
        raise AssertionError(f"{exercise}: position 2 is only \"slice\". The source word is three tokens "
                             "(slice, of, pizza: positions 2, 3, 4); which of them does \"fish\" replace?")
    if set(mine) == set(ALIGNMENT_ANSWER) and all(abs(weight - 1 / 3) < 0.01 for weight in mine.values()):
        raise AssertionError(f"{exercise}: 1/3 is the rule the other way round (one token becoming three: each of "
                             "the three gets a third). Here three become one: the reference divides by the number "
                             "of *edit* tokens, so \"fish\" gets each of the three maps whole.")
    if set(mine) != set(ALIGNMENT_ANSWER):
        raise AssertionError(f"{exercise}: not those positions. Tokenise the source prompt (start token = 0): "
                             "which positions hold the swapped word? token_alignment(...)[0][:, 2] shows the column.")
    for position, weight in mine.items():
        assert abs(weight - ALIGNMENT_ANSWER[position]) < 0.01, (
            f"{exercise}: the weight of position {position} is not {weight}: each edit token of a swapped word "
            "gets the source word's maps divided by the number of edit tokens."
        )
    passed(exercise, "\"fish\" takes the sum of the three maps, so the word's total attention is kept.")


def _reference_blend_mask(word_maps, threshold):
    """(2, h, w) maps of the swapped word, [source, edit] -> (h, w) bool: LocalBlend's mask."""
    dilated = F.max_pool2d(word_maps[:, None], kernel_size=3, stride=1, padding=1)[:, 0]  # (2, h, w)
    scaled = dilated / dilated.amax(dim=(-2, -1), keepdim=True)  # each map's maximum is 1
    above = scaled > threshold  # (2, h, w)
    return above[0] | above[1]


def _blend_mask_without_dilation(word_maps, threshold):
    """A wrong answer the check recognises: the max-pool left out."""
    scaled = word_maps / word_maps.amax(dim=(-2, -1), keepdim=True)
    above = scaled > threshold
    return above[0] | above[1]


def _blend_mask_of_the_edit_only(word_maps, threshold):
    """A wrong answer the check recognises: the source's word left out of the union."""
    return _reference_blend_mask(word_maps[1:].expand(2, -1, -1), threshold)


def _blend_mask_scaled_together(word_maps, threshold):
    """A wrong answer the check recognises: both maps divided by one maximum."""
    dilated = F.max_pool2d(word_maps[:, None], kernel_size=3, stride=1, padding=1)[:, 0]
    above = dilated / dilated.max() > threshold
    return above[0] | above[1]


def _blend_cases():
    generator = torch.Generator().manual_seed(0)
    cases = []
    for threshold in (0.3, 0.5):
        word_maps = torch.rand(2, 16, 16, generator=generator) ** 4  # (2, 16, 16), peaked
        word_maps[1] = word_maps[1] * 0.2  # the edit's word attended less: scaling each map on its own matters
        word_maps[0, :, 8:] = 0.0  # the old word on the left only
        cases.append((word_maps, threshold))
    return cases


def check_blend_mask(my_blend_mask):
    """Exercise 4: local blending's mask from the swapped word's maps."""
    exercise = "Exercise 4 (the local-blend mask)"
    if is_unanswered(my_blend_mask):
        return not_answered(exercise)
    if not callable(my_blend_mask):
        raise AssertionError(f"{exercise}: expected a function my_blend_mask(word_maps, threshold).")
    mistakes = {
        "no dilation": (_blend_mask_without_dilation,
                        "dilate first: a 3×3 max-pool (stride 1, padding 1) grows each map by one pixel."),
        "edit only": (_blend_mask_of_the_edit_only,
                      "take the union with the source's map too: the old object's place must be redrawn as well."),
        "scaled together": (_blend_mask_scaled_together,
                            "divide each map by its *own* maximum: the new word may be attended less overall."),
    }
    for word_maps, threshold in _blend_cases():
        mine = my_blend_mask(word_maps.clone(), threshold)
        if is_unanswered(mine):
            return not_answered(exercise)
        if not isinstance(mine, torch.Tensor) or tuple(mine.shape) != tuple(word_maps.shape[1:]):
            raise AssertionError(f"{exercise}: return an (h, w) tensor, here {tuple(word_maps.shape[1:])}, got "
                                 f"{type(mine).__name__} {tuple(getattr(mine, 'shape', ()))}.")
        mine = mine.bool()
        expected = _reference_blend_mask(word_maps, threshold)
        if torch.equal(mine, expected):
            continue
        for mistake, hint in mistakes.values():
            if torch.equal(mine, mistake(word_maps, threshold)):
                raise AssertionError(f"{exercise}: {hint}")
        raise AssertionError(f"{exercise}: not LocalBlend's mask (threshold {threshold}): 3×3 max-pool each map, "
                             "divide each by its maximum, compare with the threshold (>), then the union of the two.")
    passed(exercise, "It is the mask the reference code's LocalBlend multiplies the latents with after each step.")


# For every check: a right and a wrong answer (used by tests/test_exercises.py).
REFERENCE_SOLUTIONS = {
    "check_inversion_step": {"right": _reference_inversion_step, "wrong": _denoising_step},
    "check_faithful_guidance": {"right": 1.0, "wrong": 7.5},
    "check_fish_column": {"right": ALIGNMENT_ANSWER, "wrong": {2: 1 / 3, 3: 1 / 3, 4: 1 / 3}},
    "check_blend_mask": {"right": _reference_blend_mask, "wrong": _blend_mask_without_dilation},
}
