"""Checks for the exercises of notebook 16 (measuring a text-to-image model).

The expected values are computed here, not typed in: the 1-D Fréchet distance
from the matrix formula (every matrix a 1x1 tensor), the CLIP score from its
definition (Hessel et al. 2021, w = 100 as torchmetrics), and the bias of the
mean term from Tr(Sigma) / N, confirmed by a simulation.
"""

import torch

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed

TOTAL_VARIANCE = 0.5  # Tr(Sigma) of the features in exercise 3
BIAS_PICTURES = 50  # N in exercise 3


def _reference_frechet_1d(mean_1, std_1, mean_2, std_2):
    return (mean_1 - mean_2) ** 2 + (std_1 - std_2) ** 2


def _frechet_from_matrices(mean_1, std_1, mean_2, std_2):
    """The FID formula with 1x1 matrices: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2)."""
    sigma_1 = torch.tensor([[std_1**2]], dtype=torch.float64)
    sigma_2 = torch.tensor([[std_2**2]], dtype=torch.float64)
    product_sqrt = torch.linalg.eigvalsh(sigma_1 @ sigma_2).clamp(min=0).sqrt().sum()
    return ((mean_1 - mean_2) ** 2 + (sigma_1 + sigma_2).trace() - 2 * product_sqrt).item()


def _frechet_without_cross_term(mean_1, std_1, mean_2, std_2):
    """A wrong answer the check recognises: the -2 (S1 S2)^1/2 term left out."""
    return (mean_1 - mean_2) ** 2 + std_1**2 + std_2**2


def check_frechet_1d(my_frechet_1d):
    """Exercise 1: the Fréchet distance of two 1-D Gaussians."""
    exercise = "Exercise 1 (Fréchet distance in 1-D)"
    if is_unanswered(my_frechet_1d):
        return not_answered(exercise)
    if not callable(my_frechet_1d):
        raise AssertionError(f"{exercise}: expected a function my_frechet_1d(mean_1, std_1, mean_2, std_2).")
    for arguments in ((0.0, 1.0, 0.0, 1.0), (1.0, 1.0, -2.0, 1.0), (0.0, 1.0, 0.0, 3.0), (0.5, 0.2, 1.5, 2.0)):
        mine = my_frechet_1d(*arguments)
        if is_unanswered(mine):
            return not_answered(exercise)
        mine = as_number(exercise, mine)
        expected = _frechet_from_matrices(*arguments)
        assert abs(expected - _reference_frechet_1d(*arguments)) < 1e-9
        if abs(mine - expected) < 1e-6:
            continue
        if abs(mine - _frechet_without_cross_term(*arguments)) < 1e-6:
            raise AssertionError(
                f"{exercise}: you kept sigma_1^2 + sigma_2^2 but dropped -2 (sigma_1^2 sigma_2^2)^(1/2). "
                f"Two identical Gaussians must be at distance 0."
            )
        raise AssertionError(
            f"{exercise}: for (mean_1, std_1, mean_2, std_2) = {arguments} expected {expected:.4f}, got {mine:.4f}. "
            f"In 1-D, Sigma = std^2 and (Sigma_1 Sigma_2)^(1/2) = std_1 std_2; the result is a sum of two squares."
        )
    passed(exercise, "(mu_1 - mu_2)^2 + (sigma_1 - sigma_2)^2: the means' gap and the spreads' gap, both squared.")


def _reference_clip_score(image_embeds, text_embeds):
    image_embeds = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
    text_embeds = text_embeds / text_embeds.norm(dim=-1, keepdim=True)
    return 100 * (image_embeds * text_embeds).sum(dim=-1).clamp(min=0)


def _clip_score_unnormalised(image_embeds, text_embeds):
    """A wrong answer the check recognises: dot products instead of cosines."""
    return 100 * (image_embeds * text_embeds).sum(dim=-1).clamp(min=0)


def _clip_score_not_clipped(image_embeds, text_embeds):
    """Another wrong answer: cosines without max(., 0)."""
    image_embeds = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
    text_embeds = text_embeds / text_embeds.norm(dim=-1, keepdim=True)
    return 100 * (image_embeds * text_embeds).sum(dim=-1)


