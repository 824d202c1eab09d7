"""A stand-in segmentation tool for tests of point and box prompts: no model, masks a person can predict.

A box prompt's mask is the box; a point prompt (``add_points``) is the box (if given), with a disc of
``RADIUS`` px around each positive point added and around each negative point removed, in order. As
in the canonical SAM 2 session, a prompt replaces the object's earlier prompt on its frame. Propagation
gives each object, on every frame, the mask of its nearest prompted frame when that is at most
``REACH`` frames away (the earlier one on a tie), else an empty mask: so an object is missing on frames
far from its prompts, and a click there makes it appear. Every call is recorded in ``calls``.

:func:`install` writes a distribution (``alref-click-standin``, a ``.dist-info`` with the
``alref.tools`` entry point) into a folder, so a subprocess with that folder and this one on its
``PYTHONPATH`` selects it with ``--segmentation click-standin``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from alref.tools.registry import ToolSpec

NAME = "click-standin"
RADIUS = 6
REACH = 2
SIDE = 8


class ClickSession:
    def __init__(self, frames, height: int, width: int) -> None:
        self.frames, self.height, self.width = frames, height, width
        self.prompts: dict[int, dict[int, np.ndarray]] = {}
        self.calls: list[tuple] = []

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def _box(self, box: Sequence[float] | None) -> np.ndarray:
        mask = np.zeros((self.height, self.width), bool)
        if box is not None:
            x0, y0, x1, y1 = (round(float(v)) for v in box)
            mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
        return mask

    def add_box(self, frame_idx: int, obj_id: int, box: Sequence[float]) -> np.ndarray:
        self.calls.append(("add_box", frame_idx, obj_id, [float(v) for v in box]))
        mask = self._box(box)
        self.prompts.setdefault(obj_id, {})[frame_idx] = mask
        return mask

    def add_points(self, frame_idx: int, obj_id: int, points, labels, box=None) -> np.ndarray:
        self.calls.append(("add_points", frame_idx, obj_id, [list(map(float, p)) for p in points],
                           [int(v) for v in labels], None if box is None else [float(v) for v in box]))  # fmt: skip
        mask = self._box(box)
        for (x, y), label in zip(points, labels, strict=True):
            disc = np.zeros((self.height, self.width), np.uint8)
            cv2.circle(disc, (round(float(x)), round(float(y))), RADIUS, 1, -1)
            mask[disc > 0] = bool(label)
        self.prompts.setdefault(obj_id, {})[frame_idx] = mask
        return mask

    def propagate(
        self, start_frame: int, progress: Callable[[int], None] | None = None
    ) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
        self.calls.append(("propagate", start_frame))
        order = [*range(start_frame, self.num_frames), *range(start_frame - 1, -1, -1)]
        for frame in order:
            masks = {}
            for obj, prompted in self.prompts.items():
                near = min(prompted, key=lambda f: (abs(f - frame), f))
                masks[obj] = prompted[near].copy() if abs(near - frame) <= REACH else self._box(None)
            if progress is not None:
                progress(1)
            yield frame, masks

    def remove_object(self, obj_id: int) -> None:
        del self.prompts[obj_id]

    def reset(self) -> None:
        self.calls.append(("reset",))
        self.prompts.clear()


class ClickSegmenter:
    image_size = SIDE

    def __init__(self) -> None:
        self.sessions: list[ClickSession] = []

    def prepare_frame(self, frame: np.ndarray) -> np.ndarray:
        return cv2.resize(np.ascontiguousarray(frame), (SIDE, SIDE), interpolation=cv2.INTER_AREA)

    def start_session(self, frames, height: int, width: int) -> ClickSession:
        self.sessions.append(ClickSession(frames, height, width))
        return self.sessions[-1]


def load(source, device: str) -> ClickSegmenter:
    return ClickSegmenter()


spec = ToolSpec(
    name=NAME,
    role="segmentation",
    description="test stand-in: boxes and discs around clicks, no model",
    loader=load,
)


def install(site: Path) -> Path:
    """``site`` holding the distribution that registers :data:`spec` (this module must be importable)."""
    info = Path(site) / "alref_click_standin-0.1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: alref-click-standin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[alref.tools]\n{NAME} = click_segmenter:spec\n")
    return Path(site)
