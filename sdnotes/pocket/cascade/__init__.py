"""The pocket cascade: Imagen and DeepFloyd IF in miniature (notebook 13).

Two pixel-space diffusion models, both diffusers `UNet2DConditionModel`s,
conditioned on the frozen pocket text encoder (it stands in for Imagen's and
IF's frozen T5-XXL; the pocket model's CLIP text encoder is the only one we
have):

    base              3 x 32 x 32 pixels from noise and the prompt
                      (IF stage I: 64 x 64)
    super_resolution  3 x 128 x 128 pixels from noise, the prompt and the base's
                      picture, upsampled and noised at an augmentation level the
                      model is told through `class_labels` (IF stage II:
                      64 -> 256, `class_embed_type="timestep"` as here)

Both are trained on the cosine schedule (Nichol & Dhariwal 2021, IF's
"squaredcos_cap_v2"). The base predicts the noise eps, as IF's stage I. The
super-resolution model predicts v = sqrt(abar) eps - sqrt(1 - abar) x0
(Salimans & Ho 2022; Imagen Video's super-resolution stages): trained to
predict eps, it learned to ignore its low-res input (at high t predicting eps
is nearly free, eps ~ x_t, so the loss barely rewards using the input; after
1,000 steps its predictions with the input and with zeros in its place were
the same), and v at high t is about -x0, which only the input can give. IF's
U-Nets also predict a variance (6 output channels), and the IF pipelines
assume that; ours do not, so notebook 13 writes the cascade's loop itself.

The super-resolution U-Net has no self-attention (`only_cross_attention`) and
is trained on 64 x 64 crops of 128 x 128 pictures, as Imagen's super-resolution
models are trained on crops; convolutions do not care about the picture size,
so it runs on whole 128 x 128 pictures.

One home for the cascade's facts: the sizes, the two U-Nets' shapes, the
schedule, how a picture goes down to the base's size and back up
(`downsample`, `upsample`), the noise-conditioning augmentation
(`augment_low_res`), the loader (`load_pocket_cascade`), and the two sampling
loops (`encode_prompts`, `sample_base`, `super_resolve`) that the training
command's evaluation and the tests use; notebook 13 writes the same loops out
and checks them against these. Training is in
sdnotes/pocket/cascade/train.py, measuring in sdnotes/pocket/cascade/evaluate.py.

Saharia et al. 2022, "Photorealistic Text-to-Image Diffusion Models with Deep
Language Understanding" (Imagen), https://arxiv.org/abs/2205.11487;
Ho et al. 2022, "Cascaded Diffusion Models for High Fidelity Image
Generation", https://arxiv.org/abs/2106.15282 (noise-conditioning augmentation);
DeepFloyd IF, https://github.com/deep-floyd/IF.
"""

from pathlib import Path

import torch
import torch.nn.functional as F

from sdnotes.paths import POCKET_CASCADE_DIR, POCKET_DIR
from sdnotes.pocket.architecture import TEXT_WIDTH
from sdnotes.pocket.data import IMAGE_SIZE

BASE_SIZE = 32  # the base model's pictures (IF stage I: 64)
SR_SIZE = IMAGE_SIZE  # 128, the pocket model's pictures (IF stage II: 256)
SR_CROP = 64  # super-resolution training crops
NUM_TRAIN_TIMESTEPS = 1000
PREDICTION_TYPES = {"base": "epsilon", "super_resolution": "v_prediction"}
SCENE_SEED = 40_000_000  # the training scenes' seeds start here; evaluation uses EVALUATION_SEED, never trained on


