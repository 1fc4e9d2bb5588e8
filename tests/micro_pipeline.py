"""A micro Stable Diffusion pipeline for unit tests: SD's classes, ~1 M parameters, no download.

16×16 pictures, 4×8×8 latents, a 16-wide text context, SD's scheduler settings
(`sdnotes.schedule`). Each test file builds the U-Net it needs with
`build_micro_unet` (where its cross-attention layers sit); the VAE and the text encoder are built here,
seeded, so the pipeline is the same in every run.
"""

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from sdnotes.schedule import SD_SCHEDULER_CONFIG
from sdnotes import load_tokenizer

CONTEXT_WIDTH = 16


def build_micro_unet(down_block_types, up_block_types, heads=2):
    """A seeded U-Net for 8×8×4 latents with the given blocks (which of them cross-attend)."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=down_block_types,
        up_block_types=up_block_types,
        cross_attention_dim=CONTEXT_WIDTH,
        attention_head_dim=heads,  # diffusers' legacy name: this is the number of heads
    )


def build_micro_pipeline(unet, tokenizer_cache_dir):
    """A StableDiffusionPipeline around `unet` (8×8 latents, context width CONTEXT_WIDTH)."""
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=16,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408, hidden_size=CONTEXT_WIDTH, intermediate_size=32, num_attention_heads=2,
            num_hidden_layers=2, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=load_tokenizer("sd1", cache_dir=tokenizer_cache_dir),
        unet=unet,
        scheduler=DDIMScheduler.from_config(SD_SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
