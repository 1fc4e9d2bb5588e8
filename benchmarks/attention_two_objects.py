"""Where does the pocket model put two objects' words? The measurement behind notebook 05's section 3.

For prompts of the pocket model's training form "X on the left and Y on the
right" (5 object pairs, both orders), this generates pictures with the
notebook's settings (DDIM, 15 steps, guidance 7.5, one CPU generator per seed)
while `sdnotes.attention.capture_cross_attention` records the cross-attention
maps, and reports, for the conditional half of the batch, the share of a map's
mass that lies in the half of the picture where its object was asked for:

1. down + up block layers (the notebook's per-word maps), each word's map;
2. the same, with the maps restricted to the word tokens and renormalised over
   them per pixel (as prompt-to-prompt leaves out the start token);
3. the middle block: the first object's word map, and the end token's map for
   the second object.

A map that follows its object has a share above 0.5; 0.5 is no preference.

    python benchmarks/attention_two_objects.py              # seeds 0-7, about a minute on 2 cores
    python benchmarks/attention_two_objects.py --first-seed 100

References: Hertz et al. 2022 (prompt-to-prompt), Tang et al. 2023 (DAAM).
"""

import argparse
import time

import torch
from diffusers import DDIMScheduler

import sdnotes
from sdnotes.attention import capture_cross_attention
from sdnotes.attention_maps import aggregate_maps, token_indices
from sdnotes.attention_store import CrossAttentionStore
from sdnotes.pocket import data

PAIRS = [("cat face", "rocket"), ("ghost", "sunflower"), ("banana", "penguin"),
         ("dog face", "umbrella"), ("red apple", "octopus")]
NUM_STEPS = 15
GUIDANCE_SCALE = 7.5


def left_half_share(maps):
    # (..., res, res) -> (...): share of each map's mass in the left half
    half = maps.shape[-1] // 2
    return maps[..., :half].sum(dim=(-2, -1)) / maps.sum(dim=(-2, -1))


def share_in_object_half(maps, side):
    share = left_half_share(maps)
    return share if side == "left" else 1 - share


def measure_prompt(pipe, left_object, right_object, seeds):
    prompt = f"{data.article(left_object)} {left_object} on the left and {data.article(right_object)} {right_object} on the right"
    store = CrossAttentionStore()
    generators = [sdnotes.make_generator(seed) for seed in seeds]
    with capture_cross_attention(pipe, store):
        pipe([prompt] * len(seeds), num_inference_steps=NUM_STEPS, guidance_scale=GUIDANCE_SCALE, generator=generators)
    resolution = pipe.unet.config.sample_size
    batch = len(seeds)
    down_up = [name for name in store.layer_names if not name.startswith("mid_block")]
    mid = [name for name in store.layer_names if name.startswith("mid_block")]
    maps = aggregate_maps(store, resolution, layer_names=down_up)[batch:]  # (B, 77, res, res), with the prompt
    mid_maps = aggregate_maps(store, resolution, layer_names=mid)[batch:]  # (B, 77, res, res)
    end_position = len(pipe.tokenizer(prompt).input_ids) - 1
    words = maps[:, 1:end_position]  # (B, words, res, res)
    words = words / words.sum(dim=1, keepdim=True).clamp_min(1e-12)  # renormalised over the words, per pixel

    results = {"down+up, word map": [], "down+up, word map renormalised over words": []}
    for obj, side in ((left_object, "left"), (right_object, "right")):
        positions = token_indices(pipe.tokenizer, prompt, obj)
        results["down+up, word map"].append(share_in_object_half(maps[:, positions].sum(dim=1), side))
        word_positions = [position - 1 for position in positions]
        results["down+up, word map renormalised over words"].append(
            share_in_object_half(words[:, word_positions].sum(dim=1), side))
    first_positions = token_indices(pipe.tokenizer, prompt, left_object)
    results["mid block, first word (left object) and end token (right object)"] = [
        share_in_object_half(mid_maps[:, first_positions].sum(dim=1), "left"),
        share_in_object_half(mid_maps[:, end_position], "right"),
    ]
    return {name: torch.cat(values) for name, values in results.items()}  # each (2B,)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8, help="seeds per prompt (default 8)")
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    start = time.perf_counter()
    pipe = sdnotes.load("pocket")
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    totals = {}
    for first, second in PAIRS:
        for left_object, right_object in ((first, second), (second, first)):
            for name, shares in measure_prompt(pipe, left_object, right_object, seeds).items():
                totals.setdefault(name, []).append(shares)
    print(f"\n{2 * len(PAIRS)} prompts x seeds {seeds[0]}-{seeds[-1]}, DDIM {NUM_STEPS} steps, guidance {GUIDANCE_SCALE}")
    print("| maps | share of the map in its object's half (mean ± std) | maps with share > 0.5 |")
    print("|---|---|---|")
    for name, values in totals.items():
        shares = torch.cat(values)
        print(f"| {name} | {shares.mean():.3f} ± {shares.std():.3f} | {int((shares > 0.5).sum())} / {len(shares)} |")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
