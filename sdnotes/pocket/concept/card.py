"""The model card's measured tables (assets/pocket-concept/README.md), written from evaluation.json.

The card is written by hand except for the blocks between the marker lines of
CARD_BLOCKS, which `python -m sdnotes.pocket.concept` rewrites after every
measurement (and `--card` alone), so that the card always shows the numbers
evaluation.json holds. tests/test_personalisation.py checks that they agree.
"""

import pathlib

import numpy as np

from sdnotes.pocket.concept import CONCEPT_WORD, TABLE_COLUMNS, table_cells

# The model card's measured tables sit between these lines; everything else in the card is written by hand.
CARD_BEGIN = "<!-- measured tables: written by `python -m sdnotes.pocket.concept` from evaluation.json -->"
CARD_END = "<!-- end of measured tables -->"
CANDIDATES_BEGIN = "<!-- candidates: written by `python -m sdnotes.pocket.concept --candidates` -->"
CANDIDATES_END = "<!-- end of candidates -->"


def card_tables(results):
    """Markdown: the measured rows, then the textual-inversion control."""
    lines = ["| " + " | ".join(header for header, _, _ in TABLE_COLUMNS) + " |",
             "|" + "---|" * len(TABLE_COLUMNS)]
    for row in results["rows"]:
        cells = table_cells(results, row)
        cells[1] = f"`{cells[1]}`"  # the prompt, as code
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Training losses (evaluation.json, key `losses`), mean of the first and of the last 25 steps:", ""]
    for row in results["rows"]:
        losses = results.get("losses", {}).get(row["method"])
        if losses is not None:
            lines.append(f"* {row['method']}: {np.mean(losses[:25]):.3f} → {np.mean(losses[-25:]):.3f} "
                         f"({len(losses)} steps; `{row['command']}`)")
    control = results.get("control")
    if control is not None:
        lines += ["", f"Textual inversion on the known {control['object']} (`{control['command']}`; "
                      f"{control['steps']} steps, learning rate {control['lr']:g}, started from "
                      f"\"{control['initializer']}\", {control['training_seconds']:.0f} s of training; "
                      f"mean training loss of the first 25 steps {np.mean(control['losses'][:25]):.3f}, "
                      f"of the last 25 {np.mean(control['losses'][-25:]):.3f}):", "",
                  f"| prompt | what it is | cosine to the {control['object']} | nearest is the {control['object']} "
                  f"| cosine to the {CONCEPT_WORD} |", "|---|---|---|---|---|"]
        for label, row in control["pictures"].items():
            lines.append(f"| `{row['prompt']}` | {label} | {row['similarity_to_object']:.3f} | "
                         f"{row['nearest_is_object']:.0%} | {row['similarity_to_concept']:.3f} |")
    return "\n".join(lines)


def candidates_table(results):
    """Markdown: the VAE round trip of the candidate concepts (`--candidates`)."""
    candidates = results.get("candidates")
    if candidates is None:
        return "(not measured yet: `python -m sdnotes.pocket.concept --candidates`)"
    lines = [f"The 20 known objects average a pixel error of {candidates['known_objects_pixel_error']:.1f}/255 "
             f"(`{candidates['command']}`).", "",
             "| emoji | pixel error (of 255) | PSNR (dB) | judge cosine, original vs round trip | "
             "closest known object (cosine) |", "|---|---|---|---|---|"]
    for row in candidates["rows"]:
        lines.append(f"| {row['emoji']} {row['name']} | {row['pixel_error']:.1f} | {row['psnr_db']:.1f} | "
                     f"{row['round_trip_cosine']:.3f} | {row['closest_object']} ({row['closest_cosine']:.3f}) |")
    return "\n".join(lines)


CARD_BLOCKS = [  # (first line, last line, what goes between them)
    (CANDIDATES_BEGIN, CANDIDATES_END, candidates_table),
    (CARD_BEGIN, CARD_END, card_tables),
]


def write_card(card_path, results):
    """Replace the measured tables of the model card with those of `results` (evaluation.json)."""
    card_path = pathlib.Path(card_path)
    if not card_path.exists():
        print(f"no model card at {card_path}: the measured tables are only in evaluation.json", flush=True)
        return
    card = card_path.read_text()
    for begin, end, make_table in CARD_BLOCKS:
        if begin not in card or end not in card:
            raise ValueError(f"{card_path} lacks a measured block; put the lines\n{begin}\n{end}\n"
                             "where its table goes.")
        head, rest = card.split(begin, 1)
        tail = rest.split(end, 1)[1]
        card = f"{head}{begin}\n{make_table(results)}\n{end}{tail}"
    card_path.write_text(card)
