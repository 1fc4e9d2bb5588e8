"""Measure the pocket ControlNet: `python -m sdnotes.pocket.control.evaluate`.

On held-out box scenes (seeds never trained on; boxes at places and sizes no
caption can say), for each controlnet_conditioning_scale asked:
  - one box, prompt "a <object>": the IoU between the asked box and the box of
    the generated picture's non-background pixels (`foreground_box`), and
    whether the judge names the prompted object;
  - two boxes, prompt "a A on the left and a B on the right": both objects in
    their boxes (IoU >= 0.5 each, the picture split halfway between the boxes),
    and the judge naming each object from a crop of its box.
Scale 0 is the plain pocket model: the baseline. With --steps-curve, the
same IoU for every kept training checkpoint (16 one-box pictures each), to see
whether it follows the boxes suddenly or gradually. Writes evaluation.json and
samples.png into the ControlNet's folder (assets/pocket-controlnet); the model
card quotes them. 20 DDIM steps, guidance 7.5, CPU generators.

Bars (issue #13): median IoU >= 0.6 for one box; both objects in their boxes in
>= 70% of two-box pictures; the prompted object named in >= 90%.
"""

import argparse
import json
import pathlib
import sys
import time

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from sdnotes.hub import dtype_option
from sdnotes.paths import POCKET_CONTROLNET_DIR, POCKET_DIR
from sdnotes.pocket import control

EVALUATION_SEED = 40_000_000  # training used SCENE_SEED 30,000,000 onwards, fewer than 10 million scenes
IOU_IN_BOX = 0.5
BARS = {"one_box_median_iou": 0.6, "two_boxes_both_in_box": 0.7, "named": 0.9}


def load_control_pipeline(pipeline_dir=POCKET_DIR, controlnet_dir=POCKET_CONTROLNET_DIR, dtype=torch.float32):
    """The pocket model with the ControlNet, loaded with plain diffusers calls (offline), DDIM sampler."""
    from diffusers import ControlNetModel, DDIMScheduler, StableDiffusionControlNetPipeline

    controlnet = ControlNetModel.from_pretrained(controlnet_dir, local_files_only=True, **dtype_option(dtype))
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        pipeline_dir, controlnet=controlnet, local_files_only=True, **dtype_option(dtype),
        safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def crop_box(image, box, margin=0.15):
    """The box's part of a picture (a little larger), resized to the picture's size, for the judge."""
    x0, y0, x1, y1 = box
    pad_x, pad_y = (x1 - x0) * margin, (y1 - y0) * margin
    region = (max(0, x0 - pad_x), max(0, y0 - pad_y), min(image.width, x1 + pad_x), min(image.height, y1 + pad_y))
    return image.crop(tuple(int(round(v)) for v in region)).resize(image.size, Image.BICUBIC)


def generate(pipe, scenes, scale, steps, guidance_scale=7.5, seed=0, batch=8):
    pictures = []
    for start in range(0, len(scenes), batch):
        chunk = scenes[start:start + batch]
        generators = [torch.Generator().manual_seed(seed + start + k) for k in range(len(chunk))]
        pictures += pipe([scene.caption for scene in chunk], image=[scene.control for scene in chunk],
                         num_inference_steps=steps, guidance_scale=guidance_scale, generator=generators,
                         controlnet_conditioning_scale=float(scale)).images
    return pictures


def held_out_scenes(count, boxes, start=EVALUATION_SEED):
    """The first `count` held-out scenes with `boxes` boxes; one-box prompts without the background."""
    scenes = []
    seed = start
    while len(scenes) < count:
        scene = control.make_box_scene(seed)
        seed += 1
        if len(scene.boxes) != boxes:
            continue
        if boxes == 1:
            scene.caption = f"{control.data.article(scene.names[0])} {scene.names[0]}"
        scenes.append(scene)
    return scenes


def measure(pipe, judge, one_box, two_boxes, scale, steps):
    pictures = generate(pipe, one_box, scale, steps)
    ious = [control.box_iou(control.foreground_box(picture), scene.boxes[0]) for picture, scene in zip(pictures, one_box)]
    named = [label == scene.names[0] for label, scene in zip(judge.classify(pictures), one_box)]
    result = {"scale": scale, "one_box_median_iou": float(np.median(ious)), "one_box_mean_iou": float(np.mean(ious)),
              "one_box_iou_at_least_0.5": float(np.mean([iou >= IOU_IN_BOX for iou in ious])),
              "named": float(np.mean(named)), "one_box_pictures": len(one_box)}
    two_pictures = []
    if two_boxes:
        two_pictures = generate(pipe, two_boxes, scale, steps, seed=10_000)
        both_in, both_named = [], []
        for picture, scene in zip(two_pictures, two_boxes):
            found = control.boxes_found(picture, scene.boxes)
            both_in.append(all(control.box_iou(f, b) >= IOU_IN_BOX for f, b in zip(found, scene.boxes)))
            labels = judge.classify([crop_box(picture, box) for box in scene.boxes])
            both_named.append(labels == scene.names)
        result.update({"two_boxes_both_in_box": float(np.mean(both_in)), "two_boxes_both_named": float(np.mean(both_named)),
                       "two_box_pictures": len(two_boxes)})
    return result, pictures, two_pictures


