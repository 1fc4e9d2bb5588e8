"""Train the pocket ControlNet: `python -m sdnotes.pocket.control.train`.

The recipe of ControlNet (Zhang, Rao & Agrawala 2023), in miniature:
  1. data       - scenes with boxes anywhere, at any size (control/__init__.py),
                  encoded once by the pocket VAE; their captions encoded once
                  by the pocket text encoder; the control pictures kept.
  2. controlnet - `ControlNetModel.from_unet(pocket U-Net)`: a trainable copy
                  of the U-Net's encoder and middle block, joined to the frozen
                  U-Net through zero-initialised convolutions. The loss is the
                  U-Net's own denoising loss (DDPM eps-prediction on SD's
                  schedule) with the ControlNet's residuals added to the U-Net's
                  skip connections; captions dropped 10% of the time as for the
                  U-Net. The U-Net, VAE and text encoder stay frozen.
  3. export     - a standard diffusers ControlNetModel folder in float16
                  (assets/pocket-controlnet), with control.json (the control
                  picture's format) and training_log.json.

Stages skip when their result exists; training checkpoints every 500 steps and
resumes (`train_loop` of sdnotes/pocket/train.py); every checkpoint is also
kept (controlnet_step{N}.pt) for `evaluate.py --steps-curve`. `--minutes 85`
cuts the steps to fit a time budget (the shipped run). Presets: "cpu" (about
1 h 45 min on a CPU, data included), "gpu" (the same recipe scaled up, not
run yet), "smoke" (the test).
"""

import argparse
import json
import pathlib
import shutil
import time

import torch
import torch.nn.functional as F

from sdnotes.pocket import control
from sdnotes.pocket.export import DEFAULT_PIPELINE_DIR
from sdnotes.pocket.train import EMA, CAPTION_DROPOUT, Run, device_name, train_loop

PRESETS = {
    # "cpu": 0.53 s per step on 2 idle threads, 1.02 s on 1 thread (batch 16). The shipped run took
    # `--minutes 85` on 1 thread: 4,968 steps, after a 19-minute data stage (model card).
    # "gpu" is the same recipe with 16x the batch; it has not been run.
    "gpu": {"scenes": 200_000, "steps": 8_000, "batch": 256, "lr": 2e-4},
    "cpu": {"scenes": 24_000, "steps": 8_000, "batch": 16, "lr": 2e-4},
    "smoke": {"scenes": 16, "steps": 3, "batch": 4, "lr": 2e-4},
}
STAGES = ["data", "controlnet", "export"]
SCENE_SEED = 30_000_000  # ControlNet training scenes; evaluation uses EVALUATION_SEED, never trained on
# The control picture's small encoder (128 x 128 -> 16 x 16). diffusers' default (16, 32, 96, 256) was made
# for SD's 512 x 512 pictures; boxes need less, and these channels make a training step 30% faster on a CPU.
CONDITIONING_CHANNELS = (8, 16, 32, 64)
EMA_DECAY = 0.995


def load_frozen_parts(pipeline_dir, device):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    pipeline_dir = pathlib.Path(pipeline_dir)
    vae = AutoencoderKL.from_pretrained(pipeline_dir / "vae", dtype=torch.float32).to(device).eval()
    text_encoder = CLIPTextModel.from_pretrained(pipeline_dir / "text_encoder", dtype=torch.float32).to(device).eval()
    unet = UNet2DConditionModel.from_pretrained(pipeline_dir / "unet", dtype=torch.float32).to(device).eval()
    for module in (vae, text_encoder, unet):
        module.requires_grad_(False)
    return vae, text_encoder, unet


