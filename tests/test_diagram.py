"""Tests for sdnotes/diagram.py and the pipeline figure at the top of every notebook.

Each notebook's diagram cell is run as it is; then every box's text must lie
inside its box, no other text may cover a box or another text, and the
highlighted boxes must be exactly the ones asked for.
"""

import json
from pathlib import Path

import matplotlib
import matplotlib.colors

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from sdnotes.diagram import HIGHLIGHT_COLOURS, draw_box, draw_pipeline  # noqa: E402

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
MAX_DIAGRAM_CELL_LINES = 30
TEXT_PADDING = 0.04  # inches between a box's text and its border, at least

TOP_ROW = ['prompt\n"a photo of a cat"', "text encoder\n(CLIP)", None,
           "U-Net ⇄ scheduler\n20–50 steps", "VAE decoder\nlatent → pixels", "picture"]
BOTTOM_ROW = ["training image\n(+ its caption)", "VAE encoder\npixels → latent x₀",
              "forward noising\nx₀ → xₜ", "U-Net learns to\npredict the noise"]


def cell_source(cell):
    return "".join(cell["source"])


def diagram_cell_index(notebook):
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code" and "sdnotes.diagram" in cell_source(cell):
            return index
    return None


def run_diagram_cell(path):
    """Run a notebook's diagram cell and return the figure it drew."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    plt.close("all")
    exec(cell_source(notebook["cells"][diagram_cell_index(notebook)]), {})
    assert len(plt.get_fignums()) == 1, "the diagram cell should draw exactly one figure"
    return plt.gcf()


def boxes_with_texts(figure):
    """[(box patch, its text)] for every rounded box: the text is the one at the box's centre."""
    ax = figure.axes[0]
    pairs = []
    for patch in ax.patches:
        if not isinstance(patch, FancyBboxPatch):
            continue
        centre = (patch.get_x() + patch.get_width() / 2, patch.get_y() + patch.get_height() / 2)
        texts = [text for text in ax.texts if text.get_text() and text.get_position() == pytest.approx(centre)]
        assert len(texts) == 1, f"the box at {centre} should hold exactly one text, found {len(texts)}"
        pairs.append((patch, texts[0]))
    return pairs


def box_texts_that_do_not_fit(figure):
    """The box texts that come closer than TEXT_PADDING to their box's border (border line included)."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    too_wide = []
    for patch, text in boxes_with_texts(figure):
        border = patch.get_linewidth() / 72 + TEXT_PADDING  # inches; a line width is in points
        box = patch.get_window_extent(renderer).padded(-border * figure.dpi)
        extent = text.get_window_extent(renderer)
        if not (box.x0 <= extent.x0 and extent.x1 <= box.x1 and box.y0 <= extent.y0 and extent.y1 <= box.y1):
            too_wide.append(text.get_text())
    return too_wide


def highlighted_texts(figure):
    highlighted = []
    for patch, text in boxes_with_texts(figure):
        is_orange = matplotlib.colors.same_color(patch.get_facecolor(), HIGHLIGHT_COLOURS["face"])
        assert is_orange == (text.get_fontweight() == "bold"), "highlighted boxes, and only they, have bold text"
        if is_orange:
            highlighted.append(text.get_text())
    return highlighted


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_diagram_cell_is_short_and_follows_the_setup_cell(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    index = diagram_cell_index(notebook)
    assert index is not None, "no code cell draws the pipeline with sdnotes.diagram"
    setup_index = next(i for i, cell in enumerate(notebook["cells"])
                       if '"google.colab" in sys.modules' in cell_source(cell))
    assert index > setup_index, "the diagram imports sdnotes: it must come after the Colab install cell"
    lines = cell_source(notebook["cells"][index]).splitlines()
    assert len(lines) <= MAX_DIAGRAM_CELL_LINES, f"the diagram cell has {len(lines)} lines"
    for cell in notebook["cells"]:
        assert "FancyBboxPatch" not in cell_source(cell), "boxes are drawn by sdnotes.diagram, not inline"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_box_texts_fit_inside_their_boxes(path):
    figure = run_diagram_cell(path)
    try:
        assert boxes_with_texts(figure), "the diagram has no boxes"
        assert box_texts_that_do_not_fit(figure) == []
    finally:
        plt.close(figure)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_labels_cover_no_box_and_no_other_text(path):
    figure = run_diagram_cell(path)
    try:
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        ax = figure.axes[0]
        box_texts = {id(text) for _, text in boxes_with_texts(figure)}
        patches = [(patch, patch.get_window_extent(renderer)) for patch in ax.patches]
        texts = [text for text in ax.texts if text.get_text()] + [ax.title]
        extents = [(text.get_text(), text.get_window_extent(renderer)) for text in texts]
        for text, (label, extent) in zip(texts, extents):
            if id(text) in box_texts:
                continue
            for patch, patch_extent in patches:
                assert not extent.overlaps(patch_extent), f"{label!r} covers a box or picture"
        for first in range(len(extents)):
            for second in range(first + 1, len(extents)):
                (label, extent), (other_label, other_extent) = extents[first], extents[second]
                assert not extent.overlaps(other_extent), f"{label!r} overlaps {other_label!r}"
    finally:
        plt.close(figure)


def test_highlight_marks_exactly_the_requested_boxes():
    for highlight, expected in [
        (["VAE"], ["VAE decoder\nlatent → pixels", "VAE encoder\npixels → latent x₀"]),
        ("U-Net", ["U-Net ⇄ scheduler\n20–50 steps", "U-Net learns to\npredict the noise"]),  # one string
        (["forward noising", "picture"], ["picture", "forward noising\nx₀ → xₜ"]),
        ((), []),
    ]:
        figure = draw_pipeline(TOP_ROW, BOTTOM_ROW, highlight=highlight)
        try:
            assert sorted(highlighted_texts(figure)) == sorted(expected), highlight
        finally:
            plt.close(figure)


def test_rows_arrow_labels_and_trained_weights():
    figure = draw_pipeline(TOP_ROW, BOTTOM_ROW, arrow_labels={"U-Net ⇄": "text embeddings"}, title="parts")
    try:
        ax = figure.axes[0]
        labels = [text.get_text() for text in ax.texts]
        assert len(boxes_with_texts(figure)) == 5 + 4  # the None leaves a column empty
        assert labels.count("text embeddings") == 1  # only into the top U-Net, not the bottom one
        for label in ["trained weights", "Generating a picture", "Training the U-Net"]:
            assert label in labels
        assert ax.get_title() == "parts"
        assert len([text for text in ax.texts if not text.get_text()]) == 4 + 3 + 1  # arrows, the dashed one included
    finally:
        plt.close(figure)
    figure = draw_pipeline(TOP_ROW)
    try:
        labels = [text.get_text() for text in figure.axes[0].texts]
        assert "trained weights" not in labels and "Training the U-Net" not in labels
        assert len(boxes_with_texts(figure)) == 5
    finally:
        plt.close(figure)


def test_the_fit_check_catches_text_wider_than_its_box():
    figure = draw_pipeline(["short", "a label far too long to fit in one box"])
    try:
        assert box_texts_that_do_not_fit(figure) == ["a label far too long to fit in one box"]
        draw_box(figure.axes[0], 0, -1.5, "U-Net ⇄ scheduler,\n(inpainting: blend", highlight=True)
        assert len(box_texts_that_do_not_fit(figure)) == 1  # bold, but it fits
    finally:
        plt.close(figure)
