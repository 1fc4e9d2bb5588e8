"""Loading a model from the Hugging Face Hub: local cache first, and a fast, helpful error offline.

`load_hub_model(model_class, name, attempts, ...)` is the one Hub loader: it

1. tries every (repository, variant) of `attempts` (the fp16 variant first
   when loading in float16, then full precision, then the fallback
   repositories) in the local Hugging Face cache only;
2. if none is cached, asks the Hub whether it answers at all
   (`hub_unreachable_reason`, at most HUB_CHECK_TIMEOUT_SECONDS, even when a
   DNS lookup hangs), and if not raises a RuntimeError that says what to do
   (`not_reachable_message`: use the pocket model, or pre-download with
   `hf download` and point HF_HOME at the copied cache);
3. otherwise downloads, trying the same repositories in the same order.

`sdnotes.load("sd15")` (in `sdnotes/models.py`) calls it through
`load_from_hub(info, ...)`, which picks the pipeline class and the attempts
from the registry entry (`attempts_for`); `sdnotes/controlnet.py` calls it for
the Hub ControlNets (`variant_attempts`).

`dtype_option(dtype)` spells from_pretrained's dtype argument as the installed
diffusers wants it (`dtype` from 0.40 on, `torch_dtype` before: Colab's 0.39).

`quiet_loading_bars()` hides the "Loading pipeline components..." (diffusers)
and "Loading weights" (transformers) progress bars while a model is read from
disk, with the libraries' public switches, and turns them back on afterwards;
download bars and the pipeline's own sampling bar are not touched (`load_pocket`
in models.py and the local-cache attempts below use it; downloads keep their bars).

References: https://huggingface.co/docs/diffusers/api/pipelines/overview (from_pretrained,
local_files_only, variant), https://huggingface.co/docs/diffusers/api/logging and
https://huggingface.co/docs/transformers/main_classes/logging (progress bars),
https://huggingface.co/docs/huggingface_hub/guides/cli (`hf download`),
https://huggingface.co/docs/huggingface_hub/package_reference/environment_variables (HF_HOME, HF_HUB_OFFLINE).
"""

import threading
from contextlib import contextmanager

import diffusers
import huggingface_hub
import huggingface_hub.utils
import torch
from diffusers import AutoPipelineForText2Image, FluxPipeline, StableDiffusionPipeline
from diffusers.utils import logging as diffusers_logging
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import HfHubHTTPError
from packaging.version import Version
from transformers.utils import logging as transformers_logging

HUB_CHECK_TIMEOUT_SECONDS = 5.0
# diffusers 0.40 renamed from_pretrained's `torch_dtype` to `dtype` (and deprecated the old name);
# 0.39, which Colab ships, knows only `torch_dtype`: it ignores `dtype` for a pipeline and rejects it
# for a model.
DTYPE_KEYWORD = "dtype" if Version(diffusers.__version__).release >= (0, 40) else "torch_dtype"


def dtype_option(dtype):
    """{"dtype": dtype} for diffusers' from_pretrained, spelled as the installed diffusers wants it:
    `ControlNetModel.from_pretrained(folder, **dtype_option(torch.float16))`."""
    return {DTYPE_KEYWORD: dtype}


@contextmanager
def quiet_loading_bars():
    """No diffusers/transformers progress bars inside the `with` block; as before after it.

    transformers' switch also turns huggingface_hub's bars off and on, so that
    state is saved and put back too.
    """
    diffusers_bars_were_on = diffusers_logging.is_progress_bar_enabled()
    transformers_bars_were_on = transformers_logging.is_progress_bar_enabled()
    hub_bars_were_off = huggingface_hub.utils.are_progress_bars_disabled()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if diffusers_bars_were_on:
            diffusers_logging.enable_progress_bar()
        if transformers_bars_were_on:
            transformers_logging.enable_progress_bar()
        if hub_bars_were_off:
            huggingface_hub.utils.disable_progress_bars()
        else:
            huggingface_hub.utils.enable_progress_bars()


def hub_unreachable_reason(repo_id, timeout_seconds=HUB_CHECK_TIMEOUT_SECONDS):
    """None if the Hub answers within `timeout_seconds`, else why it cannot be reached.

    Asks the Hub for `repo_id`'s model info in a background thread, so that not
    even a DNS lookup that never returns can make this wait longer than the
    timeout. Any HTTP answer (also 401 or 404) means the Hub is reachable.
    """
    if hub_constants.HF_HUB_OFFLINE:
        return "offline mode is on (HF_HUB_OFFLINE is set)"
    outcome = {}

    def ask_hub():
        try:
            huggingface_hub.model_info(repo_id, timeout=timeout_seconds)
            outcome["reason"] = None
        except HfHubHTTPError:
            outcome["reason"] = None
        except Exception as error:  # connection refused, DNS failure, timeout, proxy error, ...
            outcome["reason"] = f"{type(error).__name__}: {error}"

    thread = threading.Thread(target=ask_hub, daemon=True)
    thread.start()
    thread.join(timeout_seconds + 1.0)
    if thread.is_alive():
        return f"no answer from {hub_constants.ENDPOINT} within {timeout_seconds:g} s"
    return outcome["reason"]


