"""Which ControlNet goes with which model (notebook 12): `load_controlnet(name, pipe)`.

- "pocket": the course's box ControlNet in assets/pocket-controlnet (a standard
  diffusers ControlNetModel folder, trained by `python -m
  sdnotes.pocket.control.train`; control pictures: filled white boxes on black,
  see its control.json);
- "tiny-sd15" / "tiny-sd21": `ControlNetModel.from_unet(pipe.unet)`, a test
  model with SD's shapes (fresh, so its zero convolutions change nothing);
- "sd15": SD 1.5 has no box ControlNet. The nearest is ControlNet 1.1's
  scribble model (white strokes on black), given the boxes' outlines
  (`control_kind` says which picture to draw). Other real ControlNets for SD
  1.5 are listed in SD15_CONTROLNETS.

Hub ControlNets load as Hub pipelines do (`sdnotes/hub.py`, `load_hub_model`):
from the local cache first, the fp16 files first in float16; with no cache and
no Hub the call fails within seconds and says what to do.

Reference: Zhang, Rao & Agrawala 2023, https://arxiv.org/abs/2302.05543;
https://huggingface.co/docs/diffusers/api/pipelines/controlnet
"""

import torch

from sdnotes.hub import dtype_option, load_hub_model, quiet_loading_bars, variant_attempts
from sdnotes.paths import POCKET_CONTROLNET_DIR

# ControlNet 1.1 for SD 1.5 (lllyasviel), one per kind of control picture; about 1.45 GB each
# in full precision, 723 MB as the fp16 files (the repositories' file listings).
SD15_CONTROLNET_DOWNLOAD_GB = 1.45
SD15_CONTROLNETS = {
    "scribble": "lllyasviel/control_v11p_sd15_scribble",
    "canny": "lllyasviel/control_v11p_sd15_canny",
    "depth": "lllyasviel/control_v11f1p_sd15_depth",
    "openpose": "lllyasviel/control_v11p_sd15_openpose",
}
CONTROL_KINDS = {"pocket": "filled boxes", "tiny-sd15": "filled boxes", "tiny-sd21": "filled boxes",
                 "sd15": "box outlines"}


def control_kind(name):
    """The control picture a model's ControlNet wants: "filled boxes" or "box outlines"."""
    if name not in CONTROL_KINDS:
        raise ValueError(f"notebook 12 has no ControlNet for model {name!r}; choose one of {', '.join(CONTROL_KINDS)}")
    return CONTROL_KINDS[name]


def load_pocket_controlnet(dtype=torch.float32, folder=POCKET_CONTROLNET_DIR):
    from diffusers import ControlNetModel

    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"the pocket ControlNet is not in {folder}: get the repository's assets/pocket-controlnet folder "
            "(git pull), or train it with `python -m sdnotes.pocket.control.train` (about 2 hours on a CPU).")
    with quiet_loading_bars():
        return ControlNetModel.from_pretrained(folder, local_files_only=True, **dtype_option(dtype))


def load_hub_controlnet(repo_id, dtype, cache_dir=None, verbose=True):
    """A ControlNet from the Hub (`load_hub_model`: local cache first, fp16 files first in float16)."""
    from diffusers import ControlNetModel

    attempts = variant_attempts([repo_id], dtype)
    options = {**dtype_option(dtype), "cache_dir": cache_dir}
    return load_hub_model(ControlNetModel, repo_id, attempts, options,
                          SD15_CONTROLNET_DOWNLOAD_GB, verbose)


def like_unet(model, unet):
    """`model` moved to the U-Net's device and dtype.

    Uses torch's own Module.to: diffusers 0.42's ModelMixin.to warns "There are
    modules ... that should be kept in float32: []" on every dtype cast, even
    when there are none.
    """
    return torch.nn.Module.to(model, device=unet.device, dtype=unet.dtype)


def load_controlnet(name, pipe, cache_dir=None):
    """The ControlNet notebook 12 uses with model `name` (pipe: that model's loaded pipeline)."""
    from diffusers import ControlNetModel

    control_kind(name)  # a clear error for models without one
    dtype = pipe.unet.dtype
    if name == "pocket":
        controlnet = load_pocket_controlnet(dtype)
    elif name.startswith("tiny-"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            controlnet = ControlNetModel.from_unet(pipe.unet)
    else:
        controlnet = load_hub_controlnet(SD15_CONTROLNETS["scribble"], dtype, cache_dir)
    return like_unet(controlnet, pipe.unet).eval()
