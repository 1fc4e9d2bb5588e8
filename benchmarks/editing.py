"""Editing a picture on the pocket model: the measurements behind notebook 10's claims.

Every function this script measures is notebook 10's own: it reads their
definitions (`render`, `encode_text`, `invert`, `null_text_inversion`,
`token_alignment`, `PromptToPrompt`, `LocalBlend`, `edit_pair`, ...) and its
parameters cell (20 DDIM steps, guidance 7.5, null-text inversion with 2 Adam
steps at learning rate 0.03, the replacement fractions, the blend threshold)
from notebooks/10_editing.ipynb, and runs them on more pictures than the
notebook does. One home for the code: change the notebook, and this measures
the change. One PyTorch thread; CPU seconds are the process's own.

1. reconstruction (writes benchmarks/results/editing_reconstruction.json):
   4 rendered two-object scenes ("X on the left and Y on the right" on blue)
   are inverted and regenerated; PSNR (dB) against the VAE round trip, by
   guidance scale, by number of steps (10, 20, 50), and for null-text
   inversion by the number of Adam steps per denoising step (0, 1, 2, 5),
   with the CPU seconds it took;
2. prompt-to-prompt (writes benchmarks/results/editing.json): 32 edits: 16
   rendered two-object scenes (objects drawn at random with seed 0, the six
   backgrounds in turn), each inverted once (DDIM + null-text inversion), and
   two new objects for each scene's left object. Every edit is made with the
   notebook's configurations (no injection; cross-attention replaced for the
   first 80% of the steps; + self-attention for the first 40%; + local
   blending, at the reference code's threshold and at the notebook's) and with
   SDEdit at strengths 0.5 to 0.9. Per edit: kept = the share of the pixels
   farther than 6 px from the old object (the other object and the
   background) that moved by at most 0.1 in every channel; new named = the
   pocket judge names the new object in the left half; other named = it still
   names the other object in the right half. The bar (issue #23): with the full
   method, kept >= 0.85 on average and the new object named in >= 80% of the
   edits, and more kept than SDEdit at the strengths that name the new object
   as often;
3. local blending's threshold (writes benchmarks/results/editing_threshold.json):
   8 held-out scenes (drawn with seed 1, none of part 2's), one edit each,
   the full method at thresholds 0.3 (the reference's) to 0.8: kept, named,
   and the share of the picture the final mask covers. The notebook's
   BLEND_THRESHOLD was chosen from this table, not from part 2's.

    python benchmarks/editing.py                 # all three parts
    python benchmarks/editing.py --parts 2       # prompt-to-prompt only

References: Song et al. 2021 (DDIM); Mokady et al. 2023 (null-text inversion);
Hertz et al. 2022 (prompt-to-prompt) and its code, github.com/google/prompt-to-prompt;
Meng et al. 2021 (SDEdit).
"""

import argparse
import ast
import datetime
import difflib
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import diffusers
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMInverseScheduler, DDIMScheduler, StableDiffusionImg2ImgPipeline
from PIL import Image
from tqdm.auto import tqdm

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # this checkout's sdnotes

import sdnotes  # noqa: E402
from sdnotes.attention import CONTEXT_LENGTH, control_attention, cross_attention_layer_names  # noqa: E402
from sdnotes.attention import layer_downsampling  # noqa: E402
from sdnotes.attention_maps import token_indices  # noqa: E402
from sdnotes.pocket import data  # noqa: E402
from sdnotes.pocket.judge import PocketJudge  # noqa: E402

NOTEBOOK = REPO_ROOT / "notebooks" / "10_editing.ipynb"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
NOTEBOOK_DEFINITIONS = [
    "render", "encode_text", "encode_picture", "decode", "invert", "regenerate", "psnr", "null_text_inversion",
    "token_ids", "token_alignment", "PromptToPrompt", "LocalBlend", "blend_layer_names", "edit_pair",
    "region_to_keep", "kept_share",
]
SETTINGS = ["NUM_STEPS", "GUIDANCE_SCALE", "NULL_TEXT_ITERATIONS", "NULL_TEXT_LEARNING_RATE", "CROSS_REPLACE_FRACTION",
            "SELF_REPLACE_FRACTION", "BLEND_THRESHOLD", "REFERENCE_BLEND_THRESHOLD", "TOLERANCE"]
