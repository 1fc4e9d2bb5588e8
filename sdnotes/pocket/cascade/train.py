"""Train the pocket cascade: `python -m sdnotes.pocket.cascade.train`.

Imagen's recipe (Saharia et al. 2022), in miniature; see
sdnotes/pocket/cascade/__init__.py for the two U-Nets:
  1. data              - pocket scenes (sdnotes/pocket/data.py) rendered at 128 x 128
                         from their own seeds, with their captions encoded once
                         by the frozen pocket text encoder.
  2. base              - the 32 x 32 pixel model: eps-prediction on the cosine
                         schedule, on the scenes downsampled to 32 x 32 (area),
                         captions dropped 10% of the time for guidance.
  3. super_resolution  - the 32 -> 128 model, on random 64 x 64 crops: the
                         scene's 32 x 32 version is upsampled (bilinear) and
                         noised at a random augmentation level s in 0..999,
                         uniform, told to the model through class_labels
                         (noise-conditioning augmentation, Ho et al. 2022);
                         v-prediction (see sdnotes/pocket/cascade/__init__.py
                         for why); captions dropped 10% of the time.
  4. export            - assets/pocket-cascade/{base,super_resolution}: standard
                         diffusers UNet2DConditionModel folders in float16, the
                         scheduler config, training_log.json.

The two training stages do not depend on each other (super-resolution trains on
real low-res pictures, not on the base's), so they can run at the same time in
two processes: `--stages data` once, then `--stages base` and
`--stages super_resolution` side by side, one thread each, then
`--stages export`. Stages skip when their result exists; training checkpoints
every 500 steps and resumes (`train_loop` of sdnotes/pocket/train.py).
Presets: "cpu" (about 3 hours on 2 CPU cores for both stages: 6,000 steps each
at about 1 s per step on one thread, side by side), "gpu" (scaled up, not run
yet), "smoke" (the test). `--minutes base=95,super_resolution=70` cuts the
steps to fit (the shipped run; its model card says what it did).
"""

import functools
import json
import pathlib
import shutil
import time

import torch

from sdnotes.hub import dtype_option
from sdnotes.paths import POCKET_CASCADE_DIR, POCKET_DIR
from sdnotes.pocket import cascade, data, training
from sdnotes.pocket.train import EMA, Run, drop_captions, to_unit_range, train_loop

PRESETS = {
    # "cpu": measured 0.96 s per base step and 0.94 s per super-resolution step (batch 16, one thread each).
    "gpu": {"scenes": 150_000, "base_steps": 20_000, "base_batch": 256, "sr_steps": 20_000, "sr_batch": 128,
            "lr": 5e-4},
    "cpu": {"scenes": 40_000, "base_steps": 6_000, "base_batch": 16, "sr_steps": 6_000, "sr_batch": 16,
            "lr": 5e-4},
    "smoke": {"scenes": 16, "base_steps": 3, "base_batch": 4, "sr_steps": 3, "sr_batch": 2, "lr": 5e-4},
}
STAGES = ["data", "base", "super_resolution", "export"]
TRAINING_STAGES = ["base", "super_resolution"]  # the stages --minutes can budget
EMA_DECAY = 0.995
SEED_OFFSETS = {"base": 6000, "super_resolution": 7000}  # generator seeds: --seed + offset


