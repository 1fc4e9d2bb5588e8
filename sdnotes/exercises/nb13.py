"""Checks for the exercises of notebook 13 (a pixel cascade, dynamic thresholding, noise-conditioning augmentation).

The thresholding reference is checked against diffusers' own implementation
(DDPMScheduler with thresholding=True) inside the checks, so it cannot drift
from the library. The augmentation check runs the shipped pocket cascade's
super-resolution model (sdnotes/pocket/cascade) at the learner's level and at
the levels around it.
"""

import torch
from diffusers import DDPMScheduler

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed

LEVELS_TRIED = (0, 50, 100, 200, 300, 400, 500, 700, 900)  # exercise 2 compares the learner's level with these
WITHIN_DB = 1.0  # exercise 2: this close to the best of LEVELS_TRIED passes


def _reference_dynamic_threshold(x0_pred, ratio):
    flat = x0_pred.reshape(x0_pred.shape[0], -1)  # (B, C*H*W)
    s = torch.quantile(flat.abs(), ratio, dim=1)  # (B,)
    s = s.clamp(min=1)[:, None]  # (B, 1)
    return (torch.maximum(torch.minimum(flat, s), -s) / s).reshape(x0_pred.shape)


def _reference_thresholded_noise(x_t, noise_pred, alphabar, ratio):
    alphabar = torch.as_tensor(alphabar, dtype=x_t.dtype)
    x0_pred = (x_t - (1 - alphabar).sqrt() * noise_pred) / alphabar.sqrt()
    x0_thresholded = _reference_dynamic_threshold(x0_pred, ratio)
    return (x_t - alphabar.sqrt() * x0_thresholded) / (1 - alphabar).sqrt()


def _thresholding_the_noise(x_t, noise_pred, alphabar, ratio):
    """A wrong answer the check recognises: dynamic thresholding applied to the noise prediction."""
    return _reference_dynamic_threshold(noise_pred, ratio)


def check_thresholded_noise(my_thresholded_noise):
    """Exercise 3: noise prediction -> x0 -> dynamic thresholding -> noise prediction again."""
    exercise = "Exercise 3 (thresholding through x̂₀)"
    if is_unanswered(my_thresholded_noise):
        return not_answered(exercise)
    if not callable(my_thresholded_noise):
        raise AssertionError(f"{exercise}: expected a function my_thresholded_noise(x_t, noise_pred, alphabar, ratio).")
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", thresholding=True,
                              dynamic_thresholding_ratio=0.995, sample_max_value=float("inf"))
    generator = torch.Generator().manual_seed(10)
    for t, noise_scale in ((100, 1.0), (500, 3.0), (900, 3.0)):
        x_t = torch.randn(3, 3, 8, 8, generator=generator)  # (3, 3, 8, 8)
        noise_pred = noise_scale * torch.randn(3, 3, 8, 8, generator=generator)  # (3, 3, 8, 8)
        alphabar = scheduler.alphas_cumprod[t]
        expected = _reference_thresholded_noise(x_t, noise_pred, alphabar, 0.995)
        # the reference's x0 must be what diffusers' step uses
        x0_of_expected = (x_t - (1 - alphabar).sqrt() * expected) / alphabar.sqrt()
        library_x0 = scheduler.step(noise_pred, t, x_t, generator=torch.Generator().manual_seed(0)).pred_original_sample
        assert torch.allclose(x0_of_expected, library_x0, atol=1e-4)
        mine = my_thresholded_noise(x_t.clone(), noise_pred.clone(), alphabar.item(), 0.995)
        if is_unanswered(mine):
            return not_answered(exercise)
        if not isinstance(mine, torch.Tensor) or mine.shape != noise_pred.shape:
            raise AssertionError(
                f"{exercise}: return a tensor shaped like noise_pred {tuple(noise_pred.shape)}, "
                f"got {type(mine).__name__} {tuple(getattr(mine, 'shape', ()))}."
            )
        if torch.allclose(mine, expected, atol=1e-4):
            continue
        if torch.allclose(mine, _thresholding_the_noise(x_t, noise_pred, alphabar, 0.995), atol=1e-4):
            raise AssertionError(
                f"{exercise}: you thresholded the noise prediction itself. First compute "
                f"x0 = (x_t - sqrt(1 - alphabar) * noise_pred) / sqrt(alphabar), threshold x0, then turn it back: "
                f"noise = (x_t - sqrt(alphabar) * x0_thresholded) / sqrt(1 - alphabar)."
            )
        if torch.allclose(mine, _reference_dynamic_threshold((x_t - (1 - alphabar).sqrt() * noise_pred) / alphabar.sqrt(),
                                                   0.995), atol=1e-4):
            raise AssertionError(f"{exercise}: that is the thresholded x̂₀; the function should return the "
                                 f"matching *noise* prediction (convert back at the same x_t).")
        raise AssertionError(
            f"{exercise}: wrong at t = {t}. Per picture: s = quantile(|x0|, ratio) over all its values, "
            f"s = max(s, 1), x0 = clamp(x0, -s, s) / s; then convert x0 back to a noise prediction."
        )
    passed(exercise, "Your noise prediction leads to the same x̂₀ as DDPMScheduler(thresholding=True).")


