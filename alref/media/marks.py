"""Set-of-marks: candidate masks drawn on a frame, each filled in its own named colour with its number
printed at a point inside it, so a vision LLM can refer to each candidate by number."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw

from alref.media.boxes import colour_for, default_thickness, draw_label, label_height, text_colour


def mark_point(mask: np.ndarray) -> tuple[int, int] | None:
    """The point of the mask farthest from its border (inside even a ring-shaped mask), as (x, y)."""
    m = np.asarray(mask, dtype=np.uint8)
    if not m.any():
        return None
    distance = cv2.distanceTransform(np.pad(m, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x), int(y)


def draw_marks(
    image: np.ndarray, marks: Sequence[tuple[int, int, np.ndarray]], alpha: float = 0.45
) -> np.ndarray:
    """``marks``: (number, colour index, HxW mask). Each mask is tinted and outlined in
    ``colour_for(colour index)`` and its number drawn on a label of that colour at :func:`mark_point`;
    ``image`` (RGB uint8 HxWx3) is not modified."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
    out = image.astype(np.float32)
    for _, colour, mask in marks:
        m = np.asarray(mask) > 0
        if m.shape != image.shape[:2]:
            raise ValueError(f"a mask is {m.shape}, the image is {image.shape[:2]}")
        out[m] = out[m] * (1 - alpha) + np.array(colour_for(colour)[1], np.float32) * alpha
    canvas = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    thickness = default_thickness(image.shape[1], image.shape[0])
    for _, colour, mask in marks:
        contours, _ = cv2.findContours((np.asarray(mask) > 0).astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)  # fmt: skip
        cv2.drawContours(canvas, contours, -1, colour_for(colour)[1], thickness)
    pil = Image.fromarray(canvas)
    draw = ImageDraw.Draw(pil)
    height, width = image.shape[:2]
    size = label_height(width, height)
    for number, colour, mask in marks:
        point = mark_point(mask)
        if point is None:
            continue
        rgb = colour_for(colour)[1]
        x, y = point
        draw_label(draw, (x - size // 2, y - size // 2), str(number), size, rgb, text_colour(rgb),
                   outline=text_colour(rgb), bounds=(0, 0, width, height))  # fmt: skip
    return np.array(pil)
