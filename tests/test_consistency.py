"""The numbers the course states in several places agree with each other and with their one source.

Each test names the source of a number and checks the places that repeat it:
- SD 1.5's download: the registry (`MODELS["sd15"].download_gb`), which must
  equal the weights of SD 1.5's published configs (`sdnotes/tiny.py`, plus the
  safety checker's CLIP ViT-L/14 vision tower) at 4 bytes each; the fp16 files
  are half. README and notebooks say the same two numbers.
- The pocket model's registry line: "no download, runs on a CPU".
- Counting U-Net calls (notebook 00 states it; 07 uses it): one forward pass,
  whatever its batch; PNDM makes N + 1 calls for N steps.
- SD 2.x's text encoder: 23 layers of OpenCLIP ViT-H/14's 24, 340 M
  parameters (notebooks 04 and 13).
- The pocket model's training time, from its training log.
- benchmarks/seed_study.md quotes notebook 09's current study settings.
- The glossary's links resolve.

Configs are built on PyTorch's meta device: shapes only, nothing downloaded.
"""

import json
import re
from pathlib import Path

import nbformat
import pytest
import torch
from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import CLIPConfig, CLIPTextConfig, CLIPTextModel

from sdnotes.exercises import nb00, nb07
from sdnotes import MODELS
from sdnotes.schedule import SD_SCHEDULER_CONFIG
from sdnotes.tiny import SD15_TEXT_CONFIG, SD15_UNET_CONFIG, SD15_VAE_CONFIG

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

# SD 1.5's safety_checker/config.json: a CLIPConfig whose vision tower is ViT-L/14 (the only part the checker builds).
SD15_SAFETY_VISION_CONFIG = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                             "num_attention_heads": 16, "patch_size": 14, "image_size": 224}
SD15_SAFETY_PROJECTION_DIM = 768


def numbers_in(module):
    """Parameters plus persistent buffers: what a safetensors file of the module holds."""
    total = 0
    for tensor in module.state_dict().values():
        total += tensor.numel()
    return total


def notebook_text(path):
    """All cell sources of a notebook, joined."""
    notebook = nbformat.read(path, as_version=4)
    return "\n\n".join(cell.source for cell in notebook.cells)


def paragraphs(text):
    """Paragraphs and bullet items of Markdown (or code), so that a check can look at one statement at a time."""
    pieces = []
    for block in re.split(r"\n\s*\n", text):
        pieces.extend(re.split(r"\n(?=\* )", block))
    return pieces


def sd15_download_bytes():
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET_CONFIG)
        vae = AutoencoderKL(**SD15_VAE_CONFIG)
        text_encoder = CLIPTextModel(CLIPTextConfig(**SD15_TEXT_CONFIG))
        safety_checker = StableDiffusionSafetyChecker(
            CLIPConfig(text_config={}, vision_config=SD15_SAFETY_VISION_CONFIG,
                       projection_dim=SD15_SAFETY_PROJECTION_DIM))
    counts = [numbers_in(module) for module in (unet, vae, text_encoder, safety_checker)]
    return 4 * sum(counts)  # float32 weights


def test_sd15_download_in_the_registry_is_the_published_weights():
    full_gb = sd15_download_bytes() / 1e9
    info = MODELS["sd15"]
    assert info.download_gb == round(full_gb, 2), (info.download_gb, full_gb)
    assert info.has_fp16_variant
    assert f"{full_gb / 2:.2f} GB" in info.hub_notes  # the fp16 variant: half


def test_sd15_download_is_stated_the_same_everywhere():
    full = f"{MODELS['sd15'].download_gb:.1f}"
    fp16 = f"{MODELS['sd15'].download_gb / 2:.1f}"
    readme = (ROOT / "README.md").read_text()
    sd15_rows = [line for line in readme.splitlines() if line.startswith("| `sd15` |")]
    assert len(sd15_rows) == 1
    assert f"{fp16} GB in fp16" in sd15_rows[0] and f"{full} GB at full precision" in sd15_rows[0]
    pattern = re.compile(r"download of (?:about )?(\d+(?:\.\d+)?) GB|(\d+(?:\.\d+)?) GB download|"
                         r"(\d+(?:\.\d+)?) GB at full precision|~(\d+(?:\.\d+)?) GB")
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        for paragraph in paragraphs(notebook_text(path)):
            if "download" not in paragraph or not ("SD 1.5" in paragraph or '"sd15"' in paragraph):
                continue
            for match in pattern.finditer(paragraph):
                number = next(group for group in match.groups() if group)
                assert number in (full, fp16), f"{path.name}: SD 1.5 download stated as {number} GB: {paragraph!r}"


