"""The pocket model: its data, the shipped folder, determinism, the judge, a training smoke run."""

import json

import numpy as np
import pytest
import torch

from sdnotes.paths import POCKET_DIR, POCKET_JUDGE_DIR
from sdnotes.pocket import architecture, data

POCKET = POCKET_DIR


@pytest.fixture(scope="module")
def pipe():
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    # Exactly what a user would type: plain diffusers, no sdnotes code.
    pipeline = StableDiffusionPipeline.from_pretrained(POCKET)
    pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def judge():
    from sdnotes.pocket.judge import PocketJudge

    return PocketJudge()


def test_scenes_are_deterministic_and_match_their_captions():
    first = data.make_scene(123)
    again = data.make_scene(123)
    assert np.array_equal(np.asarray(first.image), np.asarray(again.image))
    assert first.caption == again.caption
    for seed in range(200):
        scene = data.make_scene(seed)
        for item in scene.objects:
            assert item.name in scene.caption
            x0, y0, x1, y1 = item.box
            assert 0 <= x0 < x1 <= data.IMAGE_SIZE and 0 <= y0 < y1 <= data.IMAGE_SIZE
        if " on the left" in scene.caption and " and " not in scene.caption:
            assert scene.objects[0].side == "left"
        if f"on a {scene.background} background" not in scene.caption:
            continue
        assert scene.background in data.BACKGROUNDS


def test_unknown_object_names_the_valid_ones():
    with pytest.raises(ValueError, match="cat face"):
        data.sprite("unicorn")


def test_vocabulary_file_matches_the_data_code():
    shipped = json.loads((POCKET / "vocabulary.json").read_text())
    assert shipped == json.loads(json.dumps(data.vocabulary(), ensure_ascii=False))
    assert len(shipped["objects"]) >= 16


