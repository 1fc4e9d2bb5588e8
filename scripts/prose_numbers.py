"""Numbers in a notebook's prose that no cell backs: the check behind "every number is printed or asserted".

    python scripts/prose_numbers.py EXECUTED.ipynb [...]    print the unbacked numbers; exit 1 if any

The course's rule: every number in a notebook's Markdown is printed by the cell it
describes or asserted in code, except cited constants (paper figures, published
sizes) that name their source. This module finds the numbers in the Markdown cells
of an *executed* notebook that appear neither in its outputs nor in any code cell's
source. It is a necessary check, not a sufficient one: a number that some other
cell happens to print passes, even if the sentence around it is wrong (notebook
15 once said "0.15–0.19 at 4 steps" where the cell printed 0.169 and 0.193; its
"0.15" passed only because a plot's label offset in the code was 0.15). Read
the sentence next to the printed line when you write one.

What is checked (the "prose numbers"), in Markdown cells only:

* decimals, `0.83`, `.5`, `1,234.5`; percentages, `12%`, `12.5 %`; numbers with an
  exponent, `1.5e-06`, `1.5 × 10⁻⁶`, `1.5 \\times 10^{-6}`; a unit after the number
  does not matter (`27.8 dB` is 27.8).
* Not checked: integers without a decimal point, exponent or `%` (step counts,
  sizes, years, notebook numbers); `0%` and `100%` ("none", "all"); version-like
  dotted numbers (`2.13.0`); arXiv ids (`2112.10752`); a number right after a
  name in NAMES_BEFORE_A_NUMBER (`SD 1.5`, `diffusers 0.42`, `section 3.2`,
  `v1.0`): those name things, they do not measure them; fenced code blocks
  (```` ``` ````: code shown, not a claim), link and image targets, URLs and HTML
  tags. Inline code (`` `strength=0.75` ``) is checked.

What backs a prose number (the "backing numbers"): every number in the source of
any code cell, and in any output of any cell: stream text, `text/plain`, and the
text of `text/html`, `text/markdown` and `text/latex` outputs (tags dropped).

Matching, for a prose number x written with d decimals (its last digit is worth
u = 10^-d, or u = 10^(e-d) for a mantissa with d decimals and an exponent e):

* x is backed if some backing number y rounds to it: |y - x| <= u/2 (with a
  relative slack of 1e-9 for binary fractions). So a printed `0.830` or `0.8347`
  backs "0.83", a printed `0.8` does not back "0.83", and a printed `1.54e-06`
  backs "1.5e-06". Signs are ignored (prose writes "−0.3" with a Unicode minus,
  or "a drop of 0.3").
* A percentage p% is backed by a printed percentage q% with |q - p| <= u/2, or by
  a printed fraction y with |100 y - p| <= u/2: a printed `0.125` or `12.5%`
  backs "12%" (and "12.5%"); a printed plain `12` does not (it may be a count).
  Conversely a printed `12.5%` also backs a prose fraction "0.125" or "0.12".
* A cited constant (CITED_CONSTANTS) is backed by its source, named in the
  list: the number matches the entry's text exactly and one of the entry's
  words appears in the same Markdown cell. Keep the list short; a number the
  notebook can compute belongs in a cell, not here.

`unbacked_numbers(notebook)` returns (cell index, number text, context) for each
unbacked prose number; `notebook` is a path or an nbformat/JSON dict.
conftest.py runs it on every notebook the tests execute (see there for when).
"""

import bisect
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CitedConstant:
    text: str      # the number as prose writes it
    near: tuple    # words, one of which must appear in the same Markdown cell (case-insensitive)
    source: str    # where the number comes from


