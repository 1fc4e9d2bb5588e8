"""Attention capture and control: the one place that hooks diffusers attention.

Inside Stable Diffusion's U-Net every transformer block has two attention
layers: `attn1` (self-attention, image to image) and `attn2` (cross-attention:
queries from the image features, keys and values from the 77-token text
context). This module swaps their processors for ones that compute attention
exactly as diffusers' classic `AttnProcessor` does and, in between, hand the
attention probabilities to someone else:

- `capture_cross_attention(pipe, store, token_weights=...)` (notebook 05):
  every `attn2` layer records its probabilities, shaped (batch, heads,
  query_pixels, 77), in a `CrossAttentionStore` (sdnotes/attention_store.py),
  and can re-weight token columns (Hertz et al. 2022, "Prompt-to-Prompt Image
  Editing with Cross Attention Control", section 3.2): "after_softmax"
  multiplies the probabilities of the given tokens by a factor (the paper's
  rule, rows no longer sum to 1); "before_softmax" adds log(factor) to their
  scores, so each row is renormalised;
- `control_attention(pipe, controller)` (notebook 10): every `attn1` and
  `attn2` layer calls `controller(probs, is_cross, layer_name)` with its
  probabilities shaped (batch, heads, query_pixels, keys) and uses what the
  controller returns. Prompt-to-prompt's controller (which rows get which
  maps, at which step, in which layer) is written in notebook 10; only the
  plumbing is here. As in the paper's code, self-attention layers with more
  than `max_self_attention_pixels` query pixels (SD's 64×64 layers) are left
  to their original processor.

`layer_downsampling(unet, layer_name)` says how many times smaller than the
latent a layer's grid is (1, 2, 4, ...), from the U-Net's config.

diffusers internals this depends on (checked by tests/test_attention.py,
written against diffusers 0.42.1):
- `unet.attn_processors` / `unet.set_attn_processor(dict)` (AttentionMixin),
  keys "<module path>.processor", self-attention modules named "...attn1",
  cross-attention modules named "...attn2"; blocks named "down_blocks.<i>",
  "mid_block", "up_blocks.<i>";
- the processor call `processor(attn, hidden_states, encoder_hidden_states=None,
  attention_mask=None, temb=None)` made by `Attention.forward`;
- `Attention` members: to_q, to_k, to_v, to_out[0] (linear), to_out[1]
  (dropout), heads, scale, upcast_attention, upcast_softmax, spatial_norm,
  group_norm, norm_cross, norm_encoder_hidden_states, prepare_attention_mask,
  head_to_batch_dim, batch_to_head_dim, residual_connection,
  rescale_output_factor; and the maths of `Attention.get_attention_scores`.
"""

from contextlib import contextmanager

import torch

from sdnotes.attention_store import CrossAttentionStore

CONTEXT_LENGTH = 77
REWEIGHT_MODES = ("after_softmax", "before_softmax")
REWEIGHT_ROWS = ("all", "conditional")
REFERENCE_MAX_SELF_ATTENTION_PIXELS = 32**2  # google/prompt-to-prompt replaces self-attention up to 32×32


class ClassicAttentionProcessor:
    """diffusers' `AttnProcessor` maths with two places to step in: `probabilities` and `adjust`."""

    def __init__(self, layer_name):
        self.layer_name = layer_name

    def probabilities(self, attn, query, key, attention_mask, batch_size):
        """(B * heads, pixels, keys): softmax(scale * Q K^T + mask), the library's own code."""
        return attn.get_attention_scores(query, key, attention_mask)

    def adjust(self, attention_probs, batch_size, heads, is_cross):
        """Change or record the (B * heads, pixels, keys) probabilities; the layer uses what this returns."""
        return attention_probs

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        is_cross = encoder_hidden_states is not None
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        if encoder_hidden_states is None:
            batch_size, sequence_length, _ = hidden_states.shape
        else:
            batch_size, sequence_length, _ = encoder_hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)  # (B, pixels, inner_dim)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)  # (B, keys, inner_dim): 77 tokens, or the pixels themselves
        value = attn.to_v(encoder_hidden_states)  # (B, keys, inner_dim)
        query = attn.head_to_batch_dim(query)  # (B * heads, pixels, head_dim)
        key = attn.head_to_batch_dim(key)  # (B * heads, keys, head_dim)
        value = attn.head_to_batch_dim(value)  # (B * heads, keys, head_dim)

        attention_probs = self.probabilities(attn, query, key, attention_mask, batch_size)
        attention_probs = self.adjust(attention_probs, batch_size, attn.heads, is_cross)

        hidden_states = torch.bmm(attention_probs, value)  # (B * heads, pixels, head_dim)
        hidden_states = attn.batch_to_head_dim(hidden_states)  # (B, pixels, inner_dim)
        hidden_states = attn.to_out[0](hidden_states)  # linear projection
        hidden_states = attn.to_out[1](hidden_states)  # dropout
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


