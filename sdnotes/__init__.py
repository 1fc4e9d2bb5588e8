"""sdnotes: the plumbing behind the Stable Diffusion notebook course.

The ideas (noising formula, classifier-free guidance, the sampling loop) are
written out in the notebooks; this package holds only what two or more
notebooks share: loading models, the offline CLIP tokenizer, showing and saving
images, attention capture, and the pocket model's data, training and judge.
"""

from sdnotes.quiet import silence_torchvision_fallback_notice

silence_torchvision_fallback_notice()  # before diffusers is imported

from sdnotes.tokenizer import load_tokenizer
from sdnotes.models import MODELS, load, pick_device, pick_dtype, describe
from sdnotes.show import make_generator, show_images, save_image, read_image_metadata

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
