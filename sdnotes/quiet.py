"""Silence one harmless notice that would greet every learner at `import sdnotes`.

Importing diffusers' Stable Diffusion pipeline imports transformers' CLIP image
processor (for the safety checker). Without torchvision, transformers >= 5
falls back to the PIL version of that processor and logs a warning for each of
three processors. The fallback is what we want (the course never processes
images with it), so only that exact notice is filtered; every other warning from
transformers still shows.
"""

import logging

TORCHVISION_FALLBACK_NOTICE = "requires torchvision (not installed); falling back to"


class TorchvisionFallbackFilter(logging.Filter):
    def filter(self, record):
        return TORCHVISION_FALLBACK_NOTICE not in record.getMessage()


def silence_torchvision_fallback_notice():
    logger = logging.getLogger("transformers.utils.import_utils")
    if not any(isinstance(existing, TorchvisionFallbackFilter) for existing in logger.filters):
        logger.addFilter(TorchvisionFallbackFilter())
