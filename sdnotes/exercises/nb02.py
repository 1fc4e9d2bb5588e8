"""Checks for the exercises of notebook 02 (noise prediction).

Expected values come from Stable Diffusion's training schedule in diffusers
and from diffusers' own `DDPMScheduler.step`, not typed in.
"""

import torch

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed
from sdnotes.schedule import stable_diffusion_scheduler
from sdnotes.tiny import SD15_UNET_CONFIG  # the values of SD 1.5's unet/config.json


def check_zero_predictor_loss(answer):
    """Exercise 1: the loss of a predictor that always returns zeros is E[eps^2] = 1."""
    exercise = "Exercise 1 (loss of a zero predictor)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    if abs(answer) < 1e-6:
        raise AssertionError(
            f"{exercise}: 0 would be a perfect predictor. The true noise is not zero: "
            "the error is (0 - noise) ** 2, averaged."
        )
    if abs(answer - 2.0) < 0.05:
        raise AssertionError(
            f"{exercise}: 2 is the squared length of a 2-D noise vector. The loss is a *mean* over "
            "coordinates: the average of noise ** 2 for a standard Gaussian."
        )
    assert abs(answer - 1.0) < 0.05, (
        f"{exercise}: {answer} is not it. The error is mean((0 - noise) ** 2) with noise ~ N(0, 1): "
        "what is the average of the square of a standard Gaussian number? (Its variance.)"
    )
    passed(exercise, "Any real predictor must beat 1.0; the untrained U-Net starts near it.")


def _reference_predict_x0(x_t, noise_pred, alphabar_t):
    return (x_t - (1 - alphabar_t).sqrt() * noise_pred) / alphabar_t.sqrt()


def _predict_x0_without_sqrt(x_t, noise_pred, alphabar_t):
    """A wrong answer the check recognises: the weights without square roots."""
    return (x_t - (1 - alphabar_t) * noise_pred) / alphabar_t


def check_predict_x0(predict_x0):
    """Exercise 2: x0_hat = (x_t - sqrt(1 - alphabar) eps_hat) / sqrt(alphabar), against diffusers."""
    exercise = "Exercise 2 (x̂₀ yourself)"
    if is_unanswered(predict_x0):
        return not_answered(exercise)
    if not callable(predict_x0):
        raise AssertionError(f"{exercise}: expected a function predict_x0(x_t, noise_pred, alphabar_t).")
    scheduler = stable_diffusion_scheduler()
    generator = torch.Generator().manual_seed(0)
    x_t = torch.randn(2, 4, 8, 8, generator=generator)  # (2, 4, 8, 8), like a batch of latents
    noise_pred = torch.randn(2, 4, 8, 8, generator=generator)  # (2, 4, 8, 8)
    for t in (10, 500, 990):
        alphabar_t = scheduler.alphas_cumprod[t]
        mine = predict_x0(x_t, noise_pred, alphabar_t)
        if is_unanswered(mine):
            return not_answered(exercise)
        if not isinstance(mine, torch.Tensor) or mine.shape != x_t.shape:
            raise AssertionError(
                f"{exercise}: predict_x0 should return a tensor shaped like x_t {tuple(x_t.shape)}, "
                f"got {type(mine).__name__} {tuple(getattr(mine, 'shape', ()))}."
            )
        expected = scheduler.step(noise_pred, t, x_t, generator=torch.Generator().manual_seed(0)).pred_original_sample
        if torch.allclose(mine, expected, atol=1e-4, rtol=1e-4):
            continue
        if torch.allclose(mine, _predict_x0_without_sqrt(x_t, noise_pred, alphabar_t), atol=1e-4, rtol=1e-4):
            raise AssertionError(f"{exercise}: close! Both weights need a square root (at t = {t}).")
        raise AssertionError(
            f"{exercise}: wrong at t = {t}. Start from x_t = sqrt(alphabar) x0 + sqrt(1 - alphabar) noise "
            "and solve for x0, with noise_pred in place of the noise."
        )
    passed(exercise, "Your x̂₀ matches DDPMScheduler.step(...).pred_original_sample.")


