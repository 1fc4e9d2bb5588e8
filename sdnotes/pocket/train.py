"""Train the pocket model from scratch: `python -m sdnotes.pocket.train`.

The recipe follows Stable Diffusion's own history, in miniature:
  1. clip    - a text tower and an image tower trained contrastively on
               (scene, caption) pairs (CLIP, Radford et al. 2021). The text
               tower becomes the frozen text encoder; the image tower the judge.
  2. vae     - an AutoencoderKL trained to reconstruct scenes through a
               4 x H/8 x W/8 latent (Rombach, Esser et al. 2022).
  3. latents - every training scene encoded once; the scaling factor measured
               as 1 / std of the latents, the way SD's 0.18215 was.
  4. unet    - a UNet2DConditionModel trained to predict the added noise on
               SD's schedule (Ho et al. 2020), captions dropped 10% of the time
               so classifier-free guidance works (Ho & Salimans 2022), with an
               exponential moving average of its weights.
  5. export  - a standard diffusers pipeline folder (assets/pocket) and the
               judge (assets/pocket-judge).

Every stage writes its result under --out and is skipped when run again;
training stages checkpoint every few hundred steps and resume from there.
Seeds are fixed, so a run reproduces (up to GPU non-determinism).
`--minutes clip=1.5,vae=5,unet=7` cuts the steps of those stages to fit the
time budgets. The arguments and stage handling it shares with the ControlNet's
command are in sdnotes/pocket/training.py.
"""

import functools
import json
import pathlib
import shutil
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sdnotes.paths import POCKET_DIR
from sdnotes.pocket import architecture, data, training
from sdnotes.pocket import export as export_module
from sdnotes.schedule import stable_diffusion_scheduler
from sdnotes.tokenizer import load_tokenizer

PRESETS = {
    # Steps, batch sizes and data size per stage. "gpu" is the recipe of the
    # shipped model (about 12 minutes on one H100); "cpu" is a smaller recipe,
    # measured at about 3.9 hours on 2 CPU cores, quality not measured (see the
    # model card, "CPU recipe"); "smoke" is the test.
    "gpu": {"scenes": 150_000, "clip_steps": 766, "clip_batch": 512, "vae_steps": 3356, "vae_batch": 64,
            "unet_steps": 3718, "unet_batch": 512, "lr_unet": 5e-4},
    "cpu": {"scenes": 30_000, "clip_steps": 800, "clip_batch": 128, "vae_steps": 1500, "vae_batch": 16,
            "unet_steps": 4000, "unet_batch": 64, "lr_unet": 4e-4},
    "smoke": {"scenes": 64, "clip_steps": 3, "clip_batch": 8, "vae_steps": 3, "vae_batch": 2,
              "unet_steps": 3, "unet_batch": 4, "lr_unet": 4e-4},
}
STAGES = ["clip", "vae", "latents", "unet", "export"]
TRAINING_STAGES = ["clip", "vae", "unet"]  # the stages --minutes can budget
CHECKPOINT_EVERY = 500
CAPTION_DROPOUT = 0.1


def warmup_cosine(step, total, warmup=200):
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item())


