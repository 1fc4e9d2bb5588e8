"""The pocket judge: scores generated images the way CLIP scores real SD images.

The judge is the image tower of the pocket CLIP (trained with the pocket text
encoder, see train.py) plus the text projection. It gives
  - `classify(images)`: zero-shot "which object is this?" over the pocket
    model's objects (CLIP's zero-shot recipe, Radford et al. 2021, section 3.1),
  - `clip_score(images, prompts)`: 100 x cosine similarity of image and prompt
    embeddings (Hessel et al. 2021, CLIPScore),
and, without any network, `object_side(image)`: where the non-background
pixels are (`foreground_mask`, against the `background_colour`), to check
"on the left / on the right" prompts.
"""

import pathlib

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import CLIPTextModel, CLIPVisionModelWithProjection

from sdnotes.hub import quiet_loading_bars
from sdnotes.paths import POCKET_DIR, POCKET_JUDGE_DIR
from sdnotes.pocket import data


def _to_tensor(images):
    """PIL images or a (B, 3, H, W) tensor in [0, 1] -> (B, 3, H, W) in [-1, 1]."""
    if isinstance(images, torch.Tensor):
        return images.float() * 2 - 1
    arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1 for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


class PocketJudge:
    def __init__(self, judge_dir=None, text_encoder_dir=None, device="cpu"):
        judge_dir = pathlib.Path(judge_dir or POCKET_JUDGE_DIR)
        text_encoder_dir = pathlib.Path(text_encoder_dir or POCKET_DIR / "text_encoder")
        if not (judge_dir / "config.json").exists():
            raise FileNotFoundError(
                f"the pocket judge is not in {judge_dir}: build it with `python -m sdnotes.pocket.train`."
            )
        from sdnotes.tokenizer import load_tokenizer

        self.device = torch.device(device)
        with quiet_loading_bars():  # two small models: no "Loading weights" bars in the notebooks
            self.vision = CLIPVisionModelWithProjection.from_pretrained(judge_dir, dtype=torch.float32)
            self.text_encoder = CLIPTextModel.from_pretrained(text_encoder_dir, dtype=torch.float32)
        self.vision = self.vision.to(self.device).eval()
        self.text_encoder = self.text_encoder.to(self.device).eval()
        projection = load_file(str(judge_dir / "text_projection.safetensors"))
        self.text_projection = projection["text_projection"].to(self.device)  # (width, width)
        self.logit_scale = projection["logit_scale"].exp().item()
        self.tokenizer = load_tokenizer()
        self.image_size = self.vision.config.image_size

    @torch.no_grad()
    def image_embeddings(self, images):
        pixels = _to_tensor(images).to(self.device)  # (B, 3, H, W)
        pixels = F.interpolate(pixels, size=(self.image_size, self.image_size), mode="area")
        embeddings = self.vision(pixel_values=pixels).image_embeds
        return F.normalize(embeddings, dim=-1)

    @torch.no_grad()
    def text_embeddings(self, prompts):
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        pooled = self.text_encoder(ids.input_ids.to(self.device)).pooler_output  # (B, width)
        return F.normalize(pooled @ self.text_projection.T, dim=-1)

    def clip_score(self, images, prompts):
        """100 x cosine(image, its prompt), one number per image."""
        image_embeds = self.image_embeddings(images)
        text_embeds = self.text_embeddings(prompts)
        return (100 * (image_embeds * text_embeds).sum(dim=-1)).cpu()

    def object_probabilities(self, images, objects=None):
        """(B, number of objects) zero-shot probabilities over object names."""
        objects = objects or data.OBJECTS
        prompts = [f"{data.article(name)} {name}" for name in objects]
        logits = self.logit_scale * self.image_embeddings(images) @ self.text_embeddings(prompts).T
        return logits.softmax(dim=-1).cpu()

    def classify(self, images, objects=None):
        """The most likely object name for each image."""
        objects = objects or data.OBJECTS
        best = self.object_probabilities(images, objects).argmax(dim=-1)
        return [objects[index] for index in best.tolist()]


def background_colour(image):
    """(3,) float: the background colour of a picture on a plain background, the median of its border pixels."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int32)  # (H, W, 3)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.median(border, axis=0)


def foreground_mask(image, threshold=60):
    """(H, W) bool: the object pixels of a picture on a plain background.

    A pixel belongs to an object when it differs from the `background_colour`
    by more than `threshold` (sum of absolute RGB differences).
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.int32)  # (H, W, 3)
    return np.abs(pixels - background_colour(image)).sum(axis=-1) > threshold


def object_side(image, threshold=60):
    """'left', 'center' or 'right': where the centre of the non-background pixels is
    (`foreground_mask`; the captions' rule, `data.side_of`). Returns None for an empty picture."""
    foreground = foreground_mask(image, threshold)  # (H, W)
    if foreground.sum() < 0.005 * foreground.size:
        return None
    columns = np.nonzero(foreground)[1]
    return data.side_of(columns.mean(), foreground.shape[1])