def variant_attempts(repo_ids, dtype, has_fp16_variant=True):
    """(repo_id, variant) pairs to try, in order: the first repository's fp16 files first when
    loading in float16 (half the download), then each repository at full precision."""
    attempts = []
    for index, repo_id in enumerate(repo_ids):
        if index == 0 and has_fp16_variant and dtype == torch.float16:
            attempts.append((repo_id, "fp16"))
        attempts.append((repo_id, None))
    return attempts


def attempts_for(info, dtype):
    """(repo_id, variant) pairs to try for a registry entry, in order."""
    return variant_attempts((info.repo_id,) + info.fallback_repo_ids, dtype, info.has_fp16_variant)


def not_reachable_message(name, repo_id, reason, local_errors):
    """The error text for a Hub model that is neither cached nor downloadable."""
    lines = [
        f"cannot load {name!r}: the model is not in the local cache and the Hub cannot be reached ({reason}).",
        '- Use MODEL = "pocket" (runs offline), or',
        f"- pre-download it on a machine with network with `hf download {repo_id}` "
        f"(older huggingface_hub: `huggingface-cli download {repo_id}`), copy its Hugging Face cache "
        "(~/.cache/huggingface) here and set HF_HOME to that folder before starting Python "
        "(or pass cache_dir=<that folder>/hub to sdnotes.load).",
        "Local cache attempts:",
    ]
    for attempt_error in local_errors:
        lines.append(f"  {attempt_error}")
    return "\n".join(lines)


def load_hub_model(model_class, name, attempts, options, download_gb, verbose=True):
    """`model_class.from_pretrained` from the first of `attempts` that loads: cached, else downloaded.

    name: what the errors call the model; attempts: (repo_id, variant) pairs,
    the first repository is the one `hf download` is suggested for; options:
    the other from_pretrained arguments (dtype, cache_dir, ...); download_gb:
    the full-precision download, printed before downloading (fp16: half).
    """
    local_errors = []
    for repo_id, variant in attempts:
        try:
            with quiet_loading_bars():
                model = model_class.from_pretrained(repo_id, variant=variant, local_files_only=True, **options)
        except (OSError, ValueError) as error:
            message_lines = str(error).splitlines()
            if not message_lines:
                message_lines = [type(error).__name__]
            local_errors.append(f"{repo_id} (variant {variant}): {message_lines[0]}")
            continue
        if verbose:
            print(f"loaded {repo_id} from the local cache")
        return model
    first_repo_id = attempts[0][0]
    reason = hub_unreachable_reason(first_repo_id)
    if reason is not None:
        raise RuntimeError(not_reachable_message(name, first_repo_id, reason, local_errors))
    download_errors = []
    for repo_id, variant in attempts:
        if verbose:
            if variant == "fp16":
                size = f"about {download_gb / 2:.1f} GB, the fp16 files"
            else:
                size = f"about {download_gb:g} GB"
            print(f"downloading {repo_id} ({size}) ...")
        try:
            return model_class.from_pretrained(repo_id, variant=variant, **options)
        except (OSError, ValueError) as error:
            download_errors.append(f"{repo_id} (variant {variant}): {error}")
    raise RuntimeError(f"could not load {name!r} from any of its repositories:\n" + "\n".join(download_errors))


def load_from_hub(info, dtype, safety_checker, cache_dir, verbose):
    """A registry entry's pipeline from the Hub (`load_hub_model`): from the local cache if it is there,
    else downloaded."""
    if info.kind == "sdxl-turbo":
        pipeline_class = AutoPipelineForText2Image  # dispatches to StableDiffusionXLPipeline
    elif info.kind == "flux":
        pipeline_class = FluxPipeline  # FLUX.1: transformer + CLIP-L + T5-XXL, no safety checker
    else:
        pipeline_class = StableDiffusionPipeline
    options = {**dtype_option(dtype), "use_safetensors": True, "cache_dir": cache_dir}
    if info.kind == "sd" and safety_checker is False:
        options["safety_checker"] = None
        options["requires_safety_checker"] = False
    return load_hub_model(pipeline_class, info.name, attempts_for(info, dtype), options, info.download_gb, verbose)
