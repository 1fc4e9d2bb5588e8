"""What the two training commands share: arguments, stages, timing records, the noising loss.

  python -m sdnotes.pocket.train           the pocket model (sdnotes/pocket/train.py)
  python -m sdnotes.pocket.control.train   its ControlNet (sdnotes/pocket/control/train.py)

Both run a list of stages into an --out folder. A stage whose result exists
there is skipped (--force redoes it), so a run that stopped goes on where it
was; training stages also resume from their checkpoints (`train_loop` in
sdnotes/pocket/train.py). Each stage that runs appends one line to
{out}/logs/timings.jsonl. --minutes gives training stages time budgets in one
format for both commands: STAGE=MINUTES pairs separated by commas, e.g.
`--minutes clip=1.5,unet=7` or `--minutes controlnet=85`.

- `make_parser(...)` / `parse_arguments(...)`: the arguments both commands take.
- `parse_minutes(text, budgeted_stages)`: "clip=1.5,unet=7" -> {"clip": 1.5, "unet": 7.0}.
- `training_device()`, `preset_for(...)`, `device_name(...)`.
- `refuse_to_overwrite(...)`: an exported folder is replaced only with --force.
- `run_stages(...)`: skip, run, time and record each asked stage.
- `noise_prediction_loss(...)`: Stable Diffusion's training loss, for every
  training in the package (the notebooks write it out themselves).
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F


def make_parser(description, default_out, presets, stages, budgeted_stages, minutes_example):
    """The arguments both commands take; each command adds its own (--export-to, --pipeline) after."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=default_out, help=f"where stages write their results (default {default_out})")
    parser.add_argument("--preset", choices=list(presets), default=None,
                        help=f"one of {', '.join(presets)}; default gpu with CUDA, else cpu")
    parser.add_argument("--stages", default=",".join(stages), help=f"comma-separated subset of {stages}")
    parser.add_argument("--minutes", default="", metavar="STAGE=MINUTES[,...]",
                        help=f"time budgets of training stages ({', '.join(budgeted_stages)}), e.g. {minutes_example}; "
                             "the steps are cut to fit")
    parser.add_argument("--force", action="store_true",
                        help="redo stages whose results exist; replace an exported folder")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def parse_minutes(text, budgeted_stages):
    """'clip=1.5,unet=7' -> {'clip': 1.5, 'unet': 7.0}; '' -> {}. ValueError naming the fix otherwise."""
    example = f"--minutes {budgeted_stages[0]}=10"
    minutes = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if item.count("=") != 1:
            raise ValueError(f"--minutes takes STAGE=MINUTES pairs separated by commas, got {item!r}; "
                             f"write e.g. {example}")
        stage, value = item.split("=")
        stage = stage.strip()
        if stage not in budgeted_stages:
            raise ValueError(f"--minutes: {stage!r} is not a training stage; budgets apply to {budgeted_stages}")
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"--minutes: {item!r} needs a number of minutes after '=', e.g. {example}") from None
        if not value > 0:
            raise ValueError(f"--minutes: the budget of {stage} must be more than 0 minutes, got {value}")
        minutes[stage] = value
    return minutes


def parse_stages(text, stages):
    """'clip,vae' -> ['clip', 'vae']; ValueError for a stage the command does not have."""
    asked = text.split(",")
    for stage in asked:
        if stage not in stages:
            raise ValueError(f"unknown stage {stage!r}; choose from {stages}")
    return asked


def parse_arguments(parser, argv, stages, budgeted_stages):
    """parse_args, with --stages as a list and --minutes as {stage: minutes}; bad values end with the usage."""
    args = parser.parse_args(argv)
    try:
        args.stages = parse_stages(args.stages, stages)
        args.minutes = parse_minutes(args.minutes, budgeted_stages)
    except ValueError as error:
        parser.error(str(error))
    return args


def training_device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def preset_for(asked, device):
    """The asked preset, or "gpu" with CUDA and "cpu" without."""
    if asked is not None:
        return asked
    if device.type == "cuda":
        return "gpu"
    return "cpu"


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def refuse_to_overwrite(target, marker, what, force, kept=""):
    """SystemExit if `target` already holds `what` (it has `marker`), unless --force was given."""
    if (target / marker).exists() and not force:
        raise SystemExit(f"{target} already holds {what}; it is not replaced silently. "
                         f"Pass --force to replace it{kept}, or --export-to another folder.")


def record_timing(run, stage, seconds, preset, extra_fields=None):
    """Append {stage, seconds, preset, device, steps, **extra_fields} to {out}/logs/timings.jsonl."""
    record = {"stage": stage, "seconds": seconds, "preset": preset, "device": device_name(run.device),
              "steps": run.steps_done.get(stage)}
    if extra_fields is not None:
        record.update(extra_fields)
    (run.out / "logs").mkdir(exist_ok=True)
    with open(run.out / "logs" / "timings.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")


def run_stages(run, stages, stage_functions, results, force, preset, extra_fields=None):
    """Run the asked stages in order: stage_functions[stage](run).

    results[stage]: the file or folder under run.out that a finished stage
    leaves; when it exists the stage is skipped unless `force`. A stage whose
    result is None (export) always runs and is not timed: it is not training.
    """
    for stage in stages:
        result = results[stage]
        if result is None:
            stage_functions[stage](run)
            continue
        if (run.out / result).exists() and not force:
            print(f"{stage}: done already ({run.out / result}); --force redoes it")
            continue
        start = time.time()
        stage_functions[stage](run)
        seconds = round(time.time() - start, 1)
        print(f"{stage}: {seconds} s")
        record_timing(run, stage, seconds, preset, extra_fields)


def noise_prediction_loss(predict_noise, scheduler, latents, generator):
    """Stable Diffusion's training loss ||eps - eps_theta(x_t, t, c)||^2 on one batch (Ho et al. 2020, eq. 14).

    Draws the noise eps, then one timestep per picture, from `generator` (on
    its own device); noises the latents on the scheduler's schedule (x_t, DDPM
    eq. 4); compares predict_noise(x_t, t), the model call with its text (and
    control) already bound, with eps.
    """
    batch = latents.shape[0]
    noise = torch.randn(latents.shape, device=generator.device, generator=generator)
    noise = noise.to(latents.device, latents.dtype)  # (B, 4, h, w)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), device=generator.device,
                              generator=generator)
    timesteps = timesteps.to(latents.device)  # (B,)
    noisy_latents = scheduler.add_noise(latents, noise, timesteps)  # (B, 4, h, w)
    noise_pred = predict_noise(noisy_latents, timesteps)  # (B, 4, h, w)
    return F.mse_loss(noise_pred.float(), noise.float())
