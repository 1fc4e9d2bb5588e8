"""Attention maps as pictures: token positions, grids, resizing, averaging (no diffusers internals).

Helpers for the maps that a `CrossAttentionStore` records: where a word's
tokens sit in the 77-token sequence, how a layer's query pixels form a grid,
resizing maps to one resolution, averaging a store over heads, steps and
layers (`aggregate_maps`) and scaling maps for display.
Reference: Hertz et al. 2022 (prompt-to-prompt), Tang et al. 2023 (DAAM).
"""

import math

import torch.nn.functional as F


def token_indices(tokenizer, prompt, word):
    """Positions (in the 77-token sequence, start token = 0) of the tokens of `word` in `prompt`.

    `word` may be several tokens ("cat face"); its first occurrence is used.
    """
    prompt_ids = tokenizer(prompt).input_ids  # with the start and end tokens
    word_ids = tokenizer(word, add_special_tokens=False).input_ids
    for start in range(len(prompt_ids) - len(word_ids) + 1):
        if prompt_ids[start:start + len(word_ids)] == word_ids:
            return list(range(start, start + len(word_ids)))
    raise ValueError(f"{word!r} is not in the tokens of {prompt!r}")


def spatial_shape(query_pixels, aspect_ratio=1.0):
    """(height, width) of a layer's grid with `query_pixels` positions; aspect = height / width."""
    width = round(math.sqrt(query_pixels / aspect_ratio))
    height = query_pixels // width
    if height * width != query_pixels:
        raise ValueError(f"{query_pixels} query pixels do not form a grid with aspect ratio {aspect_ratio}")
    return height, width


def to_spatial(maps, aspect_ratio=1.0):
    """(..., query_pixels, tokens) -> (..., tokens, height, width)."""
    height, width = spatial_shape(maps.shape[-2], aspect_ratio)
    maps = maps.transpose(-1, -2)  # (..., tokens, query_pixels)
    return maps.reshape(*maps.shape[:-1], height, width)


def resize_maps(maps, size):
    """(B, tokens, h, w) -> (B, tokens, size[0], size[1]), bilinear."""
    if isinstance(size, int):
        size = (size, size)
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def normalize_maps(maps):
    """Scale each map to [0, 1] over its last two dimensions (for display)."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    high = maps.amax(dim=(-2, -1), keepdim=True)
    return (maps - low) / (high - low).clamp_min(1e-12)


def aggregate_maps(store, resolution, layer_names=None, aspect_ratio=1.0):
    """(batch, tokens, res_h, res_w): attention averaged over steps, heads and layers.

    Every layer's map (averaged over its calls and heads) is resized to
    `resolution` (an int or (height, width)) before the layers are averaged,
    so coarse and fine layers count equally.
    """
    if layer_names is None:
        layer_names = store.layer_names
    if not layer_names:
        raise ValueError("the store holds no attention maps: run the pipeline inside capture_cross_attention")
    total = None
    for layer_name in layer_names:
        per_layer = store.mean(layer_name).mean(dim=1)  # (batch, query_pixels, tokens), heads averaged
        per_layer = resize_maps(to_spatial(per_layer, aspect_ratio), resolution)  # (batch, tokens, h, w)
        if total is None:
            total = per_layer
        else:
            total = total + per_layer
    return total / len(layer_names)
