"""Tiles of sampled frames, and numbered coloured boxes (alref.media.tiles / alref.media.boxes)."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from alref.media.boxes import COLOURS, colour_for, draw_boxes, text_colour
from alref.media.tiles import grid_shape, tile_frames

GREY = 128


def grey_frames(n: int, width: int = 160, height: int = 120) -> list[np.ndarray]:
    return [np.full((height, width, 3), GREY, np.uint8) for _ in range(n)]


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, (1, 1)),
        (2, (2, 1)),
        (3, (2, 2)),
        (4, (2, 2)),
        (5, (3, 2)),
        (6, (3, 2)),
        (7, (3, 3)),
        (8, (3, 3)),
        (9, (3, 3)),
        (10, (4, 3)),
    ],
)
def test_grid_shape_auto(n: int, expected: tuple[int, int]) -> None:
    assert grid_shape(n) == expected


def test_grid_shape_columns() -> None:
    assert grid_shape(5, 5) == (5, 1)
    assert grid_shape(5, 2) == (2, 3)
    assert grid_shape(3, 10) == (3, 1)  # never an empty column
    with pytest.raises(ValueError):
        grid_shape(0)


def test_cells_geometry_and_content() -> None:
    frames = [np.full((120, 160, 3), 10 * (i + 1), np.uint8) for i in range(5)]
    tile = tile_frames(frames, [1, 2, 3, 4, 5], gap=8)
    assert (tile.columns, tile.rows, tile.scale) == (3, 2, 1.0)
    assert tile.image.shape == (2 * 120 + 8, 3 * 160 + 2 * 8, 3)
    assert tile.cells == (
        (0, 0, 160, 120),
        (168, 0, 328, 120),
        (336, 0, 496, 120),
        (0, 128, 160, 248),
        (168, 128, 328, 248),
    )
    for i, (_, _, x1, y1) in enumerate(tile.cells):
        assert (tile.image[y1 - 5, x1 - 5] == 10 * (i + 1)).all()  # bottom-right: frame, no label
    assert (tile.image[:, 160:168] == 0).all()  # gap is black
    assert (tile.image[128:, 336:] == 0).all()  # empty last cell is black


def test_max_side_respected_and_aspect_kept() -> None:
    tile = tile_frames(grey_frames(9, 640, 480), list(range(1, 10)), max_side=512)
    height, width = tile.image.shape[:2]
    assert max(height, width) <= 512 and tile.scale < 1
    for x0, y0, x1, y1 in tile.cells:
        assert x1 <= width and y1 <= height
        assert abs((x1 - x0) / (y1 - y0) - 640 / 480) < 0.02
        assert x1 - x0 == int(640 * tile.scale)


def test_no_upscale() -> None:
    tile = tile_frames(grey_frames(2, 40, 30), [1, 2], max_side=2048, gap=4)
    assert tile.scale == 1.0 and tile.image.shape == (30, 84, 3)


def test_label_is_large_white_on_black() -> None:
    tile = tile_frames(grey_frames(4, 640, 480), [7, 8, 9, 10], max_side=4096)
    for (x0, y0, x1, y1), label in zip(tile.cells, tile.labels, strict=True):
        cell = tile.image[y0:y1, x0:x1]
        corner = cell[: (y1 - y0) // 3, : (x1 - x0) // 3]
        white = (corner >= 240).all(axis=2)
        black = (corner <= 15).all(axis=2)
        assert white.any() and black.any(), label
        rows = np.nonzero(black.any(axis=1))[0]  # the label's black box
        assert 0.12 * 480 <= rows.max() - rows.min() + 1 <= 0.3 * 480
        assert (cell[-40:, -40:] == GREY).all()  # the rest of the cell is the frame


def test_label_min_height_on_small_cells() -> None:
    tile = tile_frames(grey_frames(1, 80, 60), ["3"])
    white_rows = np.nonzero((tile.image >= 240).all(axis=2).any(axis=1))[0]
    assert white_rows.max() - white_rows.min() + 1 >= 16


def test_labels_in_order_and_not_renumbered() -> None:
    tile = tile_frames(grey_frames(3), [12, 3, "x"])
    assert tile.labels == ("12", "3", "x")
    a, b = (tile.image[y0 : y0 + 40, x0 : x0 + 60] for x0, y0, _, _ in tile.cells[:2])
    assert not np.array_equal(a, b)  # "12" and "3" are drawn differently


def test_tile_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="one size"):
        tile_frames([np.zeros((10, 10, 3), np.uint8), np.zeros((10, 12, 3), np.uint8)], [1, 2])
    with pytest.raises(ValueError, match="labels"):
        tile_frames(grey_frames(2), [1])


# boxes ------------------------------------------------------------------------------------------------

HUES = {  # name -> (hue range in degrees, or None for greys), checked on COLOURS' rgb
    "red": (345, 15),
    "orange": (20, 40),
    "yellow": (50, 65),
    "lime": (70, 100),
    "green": (100, 140),
    "cyan": (175, 195),
    "blue": (210, 245),
    "navy": (225, 245),
    "purple": (260, 290),
    "magenta": (290, 310),
    "pink": (310, 345),
    "brown": (15, 35),
}


def test_colours_are_what_they_are_called() -> None:
    names = [name for name, _ in COLOURS]
    assert len(COLOURS) >= 12 and len(set(names)) == len(names)
    assert len({rgb for _, rgb in COLOURS}) == len(COLOURS)
    for name, rgb in COLOURS:
        h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
        if name in ("white", "grey", "gray", "black"):
            assert s < 0.05, name
            continue
        lo, hi = HUES[name]
        hue = h * 360
        assert (lo <= hue <= hi) if lo < hi else (hue >= lo or hue <= hi), (name, hue)
        assert s > 0.3, name
    assert colour_for(0) == COLOURS[0] and colour_for(len(COLOURS) + 2) == COLOURS[2]


def test_text_colour_contrasts() -> None:
    assert text_colour((255, 255, 0)) == (0, 0, 0)
    assert text_colour((0, 64, 255)) == (255, 255, 255)
    assert text_colour((255, 255, 255)) == (0, 0, 0)


def test_drawn_pixels_match_reported_colours() -> None:
    image = np.zeros((240, 320, 3), np.uint8)
    boxes = [(20, 30, 120, 130), (160, 20, 300, 100), (180, 140, 260, 220)]
    before = image.copy()
    out, drawn = draw_boxes(image, boxes)
    assert np.array_equal(image, before) and out is not image
    assert [d.number for d in drawn] == [1, 2, 3]
    assert [(d.colour, d.rgb) for d in drawn] == [COLOURS[0], COLOURS[1], COLOURS[2]]
    for d in drawn:
        x0, y0, x1, y1 = (int(v) for v in d.box)
        mid_y = (y0 + y1) // 2
        assert tuple(out[mid_y, x0]) == d.rgb  # left edge
        assert tuple(out[mid_y, x1 - 1]) == d.rgb  # right edge
        assert tuple(out[y1 - 1, (x0 + x1) // 2]) == d.rgb  # bottom edge
        assert (out[(y0 + y1) // 2 + 5, (x0 + x1) // 2 + 5] == 0).all()  # inside untouched
        label = out[y0 : y0 + 20, x0 : x0 + 20]
        assert (label == d.rgb).all(axis=2).sum() > 50
        assert (label == text_colour(d.rgb)).all(axis=2).any()  # the number's pixels


def test_numbers_are_as_given_colours_by_position() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    _, drawn = draw_boxes(image, [(0, 0, 50, 50), (100, 0, 150, 50)], numbers=[7, 3])
    assert [(d.number, d.colour) for d in drawn] == [(7, COLOURS[0][0]), (3, COLOURS[1][0])]
    seven, _ = draw_boxes(image, [(0, 0, 50, 50)], numbers=[7])
    three, _ = draw_boxes(image, [(0, 0, 50, 50)], numbers=[3])
    assert not np.array_equal(seven, three)


def test_boxes_touching_or_crossing_the_edge() -> None:
    image = np.zeros((120, 160, 3), np.uint8)
    out, drawn = draw_boxes(image, [(-10, -10, 50, 40), (130, 100, 175, 130)], thickness=3)
    red, green = drawn[0].rgb, drawn[1].rgb
    assert tuple(out[20, 0]) == red and tuple(out[0, 40]) == red  # clamped left / top edges
    assert tuple(out[110, 159]) == green and tuple(out[119, 145]) == green  # clamped right / bottom
    corner = out[100:, 130:]  # the green label is moved inside the image
    assert (corner == green).all(axis=2).sum() > 100
    assert (corner == text_colour(green)).all(axis=2).any()


def test_thickness_scales_with_image() -> None:
    small, _ = draw_boxes(np.zeros((120, 160, 3), np.uint8), [(20, 40, 100, 100)])
    large, _ = draw_boxes(np.zeros((1080, 1920, 3), np.uint8), [(200, 400, 1000, 1000)])
    assert (small[70, 20:30] > 0).any(axis=1).sum() == 2
    assert (large[700, 200:230] > 0).any(axis=1).sum() == 6


def test_draw_boxes_empty_and_bad() -> None:
    image = np.full((10, 10, 3), 5, np.uint8)
    out, drawn = draw_boxes(image, [])
    assert drawn == [] and np.array_equal(out, image)
    with pytest.raises(ValueError):
        draw_boxes(image, [(0, 0, 5)])
    with pytest.raises(ValueError):
        draw_boxes(image, [(0, 0, 5, 5)], numbers=[1, 2])
