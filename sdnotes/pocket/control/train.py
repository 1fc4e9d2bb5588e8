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
kept (controlnet_step{N}.pt) for `evaluate.py --steps-curve`.
`--minutes controlnet=85` cuts the steps to fit a time budget (the shipped
run). Presets: "cpu" (about 1 h 45 min on a CPU, data included), "gpu" (the
same recipe scaled up, not run yet), "smoke" (the test). The arguments and
stage handling it shares with the pocket model's command are in
sdnotes/pocket/training.py.
"""

import functools
import json
import pathlib
import shutil
import time

import torch

from sdnotes.hub import dtype_option
from sdnotes.paths import POCKET_CONTROLNET_DIR, POCKET_DIR
from sdnotes.pocket import control, training
from sdnotes.pocket.control.evaluate import held_out_scenes
from sdnotes.pocket.train import EMA, Run, drop_captions, train_loop
from sdnotes.schedule import stable_diffusion_scheduler

PRESETS = {
    # "cpu": 0.53 s per step on 2 idle threads, 1.02 s on 1 thread (batch 16). The shipped run took
    # `--minutes controlnet=85` on 1 thread: 4,968 steps, after a 19-minute data stage (model card).
    # "gpu" is the same recipe with 16x the batch; it has not been run.
    "gpu": {"scenes": 200_000, "steps": 8_000, "batch": 256, "lr": 2e-4},
    "cpu": {"scenes": 24_000, "steps": 8_000, "batch": 16, "lr": 2e-4},
    "smoke": {"scenes": 16, "steps": 3, "batch": 4, "lr": 2e-4},
}
STAGES = ["data", "controlnet", "export"]
TRAINING_STAGES = ["controlnet"]  # the stages --minutes can budget
SCENE_SEED = 30_000_000  # ControlNet training scenes; evaluation uses EVALUATION_SEED, never trained on
# The control picture's small encoder (128 x 128 -> 16 x 16). diffusers' default (16, 32, 96, 256) was made
# for SD's 512 x 512 pictures; boxes need less, and these channels make a training step 30% faster on a CPU.
CONDITIONING_CHANNELS = (8, 16, 32, 64)
EMA_DECAY = 0.995
# The seed of the controlnet stage's generator is --seed + 5000: after the pocket model's stages
# (+0 to +4000, `stage_seed` in sdnotes/pocket/train.py), as in the shipped run.
CONTROLNET_SEED_OFFSET = 5000


def load_frozen_parts(pipeline_dir, device):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    pipeline_dir = pathlib.Path(pipeline_dir)
    vae = AutoencoderKL.from_pretrained(pipeline_dir / "vae").to(device).eval()
    text_encoder = CLIPTextModel.from_pretrained(pipeline_dir / "text_encoder", dtype=torch.float32).to(device).eval()
    unet = UNet2DConditionModel.from_pretrained(pipeline_dir / "unet").to(device).eval()
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
    cached = torch.load(run.out / "data.pt")
    latents_all = cached["latents"].to(run.device).float()
    controls_all = cached["controls"].to(run.device)
    caption_index_all = cached["caption_index"].to(run.device)
    text_embeddings = cached["text_embeddings"].to(run.device).float()
    _, _, unet = load_frozen_parts(pipeline_dir, run.device)
    controlnet = make_controlnet(unet).to(run.device)
    scheduler = stable_diffusion_scheduler()
    ema = EMA(controlnet, decay=EMA_DECAY)
    batch = run.settings["batch"]

    def loss_fn(generator):
        index = torch.randint(0, len(latents_all), (batch,), device=run.device, generator=generator)
        latents = latents_all[index]  # (B, 4, H/8, W/8)
        condition = (controls_all[index].float() / 255)[:, None].expand(-1, 3, -1, -1)  # (B, 3, H, W) in [0, 1]
        caption_index = drop_captions(caption_index_all[index], cached["empty_caption"], generator)
        context = text_embeddings[caption_index]  # (B, 77, width)

        def predict_noise(noisy_latents, timesteps):
            """The frozen U-Net, the ControlNet's residuals added to its skip connections."""
            down_residuals, mid_residual = controlnet(noisy_latents, timesteps, encoder_hidden_states=context,
                                                      controlnet_cond=condition, return_dict=False)
            return unet(noisy_latents, timesteps, encoder_hidden_states=context,
                        down_block_additional_residuals=down_residuals,
                        mid_block_additional_residual=mid_residual).sample

        return training.noise_prediction_loss(predict_noise, scheduler, latents, generator)

    train_loop(run, "controlnet", controlnet, loss_fn, run.settings["steps"], lr=run.settings["lr"],
               seed=run.seed + CONTROLNET_SEED_OFFSET, extra_state=ema,
               keep_every_checkpoint=True)  # checkpoints/controlnet_step{N}.pt: evaluate.py --steps-curve measures them
    controlnet.save_pretrained(run.out / "controlnet_raw")  # the last weights, for comparison
    controlnet.load_state_dict(ema.shadow)
    controlnet.save_pretrained(run.out / "controlnet")