GUIDANCE_SCALES = [1.0, 2.0, 3.0, 5.0, 7.5]  # part 1 sweeps these, more than the notebook runs
STEP_COUNTS = [10, 20, 50]
NULL_TEXT_ITERATIONS = [0, 1, 2, 5]
RECONSTRUCTION_PAIRS = [("cat face", "rocket"), ("banana", "penguin"), ("ghost", "bicycle"), ("red apple", "octopus")]
SCENES = 16
NEW_OBJECTS_PER_SCENE = 2
SDEDIT_STRENGTHS = [0.5, 0.6, 0.7, 0.8, 0.9]
BAR_KEPT = 0.85
BAR_NAMED = 0.8
HELD_OUT_SCENES = 8  # part 3: scenes drawn with seed 1, none of part 2's
BLEND_THRESHOLDS = [0.3, 0.5, 0.6, 0.7, 0.8]


def notebook_definitions(names, namespace):
    """Run the notebook's top-level `def`s and `class`es with these names in `namespace` (nothing else of it)."""
    notebook = json.loads(NOTEBOOK.read_text())
    sources = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        try:
            tree = ast.parse(source)
        except SyntaxError:  # IPython-only lines (the Colab setup cell)
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
                sources[node.name] = ast.get_source_segment(source, node)
    missing = [name for name in names if name not in sources]
    if missing:
        raise RuntimeError(f"{NOTEBOOK} no longer defines {missing}: update NOTEBOOK_DEFINITIONS in {__file__}")
    for name in names:
        exec(compile(sources[name], f"{NOTEBOOK.name}:{name}", "exec"), namespace)
    return namespace


def notebook_parameters(namespace):
    """Run the notebook's parameters cell (MODEL, NUM_STEPS, ...) in `namespace`; check SETTINGS are there."""
    notebook = json.loads(NOTEBOOK.read_text())
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.startswith('MODEL = os.environ.get("SDNOTES_MODEL"'):
            exec(compile(source, f"{NOTEBOOK.name}:parameters", "exec"), namespace)
            break
    missing = [name for name in SETTINGS if name not in namespace]
    if missing:
        raise RuntimeError(f"{NOTEBOOK}'s parameters cell no longer sets {missing}: update SETTINGS in {__file__}")
    return namespace


def quiet_bar(iterable, **kwargs):
    """The notebook's inner progress bars, silenced (this script shows its own)."""
    return iterable


def notebook_namespace():
    """The notebook's globals after its loading cells, and its functions."""
    namespace = {"torch": torch, "F": F, "np": np, "Image": Image, "math": math, "difflib": difflib,
                 "tqdm": quiet_bar, "DDIMScheduler": DDIMScheduler, "DDIMInverseScheduler": DDIMInverseScheduler,
                 "control_attention": control_attention, "cross_attention_layer_names": cross_attention_layer_names,
                 "layer_downsampling": layer_downsampling, "CONTEXT_LENGTH": CONTEXT_LENGTH, "sdnotes": sdnotes}
    namespace["os"] = os
    notebook_parameters(namespace)
    pipe = sdnotes.load("pocket")
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False)
    pipe.set_progress_bar_config(disable=True)
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components, requires_safety_checker=False)
    img2img.set_progress_bar_config(disable=True)
    vae_factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    namespace.update(pipe=pipe, img2img=img2img, tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder,
                     unet=pipe.unet, vae=pipe.vae, vae_factor=vae_factor, scaling_factor=pipe.vae.config.scaling_factor,
                     height=pipe.unet.config.sample_size * vae_factor, width=pipe.unet.config.sample_size * vae_factor,
                     inverse_config={key: value for key, value in pipe.scheduler.config.items()
                                     if key != "skip_prk_steps"})
    notebook_definitions(NOTEBOOK_DEFINITIONS, namespace)
    namespace["empty_embeddings"] = namespace["encode_text"]([""])
    return namespace


