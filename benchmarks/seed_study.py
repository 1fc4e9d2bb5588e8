"""Notebook 09's seed study, bigger: do seeds matter for the pocket model?

A small-scale reproduction of four findings of the seed study in arXiv
2405.14828 ("Good Seed Makes a Good Crop: Discovering Secret Seeds in
Text-to-Image Diffusion Models", 2024), which generated 46,104,576 images
(22,512 prompts x 1,024 seeds x 2 models). Here: N seeds x two disjoint sets
of P pocket prompts, DDIM with eta 0 (so the seed's only job is the initial
latent), judged by the pocket judge (sdnotes.pocket.judge).

  (a) per-seed quality (judge probability of the prompted object; CLIP score)
      ranked on prompt set A carries over to set B? Spearman rank correlation,
      with a permutation p-value; plus a split-half check of set A against
      itself, which shows how noisy a per-seed score is at this size.
  (b) the top-k "golden" seeds of set A against random seeds on set B.
  (c) layout follows the seed: correlation of the object's x-position for the
      same seed across prompts (against a shuffled baseline), and how well a
      nearest-template "seed classifier" recognises the seed of a set-B image
      from set-A layouts (chance = 1 / N).
  (d) k seeds picked by farthest-point sampling in set-A layout features are
      more diverse on set B than k random seeds?

    python benchmarks/seed_study.py                   # 64 seeds x 2 x 4 prompts, 10 steps, guidance 7.5
    python benchmarks/seed_study.py --seeds 16 --prompts-per-set 4   # the notebook's size

Prints the numbers (results: benchmarks/seed_study.md). CPU only; needs this
repository on PYTHONPATH (it inserts itself) and the pocket model in
assets/pocket. Deterministic for given arguments (on one machine).
"""

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch
from diffusers import DDIMScheduler
from PIL import Image
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import sdnotes  # noqa: E402
from sdnotes.exercises.nb09 import farthest_points  # noqa: E402  (the reference answer to notebook 09's exercise)
from sdnotes.pocket import data  # noqa: E402
from sdnotes.pocket.judge import PocketJudge, foreground_mask  # noqa: E402



def prompt_sets(prompts_per_set):
    """Two disjoint sets of pocket prompts: even- and odd-numbered objects."""
    if 2 * prompts_per_set > len(data.OBJECTS):
        raise ValueError(f"at most {len(data.OBJECTS) // 2} prompts per set, got {prompts_per_set}")
    objects_a = data.OBJECTS[0::2][:prompts_per_set]
    objects_b = data.OBJECTS[1::2][:prompts_per_set]
    return objects_a, objects_b


def prompt_for(name):
    return f"{data.article(name)} {name}"


def initial_latents(pipe, seeds):
    """(N, C, h, w): the latent each seed gives, exactly as pipe(generator=seed) draws it."""
    shape = (1, pipe.vae.config.latent_channels, pipe.unet.config.sample_size, pipe.unet.config.sample_size)
    latents = []
    for seed in seeds:
        latents.append(torch.randn(shape, generator=torch.Generator().manual_seed(seed)))
    return torch.cat(latents)


def generate(pipe, prompts, latents, steps, guidance_scale, batch_images):
    """(P, N, 3, H, W) images in [0, 1]: every prompt with every seed's latent
    (benchmarks/seed_classifier.py uses it too)."""
    jobs = []
    for prompt in prompts:
        for seed_index in range(len(latents)):
            jobs.append((prompt, seed_index))
    images = []
    for start in tqdm(range(0, len(jobs), batch_images), desc=f"{len(jobs)} images"):
        chunk = jobs[start:start + batch_images]
        chunk_prompts = [prompt for prompt, _ in chunk]
        chunk_latents = torch.cat([latents[index:index + 1] for _, index in chunk])
        with torch.no_grad():
            output = pipe(chunk_prompts, latents=chunk_latents, num_inference_steps=steps,
                          guidance_scale=guidance_scale, eta=0.0, output_type="pt")
        images.append(output.images.float())
    images = torch.cat(images)
    return images.reshape(len(prompts), len(latents), *images.shape[1:])