class Run:
    """Shared state of one training run: data, tokens, paths, logs."""

    def __init__(self, out, settings, device, seed=0):
        """settings: a recipe's steps, batch sizes and data size, e.g. PRESETS["cpu"]."""
        self.out = pathlib.Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.device = device
        self.seed = seed
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
        self._images = None
        self.minutes = {}  # {stage: time budget in minutes}, from --minutes
        self.steps_done = {}
        self._captions = None

    def images_and_captions(self):
        """All training scenes (seeds 0..N-1), rendered once per run."""
        if self._images is None:
            count = self.settings["scenes"]
            print(f"rendering {count} scenes ...")
            start = time.time()
            images, captions = data.render_batch_parallel(range(count))
            print(f"rendered in {time.time() - start:.0f} s")
            self._images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(self.device)  # (N, 3, H, W) uint8
            unique = sorted(set(captions) | {""})
            self.unique_captions = unique
            index_of = {caption: index for index, caption in enumerate(unique)}
            self._captions = torch.tensor([index_of[caption] for caption in captions], device=self.device)
            tokenizer = load_tokenizer()
            ids = tokenizer(unique, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
            self.caption_ids = ids.to(self.device)  # (U, 77)
            self.empty_caption = index_of[""]
        return self._images, self._captions

    def log(self, stage, records):
        (self.out / "logs").mkdir(exist_ok=True)
        with open(self.out / "logs" / f"{stage}.json", "w") as handle:
            json.dump(records, handle)

    def checkpoint_path(self, stage):
        return self.out / "checkpoints" / f"{stage}.pt"

    def save_checkpoint(self, stage, state):
        path = self.checkpoint_path(stage)
        path.parent.mkdir(exist_ok=True)
        torch.save(state, str(path) + ".tmp")
        pathlib.Path(str(path) + ".tmp").replace(path)

    def load_checkpoint(self, stage):
        path = self.checkpoint_path(stage)
        if path.exists():
            return torch.load(path, map_location=self.device, weights_only=False)
        return None


def to_unit_range(images_uint8):
    return images_uint8.float() / 127.5 - 1.0


def stage_seed(run, stage):
    """The seed of a stage's generator: --seed + 1000 x the stage's place in STAGES."""
    return run.seed + 1000 * STAGES.index(stage)


def train_loop(run, stage, model, loss_fn, steps, lr, seed, extra_state=None, keep_every_checkpoint=False):
    """A plain AdamW loop with warmup + cosine decay, checkpoints and a log.

    loss_fn(generator) -> the loss of one batch, drawn with that generator
    (seeded with `seed`, plus the step a run resumes at). extra_state: an EMA
    updated after every step and checkpointed with the model.
    keep_every_checkpoint: also keep a copy of each checkpoint ({stage}_step{N}.pt).
    With --minutes, the number of steps is cut to what fits in that many
    minutes on this machine: after 120 steps, and again at every checkpoint
    from the speed since the last one (a machine that gets busier still ends
    on time, one that gets idle again gets steps back; the cosine schedule
    follows the new count), never beyond `steps`. The log records the final count.
    """
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    start_step = 0
    records = []
    checkpoint = run.load_checkpoint(stage)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        start_step = checkpoint["step"]
        records = checkpoint["records"]
        if extra_state is not None:
            extra_state.load_state_dict(checkpoint["extra"])
        print(f"{stage}: resuming at step {start_step}")
    generator = torch.Generator(run.device).manual_seed(seed + start_step)
    model.train()
    budget_s = run.minutes.get(stage) * 60 if run.minutes.get(stage) else None
    asked_steps = steps
    started = time.time()
    progress = tqdm(range(start_step, steps), desc=stage, initial=start_step, total=steps)
    for step in progress:
        if budget_s is not None and step == start_step + 20:
            warm, warm_step = time.time(), step  # the first steps are slow (allocation, kernel choice)
        refit = step == start_step + 120 or (step > start_step + 120 and step % CHECKPOINT_EVERY == 0)
        if budget_s is not None and refit:
            seconds_per_step = (time.time() - warm) / (step - warm_step)
            warm, warm_step = time.time(), step
            seconds_left = max(0.0, budget_s - (time.time() - started))  # 0 if the budget is spent already
            fitting = min(asked_steps, step + int(seconds_left / seconds_per_step))
            if fitting != steps:
                print(f"{stage}: {seconds_per_step * 1000:.0f} ms/step; {steps} steps -> {fitting} to fit {budget_s / 60:.1f} min")
                steps = fitting
                progress.total = steps
        if step >= steps:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr * warmup_cosine(step, steps)
        with run.autocast:
            loss = loss_fn(generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if extra_state is not None:
            extra_state.update(model)
        if step % 10 == 0:
            records.append([step, loss.item()])
            progress.set_postfix(loss=f"{records[-1][1]:.4f}")
        if (step + 1) % CHECKPOINT_EVERY == 0 and step + 1 < steps:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1, "records": records}
            if extra_state is not None:
                state["extra"] = extra_state.state_dict()
            run.save_checkpoint(stage, state)
            if keep_every_checkpoint:
                shutil.copy(run.checkpoint_path(stage), run.checkpoint_path(stage).with_name(f"{stage}_step{step + 1}.pt"))
    run.log(stage, records)
    run.steps_done[stage] = steps
    if run.checkpoint_path(stage).exists():
        run.checkpoint_path(stage).unlink()  # finished: a later --force starts afresh
    recent = [loss for _, loss in records[-20:]]
    if recent:
        print(f"{stage}: {steps} steps, final loss {sum(recent) / len(recent):.4f}")
    model.eval()


def stage_clip(run):
    images, captions = run.images_and_captions()
    settings = run.settings
    clip = architecture.make_clip().to(run.device)

    def loss_fn(generator):
        index = torch.randint(0, len(images), (settings["clip_batch"],), device=run.device, generator=generator)
        pixels = F.avg_pool2d(to_unit_range(images[index]), data.IMAGE_SIZE // architecture.JUDGE_IMAGE_SIZE)
        caption_index = captions[index]
        output = clip(input_ids=run.caption_ids[caption_index], pixel_values=pixels)
        # Several images in a batch can share a caption: all of them are right answers.
        same = (caption_index[:, None] == caption_index[None, :]).float()
        targets = same / same.sum(dim=1, keepdim=True)
        loss_images = torch.sum(-targets * F.log_softmax(output.logits_per_image.float(), dim=1), dim=1).mean()
        loss_texts = torch.sum(-targets * F.log_softmax(output.logits_per_text.float(), dim=1), dim=1).mean()
        return (loss_images + loss_texts) / 2

    train_loop(run, "clip", clip, loss_fn, settings["clip_steps"], lr=1e-3, seed=stage_seed(run, "clip"))
    export_module.save_clip_parts(clip, run.out)


def image_gradients(images):
    dx = images[:, :, :, 1:] - images[:, :, :, :-1]
    dy = images[:, :, 1:, :] - images[:, :, :-1, :]
    return dx, dy


def stage_vae(run):
    images, _ = run.images_and_captions()
    settings = run.settings
    vae = architecture.make_vae().to(run.device)

    def loss_fn(generator):
        index = torch.randint(0, len(images), (settings["vae_batch"],), device=run.device, generator=generator)
        pixels = to_unit_range(images[index])  # (B, 3, H, W)
        posterior = vae.encode(pixels).latent_dist
        latents = posterior.sample(generator=generator)  # (B, 4, H/8, W/8)
        reconstruction = vae.decode(latents).sample.float()
        l1 = (reconstruction - pixels).abs().mean()
        rec_dx, rec_dy = image_gradients(reconstruction)
        dx, dy = image_gradients(pixels)
        edges = (rec_dx - dx).abs().mean() + (rec_dy - dy).abs().mean()
        kl = posterior.kl().mean() / latents[0].numel()
        return l1 + edges + 1e-4 * kl

    train_loop(run, "vae", vae, loss_fn, settings["vae_steps"], lr=5e-4, seed=stage_seed(run, "vae"))
    vae.save_pretrained(run.out / "vae")
    check_vae(run, vae)


HELD_OUT_SEED = 10_000_000  # scenes from here on are never trained on


@torch.no_grad()
def check_vae(run, vae, count=8):
    """PSNR on held-out scenes and a picture: originals above, reconstructions below."""
    from PIL import Image

    images, _ = data.render_batch(range(HELD_OUT_SEED, HELD_OUT_SEED + count))
    pixels = to_unit_range(torch.from_numpy(images).permute(0, 3, 1, 2)).to(run.device)
    reconstruction = vae.decode(vae.encode(pixels).latent_dist.mean).sample.clamp(-1, 1)
    mse = ((reconstruction - pixels) / 2).pow(2).mean(dim=(1, 2, 3))
    psnr = (10 * torch.log10(1 / mse)).mean().item()
    print(f"vae: held-out PSNR {psnr:.2f} dB")
    both = torch.cat([pixels, reconstruction])
    both = ((both + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    size = data.IMAGE_SIZE
    grid = Image.new("RGB", (size * count, size * 2))
    for index, array in enumerate(both):
        grid.paste(Image.fromarray(array), ((index % count) * size, (index // count) * size))
    (run.out / "logs").mkdir(exist_ok=True)
    grid.save(run.out / "logs" / "vae_reconstructions.png")
    (run.out / "logs" / "vae_psnr.json").write_text(json.dumps({"held_out_psnr_db": round(psnr, 2), "scenes": count}))


@torch.no_grad()
def stage_latents(run):
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel

    images, _ = run.images_and_captions()
    vae = AutoencoderKL.from_pretrained(run.out / "vae").to(run.device).eval()
    chunks = []
    for start in tqdm(range(0, len(images), 256), desc="encode"):
        pixels = to_unit_range(images[start:start + 256])
        chunks.append(vae.encode(pixels).latent_dist.mean.half())
    latents = torch.cat(chunks)  # (N, 4, H/8, W/8)
    scaling_factor = 1.0 / latents.float().std().item()
    print(f"latent std {latents.float().std().item():.4f} -> scaling_factor {scaling_factor:.5f}")
    vae.register_to_config(scaling_factor=scaling_factor)
    vae.save_pretrained(run.out / "vae")
    text_encoder = CLIPTextModel.from_pretrained(run.out / "text_encoder").to(run.device).eval()
    embeddings = []
    for start in range(0, len(run.caption_ids), 512):
        embeddings.append(text_encoder(run.caption_ids[start:start + 512]).last_hidden_state.half())
    torch.save({"latents": latents.cpu(), "scaling_factor": scaling_factor,
                "text_embeddings": torch.cat(embeddings).cpu(), "empty_caption": run.empty_caption},
               run.out / "latents.pt")


class EMA:
    """Exponential moving average of a model's weights (kept in float32).

    The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, as
    diffusers' EMAModel does, so the random initial weights fade out quickly.
    """

    def __init__(self, model, decay=0.999):
        self.decay = decay
        self.updates = 0
        self.shadow = {name: value.detach().clone().float() for name, value in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model):
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, value in model.state_dict().items():
            self.shadow[name].mul_(decay).add_(value.float(), alpha=1 - decay)

    def state_dict(self):
        return {"shadow": self.shadow, "updates": self.updates}

    def load_state_dict(self, state):
        self.shadow = state["shadow"]
        self.updates = state["updates"]


def drop_captions(caption_index, empty_caption, generator):
    """A copy of a batch's caption indices, CAPTION_DROPOUT of them replaced by the empty caption's
    (so that classifier-free guidance works, Ho & Salimans 2022)."""
    caption_index = caption_index.clone()
    dropped = torch.rand(len(caption_index), device=caption_index.device, generator=generator) < CAPTION_DROPOUT
    caption_index[dropped] = empty_caption
    return caption_index


def stage_unet(run):
    _, captions = run.images_and_captions()
    cached = torch.load(run.out / "latents.pt")
    latents_all = cached["latents"].to(run.device).float() * cached["scaling_factor"]
    text_embeddings = cached["text_embeddings"].to(run.device).float()  # (U, 77, width)
    settings = run.settings
    unet = architecture.make_unet().to(run.device)
    scheduler = stable_diffusion_scheduler()
    ema = EMA(unet)

    def loss_fn(generator):
        index = torch.randint(0, len(latents_all), (settings["unet_batch"],), device=run.device, generator=generator)
        latents = latents_all[index]  # (B, 4, h, w)
        caption_index = drop_captions(captions[index], cached["empty_caption"], generator)
        context = text_embeddings[caption_index]  # (B, 77, width)

        def predict_noise(noisy_latents, timesteps):
            return unet(noisy_latents, timesteps, encoder_hidden_states=context).sample

        return training.noise_prediction_loss(predict_noise, scheduler, latents, generator)

    train_loop(run, "unet", unet, loss_fn, settings["unet_steps"], lr=settings["lr_unet"],
               seed=stage_seed(run, "unet"), extra_state=ema)
    unet.save_pretrained(run.out / "unet_raw")  # the last weights, for comparison
    unet.load_state_dict(ema.shadow)
    unet.save_pretrained(run.out / "unet")


def stage_export(run, export_to, force):
    """The pipeline folder (default assets/pocket) and the judge beside it; a pocket model there is replaced
    only with --force."""
    target = pathlib.Path(export_to or POCKET_DIR)
    training.refuse_to_overwrite(target, "model_index.json", "a pocket model", force)
    export_module.export_pipeline(run.out, export_to)


STAGE_FUNCTIONS = {"clip": stage_clip, "vae": stage_vae, "latents": stage_latents, "unet": stage_unet}
# What each stage leaves under --out; it is skipped when that exists. Export (None) always runs.
STAGE_RESULTS = {"clip": "judge", "vae": "vae", "latents": "latents.pt", "unet": "unet", "export": None}


def main(argv=None):
    parser = training.make_parser(__doc__, "runs/pocket", PRESETS, STAGES, TRAINING_STAGES,
                                  minutes_example="clip=1.5,vae=5,unet=7")
    parser.add_argument("--export-to", default=None, help="pipeline folder to write (default: assets/pocket)")
    args = training.parse_arguments(parser, argv, STAGES, TRAINING_STAGES)

    device = training.training_device()
    preset = training.preset_for(args.preset, device)
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    run = Run(args.out, PRESETS[preset], device, seed=args.seed)
    run.minutes = args.minutes
    print(f"pocket model: preset {preset}, device {device}, out {run.out}")
    stage_functions = dict(STAGE_FUNCTIONS)
    stage_functions["export"] = functools.partial(stage_export, export_to=args.export_to, force=args.force)
    training.run_stages(run, args.stages, stage_functions, STAGE_RESULTS, args.force, preset)


if __name__ == "__main__":
    main()
