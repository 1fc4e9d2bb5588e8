"""sdnotes: the plumbing behind the Stable Diffusion notebook course.

The ideas (noising formula, classifier-free guidance, the sampling loop) are
written out in the notebooks; this package holds only what two or more
notebooks share: loading models, the offline CLIP tokenizer, showing and saving
images, attention capture, and the pocket model's data, training and judge.

The names below (`sdnotes.load`, `sdnotes.MODELS`, ...) are the learner's API:
notebooks, tests and benchmarks take them from here, `sdnotes.X`, and never
from the module that defines them. Every other name has one path, its module's.
"""

from sdnotes.quiet import silence_torchvision_fallback_notice

silence_torchvision_fallback_notice()  # before diffusers is imported

from sdnotes.models import describe, load, pick_device, pick_dtype
from sdnotes.registry import MODELS
from sdnotes.show import make_generator, read_image_metadata, save_image, show_images
from sdnotes.tokenizer import load_tokenizer

__all__ = [
    "MODELS",
    "load",
    "describe",
    "pick_device",
    "pick_dtype",
    "load_tokenizer",
    "make_generator",
    "show_images",
    "save_image",
    "read_image_metadata",
]
