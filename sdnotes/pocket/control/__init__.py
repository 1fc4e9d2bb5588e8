"""Box control pictures for the pocket ControlNet (notebook 12).

A control picture says *where* things go: a 128 x 128 RGB picture, black
background, one filled white rectangle per object at its box. *Which* object
goes in which box comes from the prompt: one box takes the prompt's one
object; two boxes and "a ... on the left and a ... on the right" put the first
object in the left box. The format is written next to the weights in
assets/pocket-controlnet/control.json (CONTROL_FORMAT below), so other code can
draw valid control pictures.

  - `draw_control(boxes)`: the control picture for a list of boxes;
  - `make_box_scene(seed)`: a training scene whose boxes go beyond what
    captions can say (any place, any size, top and bottom too), with its
    control picture: the ControlNet's training pairs;
  - `foreground_box`, `box_iou`, `boxes_found`: measure where a generated
    picture's objects are, against the background colour (the judge's
    `foreground_mask`, as `object_side`).

ControlNet: Zhang, Rao & Agrawala 2023, "Adding Conditional Control to
Text-to-Image Diffusion Models", https://arxiv.org/abs/2302.05543.
"""

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from sdnotes.pocket import data
from sdnotes.pocket.judge import foreground_mask

CONTROL_SIZE = data.IMAGE_SIZE  # the control picture has the generated picture's size
CONTROL_FORMAT = {
    "kind": "boxes",
    "size": [CONTROL_SIZE, CONTROL_SIZE],
    "mode": "RGB",
    "background": [0, 0, 0],
    "box": [255, 255, 255],
    "filled": True,
    "box_coordinates": "(x0, y0, x1, y1) in pixels, x1 and y1 exclusive, origin top left",
    "objects": "one box: the prompt's one object; two boxes: 'a A on the left and a B on the right', A in the left box",
    "pipeline_input": "a PIL image (the pipeline scales it to [0, 1]); as a tensor: (B, 3, H, W) in [0, 1]",
}
# Longest side of a box, as a fraction of the picture: wider than the captions' "small" .. "big" (0.25 .. 0.7).
ONE_OBJECT_SIZES = (0.18, 0.85)
TWO_OBJECT_SIZES = (0.2, 0.46)
TWO_OBJECT_SHARE = 0.4  # of training scenes
MAX_BOXES = 2  # the ControlNet was trained on one or two boxes (CONTROL_FORMAT["objects"])


def box_corners(box):
    """(x0, y0, x1, y1) as whole pixels; a clear error for anything that is not four numbers."""
    if isinstance(box, (str, bytes)) or not hasattr(box, "__len__") or len(box) != 4:
        raise ValueError(f"a box is four numbers (x0, y0, x1, y1) in pixels, got {box!r}")
    corners = []
    for value in box:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"a box is four numbers (x0, y0, x1, y1) in pixels, got {box!r} "
                             f"({value!r} is a {type(value).__name__})")
        corners.append(int(round(value)))
    return corners


def draw_control(boxes, size=CONTROL_SIZE):
    """The control picture: black, one filled white rectangle per box (x0, y0, x1, y1).

    One or two boxes, as the ControlNet was trained on (MAX_BOXES); more, or
    anything that is not a list of four-number boxes, is a ValueError that says so.
    """
    if isinstance(boxes, (str, bytes)) or not hasattr(boxes, "__len__"):
        raise ValueError(f"boxes is a list of boxes (x0, y0, x1, y1), got {boxes!r}")
    if len(boxes) > MAX_BOXES:
        raise ValueError(f"the pocket ControlNet was trained on one or two boxes, got {len(boxes)}: "
                         "draw at most two (one per object of the prompt)")
    picture = Image.new("RGB", (size, size), tuple(CONTROL_FORMAT["background"]))
    draw = ImageDraw.Draw(picture)
    for box in boxes:
        x0, y0, x1, y1 = box_corners(box)
        if not (0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size):
            raise ValueError(f"box {box} is not inside the {size} x {size} picture with x0 < x1 and y0 < y1")
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=tuple(CONTROL_FORMAT["box"]))  # PIL includes x1 - 1
    return picture


def fitted_box(rng, name, longest_range, x_range, image_size=CONTROL_SIZE):
    """A box with the emoji's own aspect, longest side drawn from longest_range, centre x from x_range, any y."""
    sprite = data.sprite(name)
    longest = rng.uniform(*longest_range) * image_size
    width, height = data.sprite_size(sprite, longest, min_side=4)
    low = max(x_range[0] * image_size, width / 2)
    high = min(x_range[1] * image_size, image_size - width / 2)
    centre_x = rng.uniform(low, max(low, high))
    y0 = rng.randint(0, image_size - height)
    return data.sprite_box(centre_x, y0, (width, height), image_size)


