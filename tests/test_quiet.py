"""The torchvision fallback notice is filtered at `import sdnotes`, and nothing else is."""

import logging
import subprocess
import sys

from sdnotes.quiet import TORCHVISION_FALLBACK_NOTICE, TorchvisionFallbackFilter


def make_record(message):
    return logging.LogRecord("transformers.utils.import_utils", logging.WARNING, __file__, 1, message, None, None)


def test_filter_drops_only_the_fallback_notice():
    notice_filter = TorchvisionFallbackFilter()
    assert not notice_filter.filter(make_record(f"`CLIPImageProcessor` {TORCHVISION_FALLBACK_NOTICE} `X`"))
    assert notice_filter.filter(make_record("some other warning from transformers"))


def test_import_sdnotes_prints_no_fallback_notice():
    code = "import sdnotes\nfrom diffusers import StableDiffusionPipeline\nfrom transformers import CLIPImageProcessor"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "requires torchvision" not in result.stdout + result.stderr
