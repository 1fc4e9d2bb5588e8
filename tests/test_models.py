"""Tests for sdnotes/registry.py (MODELS), sdnotes/models.py (device/dtype choice, loading, describe) and
sdnotes/hub.py (Hub models: local cache first, a fast error when the Hub cannot be reached).

No test downloads anything: Hub models are only loaded far enough to check
that a missing cache plus an unreachable Hub gives a fast, helpful error, and
the loading logic is checked with a tiny randomly-initialised Stable
Diffusion pipeline built here (same classes as the real one, ~1 M parameters).
"""

import dataclasses
import json
import re
import subprocess
import sys
import threading

import huggingface_hub
import pytest
import torch
from diffusers import StableDiffusionPipeline

from sdnotes import MODELS, describe, hub, load, models, paths, pick_device, pick_dtype, registry

from micro_pipeline import build_micro_pipeline, build_micro_unet


def build_tiny_pipeline(tokenizer_cache_dir):
    """A seeded SD-shaped pipeline: 8×8×4 latents, 16×16 images, 16-d text context."""
    unet = build_micro_unet(("DownBlock2D", "CrossAttnDownBlock2D"), ("CrossAttnUpBlock2D", "UpBlock2D"))
    return build_micro_pipeline(unet, tokenizer_cache_dir)


@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("tokenizer"))


# --- registry -----------------------------------------------------------------


HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")  # owner/name
OFFLINE_KINDS = ("pocket", "tiny")  # built or shipped here: no repository, no download, any CPU


def test_every_registry_entry_is_loadable_as_described():
    for name, info in MODELS.items():
        assert info.name == name and registry.get_model_info(name) is info
        assert info.kind in ("pocket", "tiny", "sd", "sdxl-turbo", "flux"), name
        if info.kind in OFFLINE_KINDS:
            assert info.repo_id is None and info.fallback_repo_ids == (), name
            assert info.download_gb == 0 and info.min_gpu_memory_gb == 0, name
        else:
            for repo_id in (info.repo_id,) + info.fallback_repo_ids:
                assert HUB_REPO_ID.match(repo_id), f"{name}: {repo_id!r} is not a Hub repository id (owner/name)"
            assert info.hub_notes, f"{name}: say how to get it (gating, mirrors, download)"
            assert info.download_gb > 0 and info.min_gpu_memory_gb > 0, name
        assert info.native_resolution % 8 == 0 and info.default_steps >= 1 and info.default_guidance >= 0, name
        if info.default_guidance == 0:  # sampling without guidance is what the few-step distilled models do
            assert info.default_steps <= 4, name
    with pytest.raises(dataclasses.FrozenInstanceError):
        MODELS["sd15"].repo_id = "somewhere/else"
    with pytest.raises(ValueError, match="valid names are: pocket"):
        registry.get_model_info("sd1.5")


def test_the_registry_is_data_and_imports_no_library():
    """The model list must not pull in diffusers (sdnotes/tiny.py imports the registry, not the other way)."""
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('registry_alone', {registry.__file__!r})\n"
            "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
            "print(sorted(name for name in ('diffusers', 'torch', 'sdnotes') if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", f"sdnotes/registry.py imports {result.stdout.strip()}; keep it data only"


def test_pocket_defaults_match_the_shipped_model():
    """The registry's resolution is the one the shipped assets/pocket configs give."""
    pocket = MODELS["pocket"]
    unet_config = json.loads((paths.POCKET_DIR / "unet" / "config.json").read_text())
    vae_config = json.loads((paths.POCKET_DIR / "vae" / "config.json").read_text())
    vae_factor = 2 ** (len(vae_config["block_out_channels"]) - 1)
    assert unet_config["sample_size"] * vae_factor == pocket.native_resolution == vae_config["sample_size"]


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as error_info:
        load("sd3", device="cpu", verbose=False)
    message = str(error_info.value)
    assert "sd3" in message
    for name in MODELS:
        assert name in message


def test_pick_dtype():
    assert pick_dtype("cpu") == torch.float32
    assert pick_dtype("mps") == torch.float32
    assert pick_dtype("cuda") == torch.float16
    assert pick_dtype(torch.device("cuda:0")) == torch.float16


