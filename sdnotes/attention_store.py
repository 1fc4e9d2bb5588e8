"""Where cross-attention goes: the store that records it (tensors only).

`CrossAttentionStore` keeps the attention probabilities of each
cross-attention layer, (batch, heads, query_pixels, tokens), summed over the
calls (one call per denoising step), so its memory does not grow with the
number of steps (`keep_steps=True` keeps every call). `sdnotes/attention.py`
plugs it into diffusers' U-Net (`capture_cross_attention`); it sees only
tensors, never a diffusers object, so it lives here, apart from the code that
hooks diffusers' attention processors.

Reference: Hertz et al. 2022, "Prompt-to-Prompt Image Editing with Cross
Attention Control"; their code (google/prompt-to-prompt) stores the maps summed
over steps and leaves out the 64×64 layers, as `max_query_pixels` can.
"""


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
