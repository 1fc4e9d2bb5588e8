"""Cross-attention capture and re-weighting: the one place that hooks diffusers attention.

Inside Stable Diffusion's U-Net every transformer block has two attention
layers: `attn1` (self-attention, image to image) and `attn2` (cross-attention:
queries from the image features, keys and values from the 77-token text
context). This module swaps the processor of every `attn2` layer for
`CrossAttentionProcessor`, which computes attention exactly as diffusers'
classic `AttnProcessor` does, and also

- records the attention probabilities, shaped (batch, heads, query_pixels, 77),
  in a `CrossAttentionStore` (summed over calls, so the store's memory does
  not grow with the number of steps; `keep_steps=True` keeps every call);
- can re-weight token columns, prompt-to-prompt style (Hertz et al. 2022,
  "Prompt-to-Prompt Image Editing with Cross Attention Control", section 3.2):
  "after_softmax" multiplies the probabilities of the given tokens by a factor
  (the paper's rule, rows no longer sum to 1); "before_softmax" adds log(factor)
  to their scores, i.e. multiplies exp(score), so each row is renormalised;
- can inject, prompt-to-prompt's word swap (same paper, section 3.2): with an
  `AttentionInjection`, the edited prompts of a batch take the source prompt's
  attention probabilities during the first steps (`inject_cross_attention`).

`capture_cross_attention(pipe)` is a context manager that installs the
processors and restores the original ones afterwards.

This file holds only the code that touches diffusers' attention processors
(the house rule: the diffusers internals we hook live in this one module,
tested by tests/test_attention.py). The store and the maps see only tensors:
`sdnotes/attention_store.py` and `sdnotes/attention_maps.py`.

diffusers internals this depends on (checked by tests/test_attention.py,
written against diffusers 0.42.1):
- `unet.attn_processors` / `unet.set_attn_processor(dict)` (AttentionMixin),
  keys "<module path>.processor", cross-attention modules named "...attn2";
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

from sdnotes.attention_store import AttentionInjection, CrossAttentionStore

CONTEXT_LENGTH = 77
REWEIGHT_MODES = ("after_softmax", "before_softmax")
REWEIGHT_ROWS = ("all", "conditional")


class CrossAttentionProcessor:
    """diffusers' `AttnProcessor` maths, plus recording and optional token re-weighting.

    token_weights: {token index: factor}, e.g. {2: 3.0} triples token 2's weight.
    reweight: "after_softmax" (prompt-to-prompt) or "before_softmax".
    reweight_rows: "conditional" re-weights only the second half of the batch
        (the prompt half when the pipeline runs classifier-free guidance as
        [unconditional, conditional]); "all" re-weights every row.
    injection: an `AttentionInjection` (applied after re-weighting; the store
        records the probabilities the layer then uses).
    """

    def __init__(self, layer_name, store=None, token_weights=None, reweight="after_softmax",
                 reweight_rows="conditional", injection=None):
        if reweight not in REWEIGHT_MODES:
            raise ValueError(f"reweight must be one of {REWEIGHT_MODES}, got {reweight!r}")
        if reweight_rows not in REWEIGHT_ROWS:
            raise ValueError(f"reweight_rows must be one of {REWEIGHT_ROWS}, got {reweight_rows!r}")
        for factor in (token_weights or {}).values():
            if factor < 0:
                raise ValueError(f"token weights must be factors >= 0, got {factor}")
        self.layer_name = layer_name
        self.store = store
        self.token_weights = dict(token_weights or {})
        self.reweight = reweight
        self.reweight_rows = reweight_rows
        self.injection = injection

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
        key = attn.to_k(encoder_hidden_states)  # (B, tokens, inner_dim)
        value = attn.to_v(encoder_hidden_states)  # (B, tokens, inner_dim)
        query = attn.head_to_batch_dim(query)  # (B * heads, pixels, head_dim)
        key = attn.head_to_batch_dim(key)  # (B * heads, tokens, head_dim)
        value = attn.head_to_batch_dim(value)  # (B * heads, tokens, head_dim)

        attention_probs = self.attention_probabilities(attn, query, key, attention_mask, batch_size)
        if self.injection is not None:
            attention_probs = self.injection(self.layer_name, attention_probs, batch_size, attn.heads)
        if self.store is not None:
            tokens = attention_probs.shape[-1]
            self.store.record(self.layer_name, attention_probs.reshape(batch_size, attn.heads, -1, tokens))

        hidden_states = torch.bmm(attention_probs, value)  # (B * heads, pixels, head_dim)
        hidden_states = attn.batch_to_head_dim(hidden_states)  # (B, pixels, inner_dim)
        hidden_states = attn.to_out[0](hidden_states)  # linear projection
        hidden_states = attn.to_out[1](hidden_states)  # dropout
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    def attention_probabilities(self, attn, query, key, attention_mask, batch_size):
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


def cross_attention_layer_names(unet):
    """Module paths of the cross-attention layers (names ending in "attn2"), in U-Net order."""
    names = []
    for processor_key in unet.attn_processors:
        layer_name = processor_key.removesuffix(".processor")
        if layer_name.endswith("attn2"):
            names.append(layer_name)
    return names


@contextmanager
def capture_cross_attention(pipe_or_unet, store=None, token_weights=None, reweight="after_softmax",
                            reweight_rows="conditional", injection=None):
    """Install `CrossAttentionProcessor` on every attn2 layer; yield the store; restore on exit.

    Self-attention layers (attn1) keep their processors. `token_weights` etc.
    are passed to each processor (see `CrossAttentionProcessor`).
    """
    unet = getattr(pipe_or_unet, "unet", pipe_or_unet)
    if store is None:
        store = CrossAttentionStore()
    original_processors = dict(unet.attn_processors)
    layer_names = cross_attention_layer_names(unet)
    if injection is not None and injection.layer_names is not None:
        unknown = sorted(injection.layer_names - set(layer_names))
        if unknown:
            raise ValueError(f"not cross-attention layers of this U-Net: {unknown}; see cross_attention_layer_names")
    if not layer_names:
        raise RuntimeError(
            "found no cross-attention layers (processor keys ending in 'attn2.processor'): "
            "has the diffusers attention interface changed? See sdnotes/attention.py."
        )
    new_processors = {}
    for processor_key, processor in original_processors.items():
        layer_name = processor_key.removesuffix(".processor")
        if layer_name in layer_names:
            processor = CrossAttentionProcessor(layer_name, store, token_weights, reweight, reweight_rows, injection)
        new_processors[processor_key] = processor
    unet.set_attn_processor(new_processors)  # (set_attn_processor empties the dict it is given)
    try:
        yield store
    finally:
        unet.set_attn_processor(dict(original_processors))


@contextmanager
def inject_cross_attention(pipe_or_unet, num_steps, layer_names=None, guided=True, store=None):
    """Prompt-to-prompt word swap for the runs inside the block; yields the `AttentionInjection`.

    The batch's first prompt is the source, the others are its edits (see
    `AttentionInjection`). Each run inside the block must start with
    `injection.reset()` unless the block holds one run only.
    """
    injection = AttentionInjection(num_steps, layer_names, guided)
    with capture_cross_attention(pipe_or_unet, store=store, injection=injection):
        yield injection