def test_pick_device():
    device = pick_device()
    assert device in ("cuda", "mps", "cpu")
    if torch.cuda.is_available():
        assert device == "cuda"


def test_fp16_variant_is_tried_first_only_in_float16():
    for name, info in MODELS.items():
        if info.repo_id is None:
            continue
        full_precision = [(repo_id, None) for repo_id in (info.repo_id,) + info.fallback_repo_ids]
        assert hub.attempts_for(info, torch.float32) == full_precision, name
        if info.has_fp16_variant:
            assert hub.attempts_for(info, torch.float16) == [(info.repo_id, "fp16")] + full_precision, name
        else:
            assert hub.attempts_for(info, torch.float16) == full_precision, name


# --- Hub models without a network ---------------------------------------------


def assert_helpful_offline_message(message, repo_id):
    assert "not in the local cache" in message
    assert "Hub cannot be reached" in message
    assert 'MODEL = "pocket"' in message
    assert f"hf download {repo_id}" in message
    assert f"huggingface-cli download {repo_id}" in message
    assert "HF_HOME" in message


def test_load_sd15_without_network_fails_fast_with_help(tmp_path):
    if hub.hub_unreachable_reason(MODELS["sd15"].repo_id) is None:
        pytest.skip("the Hub is reachable from here; this test checks the offline path")
    with pytest.raises(RuntimeError) as error_info:  # the hang guard is the hub check's own timeout (below)
        load("sd15", device="cpu", cache_dir=tmp_path, verbose=False)
    assert_helpful_offline_message(str(error_info.value), "stable-diffusion-v1-5/stable-diffusion-v1-5")
    # the fallback was looked for in the cache too
    assert "CompVis/stable-diffusion-v1-4" in str(error_info.value)


@pytest.mark.parametrize("name", [name for name, info in MODELS.items() if info.repo_id is not None])
def test_unreachable_hub_message_for_every_hub_model(monkeypatch, tmp_path, name):
    def simulated_unreachable_hub(repo_id, timeout_seconds=hub.HUB_CHECK_TIMEOUT_SECONDS):
        return "simulated: no network"

    # load_from_hub looks the check up in sdnotes/hub.py, so that is where it is replaced
    monkeypatch.setattr(hub, "hub_unreachable_reason", simulated_unreachable_hub)
    with pytest.raises(RuntimeError) as error_info:
        load(name, device="cpu", cache_dir=tmp_path, verbose=False)
    assert_helpful_offline_message(str(error_info.value), MODELS[name].repo_id)
    assert "simulated: no network" in str(error_info.value)


def test_hub_check_gives_up_on_a_hub_that_never_answers(monkeypatch):
    """The check returns "no answer" while the (simulated) Hub is still silent: it does not wait for it."""
    hub_answered = threading.Event()
    release = threading.Event()

    def hub_that_never_answers(repo_id, timeout=None):
        release.wait(timeout=30)  # silent until the test is over (30 s at most, so no thread is left behind)
        hub_answered.set()

    monkeypatch.setattr(huggingface_hub, "model_info", hub_that_never_answers)
    reason = hub.hub_unreachable_reason("some/repo", timeout_seconds=0.3)
    gave_up_first = not hub_answered.is_set()
    release.set()
    assert gave_up_first, "hub_unreachable_reason waited for the Hub's answer instead of its timeout"
    assert "no answer" in reason


def test_hub_check_respects_offline_mode(monkeypatch):
    monkeypatch.setattr(hub.hub_constants, "HF_HUB_OFFLINE", True)
    assert "HF_HUB_OFFLINE" in hub.hub_unreachable_reason("some/repo")


def test_safety_checker_choice_reaches_from_pretrained(monkeypatch, tiny_pipe):
    calls = []

    def record_from_pretrained(repo_id, **options):
        calls.append(dict(options, repo_id=repo_id))
        return tiny_pipe

    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", record_from_pretrained)
    load("sd15", device="cpu", verbose=False)
    assert calls[-1]["local_files_only"] is True
    assert calls[-1]["use_safetensors"] is True
    assert "safety_checker" not in calls[-1]
    load("sd15", device="cpu", safety_checker=False, verbose=False)
    assert calls[-1]["safety_checker"] is None
    assert calls[-1]["requires_safety_checker"] is False
    with pytest.raises(ValueError, match="safety_checker"):
        load("sd15", device="cpu", safety_checker="off", verbose=False)


