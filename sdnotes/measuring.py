"""Measuring the pocket model the way papers measure Stable Diffusion (notebook 16, benchmarks/measuring.py).

- `JudgeFeatures`: an `nn.Module` that maps uint8 pictures (B, 3, H, W) to the
  pocket judge's 64-d image embeddings; torchmetrics' FID and KID take it as
  their `feature` network, in place of Inception-v3.
- `reference_scenes(count)`: held-out rendered scenes (never trained on) as the
  "real" pictures, with their captions and ground truth.
- `compositional_checks(image, scene, judge)`: GenEval-style checks of one
  picture against what its caption asked (object, two objects, position, size,
  background), scored with the judge and simple pixel rules.

Real SD is measured with Inception-v3 pool features (2048-d, pictures resized
to 299x299) and CLIP ViT-L/14; notebook 16 says what changes.
"""

import numpy as np
import torch
from PIL import Image

from sdnotes.pocket import data
from sdnotes.pocket.judge import background_colour, foreground_mask, object_side

# Training used scene seeds 0..149,999; assets/pocket/evaluation.json uses 20,000,000 on,
# the VAE check 10,000,000 on. Measuring uses its own held-out range.
REFERENCE_SEED = 30_000_000
# A scene's object is "big" when its longest side is more than this share of the picture
# (data.SIZES: small 0.25-0.33, medium 0.38-0.5, big 0.56-0.7).
BIG_SIDE = 0.53
SMALL_SIDE = 0.36
CATEGORIES = ["object", "two objects", "position", "size", "background"]


class JudgeFeatures(torch.nn.Module):
    """uint8 pictures (B, 3, H, W) in [0, 255] -> (B, 64) pocket-judge image embeddings (unit length).

    The `feature` network for torchmetrics' FrechetInceptionDistance and
    KernelInceptionDistance (with their default normalize=False they pass uint8).
    """

    def __init__(self, judge):
        super().__init__()
        self.judge = judge
        self.num_features = judge.vision.config.projection_dim  # torchmetrics reads this: no dummy forward

    def forward(self, images):
        if images.dtype != torch.uint8:
            raise ValueError(f"JudgeFeatures expects uint8 pictures in [0, 255], got {images.dtype}")
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"JudgeFeatures expects (B, 3, H, W) pictures, got shape {tuple(images.shape)}")
        return self.judge.image_embeddings(images.float() / 255)  # (B, 64)