def _diffusers_threshold(x0_pred, ratio):
    scheduler = DDPMScheduler(thresholding=True, dynamic_thresholding_ratio=ratio, sample_max_value=float("inf"))
    return scheduler._threshold_sample(x0_pred)


def _saturated_share(pictures):
    values = ((pictures / 2 + 0.5).clamp(0, 1) * 255).round()
    return ((values == 0) | (values == 255)).float().mean().item()


def _one_s_for_the_batch(x0_pred, ratio):
    """A wrong answer the check recognises: one percentile over the whole batch instead of one per picture."""
    s = torch.quantile(x0_pred.abs().flatten(), ratio).clamp(min=1)
    return x0_pred.clamp(-s, s) / s


def check_dynamic_threshold(my_dynamic_threshold, x0_pred=None):
    """Exercise 1: dynamic thresholding of x0 (Saharia et al. 2022, section 2.3), against diffusers."""
    exercise = "Exercise 1 (dynamic thresholding)"
    if is_unanswered(my_dynamic_threshold):
        return not_answered(exercise)
    if not callable(my_dynamic_threshold):
        raise AssertionError(f"{exercise}: expected a function my_dynamic_threshold(x0_pred, ratio).")
    generator = torch.Generator().manual_seed(13)
    cases = [scale * torch.randn(3, 3, 8, 8, generator=generator) for scale in (0.5, 3.0)]  # in range, far out
    cases[1][0] *= 4  # pictures of one batch that leave the range by different amounts
    if x0_pred is not None:
        cases.append(x0_pred.detach().float())
    for case in cases:
        mine = my_dynamic_threshold(case.clone(), 0.995)
        if is_unanswered(mine):
            return not_answered(exercise)
        if not isinstance(mine, torch.Tensor) or mine.shape != case.shape:
            raise AssertionError(f"{exercise}: return a tensor shaped like x0_pred {tuple(case.shape)}, got "
                                 f"{type(mine).__name__} {tuple(getattr(mine, 'shape', ()))}.")
        expected = _diffusers_threshold(case, 0.995)
        if torch.allclose(mine, expected, atol=1e-5):
            continue
        if torch.allclose(mine, case.clamp(-1, 1), atol=1e-5):
            raise AssertionError(f"{exercise}: that is static clipping to [-1, 1]. Dynamic thresholding first finds "
                                 f"s, the {0.995:.1%} percentile of |x0| of each picture, and divides by it.")
        if torch.allclose(mine, _one_s_for_the_batch(case, 0.995), atol=1e-5):
            raise AssertionError(f"{exercise}: you took one s for the whole batch. Each picture gets its own s: "
                                 f"reshape to (B, C*H*W) and take the quantile along dim=1.")
        raise AssertionError(f"{exercise}: not what DDPMScheduler(thresholding=True) gives. Per picture: "
                             f"s = quantile(|x0|, ratio); s = max(s, 1); clamp x0 to [-s, s]; divide by s.")
    detail = "Your function equals DDPMScheduler(thresholding=True, sample_max_value=inf)."
    if x0_pred is not None:
        detail += (f" On x0_high_guidance: {_saturated_share(x0_pred.clamp(-1, 1)):.1%} of the values sit at the edge "
                   f"after static clipping, {_saturated_share(mine):.1%} after yours.")
    passed(exercise, detail)


