"""Writing what a run produced: mask PNGs, masks.json (COCO RLE), palette PNGs, overlay.mp4.

Layout in the output folder:
- ``masks/<frame>.png``: 0/255, the union of all referents (the one referent in a single-reference run);
- ``objects/<id>/<frame>.png``: one 0/255 mask per referent, only when there are several;
- ``palette/<frame>.png``: palette PNG whose index is the object id (with sound as the reference:
  the category's index in the closed vocabulary), when there are several objects or a sound
  reference (where masks overlap the higher id is painted last);
- ``masks.json``: COCO RLE per object and frame (pycocotools), the frame names and the size;
- ``overlay.mp4``: the video with masks tinted and the pivot boxes drawn on the pivot frames.

Frame names are the input's own file stems for a frame folder and 5-digit indices for a video file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alref.media.video import Video, VideoInfo
from alref.media.writers import (
    OverlayWriter,
    atomic_write_json,
    mask_to_rle,
    rle_to_mask,
    write_mask_png,
    write_palette_png,
)


class MaskSink:
    """Receives propagated masks frame by frame (in any order) and writes them as they come."""

    def __init__(
        self,
        out: Path,
        info: VideoInfo,
        objects: Mapping[int, str],
        gate: Mapping[int, set[int]] | None = None,
        palette_ids: Mapping[int, int] | None = None,
    ) -> None:
        self.out = out
        self.info = info
        self.objects = dict(objects)  # id -> reference text
        self.gate = {obj: set(frames) for obj, frames in (gate or {}).items()}  # frames whose mask is removed
        self.removed: dict[int, set[int]] = {obj: set() for obj in self.objects}
        self.palette_ids = dict(palette_ids or {})  # object id -> palette index (default: the id)
        self.multi = len(self.objects) > 1
        self.rles: dict[int, dict[int, dict]] = {obj: {} for obj in self.objects}
        self.area: dict[int, dict[int, int]] = {obj: {} for obj in self.objects}
        (out / "masks").mkdir(parents=True, exist_ok=True)
        if self.multi or self.palette_ids:
            (out / "palette").mkdir(exist_ok=True)
        if self.multi:
            for obj in self.objects:
                (out / "objects" / str(obj)).mkdir(parents=True, exist_ok=True)

    def _empty(self) -> np.ndarray:
        return np.zeros((self.info.height, self.info.width), dtype=bool)

    def add(self, frame: int, masks: Mapping[int, np.ndarray]) -> None:
        name = self.info.frame_names[frame]
        union = self._empty()
        palette = np.zeros(union.shape, dtype=np.uint8) if (self.multi or self.palette_ids) else None
        for obj in sorted(self.objects):
            mask = masks.get(obj)
            mask = self._empty() if mask is None else mask.astype(bool, copy=False)
            if frame in self.gate.get(obj, ()) and mask.any():
                self.removed[obj].add(frame)
                mask = self._empty()
            if mask.shape != union.shape:
                raise ValueError(
                    f"mask of object {obj} on frame {frame} is {mask.shape}, expected {union.shape}"
                )
            union |= mask
            self.rles[obj][frame] = mask_to_rle(mask)
            self.area[obj][frame] = int(mask.sum())
            if self.multi:
                write_mask_png(self.out / "objects" / str(obj) / f"{name}.png", mask)
            if palette is not None:
                palette[mask] = self.palette_ids.get(obj, obj)
        write_mask_png(self.out / "masks" / f"{name}.png", union)
        if palette is not None:
            write_palette_png(self.out / "palette" / f"{name}.png", palette)

    def fill_missing(self) -> None:
        """Frames the propagation never reached (an object with no prompt) get empty masks."""
        for frame in range(self.info.num_frames):
            if not self.objects or any(frame not in self.rles[obj] for obj in self.objects):
                self.add(
                    frame,
                    {
                        obj: rle_to_mask(self.rles[obj][frame])
                        for obj in self.objects
                        if frame in self.rles[obj]
                    },
                )

    def masks_at(self, frame: int) -> dict[int, np.ndarray]:
        return {obj: rle_to_mask(self.rles[obj][frame]) for obj in self.objects}

    def write_json(self) -> None:
        n = self.info.num_frames
        atomic_write_json(
            self.out / "masks.json",
            {
                "format": "coco-rle",
                "size": [self.info.height, self.info.width],
                "frames": list(self.info.frame_names),
                "objects": [
                    {"id": obj, "reference": ref, "masks": [self.rles[obj][f] for f in range(n)]}
                    for obj, ref in sorted(self.objects.items())
                ],
            },
        )

    def summary(self, obj: int) -> dict[str, Any]:
        areas = self.area[obj]
        present = [f for f in sorted(areas) if areas[f] > 0]
        return {
            "frames_with_mask": len(present),
            "first_frame": present[0] if present else None,
            "last_frame": present[-1] if present else None,
            "mean_area_px": round(float(np.mean([areas[f] for f in present])), 1) if present else 0.0,
        }


def write_overlay(
    path: Path,
    video: Video,
    sink: MaskSink,
    pivot_boxes: Mapping[int, Sequence[tuple[Sequence[float], str]]],
    stage=None,
) -> None:
    """Second decoding pass: tint every frame with its masks, draw pivot boxes on pivot frames."""
    info = video.info
    with OverlayWriter(path, info.fps, info.width, info.height) as writer:
        for index, frame in video.iter_frames():
            writer.add(frame, sink.masks_at(index), boxes=pivot_boxes.get(index, ()))
            if stage is not None:
                stage.advance()
