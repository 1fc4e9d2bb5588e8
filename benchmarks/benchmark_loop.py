"""The notebooks' hand-written sampling loop against `pipe(...)`, side by side.

Notebook 07 writes Stable Diffusion's text-to-image loop out by hand (encode
the prompt and the empty prompt, draw the initial latents, set the timesteps,
guidance in one batch of two, scale_model_input, scheduler.step, decode).
This script checks that the hand-written loop costs nothing: it runs it and
diffusers' StableDiffusionPipeline.__call__ on the same components, with the
same seed and steps, alternating which goes first, and reports the median
seconds per image, denoising iterations per second (U-Net calls, as diffusers'
progress bar counts them: PNDM makes steps + 1), peak memory and the ratio of
the medians ours / diffusers (target: <= 1.05; also the median of the ratios of
back-to-back pairs, which cancels slow drifts in machine load). It also asserts that both give the same
image (bit for bit on a CPU; within 1e-3 on a GPU, where kernels may differ).

    python benchmarks/benchmark_loop.py                      # pocket, CPU
    python benchmarks/benchmark_loop.py --model sd15-arch --device cuda
    python benchmarks/benchmark_loop.py --model sd15-arch --device cuda --preset t4

Models: "pocket" (the course's model, assets/pocket) or "sd15-arch" (SD 1.5's
full-size architecture with random weights, sdnotes.tiny: the speed and
memory of SD 1.5 without a download; its images are noise). --preset t4
applies what `sdnotes.load` does on a GPU with 15 GB free (a Colab T4).
Needs torch, diffusers, transformers (and accelerate for offloading) and this
repository on PYTHONPATH. The last line printed is a markdown table row.
"""

import argparse
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import sdnotes  # noqa: E402
from sdnotes.models import apply_gpu_measures, gpu_memory_measures  # noqa: E402
from sdnotes.tiny import build_sd15_architecture  # noqa: E402

PROMPTS = {
    "pocket": "a red apple on a blue background",
    "sd15-arch": "a photograph of an astronaut riding a horse",
}
DEFAULTS = {  # model -> (batch, steps, repeats)
    "pocket": (4, 25, 5),
    "sd15-arch": (1, 50, 5),
}
PRESET_FREE_GB = {"t4": 15.0}  # free GPU memory each preset pretends to have
TABLE_HEADER = (
    "| model | device | dtype | preset | batch | steps | ours s/image | diffusers s/image | ours it/s "
    "| diffusers it/s | ours peak memory | diffusers peak memory | ratio ours/diffusers (medians) | same image |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


@torch.no_grad()
def generate_by_hand(pipe, prompts, num_inference_steps, guidance_scale, generator, device):
    """Stable Diffusion's text-to-image loop, as notebook 07 writes it. Returns images in [0, 1].

    The same lines as notebooks/07_sampling_loop_and_schedulers.ipynb's loop,
    plus `.to(device)` for a GPU (the notebook runs on the CPU).
    """
    tokenizer, text_encoder, unet = pipe.tokenizer, pipe.text_encoder, pipe.unet
    vae, scheduler = pipe.vae, pipe.scheduler
    batch_size = len(prompts)

    # 1. Prompt and empty prompt -> text context
    def encode(texts):
        token_ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids  # (B, 77)
        return text_encoder(token_ids.to(device))[0]  # (B, 77, D)

    text_embeddings = encode(prompts)
    uncond_embeddings = encode([""] * batch_size)
    context = torch.cat([uncond_embeddings, text_embeddings])  # (2B, 77, D)

    # 2. The initial latents: seeded noise x the scheduler's starting sigma
    latent_size = unet.config.sample_size
    latents_shape = (batch_size, unet.config.in_channels, latent_size, latent_size)  # (B, 4, H/8, W/8)
    latents = torch.randn(latents_shape, generator=generator, device=generator.device, dtype=context.dtype)
    latents = latents.to(device) * scheduler.init_noise_sigma

    # 3. The timesteps, then the denoising loop with classifier-free guidance
    scheduler.set_timesteps(num_inference_steps, device=device)
    for t in tqdm(scheduler.timesteps, disable=True):
        latent_model_input = torch.cat([latents] * 2)  # (2B, 4, H/8, W/8)
        latent_model_input = scheduler.scale_model_input(latent_model_input, t)
        noise_pred = unet(latent_model_input, t, encoder_hidden_states=context).sample
        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
        noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)
        latents = scheduler.step(noise_pred, t, latents).prev_sample

    # 4. Latents -> image in [0, 1]
    image = vae.decode(latents / vae.config.scaling_factor).sample  # (B, 3, H, W) in [-1, 1]
    return (image / 2 + 0.5).clamp(0, 1)


def generate_with_diffusers(pipe, prompts, num_inference_steps, guidance_scale, generator, device):
    return pipe(prompts, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                generator=generator, output_type="pt").images


class PeakRSS:
    """Peak resident memory of this process while inside the block (samples /proc every 2 ms)."""

    def __enter__(self):
        self.peak_bytes = self.read()
        self.running = True
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.running = False
        self.thread.join()

    def sample(self):
        while self.running:
            self.peak_bytes = max(self.peak_bytes, self.read())
            time.sleep(0.002)

    @staticmethod
    def read():
        try:
            with open("/proc/self/statm") as statm:
                return int(statm.read().split()[1]) * resource.getpagesize()
        except OSError:  # not Linux: the process's peak so far
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_once(method, pipe, args, device):
    """(seconds, peak memory in bytes, images) for one call of `method`."""
    generator = torch.Generator("cpu").manual_seed(args.seed)
    prompts = [PROMPTS[args.model]] * args.batch
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        images = method(pipe, prompts, args.steps, args.guidance, generator, device)
        torch.cuda.synchronize()
        return time.perf_counter() - start, torch.cuda.max_memory_allocated(), images
    with PeakRSS() as peak:
        start = time.perf_counter()
        images = method(pipe, prompts, args.steps, args.guidance, generator, device)
        seconds = time.perf_counter() - start
    return seconds, peak.peak_bytes, images


