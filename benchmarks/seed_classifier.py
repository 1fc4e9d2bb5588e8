"""Tell the seed from the picture: the seed study's headline result at pocket scale.

The seed study (arXiv 2405.14828, "Good Seed Makes a Good Crop", 2024) trained
a 1,024-way classifier to say which seed made a picture; on SD 2.0 it reached
99.994% test accuracy after six epochs (chance 0.1%), with 9,000 training
pictures per seed. Here, with the pocket model:

  * K seeds (0 .. K-1) x prompts "a X", "a small X", "a big X" for the pocket
    objects; the objects are split: the training prompts name some objects,
    the test prompts name the others, so every test picture shows an object
    the classifier never saw. DDIM with eta 0 (the seed only sets the initial
    latent), guidance as notebook 09 (the pocket model's default);
  * a small CNN (plain torch.nn, four conv layers, no global pooling, so it
    can use where things are) learns the seed from 64x64 copies of the
    pictures; tested on the held-out prompts against chance = 1 / K;
  * what it uses: the test pictures changed after generation, with the
    object found by sdnotes.pocket.judge.foreground_mask and the background
    colour by sdnotes.pocket.judge.background_colour:
      full             the picture as generated
      object on grey   every background pixel grey: the background colour is gone
      background only  the object (its mask grown by 2 px) painted over with the
                       background colour: position, size and shape are gone
      silhouette       the object's mask, black on white: only position, size, shape
      flipped          the picture mirrored left-right (a layout test)
    each scored by the CNN trained on full pictures (what it relies on), by a
    CNN trained and tested on that condition (what is there to learn), and
    by the nearest class mean of 16x16 pixels (a no-training baseline).

    OMP_NUM_THREADS=1 python benchmarks/seed_classifier.py            # 16 seeds x 60 prompts, 10 steps
    OMP_NUM_THREADS=1 python benchmarks/seed_classifier.py --quick    # a smoke run (seconds; /tmp)

Writes benchmarks/results/seed_classifier.json (notebook 09 reads it). CPU,
one thread by default; deterministic for given arguments on one machine.
Needs this repository on PYTHONPATH (it inserts itself) and assets/pocket.
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
import torch.nn.functional as F
from diffusers import DDIMScheduler
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import sdnotes  # noqa: E402
from sdnotes.pocket import data  # noqa: E402
from sdnotes.pocket.judge import background_colour, foreground_mask  # noqa: E402
from seed_study import generate, initial_latents  # noqa: E402  (benchmarks/seed_study.py: the latents pipe(generator=seed) draws, every prompt × every seed)

RESULTS = Path(__file__).resolve().parent / "results" / "seed_classifier.json"
TEMPLATES = ["{a} {object}", "a small {object}", "a big {object}"]  # the seed decides position and background
GREY = 0.5
CONDITIONS = {
    "full": "the picture as generated",
    "object on grey": "background pixels set to grey 0.5 (the background colour is gone)",
    "background only": "object pixels (mask grown by 2 px) painted with the background colour",
    "silhouette": "the object's mask only, black on white (position, size, shape)",
    "flipped": "the picture mirrored left-right (tested with the CNN trained on full pictures only)",
}


def prompts_for(objects):
    prompts = []
    for name in objects:
        for template in TEMPLATES:
            prompts.append(template.format(a=data.article(name), object=name))
    return prompts


def split_objects(test_every, number_of_objects):
    """Training objects and held-out test objects: of the first `number_of_objects`, every
    `test_every`-th is held out."""
    train_objects = []
    test_objects = []
    for index, name in enumerate(data.OBJECTS[:number_of_objects]):
        if index % test_every == test_every - 1:
            test_objects.append(name)
        else:
            train_objects.append(name)
    return train_objects, test_objects


def masks_and_backgrounds(images):
    """(B, H, W) object masks and (B, 3) background colours in [0, 1], from the judge's helpers."""
    masks = []
    colours = []
    for image in images:
        pixels = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()  # (H, W, 3)
        picture = Image.fromarray(pixels)
        masks.append(torch.from_numpy(foreground_mask(picture)))
        colours.append(torch.from_numpy(background_colour(picture).astype(np.float32)) / 255)
    return torch.stack(masks).float(), torch.stack(colours)


