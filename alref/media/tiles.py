"""Tiling sampled frames into one image with large frame numbers, for a vision LLM.

Frames are laid out row by row in a grid on a black background, separated by ``gap`` pixels, scaled
down (never up) so the tile's longer side is at most ``max_side``. Each cell gets its label in the
top-left corner: white text on a black box with a thin white outline, about 12 % of the cell height.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw

from alref.media.boxes import draw_label

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


@dataclass(frozen=True)
class Tile:
    image: np.ndarray
    cells: tuple[tuple[int, int, int, int], ...]
    labels: tuple[str, ...]
    columns: int
    rows: int
    scale: float


def grid_shape(n: int, columns: int = 0) -> tuple[int, int]:
    """(columns, rows) for ``n`` frames; ``columns=0`` picks ceil(sqrt(n)). Never more columns than n."""
    if n < 1:
        raise ValueError(f"need at least one frame to tile, got {n}")
    if columns < 0:
        raise ValueError(f"columns must be >= 0, got {columns}")
    cols = min(columns or math.ceil(math.sqrt(n)), n)
    return cols, math.ceil(n / cols)


def label_text_height(cell_height: int) -> int:
    """About 12 % of the cell height, at least 16 px."""
    return max(16, round(0.12 * cell_height))


def tile_frames(
    frames: Sequence[np.ndarray],
    labels: Sequence[int | str],
    columns: int = 0,
    max_side: int = 2048,
    gap: int = 8,
) -> Tile:
    """Tile same-size RGB uint8 frames, labelling frame ``i`` with ``str(labels[i])``."""
    if len(frames) != len(labels):
        raise ValueError(f"{len(frames)} frames but {len(labels)} labels")
    cols, rows = grid_shape(len(frames), columns)
    height, width = frames[0].shape[:2]
    for frame in frames:
        if frame.shape != frames[0].shape or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frames must all be RGB of one size, got {frame.shape} and {frames[0].shape}")
    gap = max(0, gap)
    room_w, room_h = max_side - (cols - 1) * gap, max_side - (rows - 1) * gap
    if room_w < cols or room_h < rows:
        raise ValueError(f"max_side={max_side} is too small for a {cols}x{rows} grid with gap {gap}")
    scale = min(1.0, room_w / (cols * width), room_h / (rows * height))
    cell_w, cell_h = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
    tile_w, tile_h = cols * cell_w + (cols - 1) * gap, rows * cell_h + (rows - 1) * gap
    canvas = np.zeros((tile_h, tile_w, 3), np.uint8)
    cells = []
    for i, frame in enumerate(frames):
        x0, y0 = (i % cols) * (cell_w + gap), (i // cols) * (cell_h + gap)
        if (cell_w, cell_h) != (width, height):
            frame = cv2.resize(frame, (cell_w, cell_h), interpolation=cv2.INTER_AREA)
        canvas[y0 : y0 + cell_h, x0 : x0 + cell_w] = frame
        cells.append((x0, y0, x0 + cell_w, y0 + cell_h))
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    text_height = label_text_height(cell_h)
    margin = max(2, cell_h // 60)
    texts = tuple(str(label) for label in labels)
    for (x0, y0, x1, y1), text in zip(cells, texts, strict=True):
        draw_label(
            draw,
            (x0 + margin, y0 + margin),
            text,
            text_height,
            BLACK,
            WHITE,
            outline=WHITE,
            bounds=(x0, y0, x1, y1),
        )
    return Tile(np.array(image), tuple(cells), texts, cols, rows, scale)