def check_clip_score(my_clip_score):
    """Exercise 2: the CLIP score from (not normalised) embeddings."""
    exercise = "Exercise 2 (CLIP score)"
    if is_unanswered(my_clip_score):
        return not_answered(exercise)
    if not callable(my_clip_score):
        raise AssertionError(f"{exercise}: expected a function my_clip_score(image_embeds, text_embeds).")
    generator = torch.Generator().manual_seed(16)
    image_embeds = 3 * torch.randn(8, 64, generator=generator)  # (B, D), lengths far from 1
    text_embeds = torch.randn(8, 64, generator=generator) + 0.5 * image_embeds  # related, some cosines < 0
    text_embeds[0] = -image_embeds[0]  # cosine -1: the score must be 0
    mine = my_clip_score(image_embeds.clone(), text_embeds.clone())
    if is_unanswered(mine):
        return not_answered(exercise)
    mine = torch.as_tensor(mine, dtype=torch.float32)
    expected = _reference_clip_score(image_embeds, text_embeds)
    if mine.shape != expected.shape:
        raise AssertionError(f"{exercise}: expected one score per picture, shape {tuple(expected.shape)}, "
                             f"got {tuple(mine.shape)}.")
    if torch.allclose(mine, expected, atol=1e-3):
        return passed(exercise, "100 x max(cos, 0); Hessel et al. use w = 2.5 instead of 100.")
    if torch.allclose(mine, _clip_score_unnormalised(image_embeds, text_embeds), atol=1e-3):
        raise AssertionError(f"{exercise}: those are dot products. Normalise both embeddings to length 1 first "
                             f"(x / x.norm(dim=-1, keepdim=True)) so that the dot product is the cosine.")
    if torch.allclose(mine, _clip_score_not_clipped(image_embeds, text_embeds), atol=1e-3):
        raise AssertionError(f"{exercise}: negative cosines must count as 0: max(cos, 0), e.g. .clamp(min=0).")
    raise AssertionError(f"{exercise}: expected {expected[:3].tolist()} ... for the first three pictures, "
                         f"got {mine[:3].tolist()}. Cosine of each picture with its own prompt, times 100, "
                         f"negative values set to 0.")


def _simulated_mean_term(total_variance, pictures, repeats=4000, dimensions=64):
    """The mean over many draws of ||mean of N draws - true mean||^2, features with Tr(Sigma) = total_variance."""
    generator = torch.Generator().manual_seed(0)
    draws = torch.randn(repeats, pictures, dimensions, generator=generator, dtype=torch.float64)
    draws = draws * (total_variance / dimensions) ** 0.5
    return (draws.mean(dim=1) ** 2).sum(dim=1).mean().item()


def check_mean_term_bias(answer):
    """Exercise 3: E||mu_hat - mu||^2 = Tr(Sigma) / N."""
    exercise = "Exercise 3 (the bias of FID's first term)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = TOTAL_VARIANCE / BIAS_PICTURES
    simulated = _simulated_mean_term(TOTAL_VARIANCE, BIAS_PICTURES)
    assert abs(simulated - expected) < 0.03 * expected
    if abs(answer) < 1e-12:
        raise AssertionError(f"{exercise}: 0 is the true distance, but the estimate of the mean is noisy: "
                             f"its squared error is positive on average.")
    if abs(answer - TOTAL_VARIANCE) < 1e-9:
        raise AssertionError(f"{exercise}: {TOTAL_VARIANCE} is the variance of one picture's features. "
                             f"The mean of N pictures has N times less.")
    if abs(answer - TOTAL_VARIANCE / BIAS_PICTURES**0.5) < 1e-9:
        raise AssertionError(f"{exercise}: the standard deviation of a mean falls like 1/sqrt(N), so its "
                             f"variance (what the squared distance measures) falls like 1/N.")
    assert abs(answer - expected) < 1e-6, (
        f"{exercise}: {answer} is not it. Each coordinate of the mean has variance (its variance) / N; "
        f"summed over the coordinates: Tr(Sigma) / N."
    )
    passed(exercise, f"Tr(Sigma) / N = {expected}; a simulation gives {simulated:.4f}. It shrinks like 1/N, "
                     f"which is why FID falls with more pictures even when nothing else changes.")


# For every check: a right and a wrong answer (used by tests/test_exercises.py).
REFERENCE_SOLUTIONS = {
    "check_frechet_1d": {"right": _reference_frechet_1d, "wrong": _frechet_without_cross_term},
    "check_clip_score": {"right": _reference_clip_score, "wrong": _clip_score_unnormalised},
    "check_mean_term_bias": {"right": TOTAL_VARIANCE / BIAS_PICTURES, "wrong": TOTAL_VARIANCE},
}