def test_pocket_registry_line_says_no_download():
    notebook = nbformat.read(NOTEBOOKS / "00_first_picture.ipynb", as_version=4)
    cells = [cell.source for cell in notebook.cells if "def download_and_memory" in cell.source]
    assert len(cells) == 1
    start = cells[0].index("def download_and_memory")
    namespace = {}
    exec(cells[0][start:cells[0].index("\n\n\n", start)], namespace)  # only the function, not the prints
    describe = namespace["download_and_memory"]
    assert describe(MODELS["pocket"]) == "no download, runs on a CPU"
    sd15_line = describe(MODELS["sd15"])
    full, fp16 = MODELS["sd15"].download_gb, MODELS["sd15"].download_gb / 2
    assert f"{full:.1f} GB" in sd15_line and f"{fp16:.1f} GB" in sd15_line, sd15_line


def pndm_calls(num_steps):
    scheduler = PNDMScheduler.from_config(SD_SCHEDULER_CONFIG)
    scheduler.set_timesteps(num_steps)
    return len(scheduler.timesteps)


def test_one_counting_convention_for_unet_calls():
    assert pndm_calls(20) == 21  # the fact both notebooks teach: N + 1 calls
    assert nb00.REFERENCE_SOLUTIONS["check_unet_calls"]["right"] == pndm_calls(30)
    assert nb07.REFERENCE_SOLUTIONS["check_pndm_unet_calls"]["right"] == pndm_calls(20)
    with pytest.raises(AssertionError, match="noise predictions"):  # both reject the doubled count
        nb00.check_unet_calls(2 * pndm_calls(30))
    with pytest.raises(AssertionError, match="noise predictions"):
        nb07.check_pndm_unet_calls(2 * pndm_calls(20))


def test_sd2_text_encoder_counted_from_its_config():
    def count(layers):
        config = CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, hidden_size=1024,
                                intermediate_size=4096, num_hidden_layers=layers, num_attention_heads=16)
        with torch.device("meta"):
            model = CLIPTextModel(config)
        return sum(parameter.numel() for parameter in model.parameters())

    assert round(count(23) / 1e6) == 340  # as SD 2 runs it: the penultimate layer's output
    assert round(count(24) / 1e6) == 353  # the whole OpenCLIP ViT-H/14 text tower
    notebook_04 = notebook_text(NOTEBOOKS / "04_tokenization_embeddings.ipynb")
    notebook_13 = notebook_text(NOTEBOOKS / "13_beyond_stable_diffusion.ipynb")
    assert "count_text_encoder_parameters(1024, 4096, 23, 16)" in notebook_04
    assert "clip_text_config(1024, 23, 16)" in notebook_13
    for text in (notebook_04, notebook_13):
        assert "340 M" in text and "353 M" in text


def test_pocket_training_time_from_its_log():
    log = json.loads((ROOT / "assets" / "pocket" / "training_log.json").read_text())
    stage_seconds = sum(timing["seconds"] for timing in log["timings"])
    rendering_seconds = 30  # once per process (assets/pocket/README.md)
    minutes = round((stage_seconds + rendering_seconds) / 60)
    card = " ".join((ROOT / "assets" / "pocket" / "README.md").read_text().split())
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"{round(stage_seconds)} s" in card
    assert f"about {minutes} minutes" in card
    assert f"about {minutes} minutes on one H100" in readme


def test_seed_study_quotes_notebook_09s_settings():
    notebook = nbformat.read(NOTEBOOKS / "09_seeds.ipynb", as_version=4)
    parameters = next(cell.source for cell in notebook.cells if cell.source.startswith("MODEL = os.environ"))
    values = {}
    for name in ("STUDY_SEEDS", "PROMPTS_PER_SET", "STUDY_STEPS"):
        values[name] = int(re.search(rf"^{name} = (\d+)", parameters, re.MULTILINE).group(1))
    settings = f"{values['STUDY_SEEDS']} seeds, {values['PROMPTS_PER_SET']} prompts per set"
    study = " ".join((ROOT / "benchmarks" / "seed_study.md").read_text().split())
    assert f"{settings} and {values['STUDY_STEPS']} steps" in study


def test_glossary_links_resolve():
    glossary = ROOT / "docs" / "glossary.md"
    links = re.findall(r"\]\(([^)#]+)\)", glossary.read_text())
    assert len(links) > 50
    missing = sorted({link for link in links if not (glossary.parent / link).resolve().exists()})
    assert not missing, f"docs/glossary.md links to files that do not exist: {missing}"
