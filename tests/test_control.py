"""The pocket ControlNet (assets/pocket-controlnet/), sdnotes/pocket/control/ and sdnotes/controlnet.py.

The shipped ControlNet is loaded with the plain diffusers calls and must put a
prompted object into an asked box far better than the plain pocket model does
with the same seeds (the full measurement is `python -m
sdnotes.pocket.control.evaluate`, quoted by the model card, which is checked
against evaluation.json here). The measuring instrument itself (foreground
box, IoU, the two-box split) is checked on rendered scenes whose boxes are
known.
"""

import json

import numpy as np
import pytest
import torch
from diffusers import ControlNetModel, DDIMScheduler, StableDiffusionControlNetPipeline
from PIL import Image

from sdnotes import controlnet as controlnet_module
from sdnotes import hub
from sdnotes.paths import POCKET_CONTROLNET_DIR, POCKET_DIR
from sdnotes.pocket import control
from sdnotes.pocket.control import train as control_train
from sdnotes.pocket.control.evaluate import held_out_scenes, load_control_pipeline


def weights_dtypes(folder):
    from safetensors.torch import load_file

    return {tensor.dtype for tensor in load_file(str(folder / "diffusion_pytorch_model.safetensors")).values()}


def test_control_picture_format():
    picture = control.draw_control([(10, 20, 30, 60), (100, 0, 128, 128)])
    pixels = np.asarray(picture)
    assert picture.mode == "RGB" and picture.size == (128, 128)
    assert set(np.unique(pixels)) == {0, 255}
    white = pixels[:, :, 0] == 255
    assert white[20:60, 10:30].all() and not white[60, 10] and not white[20, 30]  # x1, y1 exclusive
    assert white.sum() == 20 * 40 + 28 * 128
    with pytest.raises(ValueError, match="not inside"):
        control.draw_control([(100, 10, 140, 50)])
    with pytest.raises(ValueError, match="x0 < x1"):
        control.draw_control([(50, 10, 40, 50)])


@pytest.mark.parametrize("boxes, message", [
    (["abc"], "four numbers"),  # a string is not a box (it used to end in "type str doesn't define __round__")
    ([(10, 20, 30)], "four numbers"),
    ([(10, "20", 30, 40)], "'20' is a str"),
    ("abc", "list of boxes"),
    ([(0, 0, 10, 10), (20, 0, 30, 10), (40, 0, 50, 10)], "trained on one or two boxes, got 3"),
])
def test_draw_control_names_what_is_wrong_with_its_boxes(boxes, message):
    with pytest.raises(ValueError, match=message):
        control.draw_control(boxes)


def test_shipped_control_json_is_the_format():
    assert json.loads((POCKET_CONTROLNET_DIR / "control.json").read_text()) == json.loads(json.dumps(control.CONTROL_FORMAT))


def test_box_scenes_are_reproducible_and_their_boxes_are_where_the_objects_are():
    for seed in range(200, 240):
        scene = control.make_box_scene(seed)
        again = control.make_box_scene(seed)
        assert scene.caption == again.caption and scene.boxes == again.boxes
        assert np.array_equal(np.asarray(scene.image), np.asarray(again.image))
        assert np.array_equal(np.asarray(scene.control), np.asarray(control.draw_control(scene.boxes)))
        found = control.boxes_found(scene.image, scene.boxes)
        for box, seen in zip(scene.boxes, found):
            assert control.box_iou(box, seen) > 0.85, (seed, scene.caption, box, seen)
        if len(scene.boxes) == 2:
            left, right = scene.boxes
            assert left[2] <= right[0], "two boxes must not overlap"
            assert scene.caption.startswith(f"{control.data.article(scene.names[0])} {scene.names[0]} on the left")


