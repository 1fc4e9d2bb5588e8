"""Tests for the registry entries of notebook 15's models: SD-Turbo and FLUX.1 [schnell].

Like the Hub models in tests/test_models.py, nothing is downloaded:

* with no cache and an unreachable Hub, `sdnotes.load` fails within seconds
  with the message that says what to do (for every Hub model in
  tests/test_models.py; here with the real network check);
* the loading code path (`load` -> `load_from_hub` -> GPU measures ->
  `describe`) runs on a tiny random model of the same pipeline class:
  `StableDiffusionPipeline` for SD-Turbo (tiny-sd21 has SD 2.1's shapes, and
  SD-Turbo is a distilled SD 2.1), `FluxPipeline` for FLUX.1
  (`sdnotes.tiny.build_tiny_flux_pipeline`), which then draws a picture in
  one step at guidance 0, as the real models are run.
"""


import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, StableDiffusionPipeline
from transformers import T5TokenizerFast

from sdnotes import MODELS, hub, load, models
from sdnotes.tiny import build_tiny_flux_pipeline, build_tiny_pipeline

NEW_MODELS = ["sd-turbo", "flux-schnell"]


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory):
    return build_tiny_flux_pipeline(tokenizer_cache_dir=tmp_path_factory.mktemp("tokenizer"))


def test_new_models_are_few_step_models_without_guidance():
    for name in NEW_MODELS:
        info = MODELS[name]
        assert 1 <= info.default_steps <= 4 and info.default_guidance == 0.0, name  # distilled models


def test_flux_needs_offload_on_a_24_gb_card_and_nothing_on_a_large_one():
    flux = MODELS["flux-schnell"]
    assert "model_cpu_offload" in models.gpu_memory_measures(23.0, flux.min_gpu_memory_gb)
    assert models.gpu_memory_measures(80.0, flux.min_gpu_memory_gb) == []


def test_flux_fp16_variant_is_not_asked_for():
    # FLUX.1's repository has no "fp16" variant files: the bf16 weights are the only ones
    flux = MODELS["flux-schnell"]
    assert hub.attempts_for(flux, torch.float16) == [(flux.repo_id, None)]


def test_flux_without_network_fails_fast(tmp_path):
    if hub.hub_unreachable_reason(MODELS["flux-schnell"].repo_id) is None:
        pytest.skip("the Hub is reachable from here; this test checks the offline path")
    with pytest.raises(RuntimeError, match=f"hf download {MODELS['flux-schnell'].repo_id}"):
        load("flux-schnell", device="cpu", cache_dir=tmp_path, verbose=False)


def test_tiny_flux_pipeline_has_fluxs_parts(tiny_flux):
    assert isinstance(tiny_flux, FluxPipeline)
    assert isinstance(tiny_flux.scheduler, FlowMatchEulerDiscreteScheduler)
    assert isinstance(tiny_flux.tokenizer_2, T5TokenizerFast)
    assert tiny_flux.vae.config.latent_channels == 16  # FLUX.1's VAE: 16 channels, factor 8
    assert tiny_flux.tokenizer.model_max_length == 77
    ids = tiny_flux.tokenizer_2("a photo of a cat").input_ids
    assert ids[-1] == tiny_flux.tokenizer_2.eos_token_id and tiny_flux.tokenizer_2.unk_token_id not in ids


def test_flux_loads_through_the_same_code_path(monkeypatch, tiny_flux, capsys):
    calls = []

    def record_from_pretrained(repo_id, **options):
        calls.append(dict(options, repo_id=repo_id))
        return tiny_flux

    monkeypatch.setattr(FluxPipeline, "from_pretrained", record_from_pretrained)
    pipe = load("flux-schnell", device="cpu", dtype=torch.float32)
    assert calls[-1]["repo_id"] == MODELS["flux-schnell"].repo_id
    assert calls[-1]["local_files_only"] is True and calls[-1]["use_safetensors"] is True
    assert "safety_checker" not in calls[-1]  # FLUX has none; an SD-only option must not be passed
    printed = capsys.readouterr().out
    assert "model: flux-schnell" in printed and "pipeline: FluxPipeline" in printed
    assert "transformer:" in printed and "text_encoder_2:" in printed and "16 channels" in printed
    info = MODELS["flux-schnell"]
    image = pipe("a photo of a cat", num_inference_steps=1, guidance_scale=info.default_guidance,
                 height=64, width=64, max_sequence_length=16, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 64, 64, 3) and np.isfinite(image).all()


def test_sd_turbo_loads_through_the_same_code_path(monkeypatch, tmp_path, capsys):
    tiny_sd21 = build_tiny_pipeline("tiny-sd21", tokenizer_cache_dir=tmp_path)
    calls = []

    def record_from_pretrained(repo_id, **options):
        calls.append(dict(options, repo_id=repo_id))
        return tiny_sd21

    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", record_from_pretrained)
    pipe = load("sd-turbo", device="cpu", safety_checker=False)
    assert calls[-1]["repo_id"] == MODELS["sd-turbo"].repo_id and calls[-1]["variant"] is None  # float32 on a CPU
    assert calls[-1]["safety_checker"] is None
    assert "model: sd-turbo" in capsys.readouterr().out
    info = MODELS["sd-turbo"]
    image = pipe("a photo of a cat", num_inference_steps=info.default_steps, guidance_scale=info.default_guidance,
                 output_type="np", generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 64, 64, 3) and np.isfinite(image).all()