def apply_condition(name, images, masks, colours):
    """(B, 3, H, W) pictures changed as CONDITIONS[name] says."""
    if name == "full":
        return images
    if name == "flipped":
        return images.flip(dims=[3])
    if name == "object on grey":
        keep = masks[:, None]  # (B, 1, H, W)
        return images * keep + GREY * (1 - keep)
    if name == "background only":
        grown = F.max_pool2d(masks[:, None], kernel_size=5, stride=1, padding=2)  # (B, 1, H, W)
        return images * (1 - grown) + colours[:, :, None, None] * grown
    if name == "silhouette":
        return (1 - masks[:, None]).expand(-1, 3, -1, -1).clone()
    raise ValueError(f"unknown condition {name!r}; known: {list(CONDITIONS)}")


class SeedCNN(torch.nn.Module):
    """Four 3x3 conv layers (each followed by batch norm, ReLU, 2x2 max pooling), then one linear layer.

    No global average pooling: the last feature map (4x4 for 64x64 pictures) is
    flattened, so the classifier can use where things are in the picture.
    """

    def __init__(self, number_of_seeds, picture_size, width=16):
        super().__init__()
        layers = []
        channels_in = 3
        for channels_out in (width, 2 * width, 4 * width, 4 * width):
            layers.append(torch.nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1))
            layers.append(torch.nn.BatchNorm2d(channels_out))
            layers.append(torch.nn.ReLU())
            layers.append(torch.nn.MaxPool2d(2))
            channels_in = channels_out
        self.features = torch.nn.Sequential(*layers)
        side = picture_size // 16
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.3),
                                        torch.nn.Linear(channels_in * side * side, number_of_seeds))

    def forward(self, pictures):
        return self.head(self.features(pictures * 2 - 1))  # (B, 3, S, S) in [0, 1] -> (B, K) logits


