"""Where cross-attention goes: the store that records it and prompt-to-prompt's injection (tensors only).

Two small classes that `sdnotes/attention.py` plugs into diffusers' U-Net.
They see only tensors, never a diffusers object, so they are here, apart from
the code that hooks diffusers' attention processors:

- `CrossAttentionStore` keeps the attention probabilities of each
  cross-attention layer, (batch, heads, query_pixels, tokens), summed over
  the calls (one call per denoising step), so its memory does not grow with
  the number of steps (`keep_steps=True` keeps every call);
- `AttentionInjection` is prompt-to-prompt's word swap: in a batch
  [source, edit, ...] the edited prompts take the source prompt's attention
  probabilities during the first steps.

References: Hertz et al. 2022, "Prompt-to-Prompt Image Editing with Cross
Attention Control" (section 3.2: word swap; their code stores the maps summed
over steps and leaves out the 64×64 layers, as `max_query_pixels` can).
"""

import torch


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
