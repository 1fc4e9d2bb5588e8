"""Tests for sdnotes/tokenizer.py: the offline CLIP tokenizer of Stable Diffusion.

`load_tokenizer` reads the files shipped in assets/pocket/tokenizer/; where they
are missing it builds them from open-clip-torch's copy of OpenAI's merges list.
Both are tested, and checked against each other.

Expected ids come from three places:
- the course brief ("a photo of a cat" -> 49406, 320, 1125, 539, 320, 2368,
  49407; "dreambeach" -> dream + beach</w>; 49,408 tokens; 77 ids);
- first principles of the vocabulary layout: ids 0-255 are the byte symbols
  in `bytes_to_unicode` order, where printable ASCII from "!" (33) comes first,
  and ids 256-511 are the same symbols with "</w>", so a one-character word
  made of printable ASCII character c has id 256 + ord(c) - 33;
- open_clip's own `SimpleTokenizer` (a copy of OpenAI's), loaded standalone
  from the installed open-clip-torch, as an independent reference (the dev
  setup installs open-clip-torch with --no-deps for these checks; a learner's
  install does not need it).
"""

import importlib.util
import json
import threading
from pathlib import Path

import pytest

from sdnotes import tokenizer as tokenizer_module
from sdnotes import load_tokenizer

START_ID = 49406
END_ID = 49407


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("clip-tokenizer")