def to_uint8(images):
    """(B, 3, H, W) floats in [0, 1] (a pipeline's output_type="pt"), or PIL images -> uint8 (B, 3, H, W)."""
    if isinstance(images, torch.Tensor):
        return (images.clamp(0, 1) * 255).round().to(torch.uint8)
    arrays = [np.asarray(image.convert("RGB")) for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def reference_scenes(count, start=REFERENCE_SEED):
    """`count` held-out scenes (seeds start, start + 1, ...): a list of data.Scene."""
    return [data.make_scene(seed) for seed in range(start, start + count)]


def asked(caption):
    """What a scene caption asks for, by category: {'position': 'left', 'size': 'big', ...}."""
    wanted = {}
    if " and " in caption:
        wanted["two objects"] = True
        if "on the left and" in caption:
            wanted["position"] = "left and right"
    else:
        wanted["object"] = True
        for side in ("left", "right"):
            if f"on the {side}" in caption:
                wanted["position"] = side
    for size in ("small", "big"):
        if caption.startswith(f"a {size} "):
            wanted["size"] = size
    for background in data.BACKGROUNDS:
        if f"on a {background} background" in caption:
            wanted["background"] = background
    return wanted


def object_extent(image):
    """The longest side of the foreground's bounding box as a share of the picture (None if empty)."""
    mask = foreground_mask(image)  # (H, W)
    if mask.sum() < 0.005 * mask.size:
        return None
    rows = np.nonzero(mask.any(axis=1))[0]
    columns = np.nonzero(mask.any(axis=0))[0]
    longest = max(rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1)
    return longest / max(mask.shape)


def size_word(image):
    """'small', 'medium' or 'big' from the foreground's extent; None for an empty picture."""
    extent = object_extent(image)
    if extent is None:
        return None
    if extent > BIG_SIDE:
        return "big"
    if extent < SMALL_SIDE:
        return "small"
    return "medium"


def background_name(image):
    """The name of the background colour nearest to the picture's border colour."""
    colour = background_colour(image)
    best_name, best_distance = None, None
    for name, rgb in data.BACKGROUNDS.items():
        distance = float(np.abs(colour - np.array(rgb)).sum())
        if best_distance is None or distance < best_distance:
            best_name, best_distance = name, distance
    return best_name


def half_picture(image, side):
    """The left or right half of a picture, centred on a square canvas of its background colour."""
    width, height = image.size
    box = (0, 0, width // 2, height) if side == "left" else (width // 2, 0, width, height)
    canvas = Image.new("RGB", (width, height), tuple(int(v) for v in background_colour(image)))
    canvas.paste(image.crop(box), (width // 4, 0))
    return canvas


def compositional_checks(pictures, scenes, judge):
    """[{category: passed (bool)}] per picture, for the categories its scene's caption asks about (GenEval style).

    object: the judge names the one object; two objects: the judge names the two objects in
    the two halves of the picture, in either order; position: `object_side` (one object), or
    the left half's object is the first one named (two objects); size: the foreground's
    extent; background: the border colour. The judge sees all pictures in one batch.
    """
    whole = judge.classify(list(pictures))
    halves = []
    for picture in pictures:
        halves += [half_picture(picture, "left"), half_picture(picture, "right")]
    half_names = judge.classify(halves)
    results = []
    for index, (picture, scene) in enumerate(zip(pictures, scenes)):
        wanted = asked(scene.caption)
        names = [item.name for item in scene.objects]
        left, right = half_names[2 * index], half_names[2 * index + 1]
        checks = {}
        if "object" in wanted:
            checks["object"] = whole[index] == names[0]
        if "two objects" in wanted:
            checks["two objects"] = {left, right} == set(names)
        if wanted.get("position") in ("left", "right"):
            checks["position"] = object_side(picture) == wanted["position"]
        elif wanted.get("position") == "left and right":
            checks["position"] = (left, right) == (names[0], names[1])
        if "size" in wanted:
            checks["size"] = size_word(picture) == wanted["size"]
        if "background" in wanted:
            checks["background"] = background_name(picture) == wanted["background"]
        results.append(checks)
    return results


def score_table(pictures, scenes, judge):
    """{category: (passed, asked)} over PIL pictures and the scenes whose captions made them."""
    table = {category: [0, 0] for category in CATEGORIES}
    for checks in compositional_checks(pictures, scenes, judge):
        for category, passed in checks.items():
            table[category][0] += int(passed)
            table[category][1] += 1
    return {category: tuple(counts) for category, counts in table.items()}


class PocketCLIPProcessor:
    """What torchmetrics' CLIPScore calls as `processor(text=..., images=..., return_tensors="pt", padding=True)`,
    with the judge's own preprocessing: pixels to [-1, 1], area-averaged to the judge's size (the judge
    is sensitive to the fractions a uint8 resize would round away), and the pocket tokenizer."""

    def __init__(self, judge):
        self.judge = judge

    def __call__(self, text=None, images=None, return_tensors="pt", padding=True, **kwargs):
        processed = {}
        if text is not None:
            tokens = self.judge.tokenizer(list(text), padding=padding, truncation=True, max_length=77,
                                          return_tensors=return_tensors)
            processed["input_ids"] = tokens.input_ids
            processed["attention_mask"] = tokens.attention_mask
        if images is not None:
            pixels = torch.stack([torch.as_tensor(image) for image in images])  # (B, 3, H, W)
            pixels = pixels.float() / 255 if pixels.dtype == torch.uint8 else pixels.float()
            size = self.judge.image_size
            processed["pixel_values"] = torch.nn.functional.interpolate(pixels * 2 - 1, size=(size, size), mode="area")
        return processed


def pocket_clip_model_and_processor(judge):
    """The pocket judge as a transformers CLIPModel and a processor, for torchmetrics' CLIPScore.

    CLIPScore(model_name_or_path=...) takes a function that returns a (model, processor) pair.
    The model is a real transformers CLIPModel holding the judge's weights (text encoder, image
    tower, both projections); the processor (`PocketCLIPProcessor`) prepares pixels and tokens
    exactly as the judge does. torchmetrics 1.9 expects `get_image_features` /
    `get_text_features` to return tensors, as in transformers 4; transformers 5 returns an output
    object whose `pooler_output` is that tensor, so the model here unwraps it.
    """
    from transformers import CLIPConfig, CLIPModel

    class PocketCLIPModel(CLIPModel):
        def get_image_features(self, *args, **kwargs):
            features = super().get_image_features(*args, **kwargs)
            return features if isinstance(features, torch.Tensor) else features.pooler_output

        def get_text_features(self, *args, **kwargs):
            features = super().get_text_features(*args, **kwargs)
            return features if isinstance(features, torch.Tensor) else features.pooler_output

    vision_config = judge.vision.config
    config = CLIPConfig(text_config=judge.text_encoder.config.to_dict(), vision_config=vision_config.to_dict(),
                        projection_dim=vision_config.projection_dim)
    model = PocketCLIPModel(config).eval()
    model.text_model.load_state_dict(judge.text_encoder.state_dict())
    model.vision_model.load_state_dict(judge.vision.vision_model.state_dict())
    model.visual_projection.load_state_dict(judge.vision.visual_projection.state_dict())
    with torch.no_grad():
        model.text_projection.weight.copy_(judge.text_projection)  # the judge computes pooled @ P.T
    return model, PocketCLIPProcessor(judge)