EXAMPLE_COUNT = 16  # training scenes shipped for notebook 12's live training (it cannot render: no OpenMoji)
HELD_OUT_EXAMPLES = 8  # held-out one-box layouts (seeds of evaluate.py) for notebook 12's scale sweep


def write_examples(folder):
    """examples.png (the first EXAMPLE_COUNT training scenes, a 4-wide grid) and examples.json (their
    captions and boxes, plus held-out one-box layouts the ControlNet never trained on)."""
    from PIL import Image

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


def stage_export(run, target, preset, force):
    """assets/pocket-controlnet: the float16 ControlNetModel, control.json, training_log.json, examples.

    A ControlNet there is replaced only with --force; its model card and measurements are kept."""
    from diffusers import ControlNetModel

    target = pathlib.Path(target)
    training.refuse_to_overwrite(target, "config.json", "a ControlNet", force,
                                 kept=" (its README.md and evaluation.json are kept)")
    controlnet = ControlNetModel.from_pretrained(run.out / "controlnet", **dtype_option(torch.float16))
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


# What each stage leaves under --out; it is skipped when that exists. Export (None) always runs.
STAGE_RESULTS = {"data": "data.pt", "controlnet": "controlnet", "export": None}


def main(argv=None):
    parser = training.make_parser(__doc__, "runs/pocket-controlnet", PRESETS, STAGES, TRAINING_STAGES,
                                  minutes_example="controlnet=85")
    parser.add_argument("--pipeline", default=str(POCKET_DIR), help="the pocket model folder (default assets/pocket)")
    parser.add_argument("--export-to", default=str(POCKET_CONTROLNET_DIR), help="ControlNet folder to write (default assets/pocket-controlnet)")
    args = training.parse_arguments(parser, argv, STAGES, TRAINING_STAGES)

    device = training.training_device()
    preset = training.preset_for(args.preset, device)
    if not (pathlib.Path(args.pipeline) / "unet" / "config.json").exists():
        raise SystemExit(f"no pocket model in {args.pipeline}: build it with `python -m sdnotes.pocket.train` first")
    torch.manual_seed(args.seed)
    run = Run(args.out, dict(PRESETS[preset]), device, seed=args.seed)
    run.minutes = args.minutes
    print(f"pocket ControlNet: preset {preset}, device {training.device_name(device)}, out {run.out}")
    stage_functions = {
        "data": functools.partial(stage_data, pipeline_dir=args.pipeline),
        "controlnet": functools.partial(stage_controlnet, pipeline_dir=args.pipeline),
        "export": functools.partial(stage_export, target=args.export_to, preset=preset, force=args.force),
    }
    training.run_stages(run, args.stages, stage_functions, STAGE_RESULTS, args.force, preset,
                        extra_fields={"batch": run.settings["batch"]})


if __name__ == "__main__":
    main()