def outlined(picture, boxes, colour=(230, 30, 30)):
    """A copy of the picture with the asked boxes drawn on it."""
    picture = picture.copy()
    draw = ImageDraw.Draw(picture)
    for x0, y0, x1, y1 in boxes:
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=colour, width=2)
    return picture


def save_samples(path, scenes, rows):
    """A grid: control pictures on top, then one row of outlined pictures per scale."""
    size = control.CONTROL_SIZE
    grid = Image.new("RGB", (size * len(scenes), size * (1 + len(rows))), "white")
    for column, scene in enumerate(scenes):
        grid.paste(scene.control, (column * size, 0))
        for row, pictures in enumerate(rows):
            grid.paste(outlined(pictures[column], scene.boxes), (column * size, (row + 1) * size))
    grid.save(path)


def steps_curve(pipe, checkpoint_dir, scenes, steps):
    """Median IoU at scale 1 of each kept checkpoint's weights (controlnet_step{N}.pt, not the EMA).

    Each checkpoint goes into a ControlNet built from the loaded one's config: the same architecture.
    """
    from diffusers import ControlNetModel

    paths = sorted(pathlib.Path(checkpoint_dir).glob("controlnet_step*.pt"),
                   key=lambda path: int(path.stem.split("step")[-1]))
    if not paths:
        raise SystemExit(f"no controlnet_step*.pt in {checkpoint_dir}: train with sdnotes.pocket.control.train first")
    curve = []
    trained = pipe.controlnet
    for path in tqdm(paths, desc="checkpoints"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        controlnet = ControlNetModel.from_config(pipe.controlnet.config)
        controlnet.load_state_dict(checkpoint["model"])
        pipe.controlnet = controlnet.eval()
        pictures = generate(pipe, scenes, 1.0, steps)
        ious = [control.box_iou(control.foreground_box(p), s.boxes[0]) for p, s in zip(pictures, scenes)]
        curve.append({"step": checkpoint["step"], "one_box_median_iou": float(np.median(ious)),
                      "one_box_mean_iou": float(np.mean(ious))})
        print(json.dumps(curve[-1]))
    pipe.controlnet = trained
    return curve


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--controlnet", default=str(POCKET_CONTROLNET_DIR), help="ControlNet folder (default assets/pocket-controlnet)")
    parser.add_argument("--one-box", type=int, default=64, help="one-box pictures per scale (default 64)")
    parser.add_argument("--two-boxes", type=int, default=40, help="two-box pictures per scale (default 40)")
    parser.add_argument("--scales", default="0,1", help="controlnet_conditioning_scale values (default 0,1)")
    parser.add_argument("--sweep", default="0.25,0.5,0.75,1.5", help="extra scales measured on one box only")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-write", action="store_true", help="print only; do not write evaluation.json / samples.png")
    parser.add_argument("--steps-curve", default=None, metavar="CHECKPOINT_DIR",
                        help="also measure every kept checkpoint there (runs/pocket-controlnet/checkpoints) on 16 one-box pictures")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from sdnotes.pocket.judge import PocketJudge

    pipe = load_control_pipeline(controlnet_dir=args.controlnet)
    judge = PocketJudge()
    one_box = held_out_scenes(args.one_box, 1)
    two_boxes = held_out_scenes(args.two_boxes, 2, start=EVALUATION_SEED + 1_000_000)
    results = []
    samples = {}
    started = time.time()
    scales = [float(s) for s in args.scales.split(",")]
    sweep = [float(s) for s in filter(None, args.sweep.split(","))]
    for scale in tqdm(scales + sweep, desc="scales"):
        result, pictures, two_pictures = measure(pipe, judge, one_box, two_boxes if scale in scales else [], scale, args.steps)
        print(json.dumps(result))
        results.append(result)
        if scale in scales:
            samples[scale] = pictures[:6] + two_pictures[:4]
    curve = steps_curve(pipe, args.steps_curve, one_box[:16], args.steps) if args.steps_curve else None
    at_one = next((r for r in results if r["scale"] == 1.0), None)
    bars = {}
    if at_one is not None:
        bars = {"one_box_median_iou": at_one["one_box_median_iou"] >= BARS["one_box_median_iou"],
                "two_boxes_both_in_box": at_one.get("two_boxes_both_in_box", 0) >= BARS["two_boxes_both_in_box"],
                "named": at_one["named"] >= BARS["named"]}
    arguments = sys.argv[1:] if argv is None else argv
    report = {"command": " ".join(["python -m sdnotes.pocket.control.evaluate"] + arguments),
              "steps": args.steps, "guidance_scale": 7.5, "sampler": "DDIM", "iou_in_box": IOU_IN_BOX,
              "bars": BARS, "bars_met_at_scale_1": bars, "results": results, "steps_curve": curve,
              "seconds": round(time.time() - started, 1), "threads": torch.get_num_threads()}
    print(json.dumps(bars))
    if not args.no_write:
        folder = pathlib.Path(args.controlnet)
        (folder / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
        shown = one_box[:6] + two_boxes[:4]
        save_samples(folder / "samples.png", shown, [samples[s] for s in scales])
        print(f"wrote {folder / 'evaluation.json'} and {folder / 'samples.png'}")


if __name__ == "__main__":
    main()
