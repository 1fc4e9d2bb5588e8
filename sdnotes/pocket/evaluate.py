"""Measure the shipped pocket model: `python -m sdnotes.pocket.evaluate`.

Prints and writes (assets/pocket/evaluation.json) the numbers quoted in the
model card, and draws assets/pocket/samples.png (8 prompts x 4 seeds):
  - object: the judge names the prompted object (single-object prompts, held-out
    seeds, 25 DDIM steps) at guidance 7.5, at guidance 1 (no guidance) and for
    the empty prompt (chance is 1 / number of objects);
  - position: "... on the left/right" prompts land on the asked side;
  - vae: PSNR of reconstructions of held-out scenes;
  - speed: one batch of 4 images, 25 steps with guidance, on this CPU.
"""

import argparse
import json
import pathlib
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from sdnotes.paths import POCKET_DIR
from sdnotes.pocket import data
from sdnotes.pocket.judge import PocketJudge, object_side

EVALUATION_SEED = 20_000_000  # held out: training used scene seeds 0..149,999
SAMPLE_PROMPTS = [
    "a cat face",
    "a red apple on the left",
    "a rocket on a blue background",
    "a big banana",
    "a ghost on the left and a sunflower on the right",
    "a small penguin",
    "an octopus on the right",
    "a frog face and a slice of pizza",
]


def load_pipeline(folder):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompts, seeds, guidance_scale, steps=25):
    # CPU generators: the same initial noise whatever device runs the model
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    return pipe(prompts, num_inference_steps=steps, guidance_scale=guidance_scale, generator=generators).images


def object_accuracy(pipe, judge, seeds_per_object, guidance_scale, empty_prompt=False):
    correct = 0
    total = 0
    for index, name in enumerate(tqdm(data.OBJECTS, desc=f"objects, guidance {guidance_scale}")):
        prompt = "" if empty_prompt else f"{data.article(name)} {name}"
        seeds = [EVALUATION_SEED + 100 * index + k for k in range(seeds_per_object)]
        images = generate(pipe, [prompt] * len(seeds), seeds, guidance_scale)
        for label in judge.classify(images):
            correct += label == name
            total += 1
    return correct / total, total


def position_accuracy(pipe, seeds_per_prompt):
    correct = 0
    total = 0
    for index, name in enumerate(tqdm(data.OBJECTS, desc="positions")):
        for side in ["left", "right"]:
            prompt = f"{data.article(name)} {name} on the {side}"
            seeds = [EVALUATION_SEED + 5000 + 100 * index + k for k in range(seeds_per_prompt)]
            for image in generate(pipe, [prompt] * len(seeds), seeds, 7.5):
                correct += object_side(image) == side
                total += 1
    return correct / total, total


@torch.no_grad()
def vae_psnr(pipe, count=64):
    images, _ = data.render_batch(range(EVALUATION_SEED, EVALUATION_SEED + count))
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float().to(pipe.device) / 127.5 - 1  # (N, 3, H, W)
    latents = pipe.vae.encode(pixels).latent_dist.mean  # (N, 4, H/8, W/8)
    reconstruction = pipe.vae.decode(latents).sample.clamp(-1, 1)
    mse = ((reconstruction - pixels) / 2).pow(2).mean(dim=(1, 2, 3))
    return (10 * torch.log10(1 / mse)).mean().item()


def speed(pipe, repeats=3):
    generate(pipe, ["a cat face"] * 4, [0, 1, 2, 3], 7.5)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        generate(pipe, ["a cat face"] * 4, [0, 1, 2, 3], 7.5)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def draw_samples(pipe, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(SAMPLE_PROMPTS), 4, figsize=(6.4, 13.6), dpi=100)
    for row, prompt in enumerate(SAMPLE_PROMPTS):
        images = generate(pipe, [prompt] * 4, [0, 1, 2, 3], 7.5)
        for column, image in enumerate(images):
            axis = axes[row, column]
            axis.imshow(image)
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_title(f'"{prompt}"', loc="left", fontsize=9)
    figure.suptitle("The pocket model: 8 prompts x seeds 0-3 (25 DDIM steps, guidance 7.5)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default=str(POCKET_DIR))
    parser.add_argument("--seeds", type=int, default=8, help="held-out seeds per prompt (default 8)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the bar is set for 2 cores)")
    parser.add_argument("--device", default="cpu", help="where to generate (quality numbers); speed is always measured on the CPU")
    parser.add_argument("--only", choices=["all", "speed", "quality"], default="all",
                        help="speed: only the CPU timing; quality: everything but the timing")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = pathlib.Path(args.folder)
    pipe = load_pipeline(folder)
    path = folder / "evaluation.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if args.only in ("all", "speed"):
        results["speed_4_images_25_steps_cfg_s"] = round(speed(pipe), 2)
        results["speed_measured_on"] = f"CPU, {args.threads} threads"
        print(f"speed: {results['speed_4_images_25_steps_cfg_s']} s for 4 images, 25 steps, guidance 7.5")
        if args.only == "speed":
            path.write_text(json.dumps(results, indent=2))
            return
    pipe.to(args.device)
    judge = PocketJudge(text_encoder_dir=folder / "text_encoder", device=args.device)
    results.update({"seeds_per_prompt": args.seeds, "steps": 25, "scheduler": "DDIMScheduler",
                    "quality_measured_on": args.device})
    results["vae_psnr_db"] = round(vae_psnr(pipe), 2)
    print(f"vae: held-out PSNR {results['vae_psnr_db']} dB")
    for label, guidance, empty in [("guidance_7.5", 7.5, False), ("guidance_1", 1.0, False), ("empty_prompt", 7.5, True)]:
        accuracy, count = object_accuracy(pipe, judge, args.seeds, guidance, empty)
        results[f"object_accuracy_{label}"] = round(accuracy, 3)
        print(f"object named by the judge, {label}: {accuracy:.3f} of {count} (chance {1 / len(data.OBJECTS):.3f})")
    accuracy, count = position_accuracy(pipe, max(2, args.seeds // 2))
    results["position_accuracy"] = round(accuracy, 3)
    print(f"position on the asked side: {accuracy:.3f} of {count}")
    path.write_text(json.dumps(results, indent=2))
    draw_samples(pipe, folder / "samples.png")
    print(f"wrote {folder / 'evaluation.json'} and {folder / 'samples.png'}")


if __name__ == "__main__":
    main()