def two_object_prompt(left_object, right_object):
    left = f"{data.article(left_object)} {left_object}"
    right = f"{data.article(right_object)} {right_object}"
    return f"{left} on the left and {right} on the right"


def to_tensor(picture):
    return torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255).permute(2, 0, 1)  # (3, H, W)


def mean_std(values):
    if len(values) < 2:
        return values[0], 0.0
    return statistics.mean(values), statistics.stdev(values)


def environment():
    return {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {torch.get_num_threads()} "
            "PyTorch thread(s)", "torch": torch.__version__, "diffusers": diffusers.__version__}


def part_reconstruction(nb, out):
    print("\n## 1. Reconstruction (PSNR in dB against the VAE round trip), rendered two-object scenes")
    steps, guidance = nb["NUM_STEPS"], nb["GUIDANCE_SCALE"]
    by_guidance = {scale: [] for scale in GUIDANCE_SCALES}
    by_steps = {(count, scale): [] for count in STEP_COUNTS for scale in (1.0, guidance)}
    by_iterations = {iterations: [] for iterations in NULL_TEXT_ITERATIONS}
    seconds = {iterations: [] for iterations in NULL_TEXT_ITERATIONS}
    for old, kept in tqdm(RECONSTRUCTION_PAIRS, desc="scenes"):
        picture = nb["render"]([(old, 0.26), (kept, 0.74)], "blue")
        prompt_embeddings = nb["encode_text"]([two_object_prompt(old, kept)])
        latents = nb["encode_picture"](picture)
        reference = nb["decode"](latents)
        paths = {}
        for count in STEP_COUNTS:
            paths[count] = nb["invert"](latents, prompt_embeddings, count)
            scales = GUIDANCE_SCALES if count == steps else [1.0, guidance]
            start = paths[count][-1].expand(len(scales), -1, -1, -1)
            regenerated = nb["regenerate"](start, prompt_embeddings, [nb["empty_embeddings"]] * count, scales, count)
            values = nb["psnr"](nb["decode"](regenerated), reference).tolist()
            for scale, value in zip(scales, values):
                if count == steps:
                    by_guidance[scale].append(value)
                if scale in (1.0, guidance):
                    by_steps[(count, scale)].append(value)
        for iterations in NULL_TEXT_ITERATIONS:
            start_time = time.process_time()
            null_per_step = nb["null_text_inversion"](paths[steps], prompt_embeddings, guidance, steps, iterations,
                                                      nb["NULL_TEXT_LEARNING_RATE"])
            seconds[iterations].append(time.process_time() - start_time)
            regenerated = nb["regenerate"](paths[steps][-1], prompt_embeddings, null_per_step, [guidance], steps)
            by_iterations[iterations].append(nb["psnr"](nb["decode"](regenerated), reference).item())
    results = {"command": "python benchmarks/editing.py --parts 1", **environment(),
               "scenes": len(RECONSTRUCTION_PAIRS), "steps": steps, "guidance_scale": guidance,
               "learning_rate": nb["NULL_TEXT_LEARNING_RATE"], "guidance": [], "step_counts": [], "null_text": []}
    for scale, values in by_guidance.items():
        mean, std = mean_std(values)
        results["guidance"].append({"guidance_scale": scale, "psnr_mean": mean, "psnr_std": std})
    for count in STEP_COUNTS:
        results["step_counts"].append({"steps": count, "psnr_guidance_1": statistics.mean(by_steps[(count, 1.0)]),
                                       "psnr_guided": statistics.mean(by_steps[(count, guidance)])})
    for iterations in NULL_TEXT_ITERATIONS:
        mean, std = mean_std(by_iterations[iterations])
        results["null_text"].append({"adam_steps": iterations, "psnr_mean": mean, "psnr_std": std,
                                     "cpu_seconds": statistics.mean(seconds[iterations])})
    (out / "editing_reconstruction.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


def scene_list(count=SCENES):
    """`count` scenes: (old left object, kept right object, background, [new objects]), drawn with seed 0."""
    rng = random.Random(0)
    backgrounds = list(data.BACKGROUNDS)
    scenes = []
    for index in range(count):
        old, kept, *new = rng.sample(data.OBJECTS, 2 + NEW_OBJECTS_PER_SCENE)
        scenes.append((old, kept, backgrounds[index % len(backgrounds)], new))
    return scenes


def part_prompt_to_prompt(nb, out, scene_count=SCENES):
    print("\n## 2. Prompt-to-prompt on 32 edits of rendered pictures vs SDEdit")
    judge = PocketJudge()
    steps = nb["NUM_STEPS"]
    cross_steps = int(nb["CROSS_REPLACE_FRACTION"] * steps)
    self_steps = int(nb["SELF_REPLACE_FRACTION"] * steps)
    configurations = {  # (cross-attention steps, self-attention steps, blend threshold or None)
        "no injection": (0, 0, None), "cross-attention": (cross_steps, 0, None),
        "cross + self": (cross_steps, self_steps, None),
        f"cross + self + local blend (threshold {nb['REFERENCE_BLEND_THRESHOLD']:g}, the reference's)":
            (cross_steps, self_steps, nb["REFERENCE_BLEND_THRESHOLD"]),
        f"cross + self + local blend (threshold {nb['BLEND_THRESHOLD']:g})": (cross_steps, self_steps,
                                                                             nb["BLEND_THRESHOLD"]),
    }
    blend_layers = nb["blend_layer_names"](nb["unet"])
    names = list(configurations) + [f"SDEdit {strength}" for strength in SDEDIT_STRENGTHS]
    per_edit = []
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    scenes = scene_list(scene_count)
    progress = tqdm(total=scene_count * NEW_OBJECTS_PER_SCENE, desc="edits")
    for old, kept, background, new_objects in scenes:
        picture = nb["render"]([(old, 0.26), (kept, 0.74)], background)
        original = to_tensor(picture)
        region = nb["region_to_keep"](nb["render"]([(old, 0.26)], background))
        source_prompt = two_object_prompt(old, kept)
        source_embeddings = nb["encode_text"]([source_prompt])
        path = nb["invert"](nb["encode_picture"](picture), source_embeddings, steps)
        null_per_step = nb["null_text_inversion"](path, source_embeddings, nb["GUIDANCE_SCALE"], steps,
                                                  nb["NULL_TEXT_ITERATIONS"], nb["NULL_TEXT_LEARNING_RATE"])
        for new in new_objects:
            edit_prompt = two_object_prompt(new, kept)
            edit_embeddings = nb["encode_text"]([edit_prompt])
            mapper, has_source = nb["token_alignment"](source_prompt, edit_prompt)
            images = {}
            for name, (cross, self_attention, threshold) in configurations.items():
                blend = None
                if threshold is not None:
                    blend = nb["LocalBlend"](token_indices(nb["tokenizer"], source_prompt, old),
                                             token_indices(nb["tokenizer"], edit_prompt, new), blend_layers,
                                             threshold)
                controller = nb["PromptToPrompt"](mapper, has_source, cross, self_attention, blend=blend)
                images[name] = nb["edit_pair"](path[-1], null_per_step, source_embeddings, edit_embeddings,
                                               controller)[1]
            for strength in SDEDIT_STRENGTHS:
                images[f"SDEdit {strength}"] = nb["img2img"](
                    edit_prompt, image=picture, strength=strength, num_inference_steps=steps,
                    guidance_scale=nb["GUIDANCE_SCALE"], generator=sdnotes.make_generator(0),
                    output_type="pt").images[0]
            stacked = torch.stack([images[name] for name in names])  # (methods, 3, H, W)
            half = stacked.shape[-1] // 2
            left_names = judge.classify(stacked[..., :half])
            right_names = judge.classify(stacked[..., half:])
            record = {"old": old, "new": new, "other": kept, "background": background,
                      "source_tokens": len(token_indices(nb["tokenizer"], source_prompt, old)),
                      "edit_tokens": len(token_indices(nb["tokenizer"], edit_prompt, new)), "methods": {}}
            for index, name in enumerate(names):
                record["methods"][name] = {"kept": nb["kept_share"](images[name], original, region),
                                           "left": left_names[index], "right": right_names[index]}
            per_edit.append(record)
            progress.update()
    progress.close()
    edits = len(per_edit)
    rows = []
    for name in names:
        kept_values = [record["methods"][name]["kept"] for record in per_edit]
        kept_mean, kept_std = mean_std(kept_values)
        rows.append({"name": name, "kept_mean": kept_mean, "kept_std": kept_std,
                     "new_named": sum(record["methods"][name]["left"] == record["new"] for record in per_edit),
                     "other_named": sum(record["methods"][name]["right"] == record["other"] for record in per_edit)})
    full = rows[len(configurations) - 1]
    verdict = [f"bar, full method: kept {full['kept_mean']:.3f} (>= {BAR_KEPT}: "
               f"{'yes' if full['kept_mean'] >= BAR_KEPT else 'no'}), new object named in "
               f"{full['new_named']}/{edits} (>= {BAR_NAMED:.0%}: "
               f"{'yes' if full['new_named'] >= BAR_NAMED * edits else 'no'})"]
    matched = [row for row in rows[len(configurations):] if row["new_named"] >= full["new_named"]]
    if matched:
        best = max(matched, key=lambda row: row["kept_mean"])
        verdict.append(f"SDEdit naming the new object at least as often: {', '.join(row['name'] for row in matched)}; "
                       f"the best of them keeps {best['kept_mean']:.3f} ({best['name']}): the full method keeps "
                       f"{'more' if full['kept_mean'] > best['kept_mean'] else 'not more'}")
    else:
        verdict.append("no SDEdit strength measured names the new object as often as the full method")
    command = "python benchmarks/editing.py --parts 2" + ("" if scene_count == SCENES else f" --scenes {scene_count}")
    results = {"command": command, **environment(), "edits": edits,
               "steps": steps, "guidance_scale": nb["GUIDANCE_SCALE"],
               "null_text_iterations": nb["NULL_TEXT_ITERATIONS"],
               "cross_replace_fraction": nb["CROSS_REPLACE_FRACTION"],
               "self_replace_fraction": nb["SELF_REPLACE_FRACTION"], "blend_threshold": nb["BLEND_THRESHOLD"],
               "reference_blend_threshold": nb["REFERENCE_BLEND_THRESHOLD"],
               "blend_layers": blend_layers, "tolerance": nb["TOLERANCE"], "margin_px": 6,
               "wall_seconds": time.perf_counter() - start_wall, "cpu_seconds": time.process_time() - start_cpu,
               "bar": {"kept": BAR_KEPT, "named_share": BAR_NAMED}, "configurations": rows, "verdict": verdict,
               "per_edit": per_edit}
    (out / "editing.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"\n{edits} edits, {results['cpu_seconds']:.0f} CPU s, {results['wall_seconds']:.0f} s wall\n")
    print("| configuration | kept (mean ± std) | new object named | other object named |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['name']} | {row['kept_mean']:.3f} ± {row['kept_std']:.3f} | {row['new_named']}/{edits} | "
              f"{row['other_named']}/{edits} |")
    print()
    print("\n".join(verdict))


def part_blend_threshold(nb, out):
    """LocalBlend's threshold on held-out scenes (seed 1): the reference's 0.3 and higher ones."""
    print("\n## 3. Local blending's threshold, on held-out scenes")
    judge = PocketJudge()
    steps = nb["NUM_STEPS"]
    cross_steps = int(nb["CROSS_REPLACE_FRACTION"] * steps)
    self_steps = int(nb["SELF_REPLACE_FRACTION"] * steps)
    blend_layers = nb["blend_layer_names"](nb["unet"])
    rng = random.Random(1)
    backgrounds = list(data.BACKGROUNDS)
    scenes = []
    for index in range(HELD_OUT_SCENES):
        old, kept, new = rng.sample(data.OBJECTS, 3)
        scenes.append((old, kept, new, backgrounds[(index + 3) % len(backgrounds)]))
    by_threshold = {threshold: [] for threshold in BLEND_THRESHOLDS}
    start_cpu = time.process_time()
    for old, kept, new, background in tqdm(scenes, desc="held-out scenes"):
        picture = nb["render"]([(old, 0.26), (kept, 0.74)], background)
        original = to_tensor(picture)
        region = nb["region_to_keep"](nb["render"]([(old, 0.26)], background))
        source_prompt, edit_prompt = two_object_prompt(old, kept), two_object_prompt(new, kept)
        source_embeddings = nb["encode_text"]([source_prompt])
        edit_embeddings = nb["encode_text"]([edit_prompt])
        path = nb["invert"](nb["encode_picture"](picture), source_embeddings, steps)
        null_per_step = nb["null_text_inversion"](path, source_embeddings, nb["GUIDANCE_SCALE"], steps,
                                                  nb["NULL_TEXT_ITERATIONS"], nb["NULL_TEXT_LEARNING_RATE"])
        mapper, has_source = nb["token_alignment"](source_prompt, edit_prompt)
        for threshold in BLEND_THRESHOLDS:
            blend = nb["LocalBlend"](token_indices(nb["tokenizer"], source_prompt, old),
                                     token_indices(nb["tokenizer"], edit_prompt, new), blend_layers, threshold)
            controller = nb["PromptToPrompt"](mapper, has_source, cross_steps, self_steps, blend=blend)
            image = nb["edit_pair"](path[-1], null_per_step, source_embeddings, edit_embeddings, controller)[1]
            half = image.shape[-1] // 2
            by_threshold[threshold].append({
                "kept": nb["kept_share"](image, original, region),
                "new_named": judge.classify(image[None, :, :, :half])[0] == new,
                "other_named": judge.classify(image[None, :, :, half:])[0] == kept,
                "mask_share": blend.mask(tuple(path[-1].shape[-2:])).mean().item()})
    rows = []
    for threshold, records in by_threshold.items():
        kept_mean, kept_std = mean_std([record["kept"] for record in records])
        rows.append({"threshold": threshold, "kept_mean": kept_mean, "kept_std": kept_std,
                     "new_named": sum(record["new_named"] for record in records),
                     "other_named": sum(record["other_named"] for record in records),
                     "mask_share": statistics.mean(record["mask_share"] for record in records)})
    results = {"command": "python benchmarks/editing.py --parts 3", **environment(), "scenes": len(scenes),
               "scene_seed": 1, "steps": steps, "cpu_seconds": time.process_time() - start_cpu,
               "scene_list": [list(scene) for scene in scenes], "thresholds": rows}
    (out / "editing_threshold.json").write_text(json.dumps(results, indent=1) + "\n")
    print("| threshold | kept (mean ± std) | new named | other named | mask share of the picture |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['threshold']:g} | {row['kept_mean']:.3f} ± {row['kept_std']:.3f} | "
              f"{row['new_named']}/{len(scenes)} | {row['other_named']}/{len(scenes)} | {row['mask_share']:.2f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="123", help="which parts to run, e.g. 2 (default 123)")
    parser.add_argument("--scenes", type=int, default=SCENES,
                        help=f"scenes in part 2, {NEW_OBJECTS_PER_SCENE} edits each (default {SCENES}; fewer: a quick check)")
    parser.add_argument("--out", default=str(RESULTS_DIR),
                        help="folder for the JSON files (default benchmarks/results)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    nb = notebook_namespace()
    if "1" in args.parts:
        part_reconstruction(nb, out)
    if "2" in args.parts:
        part_prompt_to_prompt(nb, out, args.scenes)
    if "3" in args.parts:
        part_blend_threshold(nb, out)


if __name__ == "__main__":
    main()
