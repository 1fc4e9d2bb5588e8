"""Tests for sdnotes/tiny.py: the random-weight test models with Stable Diffusion's shapes.

"tiny-sd15" and "tiny-sd21" stand in for SD 1.5 and SD 2.1-base in the
notebook tests, so what matters is that every size a notebook reads from the
configs (context width, latent channels, VAE factor, scaling factor,
tokenizer padding, scheduler settings) is the real model's, while everything
stays small enough for a CPU.
"""

import pytest
import torch
from diffusers import DDIMScheduler, PNDMScheduler, StableDiffusionPipeline

from sdnotes import MODELS, describe, load, registry, tiny

# name -> (context width, padding id, text activation, tokenizer kind)
REAL_INTERFACE = {
    "tiny-sd15": (768, 49407, "quick_gelu"),
    "tiny-sd21": (1024, 0, "gelu"),
}


@pytest.fixture(scope="module", params=sorted(REAL_INTERFACE))
def tiny_model(request):
    return request.param, tiny.build_tiny_pipeline(request.param)


def test_every_tiny_registry_entry_is_built_here():
    registered = sorted(name for name, info in MODELS.items() if info.kind == "tiny")
    assert registered == sorted(registry.TINY_SPECS) == sorted(REAL_INTERFACE)


def test_building_leaves_the_global_random_state_alone():
    torch.manual_seed(1234)
    expected_next_draw = torch.rand(3)
    torch.manual_seed(1234)
    tiny.build_tiny_pipeline("tiny-sd21")
    assert torch.equal(torch.rand(3), expected_next_draw)


def test_same_seed_same_weights():
    first = tiny.build_tiny_pipeline("tiny-sd15")
    again = tiny.build_tiny_pipeline("tiny-sd15")
    other_seed = tiny.build_tiny_pipeline("tiny-sd15", seed=1)
    weight = first.unet.conv_in.weight
    assert torch.equal(weight, again.unet.conv_in.weight)
    assert not torch.equal(weight, other_seed.unet.conv_in.weight)
    assert torch.equal(first.text_encoder.get_input_embeddings().weight,
                       again.text_encoder.get_input_embeddings().weight)


def test_interface_shapes_are_stable_diffusions(tiny_model):
    name, pipe = tiny_model
    context_width, pad_id, activation = REAL_INTERFACE[name]
    assert isinstance(pipe, StableDiffusionPipeline)
    assert pipe.safety_checker is None
    # text side: 77 CLIP tokens -> 77 x width context
    assert pipe.tokenizer.model_max_length == 77
    assert len(pipe.tokenizer) == 49408
    ids = pipe.tokenizer("a photo of a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert ids[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert ids[0, -1].item() == pad_id
    text_config = pipe.text_encoder.config
    assert (text_config.hidden_size, text_config.vocab_size, text_config.max_position_embeddings) == (
        context_width, 49408, 77)
    assert text_config.hidden_act == activation
    with torch.no_grad():
        context = pipe.text_encoder(ids)[0]
    assert context.shape == (1, 77, context_width)
    # U-Net and VAE: 4 latent channels, factor 8, SD's scaling factor
    assert pipe.unet.config.cross_attention_dim == context_width
    assert pipe.unet.config.in_channels == pipe.unet.config.out_channels == 4
    assert pipe.vae.config.latent_channels == 4
    assert len(pipe.vae.config.block_out_channels) == 4  # three downsamples: 8x
    assert pipe.vae.config.scaling_factor == 0.18215
    assert pipe.unet.config.sample_size * 8 == MODELS[name].native_resolution
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        noise_pred = pipe.unet(latents, 999, encoder_hidden_states=context.expand(2, -1, -1)).sample
        image = pipe.vae.decode(latents[:1] / pipe.vae.config.scaling_factor).sample
    assert noise_pred.shape == (2, 4, 8, 8)
    assert image.shape == (1, 3, 64, 64)


def test_configs_read_like_loaded_ones(tiny_model):
    """Code written against a from_pretrained pipeline reads `config._class_name`; it works here too."""
    _, pipe = tiny_model
    assert pipe.unet.config._class_name == "UNet2DConditionModel"
    assert pipe.vae.config._class_name == "AutoencoderKL"
    assert pipe.scheduler.config._class_name == "PNDMScheduler"
    assert pipe.text_encoder.config.architectures == ["CLIPTextModel"]
    copy = type(pipe.scheduler).from_config(pipe.scheduler.config)
    assert copy.config.clip_sample is False and copy.config.steps_offset == 1


def test_scheduler_is_sd_pipelines(tiny_model):
    _, pipe = tiny_model
    scheduler = pipe.scheduler
    assert isinstance(scheduler, PNDMScheduler)
    config = scheduler.config
    assert config.num_train_timesteps == 1000
    assert (config.beta_start, config.beta_end, config.beta_schedule) == (0.00085, 0.012, "scaled_linear")
    assert config.skip_prk_steps and config.steps_offset == 1 and not config.set_alpha_to_one
    assert config.prediction_type == "epsilon"
    assert config.clip_sample is False  # recorded, as in SD's scheduler_config.json
    assert DDIMScheduler.from_config(config).config.clip_sample is False


def test_pipeline_runs_and_draws_at_64_pixels(tiny_model):
    _, pipe = tiny_model
    images = pipe(
        ["a photograph of an astronaut riding a horse"] * 2,
        num_inference_steps=2,
        guidance_scale=7.5,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="np",
    ).images
    assert images.shape == (2, 64, 64, 3)
    assert 0.0 <= images.min() and images.max() <= 1.0


def test_load_by_name(capsys):
    pipe = load("tiny-sd21", device="cpu")
    printed = capsys.readouterr().out
    assert "model: tiny-sd21" in printed
    assert "random weights" in printed
    assert "context dimension 1024" in printed
    assert pipe.device.type == "cpu" and pipe.dtype == torch.float32
    assert "latent 4×8×8" in describe(pipe)


def test_unknown_tiny_name():
    with pytest.raises(ValueError, match="tiny-sd15"):
        tiny.build_tiny_pipeline("tiny-sdxl")
