"""Box-and-arrow diagrams: where a notebook's topic sits in Stable Diffusion.

Most notebooks open with the same figure. Its top row generates a picture
(prompt → text encoder → U-Net ⇄ scheduler → VAE decoder → picture); its
bottom row trains the U-Net (training image → VAE encoder → forward noising →
U-Net learns to predict the noise); a dashed arrow carries the trained weights
up. Each notebook highlights the boxes it explains.

- `draw_pipeline(top_row, bottom_row=None, highlight=(), arrow_labels=None, title="",
  room_below=0)`: that figure, or a single row of boxes; returns the figure.
- `draw_box`, `draw_arrow`, `draw_row`, `draw_row_title`, `diagram_axes`: the
  pieces, for a notebook that draws more (05: inside the U-Net; 09: the seed;
  10: Imagen's cascade).

Diagrams are drawn in inches (one data unit is one inch of the figure), so a
box is as wide on the page in every notebook and its text fits the same way.
"""

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

BOX_WIDTH = 1.6  # inches, without the rounded border's padding
BOX_HEIGHT = 0.9
BOX_PADDING = 0.04  # the rounded border lies this far outside the box
STEP = 2.5  # from one box's centre to the next one's: room for a label on every arrow
ROW_DISTANCE = 1.9  # from the top row's centre to the bottom row's
ARROW_GAP = BOX_WIDTH / 2 + BOX_PADDING + 0.02  # from a box's centre to an arrow's end
COLOURS = {"face": "#e6edf7", "edge": "#4a6fa5"}
HIGHLIGHT_COLOURS = {"face": "#ffc36b", "edge": "#c05a00"}
TEXT_COLOUR = "#333333"  # arrows and their labels


def draw_box(ax, x, y, text, highlight=False):
    """A rounded box centred on (x, y) with `text` in it; orange and bold when highlighted."""
    colours = HIGHLIGHT_COLOURS if highlight else COLOURS
    box = FancyBboxPatch(
        (x - BOX_WIDTH / 2, y - BOX_HEIGHT / 2), BOX_WIDTH, BOX_HEIGHT,
        boxstyle=f"round,pad={BOX_PADDING}", facecolor=colours["face"], edgecolor=colours["edge"],
        linewidth=2.5 if highlight else 1.2,
    )
    ax.add_patch(box)
    ax.text(x, y, text, ha="center", va="center", fontsize=9.5, fontweight="bold" if highlight else "normal")


def draw_arrow(ax, start, end, label="", linestyle="-"):
    """An arrow from `start` to `end` (x, y), with `label` just above its middle."""
    ax.annotate("", xy=end, xytext=start,
                arrowprops=dict(arrowstyle="-|>", linewidth=1.4, linestyle=linestyle, color=TEXT_COLOUR))
    if label:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.08, label,
                ha="center", va="bottom", fontsize=8.5, color=TEXT_COLOUR)


def starts_with_any(text, prefixes):
    """Whether `text` starts with one of `prefixes` (a string counts as one prefix)."""
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    return any(text.startswith(prefix) for prefix in prefixes)


def arrow_label_into(text, arrow_labels):
    """The label of the arrow into the box showing `text`: {start of a box's text: label}."""
    for start, label in arrow_labels.items():
        if text.startswith(start):
            return label
    return ""


def draw_row(ax, texts, y, highlight=(), arrow_labels=None):
    """Boxes at x = 0, STEP, 2·STEP, ... joined by arrows; a None in `texts` leaves a column empty.

    highlight: a box is highlighted when its text starts with one of these.
    arrow_labels: {start of a box's text: label on the arrow into that box}.
    """
    arrow_labels = arrow_labels or {}
    previous_x = None
    for column, text in enumerate(texts):
        if text is None:
            continue
        x = column * STEP
        draw_box(ax, x, y, text, highlight=starts_with_any(text, highlight))
        if previous_x is not None:
            label = arrow_label_into(text, arrow_labels)
            draw_arrow(ax, (previous_x + ARROW_GAP, y), (x - ARROW_GAP, y), label)
        previous_x = x


def draw_row_title(ax, y, title):
    """A bold title above the row of boxes at height `y`, starting at its first box's left edge."""
    ax.text(-BOX_WIDTH / 2 - BOX_PADDING, y + BOX_HEIGHT / 2 + 0.15, title,
            ha="left", va="bottom", fontsize=11, fontweight="bold")


def diagram_axes(left, right, bottom, top, title=""):
    """A figure whose axes show x from `left` to `right` and y from `bottom` to `top`, in inches."""
    title_room = 0.45 if title else 0.05
    width, height = right - left, top - bottom
    fig, ax = plt.subplots(figsize=(width, height + title_room))
    fig.subplots_adjust(left=0, right=1, bottom=0, top=height / (height + title_room))
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title)
    return fig, ax


def draw_pipeline(top_row, bottom_row=None, highlight=(), arrow_labels=None, title="", room_below=0.0):
    """Draw Stable Diffusion's parts as rows of boxes and return the figure.

    top_row: the texts of the boxes, left to right (None leaves a column
        empty: the arrow then spans it); drawn at y = 0, column i at x = i·STEP.
    bottom_row: if given, a second row at y = -ROW_DISTANCE titled "Training
        the U-Net" (the top row is then "Generating a picture"); a dashed
        arrow carries the trained weights from its last box to the box above.
    highlight: a box is highlighted (orange, bold) when its text starts with
        one of these strings.
    arrow_labels: {start of a box's text: label on the arrow into that box}.
    room_below: empty inches under the rows, for boxes a notebook adds itself.
    In Jupyter, end the call with `;` when it is the cell's last line,
    otherwise the returned figure is shown twice.
    """
    rows = [top_row] if bottom_row is None else [top_row, bottom_row]
    columns = max(len(row) for row in rows)
    lowest_row_y = -ROW_DISTANCE * (len(rows) - 1)
    margin = 0.15
    row_title_room = 0.45 if bottom_row is not None else 0.0
    fig, ax = diagram_axes(
        left=-BOX_WIDTH / 2 - margin,
        right=(columns - 1) * STEP + BOX_WIDTH / 2 + margin,
        bottom=lowest_row_y - BOX_HEIGHT / 2 - margin - room_below,
        top=BOX_HEIGHT / 2 + margin + row_title_room,
        title=title,
    )
    for row_index, row in enumerate(rows):
        draw_row(ax, row, -ROW_DISTANCE * row_index, highlight, arrow_labels)
    if bottom_row is not None:
        draw_row_title(ax, 0, "Generating a picture")
        draw_row_title(ax, -ROW_DISTANCE, "Training the U-Net")
        unet_x = (len(bottom_row) - 1) * STEP
        arrow_end = BOX_HEIGHT / 2 + BOX_PADDING + 0.02
        draw_arrow(ax, (unet_x, -ROW_DISTANCE + arrow_end), (unet_x, -arrow_end), linestyle="--")
        ax.text(unet_x + 0.1, -ROW_DISTANCE / 2, "trained weights", ha="left", va="center", fontsize=8.5)
    return fig
