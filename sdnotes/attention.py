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
processors and restores the original ones afterwards. Helpers turn the store
into per-token maps: average over heads, steps and layers, reshape the query
pixels to a square (or given aspect) grid, resize to one resolution (the
small ones live in `sdnotes/attention_maps.py` and are re-exported here).

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

from sdnotes.attention_maps import normalize_maps, resize_maps, spatial_shape, to_spatial, token_indices

__all__ = [
    "AttentionInjection", "CrossAttentionProcessor", "CrossAttentionStore", "aggregate_maps",
    "capture_cross_attention", "cross_attention_layer_names", "inject_cross_attention", "normalize_maps",
    "resize_maps", "spatial_shape", "to_spatial", "token_indices",
]

CONTEXT_LENGTH = 77
REWEIGHT_MODES = ("after_softmax", "before_softmax")
REWEIGHT_ROWS = ("all", "conditional")


class CrossAttentionStore:
    """Attention probabilities of the cross-attention layers, per layer name.

    `sums[name]`: (batch, heads, query_pixels, tokens) summed over the calls
    (one call per denoising step); `counts[name]`: how many calls.
    `steps[name]`: the list of every call's probabilities if `keep_steps`.
    `inputs[name]`: (hidden_states, encoder_hidden_states) of the last call if
    `keep_inputs`: what the layer was given, to recompute it by hand.
    max_query_pixels: skip layers with more query pixels (saves memory on real
    SD, whose 64×64 layers are 16 times larger than its 16×16 ones).
    """

    def __init__(self, keep_steps=False, max_query_pixels=None, keep_inputs=False):
        self.keep_steps = keep_steps
        self.keep_inputs = keep_inputs
        self.max_query_pixels = max_query_pixels
        self.sums = {}
        self.counts = {}
        self.steps = {}
        self.inputs = {}

    def record(self, layer_name, attention_probs):
        """Add one call's (batch, heads, query_pixels, tokens) probabilities."""
        if self.max_query_pixels is not None and attention_probs.shape[2] > self.max_query_pixels:
            return
        probs = attention_probs.detach().float().cpu()
        if layer_name in self.sums:
            self.sums[layer_name] += probs
            self.counts[layer_name] += 1
        else:
            self.sums[layer_name] = probs.clone()
            self.counts[layer_name] = 1
        if self.keep_steps:
            self.steps.setdefault(layer_name, []).append(probs)

    def record_inputs(self, layer_name, hidden_states, encoder_hidden_states):
        if self.keep_inputs:
            self.inputs[layer_name] = (hidden_states.detach().clone(), encoder_hidden_states.detach().clone())

    def reset(self):
        self.sums.clear()
        self.counts.clear()
        self.steps.clear()
        self.inputs.clear()

    @property
    def layer_names(self):
        return list(self.sums)

    def mean(self, layer_name):
        """(batch, heads, query_pixels, tokens): the average over the recorded calls."""
        return self.sums[layer_name] / self.counts[layer_name]


class AttentionInjection:
    """Prompt-to-prompt word swap: edited prompts get the source prompt's attention probabilities.

    The batch holds B prompts: prompt 0 is the source, prompts 1..B-1 are its
    edits (each with the same number of tokens per word, so that a token
    position means the same word slot in every prompt). With classifier-free
    guidance (`guided=True`) the batch is [B unconditional rows, B conditional
    rows] and, as in the paper's code, only the conditional rows are changed:
    rows B+1..2B-1 take row B's probabilities. With `guided=False` (a batch of
    B rows, no guidance) rows 1..B-1 take row 0's.
    num_steps: inject during the first `num_steps` calls of each layer, i.e. the
        first steps of a sampler that calls the U-Net once per step (DDIM).
    layer_names: inject only into these layers (None: every layer it is given to).
    `calls[name]` counts each layer's calls; `reset()` starts a new run.
    """

    def __init__(self, num_steps, layer_names=None, guided=True):
        if num_steps < 0:
            raise ValueError(f"num_steps must be >= 0, got {num_steps}")
        self.num_steps = num_steps
        self.layer_names = None if layer_names is None else set(layer_names)
        self.guided = guided
        self.calls = {}

    def reset(self):
        self.calls.clear()

    def __call__(self, layer_name, attention_probs, batch_size, heads):
        """(batch * heads, pixels, tokens) probabilities -> the same, with the edits' rows replaced."""
        call_index = self.calls.get(layer_name, 0)
        self.calls[layer_name] = call_index + 1
        if call_index >= self.num_steps or (self.layer_names is not None and layer_name not in self.layer_names):
            return attention_probs
        number_of_prompts = batch_size
        source_row = 0
        if self.guided:
            if batch_size % 2 != 0:
                raise ValueError(f"guided=True needs an even batch [unconditional, conditional], got {batch_size}; "
                                 "pass guided=False when the run has no classifier-free guidance")
            number_of_prompts = batch_size // 2
            source_row = number_of_prompts
        probs = attention_probs.reshape(batch_size, heads, *attention_probs.shape[1:])  # (B, heads, pixels, tokens)
        source = probs[source_row:source_row + 1]  # (1, heads, pixels, tokens)
        edits = source.expand(number_of_prompts - 1, *source.shape[1:])
        probs = torch.cat([probs[:source_row + 1], edits, probs[source_row + number_of_prompts:]])
        return probs.reshape(attention_probs.shape)


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
