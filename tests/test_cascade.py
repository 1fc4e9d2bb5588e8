"""The pocket cascade (notebook 13): the shipped weights load offline and sample, the augmentation is the
formula, the training command writes folders diffusers loads."""

import json

import pytest
import torch
from safetensors.torch import load_file

from sdnotes.paths import POCKET_CASCADE_DIR
from sdnotes.pocket import cascade


@pytest.fixture(scope="module")
def shipped():
    parts = cascade.load_pocket_cascade()
    parts["empty"] = cascade.encode_prompts(parts["text_encoder"], parts["tokenizer"], [""])
    return parts


def test_shipped_folders_are_float16_diffusers_unets():
    from diffusers import UNet2DConditionModel

    for part in ("base", "super_resolution"):
        config = json.loads((POCKET_CASCADE_DIR / part / "config.json").read_text())
        assert config["_class_name"] == "UNet2DConditionModel"
        assert UNet2DConditionModel.from_pretrained(POCKET_CASCADE_DIR / part) is not None
        weights = load_file(POCKET_CASCADE_DIR / part / "diffusion_pytorch_model.safetensors")
        assert {tensor.dtype for tensor in weights.values()} == {torch.float16}
        scheduler = json.loads((POCKET_CASCADE_DIR / part / "scheduler" / "scheduler_config.json").read_text())
        assert scheduler["beta_schedule"] == "squaredcos_cap_v2"
        assert scheduler["prediction_type"] == cascade.PREDICTION_TYPES[part]


def test_shipped_cascade_loads_offline_and_samples(shipped, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    context = cascade.encode_prompts(shipped["text_encoder"], shipped["tokenizer"], ["a cat face", "a big banana"])
    low = cascade.sample_base(shipped["base"], context, shipped["empty"], 4.0, steps=8,
                              generator=torch.Generator().manual_seed(0))
    assert low.shape == (2, 3, cascade.BASE_SIZE, cascade.BASE_SIZE)
    assert torch.isfinite(low).all() and low.abs().max() <= 1
    assert low.std(dim=(1, 2, 3)).min() > 0.05  # a picture, not a flat colour
    again = cascade.sample_base(shipped["base"], context, shipped["empty"], 4.0, steps=8,
                                generator=torch.Generator().manual_seed(0))
    assert torch.equal(low, again)
    high = cascade.super_resolve(shipped["super_resolution"], low, context, shipped["empty"], 100, steps=8,
                                 generator=torch.Generator().manual_seed(0))
    assert high.shape == (2, 3, cascade.SR_SIZE, cascade.SR_SIZE)
    # The super-resolution model keeps the picture it was given: shrunk again, it is close to its input.
    mse = ((cascade.downsample(high) - low) / 2).pow(2).mean().item()
    assert 10 * torch.log10(torch.tensor(1 / mse)) > 20


def test_augmentation_is_the_noising_formula():
    scheduler = cascade.cascade_scheduler()
    upsampled = torch.rand(2, 3, 8, 8) * 2 - 1
    augmented, levels = cascade.augment_low_res(upsampled, 300, torch.Generator().manual_seed(0))
    noise = torch.randn(upsampled.shape, generator=torch.Generator().manual_seed(0))
    alphabar = scheduler.alphas_cumprod[300]
    assert torch.allclose(augmented, alphabar.sqrt() * upsampled + (1 - alphabar).sqrt() * noise, atol=1e-6)
    assert levels.tolist() == [300, 300]
    same, _ = cascade.augment_low_res(upsampled, 0, torch.Generator().manual_seed(0))
    assert (same - upsampled).abs().mean() < 0.01  # level 0 hardly noises


def test_downsample_then_upsample_keep_the_sizes():
    pictures = torch.rand(2, 3, cascade.SR_SIZE, cascade.SR_SIZE)
    low = cascade.downsample(pictures)
    assert low.shape == (2, 3, cascade.BASE_SIZE, cascade.BASE_SIZE)
    assert torch.allclose(low.mean(), pictures.mean(), atol=1e-5)  # area averaging keeps the mean
    assert cascade.upsample(low).shape == pictures.shape


def test_unknown_thresholding_names_the_choices():
    with pytest.raises(ValueError, match=r"one of \['none', 'static', 'dynamic'\]"):
        cascade.thresholding_options("soft")


def test_missing_cascade_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m sdnotes.pocket.cascade.train"):
        cascade.load_pocket_cascade(tmp_path)


def test_training_smoke_writes_folders_diffusers_loads(tmp_path):
    from diffusers import UNet2DConditionModel

    from sdnotes.pocket.cascade import train

    out, target = tmp_path / "run", tmp_path / "pocket-cascade"
    train.main(["--preset", "smoke", "--out", str(out), "--export-to", str(target)])
    for part in ("base", "super_resolution"):
        assert UNet2DConditionModel.from_pretrained(target / part) is not None
        weights = load_file(target / part / "diffusion_pytorch_model.safetensors")
        assert {tensor.dtype for tensor in weights.values()} == {torch.float16}
    log = json.loads((target / "training_log.json").read_text())
    assert set(log["loss_every_10_steps"]) == {"base", "super_resolution"}
    assert {stage["stage"] for stage in log["stages"]} == {"data", "base", "super_resolution"}
    (target / "README.md").write_text("a model card")
    with pytest.raises(SystemExit, match="--force"):
        train.main(["--preset", "smoke", "--out", str(out), "--export-to", str(target), "--stages", "export"])
    train.main(["--preset", "smoke", "--out", str(out), "--export-to", str(target), "--stages", "export", "--force"])
    assert (target / "README.md").read_text() == "a model card"  # the card and measurements are kept


def test_random_crops_cut_the_same_place_of_each_tensor():
    from sdnotes.pocket.cascade.train import random_crops

    a = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    crop_a, crop_b = random_crops([a, a * 10], 4, torch.Generator().manual_seed(0))
    assert crop_a.shape == (2, 1, 4, 4) and torch.equal(crop_b, crop_a * 10)