def quality(judge, images, objects):
    """(P, N) judge probability of the prompted object, and (P, N) CLIP score."""
    number_of_prompts, number_of_seeds = images.shape[:2]
    flat = images.flatten(0, 1)
    probabilities = judge.object_probabilities(flat).reshape(number_of_prompts, number_of_seeds, -1)
    object_probability = torch.empty(number_of_prompts, number_of_seeds)
    prompts = []
    for prompt_index, name in enumerate(objects):
        object_probability[prompt_index] = probabilities[prompt_index, :, data.OBJECTS.index(name)]
        prompts.extend([prompt_for(name)] * number_of_seeds)
    clip_score = judge.clip_score(flat, prompts).reshape(number_of_prompts, number_of_seeds)
    return object_probability, clip_score


def foreground_masks(images):
    """(B, H, W) 1 where a pixel belongs to an object: the judge's foreground_mask of each (3, H, W) image in [0, 1]."""
    masks = []
    for image in images:
        pixels = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()  # (H, W, 3)
        masks.append(torch.from_numpy(foreground_mask(Image.fromarray(pixels))))
    return torch.stack(masks).float()


def layout_features(images):
    """(B, 3): centre x, centre y (0 = left/top, 1 = right/bottom) and size (sqrt of the foreground share)."""
    masks = foreground_masks(images)
    _, height, width = masks.shape
    xs = (torch.arange(width) + 0.5) / width
    ys = (torch.arange(height) + 0.5) / height
    mass = masks.sum(dim=(1, 2)).clamp(min=1)
    centre_x = (masks.sum(dim=1) * xs).sum(dim=1) / mass
    centre_y = (masks.sum(dim=2) * ys).sum(dim=1) / mass
    size = masks.mean(dim=(1, 2)).sqrt()
    return torch.stack([centre_x, centre_y, size], dim=1)


def ranks(values):
    order = values.argsort()
    result = torch.empty_like(values)
    result[order] = torch.arange(len(values), dtype=values.dtype)
    return result


def pearson(a, b):
    a = a - a.mean()
    b = b - b.mean()
    return ((a * b).sum() / (a.norm() * b.norm())).item()


def spearman(a, b):
    return pearson(ranks(a.double()), ranks(b.double()))


def permutation_p_value(a, b, statistic, permutations, generator):
    """Share of seed shufflings whose statistic is at least the observed one (one-sided)."""
    observed = statistic(a, b)
    at_least = 0
    for _ in range(permutations):
        shuffled = b[torch.randperm(len(b), generator=generator)]
        if statistic(a, shuffled) >= observed:
            at_least += 1
    return (at_least + 1) / (permutations + 1)


def farthest_points_from_the_edge(features, k):
    """k row indices, greedily: start farthest from the mean, then the point farthest from those chosen
    (notebook 09's exercise writes the greedy step; its reference answer is used here)."""
    start = int((features - features.mean(dim=0)).norm(dim=1).argmax())
    return farthest_points(features, k, start)


def diversity(layouts, seed_indices):
    """Mean pairwise layout distance among the chosen seeds' images, averaged over prompts. layouts: (P, N, F)."""
    chosen = layouts[:, seed_indices, :]  # (P, k, F)
    distances = (chosen[:, :, None, :] - chosen[:, None, :, :]).norm(dim=-1)  # (P, k, k)
    k = len(seed_indices)
    return (distances.sum(dim=(1, 2)) / (k * (k - 1))).mean().item()


