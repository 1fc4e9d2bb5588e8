"""Checks for the exercises of notebook 12 (ControlNet).

Boxes are (x0, y0, x1, y1) in pixels with x1 and y1 exclusive, as in the
pocket ControlNet's control.json. SD 1.5's U-Net keeps 12 skip connections
(conv_in, 4 down blocks x 2 ResNets, 3 downsamplers) and has a middle block:
its ControlNet feeds it through 12 + 1 zero convolutions (Zhang et al. 2023;
diffusers' ControlNetModel: controlnet_down_blocks and controlnet_mid_block).

Exercise 3's check runs the pocket ControlNet on the learner's control picture
(loaded once, on first use, with the evaluation's `load_control_pipeline`) and
measures where the object lands, as the notebook's IoU does.
"""

import numpy as np
from PIL import Image, ImageDraw

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed

SD15_SKIP_CONNECTIONS = 1 + 4 * 2 + 3
TOP_RIGHT_BOX = (64, 0, 128, 64)
POCKET_CONTROL_SIZE = 128
TOP_RIGHT_PROMPT = "a rocket"
TOP_RIGHT_STEPS = 12  # DDIM steps, as the notebook's NUM_STEPS
IOU_IN_BOX = 0.5  # the pocket evaluation counts an object as in its box from here
_CONTROL_PIPELINE = []  # the pocket ControlNet pipeline, loaded on first use


def _reference_iou(a, b):
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union


def _iou_without_subtracting(a, b):
    """A wrong answer the check recognises: the shared area counted twice in the union."""
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return width * height / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]))


IOU_CASES = [
    ((0, 0, 10, 10), (5, 0, 15, 10)),  # half overlap: 1/3
    ((0, 0, 10, 10), (0, 0, 10, 10)),  # the same box: 1
    ((0, 0, 10, 10), (20, 20, 30, 30)),  # apart: 0
    ((0, 0, 10, 10), (10, 0, 20, 10)),  # touching edges: 0
    ((0, 0, 40, 40), (10, 10, 20, 20)),  # one inside the other: 100 / 1600
    ((3, 7, 50, 20), (30, 0, 90, 15)),
]


def check_iou(my_iou):
    """Exercise 1: intersection over union of two boxes."""
    exercise = "Exercise 1 (IoU)"
    if is_unanswered(my_iou):
        return not_answered(exercise)
    if not callable(my_iou):
        raise AssertionError(f"{exercise}: expected a function my_iou(a, b).")
    for a, b in IOU_CASES:
        mine = my_iou(a, b)
        if is_unanswered(mine):
            return not_answered(exercise)
        mine = as_number(exercise, mine)
        if a == b and abs(mine - 0.5) < 1e-9:
            raise AssertionError(f"{exercise}: a box with itself gives 0.5: the shared area is counted twice in "
                                 "the union; subtract it once.")
        if mine < 0:
            raise AssertionError(f"{exercise}: {a} and {b} gave {mine}: boxes that do not overlap share 0 area, "
                                 "not a negative one (clamp width and height at 0).")
        expected = _reference_iou(a, b)
        assert abs(mine - expected) < 1e-9, (
            f"{exercise}: my_iou({a}, {b}) = {mine:.4f}, expected {expected:.4f}. Shared area: the overlap's "
            "width times height (0 if none); union: both areas minus the shared one."
        )
    passed(exercise, "1 is a perfect fit; the pocket evaluation counts an object as in its box at IoU >= 0.5.")


def check_sd15_zero_convolutions(answer):
    """Exercise 2: zero convolutions between SD 1.5's ControlNet and its U-Net."""
    exercise = "Exercise 2 (SD 1.5's zero convolutions)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = SD15_SKIP_CONNECTIONS + 1
    if answer == SD15_SKIP_CONNECTIONS:
        raise AssertionError(f"{exercise}: those are the skip connections; the middle block gets one more.")
    if answer == expected + 1:
        raise AssertionError(f"{exercise}: the control picture's encoder ends in a zero-initialised convolution "
                             "too, but it feeds the ControlNet, not the U-Net.")
    if answer == 8 + 1:
        raise AssertionError(f"{exercise}: count conv_in's output and the 3 downsamplers' outputs too: the U-Net "
                             "keeps all of them as skip connections.")
    assert answer == expected, (
        f"{exercise}: {answer} is not it. Count the outputs the U-Net keeps for its decoder: conv_in, every down "
        "ResNet, every downsampler; then the middle block."
    )
    passed(exercise, f"{SD15_SKIP_CONNECTIONS} skip connections + 1 middle block = {expected}; "
                     "len(controlnet.controlnet_down_blocks) + 1 on the real model.")


