"""Numbered, coloured boxes drawn on a frame, so a vision LLM can refer to them by number or colour.

``draw_boxes`` returns the drawn image and a ``DrawnBox`` per box: that list is the one record of
which number and colour each box got; prompts must quote it rather than recompute colours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]

# Named so a person (or an LLM) would use the same word; the first ones are the most distinct.
COLOURS: tuple[tuple[str, RGB], ...] = (
    ("red", (255, 0, 0)),
    ("green", (0, 160, 0)),
    ("blue", (0, 64, 255)),
    ("yellow", (255, 255, 0)),
    ("orange", (255, 140, 0)),
    ("purple", (140, 0, 210)),
    ("cyan", (0, 255, 255)),
    ("magenta", (255, 0, 255)),
    ("lime", (150, 255, 0)),
    ("pink", (255, 150, 200)),
    ("brown", (140, 70, 20)),
    ("white", (255, 255, 255)),
    ("grey", (128, 128, 128)),
    ("navy", (0, 0, 128)),
)


def colour_for(i: int) -> tuple[str, RGB]:
    """The (name, rgb) of box or object ``i`` (0-based); cycles through ``COLOURS``."""
    return COLOURS[i % len(COLOURS)]


def text_colour(rgb: RGB) -> RGB:
    """Black or white, whichever contrasts more with ``rgb``."""
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luminance >= 140 else (255, 255, 255)


@dataclass(frozen=True)
class DrawnBox:
    number: int
    colour: str
    rgb: RGB
    box: tuple[float, float, float, float]


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=1)
def _digit_height_ratio() -> float:
    left, top, right, bottom = _font(100).getbbox("0123456789")
    return (bottom - top) / 100


def font_for_height(text_height: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The default font at the size whose digits are about ``text_height`` pixels tall."""
    return _font(max(6, round(text_height / _digit_height_ratio())))


def draw_label(
    draw: ImageDraw.ImageDraw,
    xy: tuple[int, int],
    text: str,
    text_height: int,
    fill: RGB,
    text_fill: RGB,
    outline: RGB | None = None,
    bounds: tuple[int, int, int, int] | None = None,
) -> tuple[int, int, int, int]:
    """Draw ``text`` on a filled rectangle whose top-left is ``xy``, moved to stay inside ``bounds``
    (x0, y0, x1, y1 exclusive). Returns the rectangle (x0, y0, x1, y1 exclusive)."""
    font = font_for_height(text_height)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(2, text_height // 5)
    width, height = right - left + 2 * pad, bottom - top + 2 * pad
    x, y = xy
    if bounds is not None:
        bx0, by0, bx1, by1 = bounds
        x = max(bx0, min(x, bx1 - width))
        y = max(by0, min(y, by1 - height))
    rect = (x, y, x + width, y + height)
    draw.rectangle((x, y, x + width - 1, y + height - 1), fill=fill, outline=outline, width=1)
    draw.text((x + pad - left, y + pad - top), text, font=font, fill=text_fill)
    return rect


def default_thickness(width: int, height: int) -> int:
    return max(2, round(max(width, height) / 320))


def label_height(width: int, height: int) -> int:
    """Text height of box numbers: 5 % of the shorter image side, at least 14 px."""
    return max(14, round(0.05 * min(width, height)))


def _pixel_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    if len(box) != 4:
        raise ValueError(f"a box needs 4 numbers (x0, y0, x1, y1), got {list(box)}")
    x0, x1 = sorted((float(box[0]), float(box[2])))
    y0, y1 = sorted((float(box[1]), float(box[3])))
    px0 = min(max(0, round(x0)), width - 1)
    py0 = min(max(0, round(y0)), height - 1)
    px1 = min(max(px0, round(x1) - 1), width - 1)
    py1 = min(max(py0, round(y1) - 1), height - 1)
    return px0, py0, px1, py1


def draw_outlined_boxes(
    image: Image.Image,
    items: Sequence[tuple[Sequence[float], str, RGB]],
    thickness: int | None = None,
) -> None:
    """Draw (box, label, rgb) items on ``image`` in place: outlines first, then the labels on top."""
    width, height = image.size
    thickness = thickness or default_thickness(width, height)
    draw = ImageDraw.Draw(image)
    pixel_boxes = [_pixel_box(box, width, height) for box, _, _ in items]
    for (x0, y0, x1, y1), (_, _, rgb) in zip(pixel_boxes, items, strict=True):
        draw.rectangle((x0, y0, x1, y1), outline=rgb, width=thickness)
    size = label_height(width, height)
    for (x0, y0, _, _), (_, label, rgb) in zip(pixel_boxes, items, strict=True):
        draw_label(draw, (x0, y0), label, size, rgb, text_colour(rgb), bounds=(0, 0, width, height))


def draw_boxes(
    image: np.ndarray,
    boxes: Sequence[Sequence[float]],
    numbers: Sequence[int] | None = None,
    thickness: int | None = None,
) -> tuple[np.ndarray, list[DrawnBox]]:
    """Draw box ``i`` in ``colour_for(i)`` with number ``numbers[i]`` (default ``i + 1``).

    ``image`` is RGB uint8 HxWx3 and is not modified; boxes are xyxy pixels.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
    numbers = list(range(1, len(boxes) + 1)) if numbers is None else list(numbers)
    if len(numbers) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(numbers)} numbers")
    drawn = []
    for i, (box, number) in enumerate(zip(boxes, numbers, strict=True)):
        name, rgb = colour_for(i)
        drawn.append(DrawnBox(int(number), name, rgb, tuple(float(v) for v in box)))  # type: ignore[arg-type]
    canvas = Image.fromarray(np.array(image, copy=True))
    draw_outlined_boxes(canvas, [(d.box, str(d.number), d.rgb) for d in drawn], thickness)
    return np.array(canvas), drawn