@torch.no_grad()
def stage_data(run, pipeline_dir):
    from sdnotes.tokenizer import load_tokenizer

    count = run.settings["scenes"]
    print(f"rendering {count} box scenes ...")
    start = time.time()
    images, controls, captions = control.render_box_scenes(range(SCENE_SEED, SCENE_SEED + count))
    print(f"rendered in {time.time() - start:.0f} s")
    vae, text_encoder, _ = load_frozen_parts(pipeline_dir, run.device)
    chunks = []
    for index in range(0, count, 256):
        pixels = torch.from_numpy(images[index:index + 256]).permute(0, 3, 1, 2).float().to(run.device) / 127.5 - 1
        chunks.append((vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor).half().cpu())
    unique = sorted(set(captions) | {""})
    index_of = {caption: index for index, caption in enumerate(unique)}
    tokenizer = load_tokenizer()
    ids = tokenizer(unique, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    embeddings = torch.cat([text_encoder(ids[i:i + 512].to(run.device)).last_hidden_state.cpu()
                            for i in range(0, len(ids), 512)])
    torch.save({"latents": torch.cat(chunks),  # (N, 4, H/8, W/8), already times the scaling factor
                "controls": torch.from_numpy(controls),  # (N, H, W) uint8, 0 or 255
                "caption_index": torch.tensor([index_of[caption] for caption in captions]),
                "text_embeddings": embeddings.half(),  # (U, 77, width)
                "empty_caption": index_of[""]}, run.out / "data.pt")
    print(f"data: {count} scenes, {len(unique)} captions, {time.time() - start:.0f} s")


def make_controlnet(unet):
    from diffusers import ControlNetModel

    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONDITIONING_CHANNELS)


def stage_controlnet(run, pipeline_dir):
    from sdnotes.pocket.architecture import make_training_scheduler

    cached = torch.load(run.out / "data.pt")
    latents_all = cached["latents"].to(run.device).float()
    controls_all = cached["controls"].to(run.device)
    caption_index_all = cached["caption_index"].to(run.device)
    text_embeddings = cached["text_embeddings"].to(run.device).float()
    _, _, unet = load_frozen_parts(pipeline_dir, run.device)
    controlnet = make_controlnet(unet).to(run.device)
    alphas_cumprod = make_training_scheduler().alphas_cumprod.to(run.device)
    ema = EMA(controlnet, decay=EMA_DECAY)
    batch = run.settings["batch"]

    def loss_fn(generator):
        index = torch.randint(0, len(latents_all), (batch,), device=run.device, generator=generator)
        latents = latents_all[index]  # (B, 4, H/8, W/8)
        condition = (controls_all[index].float() / 255)[:, None].expand(-1, 3, -1, -1)  # (B, 3, H, W) in [0, 1]
        caption_index = caption_index_all[index].clone()
        dropped = torch.rand(batch, device=run.device, generator=generator) < CAPTION_DROPOUT
        caption_index[dropped] = cached["empty_caption"]
        context = text_embeddings[caption_index]  # (B, 77, width)
        noise = torch.randn(latents.shape, device=run.device, generator=generator)
        timesteps = torch.randint(0, 1000, (batch,), device=run.device, generator=generator)
        alpha_bar = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        noisy = alpha_bar.sqrt() * latents + (1 - alpha_bar).sqrt() * noise  # x_t, DDPM eq. 4
        down_residuals, mid_residual = controlnet(noisy, timesteps, encoder_hidden_states=context,
                                                  controlnet_cond=condition, return_dict=False)
        prediction = unet(noisy, timesteps, encoder_hidden_states=context,
                          down_block_additional_residuals=down_residuals,
                          mid_block_additional_residual=mid_residual).sample
        return F.mse_loss(prediction.float(), noise)

    train_loop(run, "controlnet", controlnet, loss_fn, run.settings["steps"], lr=run.settings["lr"], extra_state=ema)
    controlnet.save_pretrained(run.out / "controlnet_raw")  # the last weights, for comparison
    controlnet.load_state_dict(ema.shadow)
    controlnet.save_pretrained(run.out / "controlnet")


EXAMPLE_COUNT = 16  # training scenes shipped for notebook 12's live training (it cannot render: no OpenMoji)
HELD_OUT_EXAMPLES = 8  # held-out one-box layouts (seeds of evaluate.py) for notebook 12's scale sweep