def train_cnn(pictures, labels, number_of_seeds, epochs, batch_size, learning_rate, weight_decay, seed):
    """A SeedCNN trained with Adam on (N, 3, S, S) pictures and (N,) seed indices."""
    torch.manual_seed(seed)
    model = SeedCNN(number_of_seeds, pictures.shape[-1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(pictures), generator=generator)
        for first in range(0, len(pictures), batch_size):
            batch = order[first:first + batch_size]
            loss = F.cross_entropy(model(pictures[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    return model


@torch.no_grad()
def predict(model, pictures, batch_size=256):
    predictions = []
    for first in range(0, len(pictures), batch_size):
        predictions.append(model(pictures[first:first + batch_size]).argmax(dim=1))
    return torch.cat(predictions)


def nearest_mean(train_pictures, train_labels, test_pictures, number_of_seeds, size=16):
    """Predicted seeds by the nearest class mean of size x size pixels."""
    train_small = F.adaptive_avg_pool2d(train_pictures, size).flatten(1)  # (N, 3 size^2)
    test_small = F.adaptive_avg_pool2d(test_pictures, size).flatten(1)
    means = torch.stack([train_small[train_labels == seed].mean(dim=0) for seed in range(number_of_seeds)])
    return torch.cdist(test_small, means).argmin(dim=1)


def background_class(colours):
    """(B,) index of the nearest of the pocket model's background colours (data.BACKGROUNDS)."""
    palette = torch.tensor(list(data.BACKGROUNDS.values()), dtype=torch.float32) / 255  # (6, 3)
    return torch.cdist(colours, palette).argmin(dim=1)


def cpu_name():
    """The processor's model name (Linux: /proc/cpuinfo), else the machine type."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=16, help="K: seeds 0 .. K-1")
    parser.add_argument("--objects", type=int, default=len(data.OBJECTS),
                        help=f"use the first n pocket objects (default all {len(data.OBJECTS)})")
    parser.add_argument("--test-every", type=int, default=4,
                        help="hold out every n-th pocket object (default 4: 15 training, 5 test objects)")
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps (eta 0)")
    parser.add_argument("--guidance", type=float, default=sdnotes.MODELS["pocket"].default_guidance)
    parser.add_argument("--size", type=int, default=64, help="the classifier sees size x size copies")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-3)
    parser.add_argument("--no-retrain", action="store_true",
                        help="skip the CNNs trained on each changed condition (only the full-picture CNN)")
    parser.add_argument("--batch-images", type=int, default=64, help="pictures per pipeline call")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="4 seeds, 4 objects, 3 steps, 2 epochs, written to /tmp: a smoke run (seconds)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the generated pictures in this file (uint8) and reuse them if the settings match")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.objects, args.steps, args.epochs = 4, 4, 3, 2
        args.out = Path("/tmp/seed_classifier_quick.json")
    torch.set_num_threads(args.threads)
    start = time.time()

    def log(message):
        print(f"[{time.time() - start:6.0f} s] {message}", flush=True)

    pipe = sdnotes.load("pocket", device="cpu", dtype=torch.float32, verbose=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe.vae.enable_slicing()
    seeds = list(range(args.seeds))
    number_of_seeds = len(seeds)
    latents = initial_latents(pipe, seeds)  # (K, C, h, w)
    train_objects, test_objects = split_objects(args.test_every, args.objects)
    train_prompts = prompts_for(train_objects)
    test_prompts = prompts_for(test_objects)
    log(f"{number_of_seeds} seeds x ({len(train_prompts)} training + {len(test_prompts)} test prompts), "
        f"DDIM {args.steps} steps, guidance {args.guidance}")

    generation_start = time.time()
    cache_key = [seeds, train_prompts, test_prompts, args.steps, args.guidance]
    cached = torch.load(args.cache) if args.cache is not None and args.cache.exists() else None
    if cached is not None and cached["key"] == cache_key:
        log(f"pictures from {args.cache} (generated in {cached['seconds']:.0f} s)")
        train_images = cached["train"].float() / 255
        test_images = cached["test"].float() / 255
        generation_seconds = cached["seconds"]
    else:
        log("generating the training pictures")
        train_images = generate(pipe, train_prompts, latents, args.steps, args.guidance, args.batch_images)
        log("generating the test pictures")
        test_images = generate(pipe, test_prompts, latents, args.steps, args.guidance, args.batch_images)
        generation_seconds = time.time() - generation_start
        # the pictures as 8-bit, as a PNG would keep them (the masks are computed from 8-bit pictures anyway)
        train_images = (train_images * 255).round() / 255
        test_images = (test_images * 255).round() / 255
        if args.cache is not None:
            torch.save({"key": cache_key, "seconds": generation_seconds,
                        "train": (train_images * 255).round().to(torch.uint8),
                        "test": (test_images * 255).round().to(torch.uint8)}, args.cache)
    number_of_pictures = len(train_prompts) * number_of_seeds + len(test_prompts) * number_of_seeds
    log(f"{number_of_pictures} pictures in {generation_seconds:.0f} s "
        f"({number_of_pictures / generation_seconds:.2f} pictures/s)")

    # flatten: (P, K, 3, H, W) -> (P K, 3, H, W), label = seed index
    train_flat = train_images.flatten(0, 1)
    test_flat = test_images.flatten(0, 1)
    train_labels = torch.arange(number_of_seeds).repeat(len(train_prompts))
    test_labels = torch.arange(number_of_seeds).repeat(len(test_prompts))
    train_masks, train_colours = masks_and_backgrounds(train_flat)
    test_masks, test_colours = masks_and_backgrounds(test_flat)

    def small(pictures):
        return F.interpolate(pictures, size=(args.size, args.size), mode="area")

    settings = {
        "seeds": seeds, "K": number_of_seeds, "train_prompts": train_prompts, "test_prompts": test_prompts,
        "train_objects": train_objects, "test_objects": test_objects, "steps": args.steps,
        "scheduler": "DDIM, eta 0", "guidance": args.guidance, "picture_size": int(train_images.shape[-1]),
        "classifier_input": args.size, "epochs": args.epochs, "batch": args.batch, "optimizer": "AdamW",
        "learning_rate": args.lr, "weight_decay": args.weight_decay,
        "train_pictures": len(train_flat), "test_pictures": len(test_flat),
        "train_pictures_per_seed": len(train_prompts), "test_pictures_per_seed": len(test_prompts),
        "grey": GREY, "mask": "sdnotes.pocket.judge.foreground_mask (threshold 60)",
    }
    results = {
        "command": "python benchmarks/seed_classifier.py " + " ".join(sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "machine": f"{cpu_name()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}",
        "settings": settings,
        "chance": 1 / number_of_seeds,
        "conditions": {},
        "seconds": {"generation": round(generation_seconds, 1)},
        "pictures_per_second": round(number_of_pictures / generation_seconds, 3),
        "pictures_from_cache": cached is not None and cached["key"] == cache_key,
    }

    training_start = time.time()
    full_train = small(train_flat)
    full_cnn = train_cnn(full_train, train_labels, number_of_seeds, args.epochs, args.batch, args.lr,
                         args.weight_decay, seed=0)
    results["seconds"]["training_full_cnn"] = round(time.time() - training_start, 1)
    results["settings"]["cnn"] = str(full_cnn).replace("\n", " ")
    results["settings"]["cnn_parameters"] = sum(parameter.numel() for parameter in full_cnn.parameters())
    results["train_accuracy"] = (predict(full_cnn, full_train) == train_labels).float().mean().item()
    log(f"CNN on full pictures: {results['settings']['cnn_parameters']:,} parameters, trained in "
        f"{results['seconds']['training_full_cnn']} s; training accuracy {results['train_accuracy']:.1%}")

    for name, description in CONDITIONS.items():
        condition_start = time.time()
        test_pictures = small(apply_condition(name, test_flat, test_masks, test_colours))
        row = {"description": description}
        predictions = predict(full_cnn, test_pictures)
        row["cnn_trained_on_full"] = (predictions == test_labels).float().mean().item()
        if name == "full":
            full_predictions = predictions
        if name != "flipped":
            train_pictures = small(apply_condition(name, train_flat, train_masks, train_colours))
            row["nearest_mean"] = (nearest_mean(train_pictures, train_labels, test_pictures, number_of_seeds)
                                   == test_labels).float().mean().item()
            if name == "full":
                row["cnn_trained_on_condition"] = row["cnn_trained_on_full"]
            elif not args.no_retrain:
                model = train_cnn(train_pictures, train_labels, number_of_seeds, args.epochs, args.batch,
                                  args.lr, args.weight_decay, seed=0)
                row["cnn_trained_on_condition"] = (predict(model, test_pictures) == test_labels).float().mean().item()
        row["seconds"] = round(time.time() - condition_start, 1)
        results["conditions"][name] = row
        log(f"{name:16s} " + ", ".join(f"{key} {value:.1%}" for key, value in row.items()
                                        if key not in ("description", "seconds")) + f" ({row['seconds']} s)")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")  # after every condition: a stopped run keeps its part

    correct = (full_predictions == test_labels).float()
    results["per_seed_accuracy"] = correct.reshape(len(test_prompts), number_of_seeds).mean(dim=0).tolist()
    results["per_test_prompt_accuracy"] = dict(zip(test_prompts, correct.reshape(len(test_prompts),
                                                                                 number_of_seeds).mean(dim=1).tolist()))
    # The background colour: how far does it alone go? Each seed's most common background on the training prompts.
    train_background = background_class(train_colours).reshape(len(train_prompts), number_of_seeds)
    test_background = background_class(test_colours).reshape(len(test_prompts), number_of_seeds)
    seed_background = train_background.mode(dim=0).values  # (K,)
    wrong = full_predictions != test_labels
    same_background_wrong = (seed_background[full_predictions[wrong]] == seed_background[test_labels[wrong]])
    results["background"] = {
        "test_pictures_on_their_seeds_usual_background": (test_background == seed_background).float().mean().item(),
        "seeds_per_background": {name: int((seed_background == index).sum())
                                 for index, name in enumerate(data.BACKGROUNDS)},
        "errors_to_a_seed_with_the_same_usual_background": (same_background_wrong.float().mean().item()
                                                           if len(same_background_wrong) else None),
    }
    results["seconds"]["total"] = round(time.time() - start, 1)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    log(f"chance {results['chance']:.1%}; background: {results['background']}")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