@pytest.fixture(scope="module")
def sd1_tokenizer(cache_dir):
    return load_tokenizer("sd1", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def sd2_tokenizer(cache_dir):
    return load_tokenizer("sd2", cache_dir=cache_dir)


def ids_77(tokenizer, prompt):
    """Token ids exactly as the Stable Diffusion pipelines ask for them."""
    encoded = tokenizer(
        prompt,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
    )
    return encoded.input_ids


def printable_ascii_word_id(character):
    """Id of a one-character word, from the vocabulary layout (see module docstring)."""
    return 256 + ord(character) - ord("!")


def test_sizes_and_special_tokens(sd1_tokenizer):
    assert len(sd1_tokenizer) == 49408
    assert sd1_tokenizer.vocab_size == 49408
    assert sd1_tokenizer.model_max_length == 77
    assert sd1_tokenizer.bos_token == "<|startoftext|>"
    assert sd1_tokenizer.bos_token_id == START_ID
    assert sd1_tokenizer.eos_token == "<|endoftext|>"
    assert sd1_tokenizer.eos_token_id == END_ID
    assert sd1_tokenizer.pad_token == "<|endoftext|>"
    assert sd1_tokenizer.pad_token_id == END_ID


def test_a_photo_of_a_cat_is_padded_with_end_token(sd1_tokenizer):
    ids = ids_77(sd1_tokenizer, "a photo of a cat")
    assert ids[:7] == [START_ID, 320, 1125, 539, 320, 2368, END_ID]
    assert ids[7:] == [END_ID] * 70
    assert len(ids) == 77


def test_sd2_pads_with_exclamation_mark_id_0(sd2_tokenizer):
    assert sd2_tokenizer.pad_token == "!"
    assert sd2_tokenizer.pad_token_id == 0
    ids = ids_77(sd2_tokenizer, "a photo of a cat")
    assert ids[:7] == [START_ID, 320, 1125, 539, 320, 2368, END_ID]
    assert ids[7:] == [0] * 70


# prompt -> tokens without the start and end tokens
TOKEN_VECTORS = [
    ("dreambeach", ["dream", "beach</w>"]),
    ("dream beach", ["dream</w>", "beach</w>"]),
    ("cat", ["cat</w>"]),
    ("CAT", ["cat</w>"]),  # the tokenizer lowercases
    ("2024", ["2</w>", "0</w>", "2</w>", "4</w>"]),  # each digit is its own word
]


@pytest.mark.parametrize(("prompt", "expected_tokens"), TOKEN_VECTORS)
def test_token_vectors(sd1_tokenizer, prompt, expected_tokens):
    assert sd1_tokenizer.tokenize(prompt) == expected_tokens


# prompt -> ids without the start and end tokens
ID_VECTORS = [
    ("cat", [2368]),
    ("photo", [1125]),
    ("a", [320]),
    ("of", [539]),
    ("A Photo Of A Cat", [320, 1125, 539, 320, 2368]),
    ("a", [printable_ascii_word_id("a")]),  # 256 + 97 - 33 = 320
    ("x", [printable_ascii_word_id("x")]),
    ("!", [printable_ascii_word_id("!")]),  # 256
    ("7", [printable_ascii_word_id("7")]),
    ("2024", [printable_ascii_word_id(digit) for digit in "2024"]),
    ("", []),
]


@pytest.mark.parametrize(("prompt", "expected_ids"), ID_VECTORS)
def test_id_vectors(sd1_tokenizer, prompt, expected_ids):
    ids = ids_77(sd1_tokenizer, prompt)
    number_of_ids = len(expected_ids) + 2
    assert ids[:number_of_ids] == [START_ID] + expected_ids + [END_ID]


def test_long_prompt_is_truncated_to_77_with_end_token_last(sd1_tokenizer):
    prompt = " ".join(["cat"] * 100)
    ids = ids_77(sd1_tokenizer, prompt)
    assert len(ids) == 77
    assert ids == [START_ID] + [2368] * 75 + [END_ID]


def test_decode_gives_the_prompt_back(sd1_tokenizer):
    ids = ids_77(sd1_tokenizer, "a photo of a cat")
    assert sd1_tokenizer.decode(ids, skip_special_tokens=True) == "a photo of a cat"


def test_unknown_kind_names_the_valid_ones(cache_dir):
    with pytest.raises(ValueError, match="sd1"):
        load_tokenizer("sd3", cache_dir=cache_dir)


@pytest.fixture
def without_shipped_files(monkeypatch, tmp_path):
    """As if the package ran without the repository's assets/: load_tokenizer builds the files."""
    monkeypatch.setattr(tokenizer_module, "SHIPPED_TOKENIZER", tmp_path / "no-assets-here")


def hide_open_clip(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec_without_open_clip(name, *args, **kwargs):
        if name == "open_clip":
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(tokenizer_module.importlib.util, "find_spec", find_spec_without_open_clip)


def test_shipped_files_hold_the_whole_clip_vocabulary():
    # From first principles, without open-clip-torch: the vocabulary in the shipped
    # tokenizer.json is exactly the one SimpleTokenizer derives from the merges.
    shipped = json.loads((tokenizer_module.SHIPPED_TOKENIZER / "tokenizer.json").read_text(encoding="utf-8"))
    model = shipped["model"]
    assert model["type"] == "BPE" and model["end_of_word_suffix"] == "</w>"
    merges = [" ".join(merge) if isinstance(merge, list) else merge for merge in model["merges"]]
    assert len(merges) == 48894
    assert len(model["vocab"]) == 49408
    assert list(tokenizer_module.build_vocabulary(merges).items()) == list(model["vocab"].items())
    special_tokens = {token["id"]: token["content"] for token in shipped["added_tokens"]}
    assert special_tokens == {START_ID: "<|startoftext|>", END_ID: "<|endoftext|>"}


def test_reads_the_shipped_files_without_open_clip_and_writes_no_cache(monkeypatch, tmp_path):
    hide_open_clip(monkeypatch)
    for kind, pad_id in [("sd1", END_ID), ("sd2", 0)]:
        tokenizer = load_tokenizer(kind, cache_dir=tmp_path)
        ids = ids_77(tokenizer, "a photo of a cat")
        assert ids[:7] == [START_ID, 320, 1125, 539, 320, 2368, END_ID]
        assert ids[-1] == pad_id and len(tokenizer) == 49408
    assert list(tmp_path.iterdir()) == []


def test_files_are_built_in_the_cache_folder(tmp_path, without_shipped_files):
    if importlib.util.find_spec("open_clip") is None:
        pytest.skip("open-clip-torch is not installed (the dev setup installs it)")
    tokenizer = load_tokenizer("sd1", cache_dir=tmp_path)
    built_files = sorted(path.name for path in (tmp_path / "sd1").iterdir())
    assert built_files == ["merges.txt", "vocab.json"]
    merges_lines = (tmp_path / "sd1" / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges_lines[0] == "#version: 0.2"
    assert len(merges_lines) == 1 + 48894
    assert ids_77(tokenizer, "a photo of a cat")[:7] == [START_ID, 320, 1125, 539, 320, 2368, END_ID]


def test_concurrent_first_use_builds_a_consistent_cache(tmp_path, without_shipped_files):
    if importlib.util.find_spec("open_clip") is None:
        pytest.skip("open-clip-torch is not installed (the dev setup installs it)")
    tokenizers = []
    errors = []

    def build_one():
        try:
            tokenizers.append(load_tokenizer("sd1", cache_dir=tmp_path))
        except Exception as error:  # collected and re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=build_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(tokenizers) == 4
    for tokenizer in tokenizers:
        assert ids_77(tokenizer, "a photo of a cat")[:7] == [START_ID, 320, 1125, 539, 320, 2368, END_ID]
    leftover_temporary_files = list((tmp_path / "sd1").glob("*.tmp"))
    assert leftover_temporary_files == []


def test_no_shipped_files_and_no_open_clip_says_what_to_do(monkeypatch, tmp_path, without_shipped_files):
    hide_open_clip(monkeypatch)
    with pytest.raises(ModuleNotFoundError) as error_info:
        load_tokenizer("sd1", cache_dir=tmp_path)
    message = str(error_info.value)
    assert "no-assets-here" in message  # where the files were expected
    assert "clone of the repository" in message and "SDNOTES_ASSETS" in message
    assert "pip install --no-deps open-clip-torch" in message


# --- Cross-check with open_clip's own SimpleTokenizer -------------------------

REFERENCE_PROMPTS = [
    "a photo of a cat",
    "An astronaut riding a horse on Mars, trending on ArtStation, 8k, highly detailed",
    "Portrait of a woman by Greg Rutkowski and Alphonse Mucha!!!",
    "1girl, (masterpiece:1.2), [best quality], {detailed}",
    "café crème brûlée in Zürich",
    "cafe\u0301 with a decomposed accent",
    "東京の夜景, ネオン",
    "emoji 🐱🚀 party 🎉",
    "it's the cat's pyjamas; they'll've I'm we're you'd",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "   extra   spaces\tand\nnewlines  ",
    "numbers 3.14159 and 2024-05-23 and 1,000,000",
    "UPPER lower MiXeD CamelCaseWords",
    "a--b__c//d ... ?!? #hashtag @handle $100 50%",
    "dreambeach",
    "dream beach",
    "",
    " ".join(["a red apple on a wooden table"] * 20),
]


def load_open_clip_reference_tokenizer():
    """open_clip's SimpleTokenizer, loaded from its file without importing open_clip."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None:
        pytest.skip("open-clip-torch is not installed")
    tokenizer_file = Path(list(spec.submodule_search_locations)[0]) / "tokenizer.py"
    pytest.importorskip("ftfy")
    pytest.importorskip("regex")
    module_spec = importlib.util.spec_from_file_location("open_clip_reference_tokenizer", tokenizer_file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.SimpleTokenizer(context_length=77)


@pytest.fixture(scope="module")
def reference_tokenizer():
    return load_open_clip_reference_tokenizer()


def test_sd2_matches_open_clip_exactly_for_prompts_without_exclamation_marks(sd2_tokenizer, reference_tokenizer):
    # open_clip pads with 0, as Stable Diffusion 2.x does. Prompts with "!" differ:
    # see test_sd2_turns_every_exclamation_mark_into_the_pad_token.
    reference_ids = reference_tokenizer(REFERENCE_PROMPTS).tolist()
    compared = 0
    for prompt, expected_ids in zip(REFERENCE_PROMPTS, reference_ids):
        if "!" in prompt:
            continue
        assert ids_77(sd2_tokenizer, prompt) == expected_ids, prompt
        compared += 1
    assert compared >= 10


def test_sd2_turns_every_exclamation_mark_into_the_pad_token(sd1_tokenizer, sd2_tokenizer, reference_tokenizer):
    # A known quirk of the Hugging Face SD 2.x / SDXL tokenizer (diffusers issue
    # #4153): the pad token "!" is a special token, so every "!" in a prompt is
    # cut out as id 0 instead of being merged by BPE as OpenCLIP does.
    prompt = "! !! !!!"
    assert reference_tokenizer([prompt]).tolist()[0][:5] == [START_ID, 256, 748, 995, END_ID]
    assert ids_77(sd1_tokenizer, prompt)[:5] == [START_ID, 256, 748, 995, END_ID]
    assert ids_77(sd2_tokenizer, prompt)[:8] == [START_ID, 0, 0, 0, 0, 0, 0, END_ID]


def test_sd1_matches_open_clip_up_to_padding(sd1_tokenizer, reference_tokenizer):
    reference_ids = reference_tokenizer(REFERENCE_PROMPTS).tolist()
    for prompt, expected_ids in zip(REFERENCE_PROMPTS, reference_ids):
        encoded = sd1_tokenizer(prompt, padding="max_length", max_length=77, truncation=True)
        number_of_real_ids = sum(encoded.attention_mask)
        assert encoded.input_ids[:number_of_real_ids] == expected_ids[:number_of_real_ids], prompt
        padding = encoded.input_ids[number_of_real_ids:]
        assert padding == [END_ID] * (77 - number_of_real_ids), prompt


@pytest.fixture(scope="module")
def built_tokenizers(tmp_path_factory):
    """Both kinds built from open-clip-torch's merges file, as when the shipped files are missing."""
    if importlib.util.find_spec("open_clip") is None:
        pytest.skip("open-clip-torch is not installed (the dev setup installs it)")
    folder = tmp_path_factory.mktemp("built-from-open-clip")
    tokenizer_module.build_tokenizer_files(folder)
    return {kind: tokenizer_module.tokenizer_from_folder(folder, kind) for kind in ("sd1", "sd2")}


def test_shipped_merges_are_openai_merges(reference_tokenizer):
    shipped = json.loads((tokenizer_module.SHIPPED_TOKENIZER / "tokenizer.json").read_text(encoding="utf-8"))
    shipped_merges = [" ".join(merge) if isinstance(merge, list) else merge for merge in shipped["model"]["merges"]]
    assert shipped_merges == tokenizer_module.read_merges(tokenizer_module.find_bpe_merges_file())


def test_shipped_and_built_tokenizers_give_the_same_ids(sd1_tokenizer, sd2_tokenizer, built_tokenizers):
    for kind, shipped_tokenizer in [("sd1", sd1_tokenizer), ("sd2", sd2_tokenizer)]:
        for prompt in REFERENCE_PROMPTS + ["! !! !!!"]:
            assert ids_77(shipped_tokenizer, prompt) == ids_77(built_tokenizers[kind], prompt), (kind, prompt)