def _augmentation_case():
    """The notebook's case, when the check is called without it: the held-out cat-and-cactus scene
    (assets/pocket-cascade/held_out.png, third picture), shrunk to 32 x 32, with noise of std 0.3."""
    import json

    import numpy as np
    from PIL import Image

    from sdnotes.paths import POCKET_CASCADE_DIR
    from sdnotes.pocket import cascade

    parts = cascade.load_pocket_cascade()
    captions = json.loads((POCKET_CASCADE_DIR / "held_out.json").read_text())["captions"]
    strip = np.asarray(Image.open(POCKET_CASCADE_DIR / "held_out.png").convert("RGB"), dtype=np.float32) / 127.5 - 1
    high = torch.from_numpy(strip).permute(2, 0, 1).reshape(3, 128, -1, 128).permute(2, 0, 1, 3)[2:3]
    clean = cascade.downsample(high)
    context = cascade.encode_prompts(parts["text_encoder"], parts["tokenizer"], captions[2:3])
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(2))
    return parts["super_resolution"], (clean + 0.3 * noise).clamp(-1, 1), clean, context


def check_augmentation_level(augmentation_level, sr_unet=None, noisy_low=None, clean_low=None, context=None, steps=20):
    """Exercise 2: an augmentation level that cleans a noisy low-res picture without inventing a new one."""
    from sdnotes.pocket import cascade

    exercise = "Exercise 2 (choosing the augmentation level)"
    if is_unanswered(augmentation_level):
        return not_answered(exercise)
    level = as_number(exercise, augmentation_level)
    if not (0 <= level <= 999 and level == int(level)):
        raise AssertionError(f"{exercise}: a level is a whole timestep from 0 to 999, got {augmentation_level!r}.")
    if sr_unet is None:
        sr_unet, noisy_low, clean_low, context = _augmentation_case()
    levels = torch.tensor(list(LEVELS_TRIED) + [int(level)])
    count = len(levels)
    with torch.no_grad():
        pictures = cascade.super_resolve(sr_unet, noisy_low.expand(count, -1, -1, -1), context.expand(count, -1, -1),
                                         context.expand(count, -1, -1), levels, steps=steps,
                                         generator=torch.Generator().manual_seed(0))
    shrunk = cascade.downsample(pictures)  # (count, 3, 32, 32)
    mse = ((shrunk - clean_low) / 2).pow(2).mean(dim=(1, 2, 3))
    psnr = (10 * torch.log10(1 / mse)).tolist()
    mine, tried = psnr[-1], dict(zip(LEVELS_TRIED, psnr[:-1]))
    best_level = max(tried, key=tried.get)
    table = ", ".join(f"s={s}: {value:.1f} dB" for s, value in tried.items())
    if mine < tried[best_level] - WITHIN_DB:
        hint = ("too little noise: the model copies the input's noise up" if level < best_level
                else "too much noise: the model no longer sees the picture and invents one")
        raise AssertionError(f"{exercise}: at s = {int(level)} the result is {mine:.1f} dB from the clean picture, "
                             f"more than {WITHIN_DB:g} dB below the best level tried; {hint}. Try other levels "
                             f"and look at the pictures.")
    passed(exercise, f"s = {int(level)}: {mine:.1f} dB from the clean picture. The levels tried: {table}.")


# For every check: a right and a wrong answer (used by tests/test_exercises.py).
REFERENCE_SOLUTIONS = {
    "check_dynamic_threshold": {"right": _reference_dynamic_threshold, "wrong": _one_s_for_the_batch},
    "check_augmentation_level": {"right": 100, "wrong": 950},
    "check_thresholded_noise": {"right": _reference_thresholded_noise, "wrong": _thresholding_the_noise},
}