def test_box_scenes_go_beyond_what_captions_can_say():
    boxes = [control.make_box_scene(seed).boxes[0] for seed in range(400)]
    tops = [box[1] for box in boxes]
    longest = [max(box[2] - box[0], box[3] - box[1]) / 128 for box in boxes]
    assert min(tops) < 5 and max(box[3] for box in boxes) > 123  # top and bottom
    assert min(longest) < 0.25 and max(longest) > 0.7  # smaller than "small", bigger than "big"


def test_box_iou():
    assert control.box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert control.box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0
    assert control.box_iou((0, 0, 10, 10), None) == 0
    assert control.box_iou((5, 5, 5, 5), (5, 5, 5, 5)) == 0  # two empty boxes: nothing to measure (it divided by 0)
    assert control.box_iou((5, 5, 5, 5), (0, 0, 10, 10)) == 0
    with pytest.raises(ValueError, match="x1 < x0"):
        control.box_iou((10, 0, 0, 10), (0, 0, 10, 10))
    assert control.foreground_box(Image.new("RGB", (128, 128), (170, 205, 245))) is None


def test_held_out_scenes_are_not_training_scenes():
    scenes = held_out_scenes(3, 1)
    assert all(len(scene.boxes) == 1 and " on " not in scene.caption for scene in scenes)
    assert control_train.SCENE_SEED + control_train.PRESETS["gpu"]["scenes"] < 40_000_000


def test_shipped_controlnet_loads_offline_in_float16_with_the_pocket_unet_shape():
    controlnet = ControlNetModel.from_pretrained(POCKET_CONTROLNET_DIR, local_files_only=True)
    assert weights_dtypes(POCKET_CONTROLNET_DIR) == {torch.float16}
    unet_config = json.loads((POCKET_DIR / "unet" / "config.json").read_text())
    assert list(controlnet.config.block_out_channels) == unet_config["block_out_channels"]
    assert controlnet.config.cross_attention_dim == unet_config["cross_attention_dim"]
    sizes = {path.name: path.stat().st_size for path in POCKET_CONTROLNET_DIR.iterdir()}
    assert sizes["diffusion_pytorch_model.safetensors"] < 8e6
    assert {"README.md", "evaluation.json", "samples.png", "training_log.json", "examples.json", "examples.png"} <= set(sizes)


@pytest.fixture(scope="module")
def control_pipe():
    return load_control_pipeline()


def test_shipped_controlnet_puts_the_object_in_the_box(control_pipe):
    """A few held-out boxes: the ControlNet's IoU beats the plain model's (scale 0) clearly."""
    scenes = held_out_scenes(6, 1)
    prompts = [scene.caption for scene in scenes]
    controls = [scene.control for scene in scenes]
    ious = {}
    for scale in (0.0, 1.0):
        generators = [torch.Generator().manual_seed(index) for index in range(len(scenes))]
        pictures = control_pipe(prompts, image=controls, num_inference_steps=12, generator=generators,
                                controlnet_conditioning_scale=scale).images
        ious[scale] = np.median([control.box_iou(control.foreground_box(p), s.boxes[0]) for p, s in zip(pictures, scenes)])
    assert ious[1.0] > ious[0.0] + 0.15, ious


def test_model_card_quotes_the_evaluation():
    evaluation = json.loads((POCKET_CONTROLNET_DIR / "evaluation.json").read_text())
    card = (POCKET_CONTROLNET_DIR / "README.md").read_text()
    for result in evaluation["results"]:
        if result["scale"] in (0.0, 1.0):
            assert f"{result['one_box_median_iou']:.2f}" in card, result
            assert f"{result['named']:.0%}" in card, result
            assert f"{result['two_boxes_both_in_box']:.0%}" in card, result