# --- pocket -------------------------------------------------------------------


def test_missing_pocket_model_says_how_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "POCKET_DIR", tmp_path / "pocket")
    with pytest.raises(FileNotFoundError) as error_info:
        load("pocket", device="cpu", verbose=False)
    assert "the pocket model is not built yet" in str(error_info.value)
    assert "python -m sdnotes.pocket.train" in str(error_info.value)


def test_pocket_loads_a_saved_pipeline_folder(monkeypatch, tmp_path, tiny_pipe):
    tiny_pipe.save_pretrained(tmp_path / "pocket")
    monkeypatch.setattr(paths, "POCKET_DIR", tmp_path / "pocket")
    pipe = load("pocket", device="cpu", verbose=False)
    assert isinstance(pipe, StableDiffusionPipeline)
    assert pipe.safety_checker is None
    assert pipe.tokenizer.model_max_length == 77


# --- load(pipeline=...) and describe -------------------------------------------


def test_load_accepts_a_built_pipeline(tiny_pipe):
    pipe = load(pipeline=tiny_pipe, device="cpu", verbose=False)
    assert pipe is tiny_pipe
    assert pipe.device.type == "cpu"
    assert pipe.dtype == torch.float32
    generator = torch.Generator("cpu").manual_seed(0)
    images = pipe(
        "a photo of a cat",
        num_inference_steps=2,
        generator=generator,
        output_type="np",
    ).images
    assert images.shape == (1, 16, 16, 3)


def test_describe_reports_parameter_counts_and_latents(tiny_pipe):
    text = describe(tiny_pipe)
    for component_name in ("unet", "vae", "text_encoder"):
        component = getattr(tiny_pipe, component_name)
        number_of_parameters = sum(parameter.numel() for parameter in component.parameters())
        assert f"{component_name}: {number_of_parameters:,} parameters" in text
    assert "4 channels" in text
    assert "downsampling factor 2" in text
    assert "latent 4×8×8" in text
    assert "DDIMScheduler" in text
    assert "float32" in text


def test_verbose_load_prints_the_description(tiny_pipe, capsys):
    load(pipeline=tiny_pipe, device="cpu", verbose=True)
    printed = capsys.readouterr().out
    assert "unet:" in printed
    assert "parameters" in printed


# --- GPU memory measures (a pure function, so it is tested without a GPU) ------


@pytest.mark.parametrize(
    "free_gb, expected",
    [
        (80.0, []),  # an H100: nothing needed
        (22.0, []),  # a 24 GB card
        (15.0, ["vae_slicing"]),  # a Colab T4 (15 GB)
        (7.5, ["vae_slicing"]),  # an 8 GB card
        (5.5, ["vae_slicing"]),  # a 6 GB laptop GPU (SD 1.5 peaks at 2.9 GB, measured)
        (4.5, ["vae_slicing", "model_cpu_offload"]),
        (3.5, ["vae_slicing", "model_cpu_offload"]),
    ],
)
def test_gpu_memory_measures_for_sd15(free_gb, expected):
    assert models.gpu_memory_measures(free_gb, MODELS["sd15"].min_gpu_memory_gb) == expected


def test_gpu_memory_measures_edge_cases():
    sd15_needs = MODELS["sd15"].min_gpu_memory_gb
    assert models.gpu_memory_measures(16.0, sd15_needs) == ["vae_slicing"]
    assert models.gpu_memory_measures(16.1, sd15_needs) == []
    # attention slicing only where PyTorch lacks scaled_dot_product_attention
    assert models.gpu_memory_measures(15.0, sd15_needs, has_sdpa=False) == ["vae_slicing", "attention_slicing"]
    # SDXL Turbo needs more: a T4 is fine, an 8 GB card offloads
    assert models.gpu_memory_measures(15.0, MODELS["sdxl-turbo"].min_gpu_memory_gb) == ["vae_slicing"]
    assert "model_cpu_offload" in models.gpu_memory_measures(8.0, MODELS["sdxl-turbo"].min_gpu_memory_gb)
    assert models.gpu_memory_measures(4.99, sd15_needs) == ["vae_slicing", "model_cpu_offload"]
    assert models.gpu_memory_measures(5.0, sd15_needs) == ["vae_slicing"]
    # models that run on a CPU never need anything
    for name in ("pocket", "tiny-sd15", "tiny-sd21"):
        assert models.gpu_memory_measures(2.0, MODELS[name].min_gpu_memory_gb) == []
    for measure in models.gpu_memory_measures(1.0, sd15_needs, has_sdpa=False):
        assert measure in models.GPU_MEASURE_REASONS


