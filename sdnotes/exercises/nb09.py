"""Checks for the exercises of notebook 09 (seeds).

The expected values are computed here, not typed in: the random-number count
from SD 1.5's latent shape, the Spearman and farthest-point references from
their definitions (and Spearman also from the no-ties formula), the blanked
background of section 6 from its definition.
"""

import torch

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed

SD15_LATENT_NUMBERS = 4 * 64 * 64  # 4x64x64 latent of a 512x512 picture
DDIM_STEPS = 50


def check_random_numbers(answer):
    """Exercise 1: Gaussian numbers drawn for one SD 1.5 picture, 50 DDIM steps, eta = 1."""
    exercise = "Exercise 1 (random numbers per picture)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = SD15_LATENT_NUMBERS * (1 + DDIM_STEPS)
    if answer == SD15_LATENT_NUMBERS:
        raise AssertionError(
            f"{exercise}: {answer:,} is only the initial latent. With eta = 1 every one of the "
            f"{DDIM_STEPS} steps draws fresh noise of the latent's shape too."
        )
    if answer == SD15_LATENT_NUMBERS * DDIM_STEPS:
        raise AssertionError(f"{exercise}: close: you counted the steps' noise but not the initial latent.")
    if answer == 3 * 512 * 512 * (1 + DDIM_STEPS):
        raise AssertionError(f"{exercise}: the noise lives in the latent (4x64x64), not in the 3x512x512 pixels.")
    assert answer == expected, (
        f"{exercise}: {answer} is not it. The latent of a 512x512 picture is 4x64x64; count one latent "
        f"for x_T and one for each of the {DDIM_STEPS} steps."
    )
    passed(exercise, f"{expected:,} numbers; with eta = 0 it would be only {SD15_LATENT_NUMBERS:,}.")


def spearman(a, b):
    """Spearman's rank correlation of two 1-D sequences (no ties)."""
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    rank_a = torch.empty_like(a)
    rank_a[a.argsort()] = torch.arange(len(a), dtype=torch.float64)
    rank_b = torch.empty_like(b)
    rank_b[b.argsort()] = torch.arange(len(b), dtype=torch.float64)
    rank_a = rank_a - rank_a.mean()
    rank_b = rank_b - rank_b.mean()
    return ((rank_a * rank_b).sum() / (rank_a.norm() * rank_b.norm())).item()


def _pearson(a, b):
    """A wrong answer the check recognises: the correlation of the values, not of their ranks."""
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    a = a - a.mean()
    b = b - b.mean()
    return ((a * b).sum() / (a.norm() * b.norm())).item()


def _spearman_test_cases():
    generator = torch.Generator().manual_seed(9)
    cases = []
    for length in (5, 16, 40):
        a = torch.randn(length, generator=generator)
        b = a + torch.randn(length, generator=generator)  # related, but not in the same order
        cases.append((a, b ** 3))  # monotone in b: a rank correlation ignores the cube
    cases.append((torch.arange(6.0), -torch.arange(6.0) ** 2))  # perfectly reversed order: -1
    return cases


def check_spearman(my_spearman):
    """Exercise 2: the learner's Spearman rank correlation."""
    exercise = "Exercise 2 (Spearman by hand)"
    if is_unanswered(my_spearman):
        return not_answered(exercise)
    if not callable(my_spearman):
        raise AssertionError(f"{exercise}: expected a function my_spearman(a, b).")
    for a, b in _spearman_test_cases():
        mine = my_spearman(a.clone(), b.clone())
        if is_unanswered(mine):
            return not_answered(exercise)
        mine = as_number(exercise, mine)
        expected = spearman(a, b)
        # the no-ties formula, as a second opinion on the reference
        rank_a = torch.empty(len(a))
        rank_a[a.argsort()] = torch.arange(len(a), dtype=torch.float32)
        rank_b = torch.empty(len(b))
        rank_b[b.argsort()] = torch.arange(len(b), dtype=torch.float32)
        rank_gap = rank_a - rank_b
        n = len(a)
        formula = 1 - 6 * (rank_gap**2).sum().item() / (n * (n**2 - 1))
        assert abs(formula - expected) < 1e-6
        if abs(mine - expected) < 1e-6:
            continue
        if abs(mine - _pearson(a, b)) < 1e-6:
            raise AssertionError(
                f"{exercise}: that is the Pearson correlation of the values. Spearman first replaces each "
                f"value by its rank (0 for the smallest), then correlates the ranks."
            )
        raise AssertionError(
            f"{exercise}: for {n} values you returned {mine:.4f}, expected {expected:.4f}. Ranks: "
            f"ranks[values.argsort()] = arange(n); then the Pearson correlation of the two rank vectors "
            f"(or 1 - 6 sum(d^2) / (n (n^2 - 1)) with d the rank differences)."
        )
    passed(exercise, "Your rank correlation matches on four test cases, including a perfectly reversed order (-1).")


def farthest_points(features, k, start):
    """k row indices of `features`, greedily: `start`, then each time the row farthest from all
    rows chosen so far."""
    features = torch.as_tensor(features, dtype=torch.float64)
    chosen = [int(start)]
    distance_to_chosen = (features - features[chosen[0]]).norm(dim=1)
    while len(chosen) < k:
        next_index = int(distance_to_chosen.argmax())
        chosen.append(next_index)
        distance_to_chosen = torch.minimum(distance_to_chosen, (features - features[next_index]).norm(dim=1))
    return chosen