CITED_CONSTANTS = [
    CitedConstant("0.18215", ("scaling", "scale"),
                  "SD 1.x/2.x VAE scaling factor: vae/config.json of stable-diffusion-v1-5 (scaling_factor)"),
    CitedConstant("0.00085", ("beta",), "SD's training schedule: scheduler_config.json beta_start (LDM, Rombach et al. 2022)"),
    CitedConstant("0.012", ("beta",), "SD's training schedule: scheduler_config.json beta_end (LDM, Rombach et al. 2022)"),
    CitedConstant("1.5", ("sample_max_value", "threshold"),
                  "DeepFloyd IF scheduler_config.json sample_max_value=1.5 (thresholding bound)"),
    CitedConstant("0.995", ("percentile", "threshold"),
                  "Imagen (Saharia et al. 2022, sec. 2.3) dynamic-thresholding percentile; IF's dynamic_thresholding_ratio"),
    CitedConstant("2.7", ("download",), "SD 1.5's download in fp16: the fp16 variant's files on the Hub "
                  "(stable-diffusion-v1-5/stable-diffusion-v1-5)"),
    CitedConstant("5.5", ("download",), "SD 1.5's download in full precision: the same repository's float32 files"),
    CitedConstant("1.5", ("model card",), "the SD v1 model cards' evaluation: guidance scales 1.5 to 8, 50 PLMS steps "
                  "(stable-diffusion-v1-5 README, Evaluation Results)"),
    CitedConstant("2.5", ("Hessel",), "CLIPScore's weight w = 2.5 (Hessel et al. 2021, CLIPScore, section 3)"),
    CitedConstant("21.60", ("seed",), "SD 2.0's best seed by FID, seed 469 (Zhang et al. 2024, arXiv 2405.14828)"),
    CitedConstant("31.97", ("seed",), "SD 2.0's worst seed by FID, seed 696 (Zhang et al. 2024, arXiv 2405.14828)"),
    CitedConstant("0.13025", ("SDXL",), "SDXL VAE scaling factor: sdxl-vae config.json (scaling_factor)"),
    CitedConstant("7.27", ("Imagen", "FID"), "Imagen's zero-shot COCO FID-30K (Saharia et al. 2022, Table 1)"),
    CitedConstant("12.63", ("FID", "Stable Diffusion", "LDM"),
                  "LDM-KL-8-G zero-shot COCO FID-30K (Rombach et al. 2022, Table 2)"),
]

# A decimal right after one of these names it (SD 1.5, diffusers 0.42, section 3.2, v1.0), it measures nothing.
NAMES_BEFORE_A_NUMBER = [
    "SD", "Stable Diffusion", "SDXL", "SD3", "DALL·E", "DALL-E", "Imagen", "IF", "FLUX", "Python", "PyTorch",
    "torch", "diffusers", "transformers", "numpy", "NumPy", "peft", "accelerate", "ipywidgets", "Notebook",
    "JupyterLab", "CUDA", "GPT", "ControlNet", "version", "versions", "release", "v", "section", "sections", "sec.", "§",
    "eq.", "eqs.", "equation", "figure", "fig.", "table", "algorithm", "chapter", "appendix", "issue",
]
_NAME_BEFORE = re.compile(r"(?:^|[^\w])(?:" + "|".join(re.escape(name).replace(r"\ ", r"[\s_-]")
                                                  for name in NAMES_BEFORE_A_NUMBER)
                          + r")[\s_-]?(?:v)?$", re.IGNORECASE)

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")
_MINUS = "-−–"
# A prose number: mantissa, then an optional exponent (e-06, × 10⁻⁶, \times 10^{-6}), then an optional %.
_PROSE_NUMBER = re.compile(
    r"(?<![\w.])(?P<mantissa>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\.\d+|\d+)"
    r"(?P<exponent>[eE][+" + _MINUS + r"]?\d+"
    r"|\s*(?:×|x|\\times|\\cdot|·)\s*10\s*(?:\^\s*\{?\s*[+" + _MINUS + r"]?\d+\s*\}?|[⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺]+))?"
    r"(?P<percent>\s*(?:\\?%))?"
)
_BACKING_NUMBER = re.compile(r"(?<![\w.])(\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)([eE][+-]?\d+)?(\s*%)?")
_FENCED_CODE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_URL = re.compile(r"(?:https?://|www\.)\S+")
_HTML_TAG = re.compile(r"<[^>]+>")
_ARXIV_ID = re.compile(r"^\d{4}\.\d{4,5}$")
_SLACK = 1e-9


def _exponent_value(exponent_text):
    text = exponent_text.translate(_SUPERSCRIPTS)
    for minus in _MINUS:
        text = text.replace(minus, "-")
    if text[:1] in "eE":
        return int(text[1:])
    return int(re.search(r"10\s*\^?\s*\{?\s*([+-]?\d+)", text.replace("\\times", "").replace("\\cdot", "")).group(1))


def _decimals(mantissa):
    return len(mantissa.split(".")[1]) if "." in mantissa else 0


def _prose_text(markdown):
    """The Markdown with what is not a claim blanked out (same length, so positions stay)."""
    def blank(match):
        return " " * len(match.group(0))
    for pattern in (_FENCED_CODE, _LINK_TARGET, _URL, _HTML_TAG):
        markdown = pattern.sub(blank, markdown)
    return markdown