def test_no_gpu_measures_off_cuda(capsys):
    assert models.choose_gpu_measures(MODELS["sd15"], "cpu", verbose=True) == []
    assert capsys.readouterr().out == ""


def test_gpu_choice_reads_free_memory_and_says_why(monkeypatch, capsys):
    def t4_memory(device=None):
        return 14.7e9, 15.8e9  # (free, total) bytes, as on a Colab T4

    monkeypatch.setattr(models.torch.cuda, "mem_get_info", t4_memory)
    assert models.choose_gpu_measures(MODELS["sd15"], "cuda", verbose=True) == ["vae_slicing"]
    printed = capsys.readouterr().out
    assert "14.7 of 15.8 GB free" in printed
    assert "vae_slicing" in printed and "one image at a time" in printed
    assert models.choose_gpu_measures(MODELS["pocket"], "cuda", verbose=True) == []
    assert capsys.readouterr().out == ""


def test_apply_gpu_measures_enables_vae_slicing(tiny_pipe):
    pipe = models.apply_gpu_measures(tiny_pipe, ["vae_slicing"], "cpu", torch.float32)
    try:
        assert pipe.vae.use_slicing
    finally:
        pipe.vae.disable_slicing()


# --- devices this machine does not have (tested without a GPU) -----------------


def fail_if_anything_is_loaded(monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("the device must be checked before anything is loaded")

    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", no_loading)


def test_cuda_without_a_gpu_says_what_happened_and_what_to_pass(monkeypatch):
    if torch.cuda.is_available():  # on a GPU machine, pretend there is none
        monkeypatch.setattr(models.torch.cuda, "is_available", lambda: False)
    fail_if_anything_is_loaded(monkeypatch)
    for device in ("cuda", "cuda:0", torch.device("cuda")):
        with pytest.raises(RuntimeError) as error_info:
            load("pocket", device=device, verbose=False)
        message = str(error_info.value)
        assert "asks for an NVIDIA GPU" in message
        assert "torch.cuda.is_available() is False" in message
        assert 'device="cpu"' in message and "leave device out" in message
        assert "Found no NVIDIA driver" not in message
    # the same check guards Hub models, before any download is tried
    with pytest.raises(RuntimeError, match="asks for an NVIDIA GPU"):
        load("sd15", device="cuda", verbose=False)


def test_cuda_index_beyond_the_gpus_here(monkeypatch):
    monkeypatch.setattr(models.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(models.torch.cuda, "device_count", lambda: 1)
    fail_if_anything_is_loaded(monkeypatch)
    with pytest.raises(RuntimeError, match="has 1 CUDA GPU"):
        load("pocket", device="cuda:3", verbose=False)
    assert models.check_device("cuda:0") == "cuda:0"


def test_mps_off_a_mac_says_what_to_pass(monkeypatch):
    monkeypatch.setattr(models.torch.backends.mps, "is_available", lambda: False)
    fail_if_anything_is_loaded(monkeypatch)
    with pytest.raises(RuntimeError) as error_info:
        load("pocket", device="mps", verbose=False)
    assert "Apple GPU" in str(error_info.value) and 'device="cpu"' in str(error_info.value)


@pytest.mark.parametrize("device, likely", [("gpu", "cuda"), ("GPU", "cuda"), ("metal", "mps"), ("cpuu", None)])
def test_misspelt_device_names_the_valid_ones(monkeypatch, device, likely):
    fail_if_anything_is_loaded(monkeypatch)
    with pytest.raises(ValueError) as error_info:
        load("pocket", device=device, verbose=False)
    message = str(error_info.value)
    assert f"unknown device {device!r}" in message
    assert '"cuda"' in message and '"mps"' in message and '"cpu"' in message
    if likely is not None:
        assert f'Did you mean "{likely}"?' in message
    else:
        assert "Did you mean" not in message


def test_cpu_devices_pass_the_check():
    for device in ("cpu", "cpu:0", torch.device("cpu")):
        assert models.check_device(device) == device


# --- quiet loading ----------------------------------------------------------------


def test_loading_the_pocket_model_shows_no_progress_bars_but_sampling_does(capfd):
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    pipe = load("pocket", device="cpu", verbose=False)
    loading_output = capfd.readouterr()
    assert "Loading pipeline components" not in loading_output.err + loading_output.out
    assert "Loading weights" not in loading_output.err + loading_output.out
    # the switches are back on for everything after loading
    assert diffusers_logging.is_progress_bar_enabled()
    assert transformers_logging.is_progress_bar_enabled()
    assert not huggingface_hub.utils.are_progress_bars_disabled()
    pipe("a rocket", num_inference_steps=2, output_type="latent", generator=torch.Generator().manual_seed(0))
    sampling_output = capfd.readouterr()
    assert "2/2" in sampling_output.err  # the pipeline's own bar over the denoising steps


def test_quiet_loading_bars_leaves_switched_off_bars_off():
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        with hub.quiet_loading_bars():
            assert not diffusers_logging.is_progress_bar_enabled()
        assert not diffusers_logging.is_progress_bar_enabled()
        assert not transformers_logging.is_progress_bar_enabled()
        assert huggingface_hub.utils.are_progress_bars_disabled()
    finally:
        diffusers_logging.enable_progress_bar()
        transformers_logging.enable_progress_bar()
    with hub.quiet_loading_bars():
        assert not transformers_logging.is_progress_bar_enabled()
        assert huggingface_hub.utils.are_progress_bars_disabled()
    assert transformers_logging.is_progress_bar_enabled()
    assert not huggingface_hub.utils.are_progress_bars_disabled()


# --- where assets/ is found (a clone, an editable or a plain install) ---------------


def make_fake_clone(folder):
    (folder / "assets" / "pocket").mkdir(parents=True)
    (folder / "assets" / "pocket" / "model_index.json").write_text("{}")
    (folder / "notebooks").mkdir()
    return folder


def test_every_asset_folder_is_in_the_assets_folder_found():
    for folder in (paths.POCKET_DIR, paths.POCKET_JUDGE_DIR, paths.POCKET_CONCEPT_DIR, paths.POCKET_CONTROLNET_DIR):
        assert folder.parent == paths.find_assets_dir() and folder.is_dir(), folder


def test_assets_are_found_beside_the_package_from_anywhere(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.ASSETS_ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)
    assert paths.find_assets_dir() == paths.PACKAGE_ASSETS_DIR
    assert (paths.PACKAGE_ASSETS_DIR / "pocket" / "tokenizer" / "tokenizer.json").is_file()


def test_assets_of_a_plain_install_are_found_from_the_notebooks_folder(monkeypatch, tmp_path):
    clone = make_fake_clone(tmp_path / "clone")
    # as in site-packages after `pip install .`: no assets beside the package
    monkeypatch.setattr(paths, "PACKAGE_ASSETS_DIR", tmp_path / "site-packages" / "assets")
    monkeypatch.delenv(paths.ASSETS_ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.chdir(clone / "notebooks")  # where Jupyter runs a notebook
    assert paths.find_assets_dir() == (clone / "assets").resolve()
    monkeypatch.chdir(tmp_path)  # outside the clone: the expected place, for error messages
    assert paths.find_assets_dir() == tmp_path / "site-packages" / "assets"
    monkeypatch.setenv(paths.ASSETS_ENVIRONMENT_VARIABLE, str(clone / "assets"))
    assert paths.find_assets_dir() == (clone / "assets").resolve()


def test_the_pocket_judge_loads_without_progress_bars(capfd):
    from sdnotes.pocket.judge import PocketJudge

    PocketJudge()
    output = capfd.readouterr()
    assert "Loading weights" not in output.err + output.out
