"""SD 1.5 at full size, with random weights: exact parameter counts, and two steps on a CPU.

SD 1.5's configuration is written out once, in sdnotes/tiny.py (SD15_UNET_CONFIG,
SD15_VAE_CONFIG, SD15_TEXT_CONFIG, from the config.json files of
stable-diffusion-v1-5/stable-diffusion-v1-5); `build_sd15_architecture()`
builds it for the benchmarks. Here:

- (fast, always runs) the three configs, built on PyTorch's "meta" device (shapes
  only, no memory), have SD 1.5's exact parameter counts;
- (slow: run with `pytest -m slow`) `build_sd15_architecture()` on a CPU has
  the same counts, runs two denoising steps at 512x512 with guidance (U-Net
  batch of two) and decodes to a 512x512 image.

Nothing is downloaded; the weights are random, so the image is noise. The slow
test's time and peak memory on the project's 2-core build machine are in
benchmarks/README.md.
"""

import resource
import time

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from sdnotes.models import count_parameters
from sdnotes.tiny import SD15_TEXT_CONFIG, SD15_UNET_CONFIG, SD15_VAE_CONFIG, build_sd15_architecture

# name -> (exact count of SD 1.5's published weights, the rounded figure quoted in the course)
PARAMETER_COUNTS = {"unet": (859_520_964, 860e6), "vae": (83_653_863, 84e6), "text_encoder": (123_060_480, 123e6)}


def test_sd15_configs_have_sd15s_parameter_counts():
    with torch.device("meta"):  # parameters get shapes but no memory: under a second
        components = {
            "unet": UNet2DConditionModel(**SD15_UNET_CONFIG),
            "vae": AutoencoderKL(**SD15_VAE_CONFIG),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**SD15_TEXT_CONFIG)),
        }
    for component_name, (exact_count, quoted_count) in PARAMETER_COUNTS.items():
        number_of_parameters = count_parameters(components[component_name])
        assert number_of_parameters == exact_count, component_name
        assert abs(number_of_parameters - quoted_count) / quoted_count < 0.01, component_name


@pytest.mark.slow
def test_sd15_full_size_runs_two_steps_at_512_on_cpu():
    start = time.perf_counter()
    pipe = build_sd15_architecture(device="cpu", dtype=torch.float32)
    build_s = time.perf_counter() - start
    for component_name, (exact_count, quoted_count) in PARAMETER_COUNTS.items():
        number_of_parameters = count_parameters(getattr(pipe, component_name))
        assert number_of_parameters == exact_count, component_name
        assert abs(number_of_parameters - quoted_count) / quoted_count < 0.01, component_name

    unet_batch_sizes = []

    def record_batch(module, args, kwargs):
        unet_batch_sizes.append(args[0].shape[0])

    hook = pipe.unet.register_forward_pre_hook(record_batch, with_kwargs=True)
    step_start = time.perf_counter()
    latents = pipe(
        "a photograph of an astronaut riding a horse",
        height=512,
        width=512,
        num_inference_steps=2,
        guidance_scale=7.5,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="latent",
    ).images
    hook.remove()
    steps_s = time.perf_counter() - step_start
    assert latents.shape == (1, 4, 64, 64)
    # classifier-free guidance: unconditional + conditional in one batch of two, at every timestep
    # (PNDM as SD ships it runs one more U-Net call than steps: 2 steps -> 3 timesteps)
    assert len(pipe.scheduler.timesteps) == 3
    assert unet_batch_sizes == [2, 2, 2]

    decode_start = time.perf_counter()
    with torch.no_grad():
        image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    decode_s = time.perf_counter() - decode_start
    assert image.shape == (1, 3, 512, 512)
    assert torch.isfinite(image).all()
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kilobytes on Linux
    print(f"\nSD 1.5 full size on CPU: build {build_s:.1f} s, 2 steps with CFG {steps_s:.1f} s, "
          f"decode {decode_s:.1f} s, total {time.perf_counter() - start:.1f} s, peak RSS {peak_rss_gb:.1f} GB")