def random_subsets(number_of_seeds, k, count, generator):
    """`count` random k-subsets of range(number_of_seeds), or all of them if there are fewer."""
    total = 1
    for index in range(k):
        total = total * (number_of_seeds - index) // (index + 1)
    if total <= count:
        return [list(subset) for subset in itertools.combinations(range(number_of_seeds), k)]
    subsets = []
    for _ in range(count):
        subsets.append(torch.randperm(number_of_seeds, generator=generator)[:k].tolist())
    return subsets


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=64, help="seeds 0 .. N-1")
    parser.add_argument("--prompts-per-set", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps (eta 0)")
    parser.add_argument("--guidance", type=float, default=sdnotes.MODELS["pocket"].default_guidance,
                        help="classifier-free guidance scale (default: the pocket model's, as shipped)")
    parser.add_argument("--golden-k", type=int, default=8)
    parser.add_argument("--diverse-k", type=int, default=4)
    parser.add_argument("--batch-images", type=int, default=64)
    parser.add_argument("--permutations", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    start_wall = time.time()
    start_cpu = time.process_time()

    pipe = sdnotes.load("pocket", device="cpu", dtype=torch.float32, verbose=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    judge = PocketJudge()
    seeds = list(range(arguments.seeds))
    latents = initial_latents(pipe, seeds)
    objects_a, objects_b = prompt_sets(arguments.prompts_per_set)
    images_a = generate(pipe, [prompt_for(name) for name in objects_a], latents, arguments.steps, arguments.guidance, arguments.batch_images)
    images_b = generate(pipe, [prompt_for(name) for name in objects_b], latents, arguments.steps, arguments.guidance, arguments.batch_images)
    generation_wall = time.time() - start_wall
    probability_a, clip_a = quality(judge, images_a, objects_a)
    probability_b, clip_b = quality(judge, images_b, objects_b)
    layouts_a = layout_features(images_a.flatten(0, 1)).reshape(len(objects_a), len(seeds), -1)
    layouts_b = layout_features(images_b.flatten(0, 1)).reshape(len(objects_b), len(seeds), -1)
    generator = torch.Generator().manual_seed(0)
    number_of_seeds = len(seeds)
    half = len(objects_a) // 2

    print(f"# seed study: {number_of_seeds} seeds x 2 sets x {len(objects_a)} prompts = "
          f"{2 * number_of_seeds * len(objects_a)} images, DDIM {arguments.steps} steps (eta 0), "
          f"guidance {arguments.guidance}")
    print(f"set A: {[prompt_for(name) for name in objects_a]}")
    print(f"set B: {[prompt_for(name) for name in objects_b]}")
    print(f"judge names the prompted object: set A {(probability_a > 0.5).float().mean():.1%}, "
          f"set B {(probability_b > 0.5).float().mean():.1%}; mean probability A {probability_a.mean():.3f}, "
          f"B {probability_b.mean():.3f}")

    print("\n## (a) does per-seed quality carry over from set A to set B?")
    for name, score_a, score_b in (("judge probability", probability_a, probability_b),
                                   ("CLIP score", clip_a, clip_b)):
        per_seed_a = score_a.mean(dim=0)
        per_seed_b = score_b.mean(dim=0)
        rho = spearman(per_seed_a, per_seed_b)
        p_value = permutation_p_value(per_seed_a, per_seed_b, spearman, arguments.permutations, generator)
        split_half = spearman(score_a[:half].mean(dim=0), score_a[half:].mean(dim=0))
        print(f"{name}: Spearman A vs B = {rho:+.3f} (one-sided permutation p = {p_value:.3f}); "
              f"split-half within A (prompts 1-{half} vs {half + 1}-{len(objects_a)}) = {split_half:+.3f}; "
              f"per-seed spread (std of seed means) A {per_seed_a.std():.3f}, B {per_seed_b.std():.3f}")

    print(f"\n## (b) golden seeds: the top {arguments.golden_k} of set A, scored on set B")
    subsets = random_subsets(number_of_seeds, arguments.golden_k, 5000, generator)
    for name, score_a, score_b in (("judge probability", probability_a, probability_b),
                                   ("CLIP score", clip_a, clip_b)):
        per_seed_a = score_a.mean(dim=0)
        per_seed_b = score_b.mean(dim=0)
        order = per_seed_a.argsort(descending=True)
        golden = order[:arguments.golden_k].tolist()
        worst = order[-arguments.golden_k:].tolist()
        golden_b = per_seed_b[golden].mean().item()
        random_means = torch.tensor([per_seed_b[subset].mean().item() for subset in subsets])
        beaten = (random_means < golden_b).float().mean().item()
        print(f"{name}: golden seeds {sorted(golden)} -> set B mean {golden_b:.3f}; worst {arguments.golden_k} "
              f"-> {per_seed_b[worst].mean():.3f}; all seeds (= random seeds on average) {per_seed_b.mean():.3f}; "
              f"golden beats {beaten:.0%} of random {arguments.golden_k}-seed sets")

    print("\n## (c) layout follows the seed")
    all_layouts = torch.cat([layouts_a, layouts_b])  # (2P, N, 3)
    number_of_prompts = len(all_layouts)
    for feature_index, feature_name in enumerate(("centre x", "centre y", "size")):
        values = all_layouts[:, :, feature_index]
        same_seed = []
        shuffled = []
        for first in range(number_of_prompts):
            for second in range(first + 1, number_of_prompts):
                same_seed.append(pearson(values[first], values[second]))
                permutation = torch.randperm(number_of_seeds, generator=generator)
                shuffled.append(pearson(values[first], values[second][permutation]))
        same_seed = torch.tensor(same_seed)
        shuffled = torch.tensor(shuffled)
        print(f"{feature_name}: mean correlation across prompt pairs, same seed {same_seed.mean():+.3f} "
              f"(min {same_seed.min():+.2f}, max {same_seed.max():+.2f}); seeds shuffled {shuffled.mean():+.3f}")
    centre_x = all_layouts[:, :, 0]
    upper = torch.triu_indices(number_of_prompts, number_of_prompts, 1)
    same_seed_gap = (centre_x[:, None, :] - centre_x[None, :, :]).abs()[upper[0], upper[1]].mean()
    seed_pairs = torch.triu_indices(number_of_seeds, number_of_seeds, 1)
    same_prompt_gap = (centre_x[:, :, None] - centre_x[:, None, :]).abs()[:, seed_pairs[0], seed_pairs[1]].mean()
    print(f"mean |difference in centre x|: same seed, different prompt {same_seed_gap:.3f}; "
          f"same prompt, different seed {same_prompt_gap:.3f} (image width = 1)")
    templates = layouts_a.mean(dim=0)  # (N, 3)
    distances = (layouts_b[:, :, None, :] - templates[None, None, :, :]).norm(dim=-1)  # (P, N, N)
    accuracy = (distances.argmin(dim=-1) == torch.arange(number_of_seeds)).float().mean()
    masks_a = torch.nn.functional.avg_pool2d(foreground_masks(images_a.flatten(0, 1))[:, None], 8)
    masks_b = torch.nn.functional.avg_pool2d(foreground_masks(images_b.flatten(0, 1))[:, None], 8)
    mask_templates = masks_a.reshape(len(objects_a), number_of_seeds, -1).mean(dim=0)  # (N, pixels)
    mask_distances = (masks_b.reshape(len(objects_b), number_of_seeds, 1, -1) - mask_templates[None, None]).norm(dim=-1)
    mask_accuracy = (mask_distances.argmin(dim=-1) == torch.arange(number_of_seeds)).float().mean()
    print(f"nearest-template seed classifier, set-A templates -> set-B images: layout features "
          f"{accuracy:.1%}, foreground masks {mask_accuracy:.1%}; chance {1 / number_of_seeds:.1%}")

    print(f"\n## (d) {arguments.diverse_k} seeds by farthest-point sampling in set-A layout features")
    chosen = farthest_points_from_the_edge(layouts_a.mean(dim=0), arguments.diverse_k)
    chosen_diversity = diversity(layouts_b, chosen)
    subsets = random_subsets(number_of_seeds, arguments.diverse_k, 5000, generator)
    random_diversities = torch.tensor([diversity(layouts_b, subset) for subset in subsets])
    beaten = (random_diversities < chosen_diversity).float().mean().item()
    print(f"chosen seeds {chosen}: set-B layout diversity {chosen_diversity:.3f}; random "
          f"{arguments.diverse_k} seeds {random_diversities.mean():.3f} (std {random_diversities.std():.3f}); "
          f"farthest-point beats {beaten:.0%} of random sets")

    print(f"\ntime: generation {generation_wall:.0f} s wall; total {time.time() - start_wall:.0f} s wall, "
          f"{time.process_time() - start_cpu:.0f} s CPU (this process), {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