def _sigma(t):
    scheduler = stable_diffusion_scheduler()
    alphabar_t = scheduler.alphas_cumprod[t]
    alphabar_prev = scheduler.alphas_cumprod[t - 1]
    return ((1 - alphabar_prev) / (1 - alphabar_t) * scheduler.betas[t]).sqrt().item()


def check_sigma_at_t1(answer):
    """Exercise 3: sigma_1 = sqrt((1 - alphabar_0) / (1 - alphabar_1) * beta_1) for SD's schedule."""
    exercise = "Exercise 3 (the random part at t = 1)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = _sigma(1)
    scheduler = stable_diffusion_scheduler()
    sqrt_beta = scheduler.betas[1].sqrt().item()
    if abs(answer - sqrt_beta) < 0.0002:
        raise AssertionError(
            f"{exercise}: {answer} is sqrt(beta_1), the other choice in the DDPM paper. diffusers' default "
            "multiplies beta_1 by (1 - alphabar_0) / (1 - alphabar_1) first."
        )
    if abs(answer - expected**2) < 0.00002:
        raise AssertionError(f"{exercise}: {answer} is the variance sigma^2; take its square root.")
    assert abs(answer - expected) < 0.0002, (
        f"{exercise}: {answer} is not it. With a = scheduler.alphas_cumprod and b = scheduler.betas, "
        "compute ((1 - a[0]) / (1 - a[1]) * b[1]).sqrt()."
    )
    passed(
        exercise,
        f"sigma_1 = {expected:.4f}, about {expected / sqrt_beta:.0%} of sqrt(beta_1) = {sqrt_beta:.4f}: "
        "the random kicks shrink at the end, and at t = 0 they stop.",
    )


def _sd15_skip_connections():
    # what SD 1.5's down path pushes: conv_in's output, every ResNet block's, every downsampler's
    config = SD15_UNET_CONFIG
    blocks = len(config["down_block_types"])
    return 1 + blocks * config["layers_per_block"] + (blocks - 1)  # the last down block does not downsample


def check_sd15_skip_connections(answer):
    """Exercise 4: SD 1.5's U-Net hands 1 + 4 x 2 + 3 = 12 tensors from the down path to the up path."""
    exercise = "Exercise 4 (SD 1.5's skip connections)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = _sd15_skip_connections()
    resnets = len(SD15_UNET_CONFIG["down_block_types"]) * SD15_UNET_CONFIG["layers_per_block"]
    if answer == resnets:
        raise AssertionError(
            f"{exercise}: {resnets} counts the down path's ResNet blocks; conv_in and the downsamplers push too."
        )
    if answer == expected - 1:
        raise AssertionError(f"{exercise}: close! Did you count conv_in's output, or the downsampler of every level?")
    assert answer == expected, (
        f"{exercise}: {answer} is not it. Count what the down path pushes: conv_in, every ResNet block of every "
        "down block, and every downsampler (the last down block has none). The up path pops one per ResNet block."
    )
    up_blocks = len(SD15_UNET_CONFIG["up_block_types"])
    per_up_block = SD15_UNET_CONFIG["layers_per_block"] + 1
    passed(exercise, f"{expected}: and SD 1.5's up path has {up_blocks} × {per_up_block} = {up_blocks * per_up_block} "
           "ResNet blocks, one per skip.")


# For every check: a right and a wrong answer (used by tests/test_exercises.py).
REFERENCE_SOLUTIONS = {
    "check_zero_predictor_loss": {"right": 1.0, "wrong": 2.0},
    "check_predict_x0": {"right": _reference_predict_x0, "wrong": _predict_x0_without_sqrt},
    "check_sigma_at_t1": {"right": 0.0206, "wrong": 0.0292},
    "check_sd15_skip_connections": {"right": 12, "wrong": 8},
}