class CrossAttentionProcessor(ClassicAttentionProcessor):
    """For an attn2 layer: records the probabilities in a store, with optional token re-weighting.

    token_weights: {token index: factor}, e.g. {2: 3.0} triples token 2's weight.
    reweight: "after_softmax" (prompt-to-prompt) or "before_softmax".
    reweight_rows: "conditional" re-weights only the second half of the batch
        (the prompt half when the pipeline runs classifier-free guidance as
        [unconditional, conditional]); "all" re-weights every row.
    """

    def __init__(self, layer_name, store=None, token_weights=None, reweight="after_softmax",
                 reweight_rows="conditional"):
        if reweight not in REWEIGHT_MODES:
            raise ValueError(f"reweight must be one of {REWEIGHT_MODES}, got {reweight!r}")
        if reweight_rows not in REWEIGHT_ROWS:
            raise ValueError(f"reweight_rows must be one of {REWEIGHT_ROWS}, got {reweight_rows!r}")
        for factor in (token_weights or {}).values():
            if factor < 0:
                raise ValueError(f"token weights must be factors >= 0, got {factor}")
        super().__init__(layer_name)
        self.store = store
        self.token_weights = dict(token_weights or {})
        self.reweight = reweight
        self.reweight_rows = reweight_rows

    def token_factors(self, batch_size, heads, tokens, device, dtype):
        """(batch * heads, 1, tokens) factors: 1 everywhere but the re-weighted columns."""
        factors = torch.ones(batch_size, heads, 1, tokens, device=device, dtype=dtype)
        first_row = 0
        if self.reweight_rows == "conditional":
            if batch_size % 2 != 0:
                raise ValueError(f"reweight_rows='conditional' needs an even batch (CFG), got {batch_size}")
            first_row = batch_size // 2
        for token_index, factor in self.token_weights.items():
            factors[first_row:, :, :, token_index] = factor
        return factors.reshape(batch_size * heads, 1, tokens)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        if self.store is not None and encoder_hidden_states is not None:
            self.store.record_inputs(self.layer_name, hidden_states, encoder_hidden_states)
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

    def probabilities(self, attn, query, key, attention_mask, batch_size):
        """softmax(scale * Q K^T + mask), as `Attention.get_attention_scores`, with re-weighting."""
        dtype = query.dtype
        if not self.token_weights:
            return attn.get_attention_scores(query, key, attention_mask)  # the library's own code
        if attn.upcast_attention:
            query = query.float()
            key = key.float()
        scores = attn.scale * torch.bmm(query, key.transpose(-1, -2))  # (B * heads, pixels, tokens)
        if attention_mask is not None:
            scores = scores + attention_mask
        if attn.upcast_softmax:
            scores = scores.float()
        factors = self.token_factors(batch_size, attn.heads, scores.shape[-1], scores.device, scores.dtype)
        if self.reweight == "before_softmax":
            probs = (scores + factors.log()).softmax(dim=-1)
        else:
            probs = scores.softmax(dim=-1) * factors
        return probs.to(dtype)

    def adjust(self, attention_probs, batch_size, heads, is_cross):
        if self.store is not None:
            tokens = attention_probs.shape[-1]
            self.store.record(self.layer_name, attention_probs.reshape(batch_size, heads, -1, tokens))
        return attention_probs


class ControlledAttentionProcessor(ClassicAttentionProcessor):
    """For an attn1 or attn2 layer: the controller sees the probabilities and returns the ones to use.

    controller(probs, is_cross, layer_name) -> probs, both (batch, heads, query_pixels, keys).
    fallback: the layer's original processor, used for self-attention layers with more than
        `max_self_attention_pixels` query pixels (the controller is not called there).
    """

    def __init__(self, layer_name, controller, fallback=None, max_self_attention_pixels=None):
        super().__init__(layer_name)
        self.controller = controller
        self.fallback = fallback
        self.max_self_attention_pixels = max_self_attention_pixels

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        if encoder_hidden_states is None and self.max_self_attention_pixels is not None:
            if hidden_states.ndim == 4:
                pixels = hidden_states.shape[2] * hidden_states.shape[3]
            else:
                pixels = hidden_states.shape[1]
            if pixels > self.max_self_attention_pixels:
                return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

    def adjust(self, attention_probs, batch_size, heads, is_cross):
        probs = attention_probs.reshape(batch_size, heads, *attention_probs.shape[1:])  # (B, heads, pixels, keys)
        controlled = self.controller(probs, is_cross, self.layer_name)
        if controlled.shape != probs.shape:
            raise ValueError(f"the controller returned probabilities shaped {tuple(controlled.shape)} for layer "
                             f"{self.layer_name}; it must return the shape it was given, {tuple(probs.shape)}")
        return controlled.reshape(attention_probs.shape).to(attention_probs.dtype)