def test_training_smoke_writes_a_folder_diffusers_loads(tmp_path):
    out, target = tmp_path / "run", tmp_path / "controlnet"
    control_train.main(["--preset", "smoke", "--out", str(out), "--export-to", str(target)])
    ControlNetModel.from_pretrained(target, local_files_only=True)
    assert weights_dtypes(target) == {torch.float16}
    log = json.loads((target / "training_log.json").read_text())
    assert [stage["stage"] for stage in log["stages"]] == ["data", "controlnet"]
    assert json.loads((target / "examples.json").read_text())["training"][0]["boxes"]
    with pytest.raises(SystemExit, match="not replaced silently"):
        control_train.main(["--preset", "smoke", "--out", str(out), "--export-to", str(target), "--stages", "export"])
    (target / "README.md").write_text("my notes")
    control_train.main(["--preset", "smoke", "--out", str(out), "--export-to", str(target), "--stages", "export", "--force"])
    assert (target / "README.md").read_text() == "my notes"  # the card is kept


def test_training_refuses_a_missing_pocket_model(tmp_path):
    with pytest.raises(SystemExit, match="no pocket model"):
        control_train.main(["--preset", "smoke", "--out", str(tmp_path), "--pipeline", str(tmp_path / "nothing")])


def test_fresh_controlnet_changes_nothing():
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(POCKET_DIR / "unet").eval()
    fresh = control_train.make_controlnet(unet)
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    context = torch.randn(2, 77, 64, generator=torch.Generator().manual_seed(1))
    condition = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        down, mid = fresh(latents, 500, encoder_hidden_states=context, controlnet_cond=condition, return_dict=False)
        plain = unet(latents, 500, encoder_hidden_states=context).sample
        joined = unet(latents, 500, encoder_hidden_states=context, down_block_additional_residuals=down,
                      mid_block_additional_residual=mid).sample
    assert torch.equal(plain, joined)


def test_load_controlnet_for_each_model():
    import sdnotes

    pipe = sdnotes.load("tiny-sd15", verbose=False)
    tiny = controlnet_module.load_controlnet("tiny-sd15", pipe)
    assert isinstance(tiny, ControlNetModel) and tiny.dtype == pipe.unet.dtype
    assert controlnet_module.control_kind("sd15") == "box outlines"
    with pytest.raises(ValueError, match="no ControlNet for model 'sdxl-turbo'"):
        controlnet_module.load_controlnet("sdxl-turbo", pipe)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_hub_controlnet_without_network_says_what_to_do(monkeypatch, tmp_path, dtype):
    monkeypatch.setattr(hub, "hub_unreachable_reason", lambda repo_id: "no network (test)")
    repo_id = controlnet_module.SD15_CONTROLNETS["scribble"]
    with pytest.raises(RuntimeError) as error_info:
        controlnet_module.load_hub_controlnet(repo_id, dtype, cache_dir=tmp_path, verbose=False)
    message = str(error_info.value)
    assert "not in the local cache" in message and "no network (test)" in message
    assert 'MODEL = "pocket"' in message and f"hf download {repo_id}" in message
    if dtype == torch.float16:  # the fp16 files were looked for first, then the full-precision ones
        assert message.index("(variant fp16)") < message.index("(variant None)")
    else:
        assert "(variant fp16)" not in message


def test_pocket_controlnet_missing_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="sdnotes.pocket.control.train"):
        controlnet_module.load_pocket_controlnet(folder=tmp_path)


def test_control_pipeline_from_components_matches_from_pretrained(control_pipe):
    import sdnotes

    pipe = sdnotes.load("pocket", verbose=False)
    controlnet = controlnet_module.load_controlnet("pocket", pipe)
    built = StableDiffusionControlNetPipeline(**pipe.components, controlnet=controlnet,
                                              requires_safety_checker=pipe.config.requires_safety_checker)
    built.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    built.set_progress_bar_config(disable=True)
    box = control.draw_control([(20, 30, 90, 100)])
    one = built("a rocket", image=box, num_inference_steps=4, generator=torch.Generator().manual_seed(3)).images[0]
    two = control_pipe("a rocket", image=box, num_inference_steps=4, generator=torch.Generator().manual_seed(3)).images[0]
    assert np.abs(np.asarray(one, dtype=int) - np.asarray(two, dtype=int)).max() <= 1
