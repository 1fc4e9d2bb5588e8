"""Stable Diffusion's noise schedule and scheduler settings, written once for the package.

SD 1.x and SD 2.x (base) were trained with the same schedule: 1000 timesteps,
betas "scaled_linear" from 0.00085 to 0.012. Their pipelines ship a PNDM
scheduler with the settings in SD_SCHEDULER_CONFIG.

- `SD_SCHEDULER_CONFIG`: stable-diffusion-v1-5's scheduler/scheduler_config.json
  (SD 2.1-base's is the same). `DDIMScheduler.from_config(SD_SCHEDULER_CONFIG)`
  builds any diffusers scheduler with SD's settings, as a notebook does with
  `pipe.scheduler.config`.
- `stable_diffusion_scheduler()`: a DDPMScheduler with SD's training schedule
  (alphas_cumprod, add_noise, step), for the exercise checks and the pocket
  model's training.
- `sd_pipeline_scheduler()`: the PNDMScheduler in SD's pipeline folder, for
  the SD-shaped test models in `sdnotes/tiny.py` and the pocket model's
  pipeline folder (`sdnotes/pocket/export.py`).

This file imports nothing else from sdnotes, so the exercise checks can use it
without the model-loading code.

References:
https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/blob/main/scheduler/scheduler_config.json,
https://huggingface.co/docs/diffusers/api/schedulers/ddpm,
https://huggingface.co/docs/diffusers/api/schedulers/pndm
"""

from diffusers import DDPMScheduler, PNDMScheduler

# The schedule SD 1.x and 2.x were trained with.
SD_TRAINING_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
}

# stable-diffusion-v1-5's scheduler/scheduler_config.json: the training
# schedule plus PNDM's settings (prediction_type is the default, "epsilon").
# PNDM has no clip_sample argument, but the file records clip_sample=False,
# and DDIMScheduler.from_config(...) reads it.
SD_SCHEDULER_CONFIG = {
    **SD_TRAINING_SCHEDULE,
    "skip_prk_steps": True,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "clip_sample": False,
}


def stable_diffusion_scheduler():
    """A DDPMScheduler with SD's training schedule; x̂₀ is not clipped, as in SD's own schedulers."""
    return DDPMScheduler(**SD_TRAINING_SCHEDULE, clip_sample=False)


def sd_pipeline_scheduler():
    """The PNDMScheduler SD 1.5 and SD 2.1-base ship, with their scheduler_config.json."""
    return PNDMScheduler.from_config(SD_SCHEDULER_CONFIG)