@torch.no_grad()
def stage_data(run, pipeline_dir):
    from transformers import CLIPTextModel

    from sdnotes.tokenizer import load_tokenizer

    count = run.settings["scenes"]
    print(f"rendering {count} scenes ...")
    start = time.time()
    images, captions = data.render_batch(range(cascade.SCENE_SEED, cascade.SCENE_SEED + count))
    print(f"rendered in {time.time() - start:.0f} s")
    unique = sorted(set(captions) | {""})
    index_of = {caption: index for index, caption in enumerate(unique)}
    tokenizer = load_tokenizer()
    ids = tokenizer(unique, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    text_encoder = CLIPTextModel.from_pretrained(pathlib.Path(pipeline_dir) / "text_encoder").eval()
    embeddings = torch.cat([text_encoder(ids[i:i + 512]).last_hidden_state for i in range(0, len(ids), 512)])
    torch.save({"images": torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),  # (N, 3, 128, 128) uint8
                "caption_index": torch.tensor([index_of[caption] for caption in captions]),
                "text_embeddings": embeddings.half(),  # (U, 77, width)
                "empty_caption": index_of[""]}, run.out / "data.pt")
    print(f"data: {count} scenes, {len(unique)} captions, {time.time() - start:.0f} s")


def load_data(run):
    cached = torch.load(run.out / "data.pt")
    return (cached["images"].to(run.device), cached["caption_index"].to(run.device),
            cached["text_embeddings"].to(run.device).float(), cached["empty_caption"])


def stage_base(run):
    images_all, caption_index_all, text_embeddings, empty_caption = load_data(run)
    unet = cascade.make_base_unet().to(run.device)
    scheduler = cascade.cascade_scheduler()
    ema = EMA(unet, decay=EMA_DECAY)
    batch = run.settings["base_batch"]

    def loss_fn(generator):
        index = torch.randint(0, len(images_all), (batch,), device=run.device, generator=generator)
        pixels = cascade.downsample(to_unit_range(images_all[index]))  # (B, 3, 32, 32) in [-1, 1]
        context = text_embeddings[drop_captions(caption_index_all[index], empty_caption, generator)]  # (B, 77, w)

        def predict_noise(noisy, timesteps):
            return unet(noisy, timesteps, encoder_hidden_states=context).sample

        return training.noise_prediction_loss(predict_noise, scheduler, pixels, generator)

    train_loop(run, "base", unet, loss_fn, run.settings["base_steps"], lr=run.settings["lr"],
               seed=run.seed + SEED_OFFSETS["base"], extra_state=ema)
    unet.load_state_dict(ema.shadow)
    unet.save_pretrained(run.out / "base")


def random_crops(tensors, size, generator):
    """The same random size x size crop of each picture in every tensor of `tensors` ((B, C, H, W) each)."""
    batch, _, height, width = tensors[0].shape
    tops = torch.randint(0, height - size + 1, (batch,), device=generator.device, generator=generator).tolist()
    lefts = torch.randint(0, width - size + 1, (batch,), device=generator.device, generator=generator).tolist()
    return [torch.stack([t[i, :, top:top + size, left:left + size] for i, (top, left) in enumerate(zip(tops, lefts))])
            for t in tensors]


def stage_super_resolution(run):
    images_all, caption_index_all, text_embeddings, empty_caption = load_data(run)
    unet = cascade.make_super_resolution_unet().to(run.device)
    scheduler = cascade.cascade_scheduler("super_resolution")  # v-prediction
    ema = EMA(unet, decay=EMA_DECAY)
    batch = run.settings["sr_batch"]

    def loss_fn(generator):
        index = torch.randint(0, len(images_all), (batch,), device=run.device, generator=generator)
        high = to_unit_range(images_all[index])  # (B, 3, 128, 128)
        low = cascade.upsample(cascade.downsample(high))  # (B, 3, 128, 128): what the base would give, upsampled
        levels = torch.randint(0, cascade.NUM_TRAIN_TIMESTEPS, (batch,), device=generator.device, generator=generator)
        augmented, levels = cascade.augment_low_res(low, levels.to(run.device), generator, scheduler)
        high, augmented = random_crops([high, augmented], cascade.SR_CROP, generator)  # (B, 3, 64, 64) each
        context = text_embeddings[drop_captions(caption_index_all[index], empty_caption, generator)]

        # the diffusion loss with v as the target (Salimans & Ho 2022, eq. 9 and appendix D)
        noise = torch.randn(high.shape, device=generator.device, generator=generator).to(high.device)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), device=generator.device,
                                  generator=generator).to(high.device)
        noisy = scheduler.add_noise(high, noise, timesteps)  # (B, 3, 64, 64)
        target = scheduler.get_velocity(high, noise, timesteps)  # v = sqrt(abar) eps - sqrt(1 - abar) x0
        model_input = torch.cat([noisy, augmented], dim=1)  # (B, 6, 64, 64)
        prediction = unet(model_input, timesteps, encoder_hidden_states=context, class_labels=levels).sample
        return torch.nn.functional.mse_loss(prediction.float(), target.float())

    train_loop(run, "super_resolution", unet, loss_fn, run.settings["sr_steps"], lr=run.settings["lr"],
               seed=run.seed + SEED_OFFSETS["super_resolution"], extra_state=ema)
    unet.load_state_dict(ema.shadow)
    unet.save_pretrained(run.out / "super_resolution")


