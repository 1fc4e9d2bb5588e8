"""SD-shaped test models: Stable Diffusion's interfaces, random weights, CPU-fast.

`sdnotes.load("tiny-sd15")` and `sdnotes.load("tiny-sd21")` build, in about a
second and without any download, a `StableDiffusionPipeline` whose parts have
the *interface shapes* of SD 1.5 and SD 2.1-base:

                      tiny-sd15 (SD 1.5)            tiny-sd21 (SD 2.1-base)
    text context      77 tokens x 768               77 tokens x 1024
    tokenizer         CLIP BPE, pads with 49407     CLIP BPE, pads with "!" (id 0)
    text activation   quick_gelu (OpenAI CLIP)      gelu (OpenCLIP)
    latents           4 channels, VAE factor 8, scaling factor 0.18215
    scheduler         PNDM, scaled_linear 0.00085 -> 0.012, 1000 steps, epsilon

Everything inside is narrow (U-Net channels 32/64, two text layers, a VAE
with 16-32 channels, 8x8 latents -> 64x64 images), so a notebook runs
on a CPU in seconds. The weights are random: **the images are noise**. These
models exist so the tests can check that every notebook reads its sizes from
the loaded configs instead of assuming the pocket model's. There is no safety
checker (there is nothing to check in noise). What differs between the two
(`TINY_SPECS`) is data in `sdnotes/registry.py`.

Real values for comparison (from the models' published configs):
SD 1.5 U-Net block_out_channels (320, 640, 1280, 1280), layers_per_block 2,
attention_head_dim 8, sample_size 64; SD 2.1-base the same channels with
attention_head_dim (5, 10, 20, 20) and use_linear_projection True; VAE
(128, 256, 512, 512); text encoders 12 layers x 768 (SD 1.5) and
23 used layers x 1024 (SD 2.x).

`build_sd15_architecture()` builds SD 1.5 at full size (1.07 B parameters),
also with random weights, for benchmarks/benchmark_loop.py and the slow test.

`build_tiny_flux_pipeline()` builds a random-weight `FluxPipeline` (FLUX.1's
class: CLIP + T5 text encoders, FluxTransformer2DModel, 16-channel VAE,
FlowMatchEulerDiscreteScheduler), about 1 M parameters, so that the
"flux-schnell" registry entry's loading path is tested without a download
(tests/test_after_sd_models.py). Its T5 tokenizer has a small made-up vocabulary.
"""

import diffusers
import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from sdnotes.registry import TINY_SPECS
from sdnotes.schedule import sd_pipeline_scheduler
from sdnotes.tokenizer import load_tokenizer

TINY_SEED = 0
VAE_SCALING_FACTOR = 0.18215  # SD 1.x and 2.x



def tiny_text_encoder(spec):
    config = CLIPTextConfig(
        vocab_size=49408,
        max_position_embeddings=77,
        hidden_size=spec["context_width"],
        intermediate_size=128,  # real: 4 x width
        num_hidden_layers=2,  # real: 12 (SD 1.5), 23 (SD 2.x)
        num_attention_heads=spec["text_heads"],
        hidden_act=spec["text_activation"],
        projection_dim=spec["context_width"],
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=spec["pad_token_id"],
    )
    return CLIPTextModel(config)


def tiny_unet(spec):
    return UNet2DConditionModel(
        sample_size=8,  # real: 64 (512 px)
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),  # real: (320, 640, 1280, 1280)
        layers_per_block=1,  # real: 2
        cross_attention_dim=spec["context_width"],
        attention_head_dim=spec["unet_heads"],
        use_linear_projection=spec["linear_projection"],
        norm_num_groups=32,
    )


def tiny_vae():
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,  # 3 downsamples: factor 8, as SD
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 32, 32),  # real: (128, 256, 512, 512)
        layers_per_block=1,  # real: 2
        latent_channels=4,
        norm_num_groups=16,
        sample_size=64,
        scaling_factor=VAE_SCALING_FACTOR,
    )


def as_if_loaded(*components):
    """Add the config entries that from_pretrained adds, so that code reading them works here too.

    A part loaded from a model folder knows its class in its config
    (`unet.config._class_name == "UNet2DConditionModel"`, likewise the VAE and
    scheduler; the text encoder's config lists `architectures`); a part built
    in memory does not, unless told.
    """
    for component in components:
        if isinstance(component, diffusers.configuration_utils.ConfigMixin):
            component.register_to_config(_class_name=type(component).__name__,
                                         _diffusers_version=diffusers.__version__)
        else:  # a transformers model
            component.config.architectures = [type(component).__name__]


def build_tiny_pipeline(name, seed=TINY_SEED, tokenizer_cache_dir=None):
    """A random-weight StableDiffusionPipeline with SD 1.5's or SD 2.1-base's shapes.

    name: "tiny-sd15" or "tiny-sd21". The same seed gives the same weights;
    the global random state is left as it was.
    """
    if name not in TINY_SPECS:
        raise ValueError(f"unknown tiny model {name!r}; choose one of {sorted(TINY_SPECS)}")
    spec = TINY_SPECS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = tiny_text_encoder(spec)
        unet = tiny_unet(spec)
        vae = tiny_vae()
    for module in (text_encoder, unet, vae):
        module.eval()  # as from_pretrained leaves them (no dropout here, but say so)
    scheduler = sd_pipeline_scheduler()
    as_if_loaded(text_encoder, unet, vae, scheduler)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=load_tokenizer(spec["tokenizer_kind"], cache_dir=tokenizer_cache_dir),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,  # random weights draw noise: nothing to check
        feature_extractor=None,
        requires_safety_checker=False,
    )