def write_examples(folder):
    """examples.png (the first EXAMPLE_COUNT training scenes, a 4-wide grid) and examples.json (their
    captions and boxes, plus held-out one-box layouts the ControlNet never trained on)."""
    from PIL import Image

    from sdnotes.pocket.control.evaluate import held_out_scenes

    scenes = [control.make_box_scene(SCENE_SEED + index) for index in range(EXAMPLE_COUNT)]
    size = control.CONTROL_SIZE
    grid = Image.new("RGB", (4 * size, (EXAMPLE_COUNT + 3) // 4 * size))
    for index, scene in enumerate(scenes):
        grid.paste(scene.image, (index % 4 * size, index // 4 * size))
    grid.save(folder / "examples.png")
    held_out = held_out_scenes(HELD_OUT_EXAMPLES, 1)
    record = {
        "training": [{"caption": s.caption, "names": s.names, "boxes": s.boxes} for s in scenes],
        "held_out_one_box": [{"caption": s.caption, "names": s.names, "boxes": s.boxes} for s in held_out],
        "picture_size": size,
        "grid_columns": 4,
        "made_by": "python -m sdnotes.pocket.control.train --stages export (write_examples)",
    }
    (folder / "examples.json").write_text(json.dumps(record, indent=1) + "\n")


def export(run, target, preset):
    """assets/pocket-controlnet: the float16 ControlNetModel, control.json, training_log.json, examples."""
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_pretrained(run.out / "controlnet", dtype=torch.float16)
    target = pathlib.Path(target)
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    controlnet.save_pretrained(staging)
    (staging / "control.json").write_text(json.dumps(control.CONTROL_FORMAT, indent=2) + "\n")
    timings = [json.loads(line) for line in (run.out / "logs" / "timings.jsonl").read_text().splitlines()]
    losses = json.loads((run.out / "logs" / "controlnet.json").read_text())
    log = {"preset": preset, "settings": run.settings, "stages": timings, "loss_every_10_steps": losses}
    (staging / "training_log.json").write_text(json.dumps(log) + "\n")
    write_examples(staging)
    for name in ("README.md", "evaluation.json", "samples.png"):  # the model card and measurements, if made
        if (target / name).exists():
            shutil.copy(target / name, staging / name)
    if target.exists():
        shutil.rmtree(target)
    staging.replace(target)
    print(f"export: {target}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/pocket-controlnet", help="where stages write (default runs/pocket-controlnet)")
    parser.add_argument("--preset", choices=list(PRESETS), default=None, help="gpu (default with CUDA), cpu, or smoke")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {STAGES}")
    parser.add_argument("--pipeline", default=str(DEFAULT_PIPELINE_DIR), help="the pocket model folder (default assets/pocket)")
    parser.add_argument("--export-to", default=str(control.CONTROLNET_DIR), help="ControlNet folder to write (default assets/pocket-controlnet)")
    parser.add_argument("--minutes", type=float, default=None, help="time budget for the controlnet stage (steps are cut to fit)")
    parser.add_argument("--force", action="store_true", help="redo stages whose results exist; replace an exported ControlNet")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    preset = args.preset or ("gpu" if device.type == "cuda" else "cpu")
    stages = args.stages.split(",")
    for stage in stages:
        if stage not in STAGES:
            raise SystemExit(f"unknown stage {stage!r}; choose from {STAGES}")
    if not (pathlib.Path(args.pipeline) / "unet" / "config.json").exists():
        raise SystemExit(f"no pocket model in {args.pipeline}: build it with `python -m sdnotes.pocket.train` first")
    torch.manual_seed(args.seed)
    run = Run(args.out, dict(PRESETS[preset]), device, seed=args.seed)
    run.keep_checkpoints = True  # checkpoints/controlnet_step{N}.pt: evaluate.py --steps-curve measures them
    if args.minutes:
        run.minutes["controlnet"] = args.minutes
    print(f"pocket ControlNet: preset {preset}, device {device_name(device)}, out {run.out}")
    results = {"data": "data.pt", "controlnet": "controlnet"}
    for stage in stages:
        if stage == "export":
            target = pathlib.Path(args.export_to)
            if (target / "config.json").exists() and not args.force:
                raise SystemExit(f"{target} already holds a ControlNet; it is not replaced silently. "
                                 "Pass --force to replace it (its README.md and evaluation.json are kept), "
                                 "or --export-to another folder.")
            export(run, target, preset)
            continue
        if (run.out / results[stage]).exists() and not args.force:
            print(f"{stage}: done already ({run.out / results[stage]}); --force redoes it")
            continue
        start = time.time()
        {"data": stage_data, "controlnet": stage_controlnet}[stage](run, args.pipeline)
        seconds = round(time.time() - start, 1)
        print(f"{stage}: {seconds} s")
        (run.out / "logs").mkdir(exist_ok=True)
        with open(run.out / "logs" / "timings.jsonl", "a") as handle:
            record = {"stage": stage, "seconds": seconds, "preset": preset, "device": device_name(device),
                      "steps": run.steps_done.get(stage), "batch": run.settings["batch"]}
            handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
