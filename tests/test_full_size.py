"""SD 1.5 at full size on a CPU, with random weights (slow: run with `pytest -m slow`).

The notebooks run the pocket model and the tiny SD-shaped models; this test
checks that the same diffusers classes, built with SD 1.5's published
configuration (written out below from the config.json files of
stable-diffusion-v1-5/stable-diffusion-v1-5), have SD 1.5's parameter counts,
and that the pipeline runs two denoising steps at 512x512 with guidance (U-Net
batch of two) and decodes to a 512x512 image. Nothing is downloaded; the
weights are random, so the image is noise.

Measured on the project's 2-core build machine (shared with other jobs):
see benchmarks/README.md for the time and peak memory.
"""

import resource
import time

import pytest
import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from sdnotes import tiny
from sdnotes.models import count_parameters
from sdnotes.tiny import sd_pipeline_scheduler
from sdnotes.tokenizer import load_tokenizer

pytestmark = pytest.mark.slow

UNET_CONFIG = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
TEXT_CONFIG = {  # CLIP ViT-L/14 text tower
    "vocab_size": 49408,
    "max_position_embeddings": 77,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
}
# name -> (exact count of SD 1.5's published weights, the rounded figure quoted in the course)
PARAMETER_COUNTS = {"unet": (859_520_964, 860e6), "vae": (83_653_863, 84e6), "text_encoder": (123_060_480, 123e6)}


def test_benchmark_builder_uses_the_same_configs():
    assert tiny.SD15_UNET_CONFIG == UNET_CONFIG
    assert tiny.SD15_VAE_CONFIG == VAE_CONFIG
    assert tiny.SD15_TEXT_CONFIG == TEXT_CONFIG


def test_sd15_full_size_runs_two_steps_at_512_on_cpu():
    start = time.perf_counter()
    torch.manual_seed(0)
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(**VAE_CONFIG).eval(),
        text_encoder=CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG)).eval(),
        tokenizer=load_tokenizer("sd1"),
        unet=UNet2DConditionModel(**UNET_CONFIG).eval(),
        scheduler=sd_pipeline_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    build_s = time.perf_counter() - start
    for component_name, (exact_count, quoted_count) in PARAMETER_COUNTS.items():
        number_of_parameters = count_parameters(getattr(pipe, component_name))
        assert number_of_parameters == exact_count, component_name
        assert abs(number_of_parameters - quoted_count) / quoted_count < 0.01, component_name

    unet_batch_sizes = []

    def record_batch(module, args, kwargs):
        unet_batch_sizes.append(args[0].shape[0])

    hook = pipe.unet.register_forward_pre_hook(record_batch, with_kwargs=True)
    step_start = time.perf_counter()
    latents = pipe(
        "a photograph of an astronaut riding a horse",
        height=512,
        width=512,
        num_inference_steps=2,
        guidance_scale=7.5,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="latent",
    ).images
    hook.remove()
    steps_s = time.perf_counter() - step_start
    assert latents.shape == (1, 4, 64, 64)
    # classifier-free guidance: unconditional + conditional in one batch of two, at every timestep
    # (PNDM as SD ships it runs one more U-Net call than steps: 2 steps -> 3 timesteps)
    assert len(pipe.scheduler.timesteps) == 3
    assert unet_batch_sizes == [2, 2, 2]

    decode_start = time.perf_counter()
    with torch.no_grad():
        image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    decode_s = time.perf_counter() - decode_start
    assert image.shape == (1, 3, 512, 512)
    assert torch.isfinite(image).all()
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kilobytes on Linux
    print(f"\nSD 1.5 full size on CPU: build {build_s:.1f} s, 2 steps with CFG {steps_s:.1f} s, "
          f"decode {decode_s:.1f} s, total {time.perf_counter() - start:.1f} s, peak RSS {peak_rss_gb:.1f} GB")