def make_base_unet():
    """The base: 3 x 32 x 32 pixels, cross-attention to the text at 16 x 16 and 8 x 8 (4.1 M parameters)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=BASE_SIZE,
        in_channels=3,
        out_channels=3,  # eps only (IF: 6, eps and a variance)
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64, 128),
        layers_per_block=1,
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def make_super_resolution_unet():
    """The super-resolution model: noisy 128 x 128 picture + upsampled base picture (6 channels in), told the
    augmentation level through `class_labels`; cross-attention to the text at the lowest resolution only,
    no self-attention (1.0 M parameters)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=SR_SIZE,
        in_channels=6,  # [x_t, upsampled low-res picture], as IF stage II
        out_channels=3,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=8,
        only_cross_attention=True,  # no self-attention: the model runs on any picture size
        class_embed_type="timestep",  # the augmentation level, embedded like a timestep (IF stage II)
        norm_num_groups=16,
    )


def cascade_scheduler(part="base", **settings):
    """DDPM on the cosine schedule, as IF's schedulers (without the learned variance), with the
    prediction type of `part` ("base": eps, "super_resolution": v). `settings` override the config."""
    from diffusers import DDPMScheduler

    config = {"num_train_timesteps": NUM_TRAIN_TIMESTEPS, "beta_schedule": "squaredcos_cap_v2",
              "prediction_type": PREDICTION_TYPES[part], "variance_type": "fixed_small", "clip_sample": False}
    config.update(settings)
    return DDPMScheduler(**config)


def downsample(images, size=BASE_SIZE):
    """(B, 3, H, W) -> (B, 3, size, size) by averaging blocks of pixels (area): how training pictures
    become the base's pictures."""
    return F.interpolate(images, size=(size, size), mode="area")


def upsample(images, size=SR_SIZE):
    """(B, 3, h, w) -> (B, 3, size, size), bilinear with aligned corners, as IFSuperResolutionPipeline does
    before it noises the picture."""
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=True)


def augment_low_res(upsampled, augmentation_level, generator=None, scheduler=None):
    """Noise-conditioning augmentation: the upsampled low-res picture noised to `augmentation_level`
    (a timestep 0..999, an int or a (B,) tensor) on the cosine schedule:
        z = sqrt(abar_s) * x_low + sqrt(1 - abar_s) * eps
    The super-resolution model is told s through class_labels (Ho et al. 2022, section 4.1)."""
    scheduler = scheduler or cascade_scheduler()
    batch = upsampled.shape[0]
    levels = torch.as_tensor(augmentation_level, device=upsampled.device).long().reshape(-1).expand(batch)
    noise = torch.randn(upsampled.shape, generator=generator, device=upsampled.device, dtype=upsampled.dtype)
    return scheduler.add_noise(upsampled, noise, levels), levels


