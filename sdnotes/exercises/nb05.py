"""Checks for the exercises of notebook 05 (cross-attention).

Expected values are computed here, from the CLIP tokenizer, from a seeded
diffusers `Attention` layer, and from Stable Diffusion 1.5's U-Net layout
(its published config: 8 heads, 64×64 latents at 512×512 pixels, 77 tokens),
so they cannot drift from the libraries.
"""

import torch
from diffusers.models.attention_processor import Attention

from sdnotes.exercises import as_number, is_unanswered, not_answered, passed

BLUE_EYES_PROMPT = "a man with blue eyes"
SD15_HEADS = 8
SD15_LATENT_SIDE = 64  # 512 px / VAE factor 8
SD15_CONTEXT_LENGTH = 77


def _blue_eyes_position():
    from sdnotes.tokenizer import load_tokenizer

    tokenizer = load_tokenizer("sd1")
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(BLUE_EYES_PROMPT).input_ids)
    return tokens.index("eyes</w>")


def check_eyes_position(answer):
    """Exercise 1: the position of "eyes" in the 77-token sequence (start token = position 0)."""
    exercise = "Exercise 1 (where is 'eyes'?)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = _blue_eyes_position()
    if answer == expected - 1:
        raise AssertionError(
            f"{exercise}: {answer} is one too low. The sequence starts with the start token "
            f"<|startoftext|> at position 0, so the first word is at position 1."
        )
    assert answer == expected, (
        f"{exercise}: {answer} is not it. Tokenize the prompt with pipe.tokenizer, turn the ids "
        f"into tokens with convert_ids_to_tokens, and find 'eyes</w>'."
    )
    passed(exercise, f"Column {expected} of every attention map belongs to 'eyes'.")


def _make_attention_layer(seed=0):
    """A seeded cross-attention layer: 32 image channels, 4 heads, 24-d text context."""
    torch.manual_seed(seed)
    layer = Attention(query_dim=32, cross_attention_dim=24, heads=4, dim_head=8, bias=False)
    return layer.eval()


def check_attention_by_hand(my_cross_attention):
    """Exercise 2: the learner's cross-attention, compared with a diffusers Attention layer."""
    exercise = "Exercise 2 (attention by hand)"
    if is_unanswered(my_cross_attention):
        return not_answered(exercise)
    if not callable(my_cross_attention):
        raise AssertionError(f"{exercise}: expected a function my_cross_attention(layer, x, context).")
    layer = _make_attention_layer()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 10, 32, generator=generator)  # (B, pixels, channels)
    context = torch.randn(2, 77, 24, generator=generator)  # (B, tokens, context width)
    with torch.no_grad():
        expected = layer(x, encoder_hidden_states=context)  # (B, pixels, channels)
        mine = my_cross_attention(layer, x, context)
        if is_unanswered(mine):
            return not_answered(exercise)
        if not isinstance(mine, torch.Tensor) or mine.shape != expected.shape:
            raise AssertionError(
                f"{exercise}: return a tensor shaped like x {tuple(expected.shape)}, got "
                f"{type(mine).__name__} {tuple(getattr(mine, 'shape', ()))}."
            )
        if torch.allclose(mine, expected, atol=1e-5):
            return passed(exercise, "Your attention matches diffusers' Attention layer.")
        unscaled = _cross_attention(layer, x, context, scale=1.0)
        if torch.allclose(mine, unscaled, atol=1e-5):
            raise AssertionError(f"{exercise}: close! Divide the scores Q Kᵀ by sqrt(head_dim) before the softmax.")
        one_head = _cross_attention(layer, x, context, heads=1)
        if torch.allclose(mine, one_head, atol=1e-5):
            raise AssertionError(
                f"{exercise}: close! Split Q, K and V into layer.heads heads of {layer.inner_dim // layer.heads} "
                "channels, attend in each head separately, then join the heads again."
            )
    raise AssertionError(
        f"{exercise}: not the same as the layer's output. Steps: Q = layer.to_q(x), K = layer.to_k(context), "
        "V = layer.to_v(context); split into heads; softmax(Q Kᵀ / sqrt(d)) V; join heads; layer.to_out[0]."
    )


def _cross_attention(layer, x, context, scale=None, heads=None):
    """Reference cross-attention (or a known mistake, through `scale` / `heads`)."""
    heads = heads or layer.heads
    query = layer.to_q(x).unflatten(-1, (heads, -1)).transpose(1, 2)  # (B, heads, pixels, d)
    key = layer.to_k(context).unflatten(-1, (heads, -1)).transpose(1, 2)  # (B, heads, tokens, d)
    value = layer.to_v(context).unflatten(-1, (heads, -1)).transpose(1, 2)  # (B, heads, tokens, d)
    if scale is None:
        scale = query.shape[-1] ** -0.5
    probs = (scale * query @ key.transpose(-1, -2)).softmax(dim=-1)  # (B, heads, pixels, tokens)
    joined = (probs @ value).transpose(1, 2).flatten(2)  # (B, pixels, heads * d)
    return layer.to_out[0](joined)


def _reference_attention(layer, x, context):
    return _cross_attention(layer, x, context)


def _attention_without_scale(layer, x, context):
    return _cross_attention(layer, x, context, scale=1.0)


def _largest_map_numbers():
    batch = 2  # classifier-free guidance: unconditional + conditional
    return batch * SD15_HEADS * SD15_LATENT_SIDE * SD15_LATENT_SIDE * SD15_CONTEXT_LENGTH


def check_largest_map_numbers(answer):
    """Exercise 3: numbers in one step's probabilities of a 64×64 SD 1.5 cross-attention layer."""
    exercise = "Exercise 3 (how big is one attention map?)"
    if is_unanswered(answer):
        return not_answered(exercise)
    answer = as_number(exercise, answer)
    expected = _largest_map_numbers()
    if answer == expected // 2:
        raise AssertionError(
            f"{exercise}: close! With classifier-free guidance the U-Net sees a batch of 2 "
            "(unconditional and conditional) for one image."
        )
    if answer == expected // SD15_HEADS:
        raise AssertionError(f"{exercise}: close! Every one of the {SD15_HEADS} heads has its own map.")
    assert answer == expected, (
        f"{exercise}: {answer} is not it. Multiply batch (2 with guidance) × heads ({SD15_HEADS}) × "
        f"query pixels ({SD15_LATENT_SIDE}×{SD15_LATENT_SIDE}) × tokens ({SD15_CONTEXT_LENGTH})."
    )
    megabytes = expected * 2 / 1e6
    passed(
        exercise,
        f"{expected:,} numbers, {megabytes:.1f} MB in float16, for one layer and one step: "
        "that is why prompt-to-prompt's code does not store the 64×64 layers.",
    )


REFERENCE_SOLUTIONS = {
    "check_eyes_position": {"right": 5, "wrong": 4},
    "check_attention_by_hand": {"right": _reference_attention, "wrong": _attention_without_scale},
    "check_largest_map_numbers": {"right": _largest_map_numbers(), "wrong": _largest_map_numbers() // 2},
}