# --- SD 1.5 at full size, random weights (benchmarks and the slow test) -------
# Written out from the published config.json files of
# stable-diffusion-v1-5/stable-diffusion-v1-5 (unet/, vae/, text_encoder/);
# the arguments not listed are diffusers' and transformers' defaults, which
# equal SD 1.5's. Parameter counts: U-Net 859.5 M, VAE 83.7 M, text 123.1 M.
SD15_UNET_CONFIG = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
SD15_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": VAE_SCALING_FACTOR,
}
SD15_TEXT_CONFIG = {  # OpenAI CLIP ViT-L/14's text tower
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


def build_sd15_architecture(device="cpu", dtype=torch.float32, seed=TINY_SEED, tokenizer_cache_dir=None):
    """SD 1.5's full-size pipeline (about 1.07 B parameters) with random weights: it draws noise.

    The weights are created directly on `device` (fast on a GPU), then cast to
    `dtype`. For measuring speed and memory, never for pictures.
    """
    device = torch.device(device)
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices), device:
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(CLIPTextConfig(**SD15_TEXT_CONFIG))
        unet = UNet2DConditionModel(**SD15_UNET_CONFIG)
        vae = AutoencoderKL(**SD15_VAE_CONFIG)
    for module in (text_encoder, unet, vae):
        if dtype != torch.float32:  # (diffusers warns on every .to(dtype))
            module.to(dtype)
        module.eval()
    scheduler = sd_pipeline_scheduler()
    as_if_loaded(text_encoder, unet, vae, scheduler)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=load_tokenizer("sd1", cache_dir=tokenizer_cache_dir),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


# --- FLUX-shaped test model (random weights) -----------------------------------
# FluxPipeline's parts, all narrow: FLUX.1's interface facts kept (CLIP-L-style
# 77-token tokenizer and pooled vector, a T5 encoder and T5 tokenizer, a
# FluxTransformer2DModel on 2x2-packed 16-channel latents, a VAE with factor 8,
# FlowMatchEulerDiscreteScheduler); everything else shrunk. The real T5
# tokenizer is a 32,100-piece SentencePiece model that cannot be built without
# a download, so the tiny one is the same class (transformers' T5Tokenizer) with
# a small unigram vocabulary made from CLIP's words. For tests only: it draws noise.
TINY_FLUX_T5_PIECES = 2000  # words taken from the CLIP vocabulary; real T5: 32,100 pieces


def tiny_t5_tokenizer(tokenizer_cache_dir=None):
    """transformers' T5Tokenizer with a small unigram vocabulary (the real one needs a download)."""
    from transformers import T5TokenizerFast

    clip_vocabulary = load_tokenizer("sd1", cache_dir=tokenizer_cache_dir).get_vocab()
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    for character in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-":
        pieces.append((character, -10.0))
    words = []
    for token, token_id in sorted(clip_vocabulary.items(), key=lambda item: item[1]):
        if token.endswith("</w>") and token[:-4].isalpha():
            words.append(token[:-4])
    for rank, word in enumerate(words[:TINY_FLUX_T5_PIECES]):
        pieces.append(("▁" + word, -3.0 - rank / TINY_FLUX_T5_PIECES))
    return T5TokenizerFast(vocab=pieces, extra_ids=0)


def build_tiny_flux_pipeline(seed=TINY_SEED, tokenizer_cache_dir=None):
    """A random-weight FluxPipeline (the class FLUX.1 loads with), about 1 M parameters; draws noise."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    t5_tokenizer = tiny_t5_tokenizer(tokenizer_cache_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = tiny_text_encoder({**TINY_SPECS["tiny-sd15"], "context_width": 32, "text_heads": 2})
        text_encoder_2 = T5EncoderModel(T5Config(  # real: T5-XXL encoder, d_model 4096, 24 layers
            vocab_size=len(t5_tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
            feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
        transformer = FluxTransformer2DModel(  # real: 19 + 38 blocks, 24 heads x 128
            patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=False,
            axes_dims_rope=(4, 6, 6))
        vae = AutoencoderKL(  # real: (128, 256, 512, 512), scaling 0.3611, shift 0.1159
            in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(16, 32, 32, 32), layers_per_block=1,
            latent_channels=16, norm_num_groups=16, sample_size=64, scaling_factor=0.3611, shift_factor=0.1159,
            use_quant_conv=False, use_post_quant_conv=False)
    for module in (text_encoder, text_encoder_2, transformer, vae):
        module.eval()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)  # FLUX.1-schnell's
    as_if_loaded(text_encoder, text_encoder_2, transformer, vae, scheduler)
    return FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                        tokenizer=load_tokenizer("sd1", cache_dir=tokenizer_cache_dir),
                        text_encoder_2=text_encoder_2, tokenizer_2=t5_tokenizer, transformer=transformer)