def _farthest_from_last_only(features, k, start):
    """A wrong answer the check recognises: each next point is farthest from the last one chosen only."""
    features = torch.as_tensor(features, dtype=torch.float64)
    chosen = [int(start)]
    while len(chosen) < k:
        distances = (features - features[chosen[-1]]).norm(dim=1)
        for index in chosen:
            distances[index] = -1.0
        chosen.append(int(distances.argmax()))
    return chosen


def check_farthest_points(my_farthest_points):
    """Exercise 3: the learner's farthest-point sampling."""
    exercise = "Exercise 3 (farthest-point sampling)"
    if is_unanswered(my_farthest_points):
        return not_answered(exercise)
    if not callable(my_farthest_points):
        raise AssertionError(f"{exercise}: expected a function my_farthest_points(features, k, start).")
    generator = torch.Generator().manual_seed(3)
    for number_of_points, k, start in ((12, 4, 0), (30, 5, 7), (50, 6, 49)):
        features = torch.rand(number_of_points, 3, generator=generator)  # (N, 3), like layout features
        mine = my_farthest_points(features.clone(), k, start)
        if is_unanswered(mine):
            return not_answered(exercise)
        try:
            mine = [int(index) for index in mine]
        except (TypeError, ValueError):
            raise AssertionError(f"{exercise}: return a list of k integer indices, got {mine!r}.") from None
        expected = farthest_points(features, k, start)
        if mine == expected:
            continue
        if len(mine) != k:
            raise AssertionError(f"{exercise}: asked for k = {k} indices, got {len(mine)}.")
        if mine[0] != start:
            raise AssertionError(f"{exercise}: the first index must be start = {start}, got {mine[0]}.")
        if mine == _farthest_from_last_only(features, k, start):
            raise AssertionError(
                f"{exercise}: you pick the point farthest from the *last* chosen one. Farthest-point "
                f"sampling keeps, for every point, the distance to its *nearest* chosen point "
                f"(torch.minimum over the chosen ones) and takes the point where that is largest."
            )
        raise AssertionError(
            f"{exercise}: for N = {number_of_points}, k = {k}, start = {start} expected {expected}, got {mine}. "
            f"Keep distance_to_chosen = distance to the nearest chosen point; add its argmax; update "
            f"with torch.minimum."
        )
    passed(exercise, "Your farthest-point sampling picks the same points as the reference in three tests.")


def object_on_grey(images, masks):
    """(B, 3, H, W) pictures with every background pixel (mask 0) grey 0.5, the object (mask 1) kept."""
    keep = masks[:, None]  # (B, 1, H, W): broadcast over the colour channels
    return images * keep + 0.5 * (1 - keep)


def _object_greyed(images, masks):
    """A wrong answer the check recognises: the object greyed, the background kept."""
    keep = masks[:, None]
    return images * (1 - keep) + 0.5 * keep


def check_object_on_grey(my_object_on_grey):
    """Exercise 4: blank the background of pictures (section 6's "object on grey")."""
    exercise = "Exercise 4 (blank the background)"
    if is_unanswered(my_object_on_grey):
        return not_answered(exercise)
    if not callable(my_object_on_grey):
        raise AssertionError(f"{exercise}: expected a function my_object_on_grey(images, masks).")
    generator = torch.Generator().manual_seed(4)
    images = torch.rand(3, 3, 16, 16, generator=generator)  # (B, 3, H, W) in [0, 1]
    masks = (torch.rand(3, 16, 16, generator=generator) > 0.6).float()  # (B, H, W), 1 = object
    mine = my_object_on_grey(images.clone(), masks.clone())
    if is_unanswered(mine):
        return not_answered(exercise)
    if not isinstance(mine, torch.Tensor) or mine.shape != images.shape:
        shape = tuple(mine.shape) if isinstance(mine, torch.Tensor) else type(mine).__name__
        raise AssertionError(
            f"{exercise}: return a tensor shaped like the pictures, {tuple(images.shape)}; got {shape}. "
            f"masks[:, None] has shape (B, 1, H, W) and broadcasts over the three colour channels."
        )
    mine = mine.float()
    if torch.allclose(mine, object_on_grey(images, masks), atol=1e-6):
        passed(exercise, "Object kept, background grey: now try it on the live classifier's test pictures.")
        return
    if torch.allclose(mine, _object_greyed(images, masks), atol=1e-6):
        raise AssertionError(
            f"{exercise}: you greyed the object and kept the background. The mask is 1 on the object: "
            f"keep the picture where the mask is 1, put 0.5 where it is 0."
        )
    if torch.allclose(mine, images, atol=1e-6):
        raise AssertionError(f"{exercise}: the pictures came back unchanged; the background must turn grey (0.5).")
    raise AssertionError(
        f"{exercise}: not the expected pictures. Per pixel: picture x mask + 0.5 x (1 - mask), "
        f"with the mask as masks[:, None] so that it covers all three colour channels."
    )


# For every check: a right and a wrong answer (used by tests/test_exercises.py).
REFERENCE_SOLUTIONS = {
    "check_random_numbers": {"right": SD15_LATENT_NUMBERS * (1 + DDIM_STEPS), "wrong": SD15_LATENT_NUMBERS},
    "check_spearman": {"right": spearman, "wrong": _pearson},
    "check_farthest_points": {"right": farthest_points, "wrong": _farthest_from_last_only},
    "check_object_on_grey": {"right": object_on_grey, "wrong": _object_greyed},
}