def load_pipeline(args, device, dtype):
    if args.model == "pocket":
        pipe = sdnotes.load("pocket", device="cpu", dtype=dtype, verbose=False)
    else:
        pipe = build_sd15_architecture(device=device, dtype=dtype)
    measures = []
    if args.preset in PRESET_FREE_GB:
        measures = gpu_memory_measures(PRESET_FREE_GB[args.preset], sdnotes.MODELS["sd15"].min_gpu_memory_gb)
    if args.measures is not None:
        measures = [measure for measure in args.measures.split(",") if measure]
    pipe = apply_gpu_measures(pipe, measures, device, dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe, measures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(DEFAULTS), default="pocket")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the best available)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per method")
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", choices=["none", "t4"], default="none")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: its own)")
    parser.add_argument("--measures", default=None, help="comma-separated, overrides --preset "
                        "(vae_slicing, attention_slicing, model_cpu_offload)")
    args = parser.parse_args()
    default_batch, default_steps, default_repeats = DEFAULTS[args.model]
    args.batch = args.batch or default_batch
    args.steps = args.steps or default_steps
    args.repeats = args.repeats or default_repeats
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or sdnotes.pick_device())
    dtype = sdnotes.pick_dtype(device)

    build_start = time.perf_counter()
    pipe, measures = load_pipeline(args, device, dtype)
    print(f"{args.model} on {device} in {dtype}, measures {measures or 'none'}, built in "
          f"{time.perf_counter() - build_start:.1f} s; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads", flush=True)
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")

    methods = {"ours": generate_by_hand, "diffusers": generate_with_diffusers}
    images = {}
    for name, method in methods.items():  # warm-up, and the images to compare
        _, _, images[name] = run_once(method, pipe, args, device)
    iterations = len(pipe.scheduler.timesteps)  # U-Net calls, as diffusers' progress bar counts (PNDM: steps + 1)
    seconds = {name: [] for name in methods}
    peak_bytes = {name: 0 for name in methods}
    for repeat in range(args.repeats):
        order = ["ours", "diffusers"] if repeat % 2 == 0 else ["diffusers", "ours"]
        for name in order:
            elapsed, peak, _ = run_once(methods[name], pipe, args, device)
            seconds[name].append(elapsed)
            peak_bytes[name] = max(peak_bytes[name], peak)
            print(f"  repeat {repeat + 1}/{args.repeats} {name:9s} {elapsed:.3f} s", flush=True)

    ours_image, diffusers_image = images["ours"].float().cpu(), images["diffusers"].float().cpu()
    identical = torch.equal(ours_image, diffusers_image)
    max_difference = (ours_image - diffusers_image).nan_to_num(0.0).abs().max().item()
    tolerance = 0.0 if device.type == "cpu" else 1e-3
    assert ours_image.shape == diffusers_image.shape, (ours_image.shape, diffusers_image.shape)
    assert torch.equal(ours_image.isnan(), diffusers_image.isnan()), "NaNs in different places"
    assert max_difference <= tolerance, f"the two loops differ by up to {max_difference:g}"

    median = {name: statistics.median(values) for name, values in seconds.items()}
    ratio = median["ours"] / median["diffusers"]
    # each repeat ran the two back to back, so a pair saw the same machine load
    paired_ratios = [ours / theirs for ours, theirs in zip(seconds["ours"], seconds["diffusers"])]
    paired_ratio = statistics.median(paired_ratios)
    memory_kind = "GPU allocated" if device.type == "cuda" else "RSS"
    for name in methods:
        print(f"{name:9s} median {median[name]:.3f} s per call ({median[name] / args.batch:.3f} s per image, "
              f"{iterations / median[name]:.2f} it/s), best {min(seconds[name]):.3f} s, peak {memory_kind} "
              f"{peak_bytes[name] / 1e9:.2f} GB; all: {', '.join(f'{value:.3f}' for value in seconds[name])}")
    print(f"{iterations} U-Net calls of batch {2 * args.batch} per image batch")
    print(f"ratio ours/diffusers {ratio:.3f} of medians, {paired_ratio:.3f} median of back-to-back pairs, "
          f"{min(seconds['ours']) / min(seconds['diffusers']):.3f} of best times (target <= 1.05); same image: {identical} "
          f"(max difference {max_difference:.2g}); process peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")
    print()
    print(TABLE_HEADER)
    print(f"| {args.model} | {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'} "
          f"| {str(dtype).replace('torch.', '')} | {args.preset if args.measures is None else args.measures} "
          f"| {args.batch} | {args.steps} | {median['ours'] / args.batch:.3f} | {median['diffusers'] / args.batch:.3f} "
          f"| {iterations / median['ours']:.2f} | {iterations / median['diffusers']:.2f} "
          f"| {peak_bytes['ours'] / 1e9:.2f} GB {memory_kind} | {peak_bytes['diffusers'] / 1e9:.2f} GB {memory_kind} "
          f"| {ratio:.3f} (pairs {paired_ratio:.3f}) | {'yes' if identical else f'within {max_difference:.1g}'} |")
    if ratio > 1.05:
        print(f"warning: ratio {ratio:.3f} is above the 1.05 target", file=sys.stderr)


if __name__ == "__main__":
    main()
