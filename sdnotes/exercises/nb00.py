"""Checks for the exercises of notebook 00 (your first picture)."""

from diffusers import PNDMScheduler

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed
from sdnotes.schedule import SD_SCHEDULER_CONFIG  # SD 1.5's scheduler/scheduler_config.json

# Stable Diffusion 1.5, approximately (the numbers notebook 00 shows).
SD15_PARAMETERS = {"unet": 860e6, "vae": 84e6, "text_encoder": 123e6}


def check_pixel_values_512(answer):
    """Exercise 1: 512 * 512 * 3 = 786,432."""
    exercise = "Exercise 1 (numbers in a 512×512 picture)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = 512 * 512 * 3
    if answer == 768_432:
        raise AssertionError(
            f"{exercise}: 768,432 is a figure that circulates, but it is a slip: multiply it out."
        )
    if answer == 512 * 512:
        raise AssertionError(f"{exercise}: that counts pixels; each pixel has three colour values (R, G, B).")
    assert answer == expected, f"{exercise}: {answer} is not it. Width × height × colour channels."
    passed(exercise, "786,432 numbers; SD's latent for it has 4×64×64 = 16,384, 48 times fewer (notebook 03).")


def _pndm_unet_calls(num_steps):
    # U-Net calls of one picture with PNDM (SD 1.5's and the pocket model's scheduler): one per timestep it visits
    scheduler = PNDMScheduler.from_config(SD_SCHEDULER_CONFIG)
    scheduler.set_timesteps(num_steps)
    return len(scheduler.timesteps)


def check_unet_calls(answer):
    """Exercise 2: U-Net calls for 30 PNDM steps with guidance = 31 (guidance doubles the batch, not the calls)."""
    exercise = "Exercise 2 (U-Net calls)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = _pndm_unet_calls(30)
    if answer == 60 or answer == 2 * expected:
        raise AssertionError(
            f"{exercise}: that counts noise predictions (two latents per call with guidance). "
            "Guidance doubles the batch of each call, not the number of calls."
        )
    if answer == 30:
        raise AssertionError(f"{exercise}: close: PNDM makes one extra call at the start (the count above shows it).")
    assert answer == expected, (
        f"{exercise}: {answer} is not it. One call per step, plus PNDM's one extra call at the start."
    )
    passed(exercise, f"{expected} calls, each on a batch of 2 latents: {2 * expected} noise predictions (notebook 07).")


def _unet_share():
    total = 0.0
    for count in SD15_PARAMETERS.values():
        total += count
    return SD15_PARAMETERS["unet"] / total


def check_unet_share(answer):
    """Exercise 3: 860 / (860 + 84 + 123) = 0.81."""
    exercise = "Exercise 3 (the U-Net's share)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = _unet_share()
    if answer > 1:
        raise AssertionError(f"{exercise}: a fraction is between 0 and 1 (80% is 0.80).")
    assert abs(answer - expected) < 0.006, (
        f"{exercise}: {answer} is not it. Divide the U-Net's 860 M by the sum of all three networks "
        "(860 M + 84 M + 123 M)."
    )
    passed(exercise, f"{expected:.2f}: the U-Net is where the time goes, too.")


# For every check: a right and a wrong answer (used by tests/test_exercises.py).
REFERENCE_SOLUTIONS = {
    "check_pixel_values_512": {"right": 786_432, "wrong": 768_432},
    "check_unet_calls": {"right": 31, "wrong": 60},
    "check_unet_share": {"right": 0.81, "wrong": 0.86},
}