def load_pocket_cascade(folder=POCKET_CASCADE_DIR, text_folder=POCKET_DIR, dtype=torch.float32):
    """The shipped cascade: {"base", "super_resolution", "text_encoder", "tokenizer"} (each U-Net's training
    schedule is in its folder's scheduler/; `cascade_scheduler(part)` makes the same).

    The text encoder and tokenizer are the pocket model's (frozen, never trained with the cascade)."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    from sdnotes.hub import dtype_option, quiet_loading_bars
    from sdnotes.tokenizer import load_tokenizer

    folder, text_folder = Path(folder), Path(text_folder)
    if not (folder / "base" / "config.json").exists():
        raise FileNotFoundError(f"no pocket cascade in {folder}: it ships with the repository; build it with "
                                "`python -m sdnotes.pocket.cascade.train`")
    with quiet_loading_bars():
        parts = {
            "base": UNet2DConditionModel.from_pretrained(folder / "base", **dtype_option(dtype)).eval(),
            "super_resolution": UNet2DConditionModel.from_pretrained(folder / "super_resolution",
                                                                     **dtype_option(dtype)).eval(),
            "text_encoder": CLIPTextModel.from_pretrained(text_folder / "text_encoder", dtype=dtype).eval(),
            "tokenizer": load_tokenizer(),
        }
    return parts


@torch.no_grad()
def encode_prompts(text_encoder, tokenizer, prompts):
    """(B, 77, width): the frozen text encoder's last hidden states, padded to 77 tokens as SD does."""
    ids = tokenizer(list(prompts), padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    return text_encoder(ids.to(text_encoder.device)).last_hidden_state


def thresholding_options(kind, ratio=0.995):
    """Scheduler settings for "none", "static" (clip x0 to [-1, 1]) or "dynamic" (Imagen's percentile
    `ratio`; sample_max_value=inf so that s is not capped: diffusers' default cap of 1.0 makes it static)."""
    options = {
        "none": {"clip_sample": False},
        "static": {"clip_sample": True, "clip_sample_range": 1.0},
        "dynamic": {"clip_sample": False, "thresholding": True, "dynamic_thresholding_ratio": ratio,
                    "sample_max_value": float("inf")},
    }
    if kind not in options:
        raise ValueError(f"thresholding is one of {list(options)}, got {kind!r}")
    return options[kind]


def sampling_scheduler(thresholding="dynamic", steps=20, part="base"):
    """DDIM (eta = 0) on the training schedule with the given thresholding of x0, set to `steps` steps.
    IF samples with DDPM and 100 / 50 steps; DDIM needs fewer, which a CPU needs. The timesteps are
    diffusers' default ("leading": 20 steps start at t = 950), not "trailing": the cosine schedule's
    abar at t = 999 is 2e-9, and x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) would multiply the first
    prediction's errors by 20,000."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(cascade_scheduler(part).config, **thresholding_options(thresholding))
    scheduler.set_timesteps(steps)
    return scheduler


@torch.no_grad()
def sample_base(unet, context, uncond_context, guidance_scale=4.0, steps=20, thresholding="dynamic", generator=None):
    """The base stage: DDIM from noise to (B, 3, 32, 32) in [-1, 1], classifier-free guidance, thresholding."""
    scheduler = sampling_scheduler(thresholding, steps)
    batch = context.shape[0]
    both_contexts = torch.cat([uncond_context.expand(batch, -1, -1), context])  # (2B, 77, width)
    x = torch.randn((batch, 3, BASE_SIZE, BASE_SIZE), generator=generator).to(unet.device, unet.dtype)
    for t in scheduler.timesteps:
        both = unet(torch.cat([x, x]), t, encoder_hidden_states=both_contexts).sample
        noise_uncond, noise_text = both.chunk(2)
        noise_pred = noise_uncond + guidance_scale * (noise_text - noise_uncond)  # (here v, not the noise)
        x = scheduler.step(noise_pred, t, x).prev_sample
    return x.clamp(-1, 1)


@torch.no_grad()
def super_resolve(unet, low_res, context, uncond_context, augmentation_level=250, guidance_scale=1.0, steps=10,
                  thresholding="dynamic", generator=None):
    """The super-resolution stage: (B, 3, 32, 32) in [-1, 1] -> (B, 3, 128, 128), as IFSuperResolutionPipeline
    does it (upsample, noise to augmentation_level, concatenate, tell the level through class_labels)."""
    scheduler = sampling_scheduler(thresholding, steps, "super_resolution")
    batch = low_res.shape[0]
    augmented, levels = augment_low_res(upsample(low_res), augmentation_level, generator)  # (B, 3, 128, 128)
    x = torch.randn((batch, 3, SR_SIZE, SR_SIZE), generator=generator).to(unet.device, unet.dtype)
    for t in scheduler.timesteps:
        if guidance_scale == 1.0:
            noise_pred = unet(torch.cat([x, augmented], dim=1), t, encoder_hidden_states=context,
                              class_labels=levels).sample
        else:
            model_input = torch.cat([torch.cat([x, augmented], dim=1)] * 2)
            both = unet(model_input, t, encoder_hidden_states=torch.cat([uncond_context.expand(batch, -1, -1), context]),
                        class_labels=torch.cat([levels, levels])).sample
            noise_uncond, noise_text = both.chunk(2)
            noise_pred = noise_uncond + guidance_scale * (noise_text - noise_uncond)  # (here v, not the noise)
        x = scheduler.step(noise_pred, t, x).prev_sample
    return x.clamp(-1, 1)
