"""The CLIP tokenizer of Stable Diffusion, offline.

Stable Diffusion 1.x splits a prompt with the tokenizer of OpenAI's CLIP
ViT-L/14 (`openai/clip-vit-large-patch14` on the Hugging Face Hub): byte-pair
encoding with a vocabulary of 49,408 tokens, every prompt padded or truncated
to 77 ids, start token `<|startoftext|>` = 49406, end and padding token
`<|endoftext|>` = 49407. Stable Diffusion 2.x uses the same vocabulary but pads
with `!` (id 0), as OpenCLIP does. Like the SD 2.x tokenizer on the Hub, the
"sd2" kind makes `!` a special token, so every "!" in a prompt becomes id 0
(OpenCLIP itself merges "!!!" into one token; diffusers issue #4153).

The course must run without the Hub and without extra packages, so the
tokenizer is read from the files that ship with the pocket model,
`assets/pocket/tokenizer/tokenizer.json` (Hugging Face `tokenizers` format):
OpenAI's 48,894 BPE merges and the 49,408-token vocabulary made from them.
That vocabulary is exactly what OpenAI's `SimpleTokenizer` builds from its
merges list (`bpe_simple_vocab_16e6.txt.gz`):

1. the 256 byte symbols of `bytes_to_unicode()`,
2. the same 256 symbols followed by the end-of-word marker `</w>`,
3. one token per merge (the two halves joined), for the first 48,894 merges,
4. the start and end special tokens,

256 + 256 + 48,894 + 2 = 49,408 entries. tests/test_tokenizer.py rebuilds the
vocabulary from the shipped merges with `build_vocabulary` and compares it
entry by entry, and (in the dev setup) compares the merges and the token ids
with the original file and `SimpleTokenizer` from the PyPI package
`open-clip-torch`.

Where the shipped files are missing (the package used without the
repository's assets/, or the pocket model deleted to rebuild it), the files are
built from that original merges list instead: `build_tokenizer_files` reads
`open_clip/bpe_simple_vocab_16e6.txt.gz` as a data file (open_clip is never
imported; its import pulls in torchvision) and writes `vocab.json` and
`merges.txt` under `~/.cache/sdnotes/clip-tokenizer/<kind>/`, atomically
(temporary file, then rename), so parallel test workers never read a
half-written file. The pocket model's export (`sdnotes/pocket/export.py`)
saves this tokenizer, which is how the shipped files were made.

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

from sdnotes.paths import POCKET_DIR

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


# The pocket model's tokenizer folder (written by the pocket export from the
# files that `build_tokenizer_files` makes); the tokenizer is read from here.
SHIPPED_TOKENIZER = POCKET_DIR / "tokenizer"


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


def tokenizer_from_folder(folder, kind):
    """A `CLIPTokenizer` from a folder with `tokenizer.json` or `vocab.json` + `merges.txt`.

    The pad token is set by `kind` (PAD_TOKEN_BY_KIND), whatever the folder's
    own config says.
    """
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
            f"the tokenizer files in {folder} have {len(tokenizer)} tokens, expected {VOCAB_SIZE}; "
            "if this is the cache folder, delete it and it will be rebuilt on the next call."
        )
    return tokenizer


def load_tokenizer(kind="sd1", cache_dir=None):
    """A `transformers.CLIPTokenizer` that tokenizes like Stable Diffusion's.

    kind: "sd1" (Stable Diffusion 1.x, pads with `<|endoftext|>` = 49407) or
        "sd2" (Stable Diffusion 2.x, pads with `!` = 0).
    cache_dir: only used where the shipped files (SHIPPED_TOKENIZER) are
        missing: where the files built from open-clip-torch's merges list are
        kept; default `~/.cache/sdnotes/clip-tokenizer`, one subfolder per kind.

    Use it as the pipelines do:
    `tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length,
    truncation=True).input_ids` gives 77 ids.
    """
    if kind not in PAD_TOKEN_BY_KIND:
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose one of {sorted(PAD_TOKEN_BY_KIND)}")
    if (SHIPPED_TOKENIZER / "tokenizer.json").is_file():
        return tokenizer_from_folder(SHIPPED_TOKENIZER, kind)
    if cache_dir is None:
        cache_dir = default_cache_dir()
    folder = Path(cache_dir) / kind
    if not (folder / "vocab.json").is_file() or not (folder / "merges.txt").is_file():
        if importlib.util.find_spec("open_clip") is None:
            raise ModuleNotFoundError(
                f"The CLIP tokenizer files are not at {SHIPPED_TOKENIZER} (they ship with the "
                "repository's pocket model), and open-clip-torch, whose merges list they are built "
                "from, is not installed. Run the course from a clone of the repository (or set "
                "SDNOTES_ASSETS to its assets folder), or install the list with "
                "`pip install --no-deps open-clip-torch` (--no-deps keeps torchvision and CUDA "
                "libraries out; only its data file is read)."
            )
        build_tokenizer_files(folder)
    return tokenizer_from_folder(folder, kind)
