"""MeViS: ``valid_u`` (with ground truth) and ``valid`` (server only), in either layout.

```
ROOT/valid_u/JPEGImages/<video>/<frame>.jpg
ROOT/valid_u/meta_expressions.json   {"videos": {v: {"expressions": {"0": {"exp", "obj_id": [..], "anno_id": [..]}}, "frames": […]}}}
ROOT/valid_u/mask_dict.json          {"<anno_id>": [COCO RLE or null per frame]}
```

The ReferFormer-style re-layout keeps ``meta_expressions.json`` (and ``mask_dict.json``) under
``ROOT/meta_expressions/<split>/`` instead; both are accepted. An expression's target is the union
of its ``anno_id`` masks. Predictions: ``Annotations/<video>/<exp_id>/<frame>.png`` (and, for
``valid``, ``submission.zip``). ``valid_u`` (the default) is the split MeViS's own ``eval_mevis.py``
scores locally: every frame of ``frames``, predictions read as OpenCV grey values (not 0 =
foreground), a video without predictions scoring 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from alref.eval.datasets.base import (
    DatasetLayoutError,
    first_existing,
    meta_videos,
    read_json,
    require_dir,
)
from alref.eval.datasets.refytvos import TextExpressionDataset, text_expressions, video_frames
from alref.media.writers import rle_to_mask


def _meta_candidates(root: Path, split: str, name: str) -> list[Path]:
    return [root / split / name, root / "meta_expressions" / split / name]


class MevisGroundTruth:
    """``meta_expressions.json`` + ``mask_dict.json``; ``gt_dir`` is the folder that holds both (the
    split folder) or the MeViS root (then ``valid_u`` is used)."""

    def __init__(
        self,
        gt_dir: str | Path,
        split: str = "valid_u",
        meta_path: Path | None = None,
        mask_path: Path | None = None,
    ) -> None:
        gt_dir = Path(gt_dir).expanduser()
        require_dir(gt_dir, "MeViS ground-truth folder")
        self.meta_path = meta_path or first_existing(
            [gt_dir / "meta_expressions.json", *_meta_candidates(gt_dir, split, "meta_expressions.json")],
            "MeViS meta_expressions.json",
        )
        self.mask_path = mask_path or first_existing(
            [
                self.meta_path.parent / "mask_dict.json",
                *_meta_candidates(gt_dir, split, "mask_dict.json"),
            ],
            "MeViS mask_dict.json (the ground truth of valid_u)",
        )
        self.videos = meta_videos(self.meta_path, "MeViS meta_expressions.json")
        self._masks: dict[str, Any] = read_json(self.mask_path, "MeViS mask_dict.json")
        if not isinstance(self._masks, dict):
            raise DatasetLayoutError(f"MeViS mask_dict.json is not an object: {self.mask_path}")

    def expressions(self) -> list[tuple[str, str, list[str]]]:
        """(video, expression id, frame names) for every expression, in order."""
        out = []
        for video in self.videos:
            entry = self.videos[video]
            frames = video_frames(video, entry, self.meta_path)
            for e in text_expressions(video, entry.get("expressions"), self.meta_path):
                out.append((video, e.id, frames))
        return out

    def masks(self, video: str, expression: str, shape: tuple[int, int]) -> np.ndarray:
        """(T, H, W) bool: the union of the expression's ``anno_id`` masks on every frame
        (``shape`` is used where every mask of a frame is null)."""
        entry = self.videos[video]
        frames = entry["frames"]
        anno_ids = entry["expressions"][expression].get("anno_id") or []
        out = np.zeros((len(frames), *shape), bool)
        for anno in anno_ids:
            rles = self._masks.get(str(anno))
            if rles is None:
                raise DatasetLayoutError(f"anno_id {anno} of {video}/{expression} is not in {self.mask_path}")
            if len(rles) != len(frames):
                raise DatasetLayoutError(
                    f"anno_id {anno} has {len(rles)} masks in {self.mask_path} but {video} has {len(frames)} frames"
                )
            for t, rle in enumerate(rles):
                if rle:
                    mask = rle_to_mask(rle)
                    if mask.shape != tuple(shape):
                        raise DatasetLayoutError(
                            f"ground truth of {video}/{expression} is {mask.shape[1]}x{mask.shape[0]}, "
                            f"the prediction is {shape[1]}x{shape[0]}"
                        )
                    out[t] |= mask
        return out


class Mevis(TextExpressionDataset):
    name = "mevis"
    video_label = "MeViS video"
    sorted_videos = False  # the order of meta_expressions.json
    default_split = "valid_u"
    splits = ("valid_u", "valid", "train")
    layout = __doc__ or ""

    def __init__(self, root: str | Path, split: str | None = None) -> None:
        super().__init__(root, split)
        self.meta_path = first_existing(
            _meta_candidates(self.root, self.split, "meta_expressions.json"), "MeViS meta_expressions.json"
        )
        self.frames_root = require_dir(self.root / self.split / "JPEGImages", "MeViS frames folder")
        self._meta = meta_videos(self.meta_path, "MeViS meta_expressions.json")
        self.protocol = None if self.split == "valid" else "mevis"
        self.gt: MevisGroundTruth | None = None
        if self.protocol:
            mask_path = first_existing(
                _meta_candidates(self.root, self.split, "mask_dict.json"),
                f"MeViS mask_dict.json (the ground truth of {self.split})",
            )
            self.gt = MevisGroundTruth(self.root, self.split, self.meta_path, mask_path)
