"""Loading the course's models: from a registry name to a ready diffusers pipeline.

Which models there are (`MODELS`, sizes, licences) is in `sdnotes/registry.py`;
where the pocket model's folder is (`POCKET_DIR`), in `sdnotes/paths.py`.

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
- `count_parameters(module)`: the number of numbers in a module's weights.

References: https://huggingface.co/docs/diffusers/api/pipelines/overview (from_pretrained),
https://huggingface.co/docs/diffusers/optimization/memory (slicing, offload).
"""

import torch
from diffusers import StableDiffusionPipeline

from sdnotes import paths
from sdnotes.hub import dtype_option, load_from_hub, quiet_loading_bars
from sdnotes.registry import MODELS, get_model_info
from sdnotes.tiny import build_tiny_pipeline


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


def load_pocket(dtype):
    """The pocket model from assets/pocket (never touches the network)."""
    pocket_dir = paths.POCKET_DIR
    if not (pocket_dir / "model_index.json").is_file():
        raise FileNotFoundError(
            f"the pocket model is not built yet: {pocket_dir / 'model_index.json'} is missing. "
            "Run `python -m sdnotes.pocket.train` from the repository root to build it, "
            "or get the repository's assets/pocket folder (git pull). With sdnotes installed "
            "non-editable (`pip install .`), start Python inside your clone of the repository, "
            "or set SDNOTES_ASSETS to the clone's assets folder (see sdnotes/paths.py)."
        )
    with quiet_loading_bars():  # a 37 MB model loads in a second: no progress bars for it
        return StableDiffusionPipeline.from_pretrained(
            pocket_dir,
            **dtype_option(dtype),
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
