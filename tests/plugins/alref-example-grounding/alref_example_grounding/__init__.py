"""Colour grounding: an example alref tool that boxes the regions of the colours a phrase names.

"the red square" gives the bounding box of every red region of each image, biggest first; a phrase
that names no colour finds nothing. No model, no weights: it fills the ``grounding`` role, so
``alref segment VIDEO "the red square" --grounding color-boxes`` uses it in place of GroundingDINO.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from PIL import Image
from pydantic import BaseModel, Field

from alref.tools.grounding import Detection
from alref.tools.loading import ModelSource
from alref.tools.registry import ToolSpec

#: colour word -> OpenCV hue ranges (0-179); a pixel must also have saturation and value >= 80
HUES: dict[str, list[tuple[int, int]]] = {
    "red": [(0, 8), (172, 179)],
    "orange": [(9, 20)],
    "yellow": [(21, 34)],
    "green": [(35, 85)],
    "cyan": [(86, 100)],
    "blue": [(101, 130)],
    "purple": [(131, 150)],
    "pink": [(151, 171)],
}
MIN_AREA = 0.0005  # of the image: smaller specks are compression noise


class ColorGrounder:
    """Implements alref's ``Grounder`` protocol; the thresholds are GroundingDINO's and are ignored."""

    def detect(
        self,
        images: Sequence[np.ndarray],
        phrase: str,
        box_threshold: float = 0.15,
        text_threshold: float = 0.2,
        top_k: int = 10,
        batch_size: int = 4,
    ) -> list[list[Detection]]:
        words = re.findall(r"[a-z]+", phrase.lower())
        colours = [word for word in dict.fromkeys(words) if word in HUES]
        return [self._find(image, colours)[:top_k] for image in images]

    def _find(self, image: np.ndarray, colours: list[str]) -> list[Detection]:
        """Score: the square root of the share of the image a region covers (a quarter scores 0.5)."""
        hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
        size = hsv.shape[0] * hsv.shape[1]
        found = []
        for colour in colours:
            mask = np.zeros(hsv.shape[:2], np.uint8)
            for lo, hi in HUES[colour]:
                mask |= cv2.inRange(hsv, (lo, 80, 80), (hi, 255, 255))
            _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            for x, y, w, h, area in stats[1:].tolist():  # row 0 is the background
                if area >= MIN_AREA * size:
                    found.append(Detection((x, y, x + w, y + h), (area / size) ** 0.5, colour))
        return sorted(found, key=lambda d: -d.score)


def load(source: ModelSource | None, device: str) -> ColorGrounder:
    return ColorGrounder()  # no model, and numpy runs on the CPU whatever the device


class GroundColorArgs(BaseModel):
    image_path: str = Field(description="Path of the image (a frame) to search.")
    phrase: str = Field(description="Words naming the object by its colour, e.g. 'the red square'.")
    top_k: int = Field(10, ge=1, le=100, description="At most this many boxes, biggest first.")


def make_tool(get_grounder: Callable[[], ColorGrounder]) -> BaseTool:
    def ground_phrase(image_path: str, phrase: str, top_k: int = 10) -> list[dict[str, Any]]:
        path = Path(image_path).expanduser()
        if not path.is_file():
            raise ToolException(f"no image file at {image_path}; pass the path of an existing image")
        image = np.asarray(Image.open(path).convert("RGB"))
        found = get_grounder().detect([image], phrase, top_k=top_k)[0]
        return [{"number": n, **d.to_dict()} for n, d in enumerate(found, start=1)]

    return StructuredTool.from_function(
        func=ground_phrase,
        name="ground_phrase",
        description=(
            "Find boxes of the regions whose colour the phrase names (red, orange, yellow, green, cyan, "
            "blue, purple, pink) in one image. Returns [{number, box [x0, y0, x1, y1], score, phrase}], "
            "biggest first; empty if the phrase names no colour or none is there."
        ),
        args_schema=GroundColorArgs,
        handle_tool_error=True,
    )


spec = ToolSpec(
    name="color-boxes",
    role="grounding",
    description="Boxes of the regions of a named colour (no model; an example plugin)",
    loader=load,
    args_schema=GroundColorArgs,
    make_tool=make_tool,
)
