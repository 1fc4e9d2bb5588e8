"""Tests for sdnotes/show.py: generators, figures, and PNGs that record how they were made."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from diffusers import DDIMScheduler  # noqa: E402
from PIL import Image  # noqa: E402

from sdnotes import make_generator, read_image_metadata, save_image, show_images  # noqa: E402
from sdnotes.show import to_pil_images  # noqa: E402


def solid_image(red, green, blue, size=(8, 6)):
    return Image.new("RGB", size, (red, green, blue))


SAVE_OPTIONS = {
    "model": "pocket",
    "prompt": "a photo of a cat",
    "negative_prompt": "blurry",
    "seed": 1234,
    "steps": 25,
    "guidance_scale": 7.5,
    "scheduler": "DDIMScheduler",
}


def test_make_generator_is_reproducible():
    first = torch.randn(4, generator=make_generator(42))
    second = torch.randn(4, generator=make_generator(42))
    other = torch.randn(4, generator=make_generator(43))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    assert make_generator(0).device.type == "cpu"
    with pytest.raises(TypeError, match="seed must be an int"):
        make_generator(1.5)


def test_show_images_grid_shape_and_titles():
    images = [solid_image(255, 0, 0), solid_image(0, 255, 0), solid_image(0, 0, 255)]
    figure = show_images(images, cols=2, titles=["red", "green", "blue"], suptitle="three colours")
    try:
        axes = figure.get_axes()
        assert len(axes) == 4  # 2 rows × 2 columns, the last one empty
        titles = [axis.get_title() for axis in axes]
        assert titles[:3] == ["red", "green", "blue"]
        assert figure.get_suptitle() == "three colours"
    finally:
        plt.close(figure)


def test_show_images_titles_and_suptitle_do_not_overlap_in_a_multi_row_grid():
    images = [solid_image(40 * index, 100, 200, size=(64, 64)) for index in range(6)]
    titles = [f"seed {index}\nguidance 7.5" for index in range(6)]  # two-line titles need the most room
    figure = show_images(images, rows=2, cols=3, titles=titles, suptitle="a 2×3 grid with a suptitle")
    try:
        figure.canvas.draw()  # the layout is computed when the figure is drawn
        renderer = figure.canvas.get_renderer()
        axes = figure.get_axes()
        first_row, second_row = axes[:3], axes[3:]
        suptitle_texts = [text for text in figure.texts if text.get_text() == "a 2×3 grid with a suptitle"]
        assert len(suptitle_texts) == 1
        suptitle_bottom = suptitle_texts[0].get_window_extent(renderer).y0
        for axis in first_row:
            title_box = axis.title.get_window_extent(renderer)
            assert title_box.y1 <= suptitle_bottom, "the suptitle overlaps a first-row title"
        first_row_bottom = min(axis.get_window_extent(renderer).y0 for axis in first_row)
        for axis in second_row:
            title_box = axis.title.get_window_extent(renderer)
            assert title_box.y1 <= first_row_bottom, "a second-row title overlaps a first-row image"
    finally:
        plt.close(figure)


def test_show_images_default_layout_and_tensors():
    tensor_batch = torch.rand(5, 3, 8, 8)  # N×C×H×W in [0, 1]
    figure = show_images(tensor_batch)
    try:
        assert len(figure.get_axes()) == 8  # up to 4 per row -> 2×4
    finally:
        plt.close(figure)


def test_show_images_errors_are_explicit():
    with pytest.raises(ValueError, match="give one title per image"):
        show_images([solid_image(0, 0, 0)], titles=["a", "b"])
    with pytest.raises(ValueError, match="room for 2 images"):
        show_images([solid_image(0, 0, 0)] * 3, rows=1, cols=2)
    with pytest.raises(ValueError, match=r"\(image / 2 \+ 0.5\).clamp\(0, 1\)"):
        show_images(torch.full((3, 4, 4), -1.0))


def test_to_pil_images_converts_arrays_and_tensors():
    numpy_batch = np.ones((2, 4, 5, 3), dtype=np.float32)  # what output_type="np" returns
    pil_images = to_pil_images(numpy_batch)
    assert len(pil_images) == 2
    assert pil_images[0].size == (5, 4)
    assert pil_images[0].getpixel((0, 0)) == (255, 255, 255)
    gray = to_pil_images(torch.zeros(1, 4, 5))[0]
    assert gray.mode == "L"
    assert gray.size == (5, 4)


def test_save_and_read_metadata_round_trip(tmp_path):
    path = tmp_path / "cat.png"
    saved_path = save_image(solid_image(1, 2, 3), path, **SAVE_OPTIONS)
    assert saved_path == path
    metadata = read_image_metadata(path)
    expected = dict(SAVE_OPTIONS, width=8, height=6)
    assert metadata == expected
    with Image.open(path) as reopened:
        assert reopened.getpixel((0, 0)) == (1, 2, 3)


def test_save_image_accepts_a_scheduler_object(tmp_path):
    options = dict(SAVE_OPTIONS, scheduler=DDIMScheduler())
    save_image(solid_image(0, 0, 0), tmp_path / "ddim.png", **options)
    assert read_image_metadata(tmp_path / "ddim.png")["scheduler"] == "DDIMScheduler"


def test_save_image_never_overwrites_unless_asked(tmp_path):
    path = tmp_path / "cat.png"
    save_image(solid_image(1, 2, 3), path, **SAVE_OPTIONS)
    with pytest.raises(FileExistsError) as error_info:
        save_image(solid_image(9, 9, 9), path, **SAVE_OPTIONS)
    assert str(path) in str(error_info.value)
    assert "overwrite=True" in str(error_info.value)
    with Image.open(path) as unchanged:
        assert unchanged.getpixel((0, 0)) == (1, 2, 3)
    save_image(solid_image(9, 9, 9), path, overwrite=True, **dict(SAVE_OPTIONS, seed=7))
    with Image.open(path) as replaced:
        assert replaced.getpixel((0, 0)) == (9, 9, 9)
    assert read_image_metadata(path)["seed"] == 7


def test_save_image_needs_png_name(tmp_path):
    with pytest.raises(ValueError, match=".png"):
        save_image(solid_image(0, 0, 0), tmp_path / "cat.jpg", **SAVE_OPTIONS)


def test_read_metadata_of_a_plain_png_is_a_clear_error(tmp_path):
    path = tmp_path / "plain.png"
    solid_image(0, 0, 0).save(path)
    with pytest.raises(ValueError, match="no sdnotes metadata"):
        read_image_metadata(path)
