"""The CLIP tokenizer of Stable Diffusion, built offline.

Stable Diffusion 1.x splits a prompt with the tokenizer of OpenAI's CLIP
ViT-L/14 (`openai/clip-vit-large-patch14` on the Hugging Face Hub): byte-pair
encoding with a vocabulary of 49,408 tokens, every prompt padded or truncated
to 77 ids, start token `<|startoftext|>` = 49406, end and padding token
`<|endoftext|>` = 49407. Stable Diffusion 2.x uses the same vocabulary but pads
with `!` (id 0), as OpenCLIP does. Like the SD 2.x tokenizer on the Hub, the
"sd2" kind makes `!` a special token, so every "!" in a prompt becomes id 0
(OpenCLIP itself merges "!!!" into one token; diffusers issue #4153).

The course must run without the Hub, so this module rebuilds the tokenizer
files (`vocab.json`, `merges.txt`) from the BPE merges list that OpenAI
published with CLIP. That list ships inside the PyPI package `open-clip-torch`
as `open_clip/bpe_simple_vocab_16e6.txt.gz`; we only read it as a data file and
never import `open_clip` (its import pulls in torchvision). The vocabulary is
built exactly as OpenAI's `SimpleTokenizer` builds it:

1. the 256 byte symbols of `bytes_to_unicode()`,
2. the same 256 symbols followed by the end-of-word marker `</w>`,
3. one token per merge (the two halves joined), for the first 48,894 merges,
4. the start and end special tokens,

256 + 256 + 48,894 + 2 = 49,408 entries. The files are cached under
`~/.cache/sdnotes/clip-tokenizer/<kind>/` and written atomically (temporary
file, then rename), so parallel test workers never read a half-written file.

References:
- Radford et al. 2021, "Learning Transferable Visual Models From Natural
  Language Supervision" (CLIP); https://github.com/openai/CLIP
  (`clip/simple_tokenizer.py`).
- https://github.com/mlfoundations/open_clip (`src/open_clip/tokenizer.py`).
- transformers `CLIPTokenizer`:
  https://huggingface.co/docs/transformers/model_doc/clip
"""

import gzip
import importlib.util
import json
import os
import tempfile
from pathlib import Path

from transformers import CLIPTokenizer

MERGES_FILE_IN_OPEN_CLIP = "bpe_simple_vocab_16e6.txt.gz"
NUMBER_OF_MERGES = 49152 - 256 - 2  # 48,894, as in OpenAI's SimpleTokenizer
VOCAB_SIZE = 49408
MODEL_MAX_LENGTH = 77
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"

# kind -> the token used for padding (Stable Diffusion 1.x pads with the end
# token, Stable Diffusion 2.x with "!", whose id is 0).
PAD_TOKEN_BY_KIND = {
    "sd1": END_TOKEN,
    "sd2": "!",
}


# The pocket model's tokenizer folder, written by `build_tokenizer_files` via
# the pocket export; a fallback when open-clip-torch is not installed.
SHIPPED_TOKENIZER = Path(__file__).resolve().parents[1] / "assets" / "pocket" / "tokenizer"


def default_cache_dir():
    """The folder that holds the built tokenizer files for all kinds."""
    return Path.home() / ".cache" / "sdnotes" / "clip-tokenizer"


def find_bpe_merges_file():
    """Path of `bpe_simple_vocab_16e6.txt.gz` inside the installed open-clip-torch.

    Uses `importlib.util.find_spec`, which locates the package without running
    its `__init__` (that would import torchvision).
    """
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.submodule_search_locations is None:
        raise ModuleNotFoundError(
            "The CLIP tokenizer is built from the BPE merges file that ships with "
            "the package open-clip-torch, which is not installed. Install it with "
            "`pip install --no-deps open-clip-torch` (it is only used as a data "
            "file, so --no-deps keeps torchvision and CUDA libraries out)."
        )
    for package_folder in spec.submodule_search_locations:
        candidate = Path(package_folder) / MERGES_FILE_IN_OPEN_CLIP
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"open-clip-torch is installed but {MERGES_FILE_IN_OPEN_CLIP} was not found "
        f"in {list(spec.submodule_search_locations)}. Reinstall it with "
        "`pip install --force-reinstall --no-deps open-clip-torch`."
    )


def bytes_to_unicode():
    """OpenAI's reversible map from the 256 byte values to printable characters.

    Printable bytes ("!" to "~", "¡" to "¬", "®" to "ÿ") map to themselves;
    the others (space, control characters, ...) map to characters from 256 up,
    so that no token contains whitespace. The order of the returned dict is the
    order of the first 256 vocabulary entries.
    """
    printable_bytes = list(range(ord("!"), ord("~") + 1))
    printable_bytes += list(range(ord("¡"), ord("¬") + 1))
    printable_bytes += list(range(ord("®"), ord("ÿ") + 1))
    byte_values = list(printable_bytes)
    code_points = list(printable_bytes)
    next_free_code_point = 2**8
    for byte_value in range(2**8):
        if byte_value not in printable_bytes:
            byte_values.append(byte_value)
            code_points.append(next_free_code_point)
            next_free_code_point += 1
    byte_to_character = {}
    for byte_value, code_point in zip(byte_values, code_points):
        byte_to_character[byte_value] = chr(code_point)
    return byte_to_character


