"""Tests for sdnotes/toy2d.py: the 2-D cats-and-dogs toy of notebooks 02, 06, 14 and 15."""

import math

import pytest
import torch

from sdnotes import toy2d


def test_sliced_wasserstein_of_a_shift_is_the_mean_projected_shift():
    points, _ = toy2d.sample_cats_and_dogs(500, torch.Generator().manual_seed(0))
    assert toy2d.sliced_wasserstein(points, points) == 0.0
    # moving every point by s along x moves every projection on direction (cos a, sin a) by s·|cos a|
    shifted = points + torch.tensor([0.5, 0.0])
    directions = torch.randn(128, 2, generator=torch.Generator().manual_seed(2))
    expected = (0.5 * directions[:, 0].abs() / directions.norm(dim=1)).mean().item()
    assert math.isclose(toy2d.sliced_wasserstein(shifted, points), expected, rel_tol=1e-4)
    # with many directions, the mean |cos| over the circle is 2/π
    assert math.isclose(toy2d.sliced_wasserstein(shifted, points, num_directions=20000), 0.5 * 2 / math.pi,
                        rel_tol=0.02)


def test_sliced_wasserstein_separates_good_and_bad_samples():
    reference, _ = toy2d.sample_cats_and_dogs(2000, torch.Generator().manual_seed(3))
    another_true_sample, _ = toy2d.sample_cats_and_dogs(2000, torch.Generator().manual_seed(4))
    floor = toy2d.sliced_wasserstein(another_true_sample, reference)
    collapsed = toy2d.sliced_wasserstein(torch.zeros(2000, 2), reference)
    assert floor < 0.03
    assert collapsed > 20 * floor
    # symmetric, and the same directions every call
    assert toy2d.sliced_wasserstein(reference, another_true_sample) == pytest.approx(floor, abs=1e-7)
    assert toy2d.sliced_wasserstein(another_true_sample, reference) == floor


def test_sliced_wasserstein_needs_equal_clouds():
    with pytest.raises(ValueError, match="same N"):
        toy2d.sliced_wasserstein(torch.zeros(10, 2), torch.zeros(11, 2))