@dataclass
class BoxScene:
    image: Image.Image  # the scene, as the pocket model's training scenes
    control: Image.Image  # its control picture
    caption: str
    background: str
    names: list  # object names, in the order of `boxes`
    boxes: list  # (x0, y0, x1, y1), left to right


def make_box_scene(seed, image_size=CONTROL_SIZE):
    """A scene with boxes anywhere, at any size, and its control picture: always the same for a seed."""
    rng = random.Random(seed)
    background = rng.choice(list(data.BACKGROUNDS))
    first = rng.choice(data.OBJECTS)
    if rng.random() < TWO_OBJECT_SHARE:
        second = rng.choice([name for name in data.OBJECTS if name != first])
        left = fitted_box(rng, first, TWO_OBJECT_SIZES, (0.12, 0.42), image_size)
        right = fitted_box(rng, second, TWO_OBJECT_SIZES, (0.58, 0.88), image_size)
        if right[0] < left[2]:  # keep them apart: slide the right box to the right
            shift = min(left[2] - right[0], image_size - right[2])
            right = (right[0] + shift, right[1], right[2] + shift, right[3])
        if right[0] < left[2]:  # still touching at the edge: slide the left box to the left
            shift = min(left[2] - right[0], left[0])
            left = (left[0] - shift, left[1], left[2] - shift, left[3])
        names, boxes = [first, second], [left, right]
        caption = f"{data.article(first)} {first} on the left and {data.article(second)} {second} on the right"
    else:
        names, boxes = [first], [fitted_box(rng, first, ONE_OBJECT_SIZES, (0.0, 1.0), image_size)]
        caption = f"{data.article(first)} {first}"
        if rng.random() < 0.3:
            caption += f" on a {background} background"
    image = Image.new("RGB", (image_size, image_size), data.BACKGROUNDS[background])
    for name, box in zip(names, boxes):
        data.paste_sprite(image, data.sprite(name), box)
    return BoxScene(image=image, control=draw_control(boxes, image_size), caption=caption, background=background,
                    names=names, boxes=boxes)


def render_box_scenes(seeds, image_size=CONTROL_SIZE):
    """(scenes uint8 (N, H, W, 3), control pictures uint8 (N, H, W), captions) for a list of seeds."""
    seeds = list(seeds)
    images = np.zeros((len(seeds), image_size, image_size, 3), dtype=np.uint8)
    controls = np.zeros((len(seeds), image_size, image_size), dtype=np.uint8)
    captions = []
    for index, seed in enumerate(seeds):
        scene = make_box_scene(seed, image_size)
        images[index] = np.asarray(scene.image)
        controls[index] = np.asarray(scene.control)[:, :, 0]
        captions.append(scene.caption)
    return images, controls, captions


def mask_box(mask, min_fraction=0.005):
    """The bounding box (x0, y0, x1, y1) of a mask's True pixels; None when almost empty."""
    if mask.sum() < min_fraction * mask.size:
        return None
    rows = np.nonzero(mask.any(axis=1))[0]
    columns = np.nonzero(mask.any(axis=0))[0]
    return (int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1)


def foreground_box(image, threshold=60):
    """Where a generated picture's object is: the box of its non-background pixels (None: nothing drawn)."""
    return mask_box(foreground_mask(image, threshold))


def box_iou(a, b):
    """Intersection over union of two boxes (x0, y0, x1, y1); 0 when either is None.

    A box with x1 < x0 or y1 < y0 is a ValueError. Two boxes that cover no
    area together (both empty) have nothing in common to measure: their IoU is 0.
    """
    for box in (a, b):
        if box is not None and (box[2] < box[0] or box[3] < box[1]):
            raise ValueError(f"box {box} has x1 < x0 or y1 < y0; a box is (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1")
    if a is None or b is None:
        return 0.0
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    if union == 0:
        return 0.0
    return intersection / union


def boxes_found(image, boxes, threshold=60):
    """One found box per asked box: with two boxes, the picture is split halfway between them."""
    mask = foreground_mask(image, threshold)
    if len(boxes) == 1:
        return [mask_box(mask)]
    if len(boxes) != 2:
        raise ValueError(f"boxes_found measures one or two boxes, not {len(boxes)}")
    left, right = sorted(boxes, key=lambda box: box[0])
    split = int(round((left[2] + right[0]) / 2))
    left_mask, right_mask = mask.copy(), mask.copy()
    left_mask[:, split:] = False
    right_mask[:, :split] = False
    found = {left: mask_box(left_mask, 0.002), right: mask_box(right_mask, 0.002)}
    return [found[box] for box in boxes]
