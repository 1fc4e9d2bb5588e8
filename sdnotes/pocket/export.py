"""Write the trained pocket model as a standard diffusers pipeline folder.

assets/pocket/          model_index.json, text_encoder/, tokenizer/, unet/,
                        vae/, scheduler/ (what StableDiffusionPipeline loads),
                        plus vocabulary.json and training_log.json
assets/pocket-judge/    the pocket CLIP image tower and text projection

The U-Net and VAE are stored in float16 to halve the download; diffusers
loads them as float32 unless asked otherwise. The text encoder stays float32
(transformers keeps a checkpoint's dtype).
"""

import json
import pathlib

import torch
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPVisionModelWithProjection

from sdnotes.paths import POCKET_DIR, POCKET_JUDGE_DIR
from sdnotes.pocket import architecture, data
from sdnotes.schedule import sd_pipeline_scheduler


def save_clip_parts(clip, out):
    """Split a trained CLIPModel into the text encoder and the judge."""
    out = pathlib.Path(out)
    text_encoder = CLIPTextModel(architecture.text_config())
    text_encoder.load_state_dict(clip.text_model.state_dict())
    text_encoder.save_pretrained(out / "text_encoder")

    vision = CLIPVisionModelWithProjection(architecture.vision_config())
    vision.vision_model.load_state_dict(clip.vision_model.state_dict())
    vision.visual_projection.load_state_dict(clip.visual_projection.state_dict())
    vision.save_pretrained(out / "judge")
    projection = {
        "text_projection": clip.text_projection.weight.detach().float().cpu().contiguous(),
        "logit_scale": clip.logit_scale.detach().float().cpu().reshape(1),
    }
    save_file(projection, str(out / "judge" / "text_projection.safetensors"))


def _training_log(out):
    log = {}
    for stage in ["clip", "vae", "unet"]:
        path = out / "logs" / f"{stage}.json"
        if path.exists():
            log[stage] = {"step": [], "loss": []}
            for step, loss in json.loads(path.read_text()):
                log[stage]["step"].append(step)
                log[stage]["loss"].append(round(loss, 5))
    timings = out / "logs" / "timings.jsonl"
    if timings.exists():
        log["timings"] = [json.loads(line) for line in timings.read_text().splitlines() if line.strip()]
    return log


def export_pipeline(out, pipeline_dir=None, judge_dir=None):
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel

    from sdnotes.tokenizer import load_tokenizer

    out = pathlib.Path(out)
    pipeline_dir = pathlib.Path(pipeline_dir or POCKET_DIR)
    if judge_dir is None:
        judge_dir = POCKET_JUDGE_DIR if pipeline_dir == POCKET_DIR else pipeline_dir.with_name(pipeline_dir.name + "-judge")
    judge_dir = pathlib.Path(judge_dir)
    pipeline = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(out / "vae").half(),
        text_encoder=CLIPTextModel.from_pretrained(out / "text_encoder", dtype=torch.float32),
        tokenizer=load_tokenizer(),
        unet=UNet2DConditionModel.from_pretrained(out / "unet").half(),
        scheduler=sd_pipeline_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(pipeline_dir, safe_serialization=True)
    (pipeline_dir / "vocabulary.json").write_text(json.dumps(data.vocabulary(), indent=2, ensure_ascii=False))
    (pipeline_dir / "training_log.json").write_text(json.dumps(_training_log(out)))

    judge_dir.mkdir(parents=True, exist_ok=True)
    for path in (out / "judge").iterdir():
        (judge_dir / path.name).write_bytes(path.read_bytes())
    print(f"exported the pipeline to {pipeline_dir} and the judge to {judge_dir}")
