"""Showing and saving images: seeded generators, figures of images, PNGs with metadata.

- `make_generator(seed)`: the one `torch.Generator` a run passes explicitly to
  the pipeline, so that the same seed gives the same initial latent.
- `show_images(images, ...)`: a matplotlib grid of PIL images, arrays or
  tensors, with titles; returns the figure.
- `save_image(image, path, ...)` / `read_image_metadata(path)`: a PNG that
  records how it was made (model, prompt, negative prompt, seed, steps,
  guidance scale, scheduler, size) in a PNG text chunk, so any picture in the
  course can be reproduced. Existing files are never overwritten unless asked.

References:
- PIL PNG text chunks: https://pillow.readthedocs.io/en/stable/handbook/image-file-formats.html#png
- matplotlib constrained layout (room for titles and the suptitle):
  https://matplotlib.org/stable/users/explain/axes/constrainedlayout_guide.html
"""

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

METADATA_KEY = "sdnotes"
METADATA_FIELDS = (
    "model",
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "guidance_scale",
    "scheduler",
    "width",
    "height",
)


def make_generator(seed, device="cpu"):
    """A `torch.Generator` on `device` seeded with `seed` (pass it to the pipeline)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r} of type {type(seed).__name__}")
    generator = torch.Generator(device=device)
    return generator.manual_seed(seed)


def array_to_pil(array):
    """One image as a numpy array (H×W, H×W×1, H×W×3 or H×W×4) -> PIL image.

    Float arrays must hold values in [0, 1]; uint8 arrays are used as they are.
    """
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(
            f"cannot show an image of shape {tuple(array.shape)}: numpy arrays must be H×W, H×W×3 "
            "or H×W×4 and torch tensors C×H×W or N×C×H×W (C = 1, 3 or 4)"
        )
    if array.dtype == np.uint8:
        return Image.fromarray(array)
    array = array.astype(np.float32)
    smallest = float(array.min())
    largest = float(array.max())
    tolerance = 1e-3
    if smallest < -tolerance or largest > 1 + tolerance:
        raise ValueError(
            f"float image values must be in [0, 1], got [{smallest:.3f}, {largest:.3f}]. "
            "A VAE decoder returns values in [-1, 1]: convert with (image / 2 + 0.5).clamp(0, 1)."
        )
    array = np.clip(array, 0.0, 1.0)
    return Image.fromarray(np.round(array * 255).astype(np.uint8))


def to_pil_images(images):
    """A list of PIL images from a PIL image, an array, a tensor, a batch, or a list of these.

    Tensors are C×H×W (or N×C×H×W for a batch); numpy arrays are H×W×C (or
    N×H×W×C, as a pipeline returns with `output_type="np"`).
    """
    if isinstance(images, (Image.Image, np.ndarray, torch.Tensor)):
        images = [images]
    pil_images = []
    for image in images:
        if isinstance(image, Image.Image):
            pil_images.append(image)
        elif isinstance(image, torch.Tensor):
            array = image.detach().to(device="cpu", dtype=torch.float32).numpy()
            if array.ndim == 4:
                for single_image in array:
                    pil_images.append(array_to_pil(single_image.transpose(1, 2, 0)))
            elif array.ndim == 3:
                pil_images.append(array_to_pil(array.transpose(1, 2, 0)))
            else:
                pil_images.append(array_to_pil(array))
        elif isinstance(image, np.ndarray):
            if image.ndim == 4:
                for single_image in image:
                    pil_images.append(array_to_pil(single_image))
            else:
                pil_images.append(array_to_pil(image))
        else:
            raise TypeError(
                f"cannot show an object of type {type(image).__name__}: "
                "pass PIL images, numpy arrays or torch tensors"
            )
    return pil_images


def grid_shape(number_of_images, rows=None, cols=None):
    """(rows, cols) for a grid of `number_of_images`; fills in whichever is None."""
    if number_of_images == 0:
        raise ValueError("no images to show: the list is empty")
    if rows is None and cols is None:
        cols = min(number_of_images, 4)
    if cols is None:
        cols = math.ceil(number_of_images / rows)
    if rows is None:
        rows = math.ceil(number_of_images / cols)
    if rows * cols < number_of_images:
        raise ValueError(
            f"a {rows}×{cols} grid has room for {rows * cols} images, got {number_of_images}; "
            "give more rows or cols, or leave one of them out to have it computed"
        )
    return rows, cols


def show_images(images, rows=None, cols=None, titles=None, figsize=None, suptitle=None):
    """Show images in a matplotlib grid and return the figure.

    images: PIL images, numpy arrays or tensors (see `to_pil_images`).
    rows, cols: grid size; give one, both or neither (then up to 4 per row).
    titles: one title per image, or None.
    figsize: (width, height) in inches; default 3 per image, plus room for the suptitle.
    suptitle: one title over the whole grid, or None.
    In Jupyter the figure is shown at the end of the cell; end the line with
    `;` (or assign the result) when it is the cell's last line, otherwise the
    returned figure is displayed a second time.
    """
    pil_images = to_pil_images(images)
    rows, cols = grid_shape(len(pil_images), rows, cols)
    if titles is not None and len(titles) != len(pil_images):
        raise ValueError(f"got {len(titles)} titles for {len(pil_images)} images: give one title per image")
    if figsize is None:
        figsize = (3 * cols, 3 * rows + (0.4 if suptitle else 0))
    # constrained layout (not tight_layout) makes room for the suptitle and for each row's
    # titles, also for multi-line titles above images of fixed aspect
    figure, axes = plt.subplots(rows, cols, figsize=figsize, squeeze=False, layout="constrained")
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= len(pil_images):
            continue
        image = pil_images[index]
        if image.mode == "L":
            axis.imshow(image, cmap="gray", vmin=0, vmax=255)
        else:
            axis.imshow(image)
        if titles is not None:
            axis.set_title(str(titles[index]), fontsize=10)
    if suptitle:
        figure.suptitle(suptitle)
    return figure


def save_image(
    image,
    path,
    *,
    model,
    prompt,
    negative_prompt="",
    seed,
    steps,
    guidance_scale,
    scheduler,
    overwrite=False,
):
    """Save `image` as a PNG that records how it was made; returns the path.

    scheduler: a scheduler object or its class name. Never overwrites an
    existing file unless `overwrite=True`. Read the record back with
    `read_image_metadata(path)`.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: save_image writes PNG files (the metadata is a PNG text chunk); use a .png name")
    pil_image = to_pil_images(image)
    if len(pil_image) != 1:
        raise ValueError(f"save_image saves one image, got {len(pil_image)}: save them one by one")
    pil_image = pil_image[0]
    if not isinstance(scheduler, str):
        scheduler = type(scheduler).__name__
    metadata = {
        "model": str(model),
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "seed": seed,
        "steps": steps,
        "guidance_scale": guidance_scale,
        "scheduler": scheduler,
        "width": pil_image.width,
        "height": pil_image.height,
    }
    png_info = PngInfo()
    png_info.add_text(METADATA_KEY, json.dumps(metadata, ensure_ascii=False))
    png_info.add_text("Software", "sdnotes")
    path.parent.mkdir(parents=True, exist_ok=True)
    if overwrite:
        open_mode = "wb"
    else:
        open_mode = "xb"  # fails if the file exists, even if it appeared a moment ago
    try:
        with open(path, open_mode) as image_file:
            pil_image.save(image_file, format="PNG", pnginfo=png_info)
    except FileExistsError:
        raise FileExistsError(
            f"{path} already exists and was left as it is; choose another file name "
            "or pass overwrite=True to replace it"
        ) from None
    return path


def read_image_metadata(path):
    """The record written by `save_image`: a dict with the keys in METADATA_FIELDS."""
    with Image.open(path) as image:
        text_chunks = dict(getattr(image, "text", {}))
    if METADATA_KEY not in text_chunks:
        raise ValueError(
            f"{path} has no sdnotes metadata (no '{METADATA_KEY}' PNG text chunk); "
            "only images saved with sdnotes.save_image carry it"
        )
    return json.loads(text_chunks[METADATA_KEY])