def test_folder_has_stable_diffusions_shapes_and_schedule(pipe):
    assert pipe.vae.config.latent_channels == 4
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    assert factor == 8
    pixels = 3 * data.IMAGE_SIZE**2
    latents = 4 * (data.IMAGE_SIZE // factor) ** 2
    assert pixels / latents == 48  # the same compression as SD: 3x512x512 -> 4x64x64
    assert pipe.tokenizer.model_max_length == 77 and len(pipe.tokenizer) == 49408
    assert pipe.text_encoder.config.max_position_embeddings == 77
    config = pipe.scheduler.config
    assert (config.beta_start, config.beta_end, config.beta_schedule) == (0.00085, 0.012, "scaled_linear")
    assert config.num_train_timesteps == 1000
    assert config.clip_sample is False
    # the scaling factor was measured (unit-variance latents), not copied from SD
    assert 0.05 < pipe.vae.config.scaling_factor < 5 and pipe.vae.config.scaling_factor != 0.18215


def test_assets_fit_the_budget():
    total = 0
    for path in (POCKET.parent).rglob("*"):
        if path.is_file():
            total += path.stat().st_size
    # The developers' guide: assets/ stays at or under 60 MB (44.0 MiB with the pocket ControlNet; the pocket
    # cascade of notebook 13 adds 10.2 MB of float16 U-Nets).
    assert total <= 60 * 1024**2, f"assets/ is {total / 1024**2:.1f} MB; the budget is 60 MB"


def test_same_seed_gives_the_same_pixels(pipe):
    settings = {"num_inference_steps": 4, "guidance_scale": 7.5, "output_type": "np"}
    first = pipe("a cat face", generator=torch.Generator().manual_seed(7), **settings).images
    second = pipe("a cat face", generator=torch.Generator().manual_seed(7), **settings).images
    other = pipe("a cat face", generator=torch.Generator().manual_seed(8), **settings).images
    assert first.shape == (1, data.IMAGE_SIZE, data.IMAGE_SIZE, 3)
    assert np.array_equal(first, second)
    assert not np.allclose(first, other)


def test_the_prompt_controls_the_object(pipe, judge):
    names = ["cat face", "banana", "rocket", "ghost"]
    prompts = [f"{data.article(name)} {name}" for name in names]
    generators = [torch.Generator().manual_seed(100 + index) for index in range(len(names))]
    images = pipe(prompts, num_inference_steps=15, guidance_scale=7.5, generator=generators).images
    assert judge.classify(images) == names


def test_judge_recognises_real_scenes(judge):
    from sdnotes.pocket.judge import object_side

    scenes = [data.make_scene(seed) for seed in range(30_000_000, 30_000_060)]
    single = [scene for scene in scenes if len(scene.objects) == 1]
    labels = judge.classify([scene.image for scene in single])
    correct = sum(label == scene.objects[0].name for label, scene in zip(labels, single))
    assert correct / len(single) >= 0.95
    sided = [scene for scene in single if scene.objects[0].side != "center"]
    agree = sum(object_side(scene.image) == scene.objects[0].side for scene in sided)
    assert agree / len(sided) >= 0.9
    scores = judge.clip_score([single[0].image, single[0].image], [single[0].caption, "a penguin on a pink background"])
    assert scores[0] > scores[1] or single[0].objects[0].name == "penguin"


def test_judge_folder_is_shipped():
    assert (POCKET_JUDGE_DIR / "config.json").exists()
    assert (POCKET_JUDGE_DIR / "text_projection.safetensors").exists()


def test_training_smoke_run_writes_a_loadable_pipeline(tmp_path):
    from diffusers import StableDiffusionPipeline

    from sdnotes.pocket import train

    out = tmp_path / "run"
    export_to = tmp_path / "pocket"
    train.main(["--preset", "smoke", "--out", str(out), "--export-to", str(export_to)])
    for stage in ["clip", "vae", "unet"]:
        records = json.loads((out / "logs" / f"{stage}.json").read_text())
        assert records and all(np.isfinite(loss) for _, loss in records)
    pipeline = StableDiffusionPipeline.from_pretrained(export_to)
    assert pipeline.unet.config.cross_attention_dim == architecture.TEXT_WIDTH
    image = pipeline("a banana", num_inference_steps=2, output_type="np").images
    assert image.shape == (1, data.IMAGE_SIZE, data.IMAGE_SIZE, 3)
    assert (export_to.parent / "pocket-judge" / "config.json").exists()
    # Exporting again over an existing model is refused unless --force is given.
    with pytest.raises(SystemExit, match="--force"):
        train.main(["--preset", "smoke", "--out", str(out), "--stages", "export", "--export-to", str(export_to)])
    # A second run skips finished stages instead of overwriting them.
    before = (out / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime
    train.main(["--preset", "smoke", "--out", str(out), "--stages", "unet"])
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime == before


def test_training_resumes_from_a_checkpoint(tmp_path, monkeypatch):
    from sdnotes.pocket import train

    monkeypatch.setattr(train, "CHECKPOINT_EVERY", 2)
    monkeypatch.setitem(train.PRESETS, "smoke", dict(train.PRESETS["smoke"], vae_steps=4))
    out = tmp_path / "run"
    original_clip = torch.nn.utils.clip_grad_norm_
    calls = []

    def interrupted_at_the_fourth_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original_clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", interrupted_at_the_fourth_step)
    with pytest.raises(KeyboardInterrupt):
        train.stage_vae(train.Run(out, train.PRESETS["smoke"], torch.device("cpu")))
    assert train.Run(out, train.PRESETS["smoke"], torch.device("cpu")).load_checkpoint("vae")["step"] == 2
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", original_clip)
    train.stage_vae(train.Run(out, train.PRESETS["smoke"], torch.device("cpu")))
    records = json.loads((out / "logs" / "vae.json").read_text())
    assert [step for step, _ in records] == [0]  # logged every 10 steps: step 0 came from the checkpoint
    assert (out / "vae").exists()
    assert not train.Run(out, train.PRESETS["smoke"], torch.device("cpu")).checkpoint_path("vae").exists()


def test_minutes_budget_counts_the_steps_actually_run(tmp_path):
    # A budget that is spent before the cut at step 120: the 120 steps already run are
    # what the log must report (not fewer), and training stops there.
    from sdnotes.pocket import train

    run = train.Run(tmp_path, train.PRESETS["smoke"], torch.device("cpu"))
    run.minutes["vae"] = 1e-6
    model = torch.nn.Linear(2, 1)
    calls = []

    def loss_fn(generator):
        calls.append(1)
        return model(torch.ones(1, 2)).pow(2).mean()

    train.train_loop(run, "vae", model, loss_fn, steps=500, lr=1e-3, seed=0)
    assert len(calls) == 120
    assert run.steps_done["vae"] == 120


def test_keep_every_checkpoint_keeps_a_copy_of_each(tmp_path):
    # The ControlNet's training keeps every checkpoint, for IoU against training steps.
    from sdnotes.pocket import train

    run = train.Run(tmp_path, {"steps": 3}, torch.device("cpu"))
    model = torch.nn.Linear(2, 1)
    steps = 2 * train.CHECKPOINT_EVERY + 1

    def loss_fn(generator):
        return model(torch.ones(1, 2)).pow(2).mean()

    train.train_loop(run, "controlnet", model, loss_fn, steps=steps, lr=1e-3, seed=0, keep_every_checkpoint=True)
    kept = {path.name for path in (tmp_path / "checkpoints").glob("controlnet_step*.pt")}
    assert kept == {f"controlnet_step{train.CHECKPOINT_EVERY}.pt", f"controlnet_step{2 * train.CHECKPOINT_EVERY}.pt"}
    first = tmp_path / "checkpoints" / f"controlnet_step{train.CHECKPOINT_EVERY}.pt"
    assert torch.load(first, weights_only=False)["step"] == train.CHECKPOINT_EVERY
    assert not run.checkpoint_path("controlnet").exists()  # the resume checkpoint goes when training ends


def test_minutes_budget_is_fitted_again_at_every_checkpoint(tmp_path, monkeypatch):
    # A machine that gets busier after the first fit (here: each step sleeps from step 130 on) still ends
    # near its budget: the count is fitted again at each checkpoint, never above the steps asked.
    import time

    from sdnotes.pocket import train

    monkeypatch.setattr(train, "CHECKPOINT_EVERY", 50)
    run = train.Run(tmp_path, train.PRESETS["smoke"], torch.device("cpu"))
    run.minutes["vae"] = 3 / 60  # 3 seconds
    model = torch.nn.Linear(2, 1)
    calls = []

    def loss_fn(generator):
        calls.append(1)
        if len(calls) > 130:
            time.sleep(0.05)
        return model(torch.ones(1, 2)).pow(2).mean()

    start = time.time()
    train.train_loop(run, "vae", model, loss_fn, steps=1000, lr=1e-3, seed=0)
    assert 150 < run.steps_done["vae"] < 1000
    assert time.time() - start < 8  # without the second fit: 870 slow steps, 43 s


def test_minutes_budget_never_adds_steps_beyond_those_asked(tmp_path):
    from sdnotes.pocket import train

    run = train.Run(tmp_path, train.PRESETS["smoke"], torch.device("cpu"))
    run.minutes["vae"] = 60.0
    model = torch.nn.Linear(2, 1)
    train.train_loop(run, "vae", model, lambda generator: model(torch.ones(1, 2)).pow(2).mean(), steps=130,
                     lr=1e-3, seed=0)
    assert run.steps_done["vae"] == 130