def attention_layer_names(unet, kind="attn2"):
    """Module paths of the attention layers of one kind ("attn2": cross, "attn1": self), in U-Net order."""
    if kind not in ("attn1", "attn2"):
        raise ValueError(f"kind must be 'attn1' (self-attention) or 'attn2' (cross-attention), got {kind!r}")
    names = []
    for processor_key in unet.attn_processors:
        layer_name = processor_key.removesuffix(".processor")
        if layer_name.endswith(kind):
            names.append(layer_name)
    return names


def cross_attention_layer_names(unet):
    """Module paths of the cross-attention layers (names ending in "attn2"), in U-Net order."""
    return attention_layer_names(unet, "attn2")


def layer_downsampling(unet, layer_name):
    """How many times smaller than the latent (per side) the grid of an attention layer is: 1, 2, 4, ...

    From the block the layer sits in: down block i works at 1/2**i, the middle
    block at the coarsest level, up block i at the mirror of down block i.
    """
    levels = len(unet.config.block_out_channels) - 1
    parts = layer_name.split(".")
    if parts[0] == "down_blocks":
        level = int(parts[1])
    elif parts[0] == "up_blocks":
        level = levels - int(parts[1])
    elif parts[0] == "mid_block":
        level = levels
    else:
        raise ValueError(f"{layer_name!r} is not in a down, middle or up block of the U-Net")
    return 2**level


def _install(unet, processors_by_layer):
    """Set the processors of the named layers; return the original processors, to restore them."""
    original_processors = dict(unet.attn_processors)
    new_processors = {}
    for processor_key, processor in original_processors.items():
        layer_name = processor_key.removesuffix(".processor")
        new_processors[processor_key] = processors_by_layer.get(layer_name, processor)
    unet.set_attn_processor(new_processors)  # (set_attn_processor empties the dict it is given)
    return original_processors


def _no_cross_attention_error():
    return RuntimeError(
        "found no cross-attention layers (processor keys ending in 'attn2.processor'): "
        "has the diffusers attention interface changed? See sdnotes/attention.py."
    )


@contextmanager
def capture_cross_attention(pipe_or_unet, store=None, token_weights=None, reweight="after_softmax",
                            reweight_rows="conditional"):
    """Install `CrossAttentionProcessor` on every attn2 layer; yield the store; restore on exit.

    Self-attention layers (attn1) keep their processors. `token_weights` etc.
    are passed to each processor (see `CrossAttentionProcessor`).
    """
    unet = getattr(pipe_or_unet, "unet", pipe_or_unet)
    if store is None:
        store = CrossAttentionStore()
    layer_names = cross_attention_layer_names(unet)
    if not layer_names:
        raise _no_cross_attention_error()
    processors = {}
    for layer_name in layer_names:
        processors[layer_name] = CrossAttentionProcessor(layer_name, store, token_weights, reweight, reweight_rows)
    original_processors = _install(unet, processors)
    try:
        yield store
    finally:
        unet.set_attn_processor(dict(original_processors))


@contextmanager
def control_attention(pipe_or_unet, controller, self_attention=True,
                      max_self_attention_pixels=REFERENCE_MAX_SELF_ATTENTION_PIXELS):
    """Inside the block, every attn2 (and attn1) layer hands its probabilities to `controller`; restored on exit.

    controller(probs, is_cross, layer_name) -> probs, (batch, heads, query_pixels, keys):
    keys are the 77 tokens in cross-attention, the query pixels themselves in
    self-attention. self_attention=False leaves every attn1 layer its own
    (faster, fused) processor; with True, self-attention layers with more query
    pixels than `max_self_attention_pixels` keep theirs too (None: control them all).
    Yields the controller.
    """
    unet = getattr(pipe_or_unet, "unet", pipe_or_unet)
    if not callable(controller):
        raise TypeError(f"controller must be callable as controller(probs, is_cross, layer_name), "
                        f"got {type(controller).__name__}")
    if not cross_attention_layer_names(unet):
        raise _no_cross_attention_error()
    original_processors = dict(unet.attn_processors)
    processors = {}
    kinds = ("attn1", "attn2") if self_attention else ("attn2",)
    for kind in kinds:
        for layer_name in attention_layer_names(unet, kind):
            fallback = original_processors[f"{layer_name}.processor"]
            processors[layer_name] = ControlledAttentionProcessor(layer_name, controller, fallback,
                                                                  max_self_attention_pixels)
    _install(unet, processors)
    try:
        yield controller
    finally:
        unet.set_attn_processor(dict(original_processors))