def read_merges(bpe_merges_file):
    """The 48,894 merges used by CLIP, each a string "first second"."""
    text = gzip.decompress(Path(bpe_merges_file).read_bytes()).decode("utf-8")
    lines = text.split("\n")
    # Line 0 is a header ("bpe_simple_vocab_16e6.txt#version: 0.2").
    merges = lines[1 : NUMBER_OF_MERGES + 1]
    if len(merges) != NUMBER_OF_MERGES:
        raise ValueError(
            f"{bpe_merges_file} holds {len(merges)} merges, expected {NUMBER_OF_MERGES}; "
            "the file is damaged: reinstall with "
            "`pip install --force-reinstall --no-deps open-clip-torch`."
        )
    return merges


def build_vocabulary(merges):
    """Token -> id, built in the same order as OpenAI's SimpleTokenizer."""
    byte_symbols = list(bytes_to_unicode().values())
    tokens = list(byte_symbols)
    for symbol in byte_symbols:
        tokens.append(symbol + "</w>")
    for merge in merges:
        first, second = merge.split(" ")
        tokens.append(first + second)
    tokens.append(START_TOKEN)
    tokens.append(END_TOKEN)
    vocabulary = {}
    for token_id, token in enumerate(tokens):
        vocabulary[token] = token_id
    if len(vocabulary) != VOCAB_SIZE:
        raise ValueError(f"built a vocabulary of {len(vocabulary)} tokens, expected {VOCAB_SIZE}")
    return vocabulary


def write_text_atomically(path, text):
    """Write `text` to `path` through a temporary file and a rename.

    A reader sees either no file or the whole file, never a partial one, even
    when several processes build the cache at the same time.
    """
    path = Path(path)
    file_descriptor, temporary_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(file_descriptor, "w", encoding="utf-8") as temporary_file:
            temporary_file.write(text)
        os.chmod(temporary_name, 0o644)  # mkstemp creates files readable by the owner only
        os.replace(temporary_name, path)
    except BaseException:
        if os.path.exists(temporary_name):
            os.remove(temporary_name)
        raise


def build_tokenizer_files(folder):
    """Write `vocab.json` and `merges.txt` (Hugging Face format) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merges = read_merges(find_bpe_merges_file())
    vocabulary = build_vocabulary(merges)
    merges_text = "#version: 0.2\n" + "\n".join(merges) + "\n"
    write_text_atomically(folder / "merges.txt", merges_text)
    write_text_atomically(folder / "vocab.json", json.dumps(vocabulary, ensure_ascii=False))


def load_tokenizer(kind="sd1", cache_dir=None):
    """A `transformers.CLIPTokenizer` that tokenizes like Stable Diffusion's.

    kind: "sd1" (Stable Diffusion 1.x, pads with `<|endoftext|>` = 49407) or
        "sd2" (Stable Diffusion 2.x, pads with `!` = 0).
    cache_dir: where the built files are kept; default
        `~/.cache/sdnotes/clip-tokenizer`. The files for each kind go into a
        subfolder named after it and are built on first use.

    Use it as the pipelines do:
    `tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length,
    truncation=True).input_ids` gives 77 ids.
    """
    if kind not in PAD_TOKEN_BY_KIND:
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose one of {sorted(PAD_TOKEN_BY_KIND)}")
    if cache_dir is None:
        cache_dir = default_cache_dir()
    folder = Path(cache_dir) / kind
    if not (folder / "vocab.json").is_file() or not (folder / "merges.txt").is_file():
        if importlib.util.find_spec("open_clip") is None and (SHIPPED_TOKENIZER / "tokenizer.json").is_file():
            # No open-clip-torch (e.g. a fresh Colab): use the files that this code
            # built once from the same merges file and shipped with the pocket model.
            folder = SHIPPED_TOKENIZER
        else:
            build_tokenizer_files(folder)
    tokenizer = CLIPTokenizer.from_pretrained(
        folder,
        local_files_only=True,
        model_max_length=MODEL_MAX_LENGTH,
        bos_token=START_TOKEN,
        eos_token=END_TOKEN,
        unk_token=END_TOKEN,
        pad_token=PAD_TOKEN_BY_KIND[kind],
    )
    if len(tokenizer) != VOCAB_SIZE:
        raise ValueError(
            f"the cached tokenizer in {folder} has {len(tokenizer)} tokens, expected {VOCAB_SIZE}; "
            f"delete that folder and it will be rebuilt on the next call."
        )
    return tokenizer