def prose_numbers(markdown):
    """[(text, value, half_unit, is_percent, start, end)] for each checked number in a Markdown cell."""
    text = _prose_text(markdown)
    found = []
    for match in _PROSE_NUMBER.finditer(text):
        mantissa, exponent, percent = match.group("mantissa"), match.group("exponent"), match.group("percent")
        after = text[match.end("mantissa"):match.end("mantissa") + 2]
        if not exponent and not percent and re.match(r"\.\d", after):
            continue  # a dotted version, 2.13.0
        if "." not in mantissa and not exponent and not percent:
            continue  # an integer
        if _ARXIV_ID.match(mantissa) and not percent:
            continue
        if _NAME_BEFORE.search(text[max(0, match.start() - 40):match.start()]):
            continue
        value = float(mantissa.replace(",", ""))
        exponent_value = _exponent_value(exponent) if exponent else 0
        value = value * 10.0 ** exponent_value
        half_unit = 0.5 * 10.0 ** (exponent_value - _decimals(mantissa))
        if percent and value in (0.0, 100.0):
            continue
        found.append((match.group(0).strip(), value, half_unit, bool(percent), match.start(), match.end()))
    return found


def _output_texts(cell):
    texts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            texts.append(_joined(output.get("text", "")))
        data = output.get("data", {})
        for mime in ("text/plain", "text/markdown", "text/latex"):
            if mime in data:
                texts.append(_joined(data[mime]))
        if "text/html" in data:
            texts.append(_HTML_TAG.sub(" ", _joined(data["text/html"])))
    return texts


def _joined(text):
    return "".join(text) if isinstance(text, list) else text


def backing_numbers(notebook):
    """(plain, percent): sorted absolute values of every number in code sources and outputs.

    plain holds each number, and each printed percentage divided by 100; percent holds each
    printed percentage, and each number times 100.
    """
    texts = []
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            texts.append(_joined(cell["source"]))
            texts.extend(_output_texts(cell))
    plain, percent = [], []
    for text in texts:
        for mantissa, exponent, percent_sign in _BACKING_NUMBER.findall(text):
            value = abs(float(mantissa.replace(",", "") + exponent))
            if percent_sign:
                percent.append(value)
                plain.append(value / 100)
            else:
                plain.append(value)
                percent.append(value * 100)
    return sorted(plain), sorted(percent)


def _has_within(sorted_values, value, half_unit):
    slack = half_unit + _SLACK * max(1.0, abs(value))
    index = bisect.bisect_left(sorted_values, abs(value) - slack)
    return index < len(sorted_values) and sorted_values[index] <= abs(value) + slack


def _cited(text, markdown):
    for constant in CITED_CONSTANTS:
        if constant.text == text.rstrip("%").strip():
            lowered = markdown.lower()
            if any(word.lower() in lowered for word in constant.near):
                return True
    return False


def _load(notebook):
    if isinstance(notebook, (str, Path)):
        with open(notebook, encoding="utf-8") as notebook_file:
            return json.load(notebook_file)
    return notebook


def unbacked_numbers(executed_notebook):
    """[(cell index, number text, context)] for each prose number that no code cell or output backs."""
    notebook = _load(executed_notebook)
    plain, percent = backing_numbers(notebook)
    problems = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        markdown = _joined(cell["source"])
        for text, value, half_unit, is_percent, start, end in prose_numbers(markdown):
            backing = percent if is_percent else plain
            if _has_within(backing, value, half_unit) or _cited(text, markdown):
                continue
            context = " ".join(markdown[max(0, start - 50):min(len(markdown), end + 30)].split())
            problems.append((index, text, context))
    return problems


def report(path, problems):
    """The lines the CLI and conftest.py print for one notebook's unbacked numbers."""
    lines = [f"{Path(path).name}: {len(problems)} number(s) in Markdown that no cell prints or computes "
             f"(print it from the cell it describes, assert it with a tolerance, or remove it; "
             f"scripts/prose_numbers.py says what counts):"]
    for index, text, context in problems:
        lines.append(f"  cell {index}: {text!r} in \"...{context}...\"")
    return lines


def main(paths):
    if not paths:
        print("usage: python scripts/prose_numbers.py EXECUTED.ipynb [...]", file=sys.stderr)
        return 2
    failed = False
    for path in paths:
        problems = unbacked_numbers(path)
        if problems:
            failed = True
            print("\n".join(report(path, problems)))
        else:
            print(f"{Path(path).name}: every number in Markdown is backed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
