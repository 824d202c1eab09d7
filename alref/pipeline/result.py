"""``SegmentResult``: what :func:`alref.segment` returns — the result.json content plus access to
the masks written in the output folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from alref.media.writers import rle_to_mask


@dataclass
class SegmentResult:
    out_dir: Path
    data: dict[str, Any] = field(repr=False)

    @property
    def status(self) -> str:
        return self.data["status"]

    @property
    def smoke(self) -> bool:
        return bool(self.data.get("smoke"))

    @property
    def references(self) -> list[dict[str, Any]]:
        return self.data["references"]

    @property
    def num_frames(self) -> int:
        return self.data["input"]["num_frames"]

    @cached_property
    def _masks_json(self) -> dict[str, Any]:
        return json.loads((self.out_dir / "masks.json").read_text())

    def mask(self, frame: int, obj_id: int = 1) -> np.ndarray:
        """Boolean H×W mask of object ``obj_id`` (1-based, in reference order) on frame ``frame``."""
        for obj in self._masks_json["objects"]:
            if obj["id"] == obj_id:
                return rle_to_mask(obj["masks"][frame])
        raise KeyError(f"no object {obj_id}; objects are {[o['id'] for o in self._masks_json['objects']]}")

    def masks(self, obj_id: int = 1) -> np.ndarray:
        """All frames' masks of one object as a (frames, H, W) boolean array."""
        return np.stack([self.mask(f, obj_id) for f in range(self.num_frames)])