def _reference_top_right():
    picture = Image.new("RGB", (POCKET_CONTROL_SIZE, POCKET_CONTROL_SIZE), (0, 0, 0))
    x0, y0, x1, y1 = TOP_RIGHT_BOX
    ImageDraw.Draw(picture).rectangle((x0, y0, x1 - 1, y1 - 1), fill=(255, 255, 255))
    return picture


def _top_right_one_pixel_too_big():
    """A wrong answer the check recognises: PIL's rectangle given x1, y1 (it includes its end point)."""
    picture = Image.new("RGB", (POCKET_CONTROL_SIZE, POCKET_CONTROL_SIZE), (0, 0, 0))
    ImageDraw.Draw(picture).rectangle(TOP_RIGHT_BOX, fill=(255, 255, 255))
    return picture


def _pocket_control_pipeline():
    if not _CONTROL_PIPELINE:
        from sdnotes.hub import quiet_loading_bars
        from sdnotes.pocket.control.evaluate import load_control_pipeline

        with quiet_loading_bars():
            _CONTROL_PIPELINE.append(load_control_pipeline())
    return _CONTROL_PIPELINE[0]


def _draw_with_the_controlnet(picture):
    """The pocket ControlNet's picture for TOP_RIGHT_PROMPT with this control picture, and the IoU with the box."""
    import torch

    from sdnotes.pocket.control import box_iou, foreground_box

    pipe = _pocket_control_pipeline()
    result = pipe([TOP_RIGHT_PROMPT], image=[picture.convert("RGB")], num_inference_steps=TOP_RIGHT_STEPS,
                  guidance_scale=7.5, generator=[torch.Generator().manual_seed(0)]).images[0]
    found = foreground_box(result)
    return result, found, box_iou(found, TOP_RIGHT_BOX)


def check_top_right_control(picture):
    """Exercise 3: the pocket control picture for one box in the top-right quarter, run through the ControlNet.

    Returns the ControlNet's picture with the asked box outlined in red, so the notebook shows it.
    """
    exercise = "Exercise 3 (a control picture)"
    if is_unanswered(picture):
        return not_answered(exercise)
    if not isinstance(picture, Image.Image):
        raise AssertionError(f"{exercise}: expected a PIL image, got {type(picture).__name__} "
                             "(draw_control_picture and draw_control return one).")
    if picture.size != (POCKET_CONTROL_SIZE, POCKET_CONTROL_SIZE):
        raise AssertionError(f"{exercise}: the pocket control picture is {POCKET_CONTROL_SIZE} x "
                             f"{POCKET_CONTROL_SIZE}, this one is {picture.size[0]} x {picture.size[1]}.")
    mine = np.asarray(picture.convert("RGB"))
    expected = np.asarray(_reference_top_right())
    if np.array_equal(mine, np.asarray(_top_right_one_pixel_too_big())):
        raise AssertionError(f"{exercise}: one pixel too big: PIL's rectangle includes its end point, so draw "
                             "up to x1 - 1 and y1 - 1.")
    white = (mine == 255).all(axis=-1)  # (H, W)
    if white.any() and not white[4:60, 68:124].any():
        raise AssertionError(f"{exercise}: the box must be filled, not only its outline.")
    assert np.array_equal(mine, expected), (
        f"{exercise}: not the picture expected: black (0, 0, 0) everywhere except a filled white box at x 64..127, "
        "y 0..63."
    )
    result, found, iou = _draw_with_the_controlnet(picture)
    assert iou >= IOU_IN_BOX, (
        f"{exercise}: your control picture is right, but the ControlNet drew {TOP_RIGHT_PROMPT!r} at {found}, "
        f"IoU {iou:.2f} with the box {TOP_RIGHT_BOX}: please report this (the shipped model should fill the box)."
    )
    passed(exercise, f"the pocket ControlNet drew {TOP_RIGHT_PROMPT!r} ({TOP_RIGHT_STEPS} steps, seed 0) at {found}: "
                     f"IoU {iou:.2f} with the asked box {TOP_RIGHT_BOX} (red).")
    outlined = result.copy()
    x0, y0, x1, y1 = TOP_RIGHT_BOX
    ImageDraw.Draw(outlined).rectangle((x0, y0, x1 - 1, y1 - 1), outline=(230, 30, 30), width=2)
    return outlined.resize((256, 256), Image.NEAREST)


# For every check: a right and a wrong answer (used by tests/test_exercises.py).
REFERENCE_SOLUTIONS = {
    "check_iou": {"right": _reference_iou, "wrong": _iou_without_subtracting},
    "check_sd15_zero_convolutions": {"right": 13, "wrong": 12},
    "check_top_right_control": {"right": _reference_top_right(), "wrong": _top_right_one_pixel_too_big()},
}