def stage_export(run, target, preset, force):
    """assets/pocket-cascade: both U-Nets in float16, scheduler/, training_log.json.
    A cascade there is replaced only with --force; its model card and measurements are kept."""
    from diffusers import UNet2DConditionModel

    target = pathlib.Path(target)
    training.refuse_to_overwrite(target, "base/config.json", "a pocket cascade", force,
                                 kept=" (its README.md, evaluation.json and figures are kept)")
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for part in ("base", "super_resolution"):
        unet = UNet2DConditionModel.from_pretrained(run.out / part, **dtype_option(torch.float16))
        unet.save_pretrained(staging / part)
    for part in ("base", "super_resolution"):  # each model's training schedule and prediction type
        cascade.cascade_scheduler(part).save_pretrained(staging / part / "scheduler")
    timings = [json.loads(line) for line in (run.out / "logs" / "timings.jsonl").read_text().splitlines()]
    log = {"preset": preset, "settings": run.settings, "stages": timings,
           "loss_every_10_steps": {part: json.loads((run.out / "logs" / f"{part}.json").read_text())
                                   for part in ("base", "super_resolution")}}
    (staging / "training_log.json").write_text(json.dumps(log) + "\n")
    if target.exists():
        for path in target.iterdir():  # the model card, measurements and figures, if made
            if path.is_file() and not (staging / path.name).exists():
                shutil.copy(path, staging / path.name)
        shutil.rmtree(target)
    staging.replace(target)
    print(f"export: {target}")


# What each stage leaves under --out; it is skipped when that exists. Export (None) always runs.
STAGE_RESULTS = {"data": "data.pt", "base": "base", "super_resolution": "super_resolution", "export": None}


def main(argv=None):
    parser = training.make_parser(__doc__, "runs/pocket-cascade", PRESETS, STAGES, TRAINING_STAGES,
                                  minutes_example="base=95,super_resolution=70")
    parser.add_argument("--pipeline", default=str(POCKET_DIR), help="the pocket model folder, for its text encoder")
    parser.add_argument("--export-to", default=str(POCKET_CASCADE_DIR),
                        help="cascade folder to write (default assets/pocket-cascade)")
    args = training.parse_arguments(parser, argv, STAGES, TRAINING_STAGES)
    device = training.training_device()
    preset = training.preset_for(args.preset, device)
    torch.manual_seed(args.seed)
    run = Run(args.out, dict(PRESETS[preset]), device, seed=args.seed)
    run.minutes = args.minutes
    print(f"pocket cascade: preset {preset}, device {training.device_name(device)}, out {run.out}")
    stage_functions = {
        "data": functools.partial(stage_data, pipeline_dir=args.pipeline),
        "base": stage_base,
        "super_resolution": stage_super_resolution,
        "export": functools.partial(stage_export, target=args.export_to, preset=preset, force=args.force),
    }
    training.run_stages(run, args.stages, stage_functions, STAGE_RESULTS, args.force, preset)


if __name__ == "__main__":
    main()
