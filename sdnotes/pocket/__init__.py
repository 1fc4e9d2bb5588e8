"""The pocket model: a miniature Stable Diffusion trained by this project (data, training recipe, judge)."""
