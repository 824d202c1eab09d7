"""Ref-YouTube-VOS (the 2021 competition release; ReferFormer's layout).

```
ROOT/
  meta_expressions/valid/meta_expressions.json   {"videos": {v: {"expressions": {"0": {"exp"}, …}, "frames": […]}}}
  meta_expressions/test/meta_expressions.json    (its keys are removed from valid: 507 − 305 = 202 videos)
  valid/JPEGImages/<video>/<frame>.jpg
```

The valid split has no public ground truth: predictions are written as
``Annotations/<video>/<exp_id>/<frame>.png`` and zipped into ``submission.zip`` for the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from alref.eval.datasets.base import (
    DatasetLayoutError,
    EvalDataset,
    Expression,
    VideoItem,
    check_frames,
    expression_sort_key,
    meta_videos,
    require_dir,
)
from alref.eval.writers import write_expression_masks


def text_expressions(video: str, expressions: object, meta_path: Path) -> list[Expression]:
    """The expressions of one video entry, in id order, each with a non-empty sentence."""
    if not isinstance(expressions, dict):
        raise DatasetLayoutError(f'video {video!r} in {meta_path} has no "expressions" object')
    out = []
    for key in sorted(expressions, key=expression_sort_key):
        entry = expressions[key]
        text = str(entry.get("exp", "")).strip() if isinstance(entry, dict) else ""
        if not text:
            raise DatasetLayoutError(f'expression {key} of video {video!r} in {meta_path} has no "exp" text')
        obj = entry.get("obj_id")
        objects = (
            tuple(str(o) for o in obj) if isinstance(obj, list) else (() if obj is None else (str(obj),))
        )
        anno = entry.get("anno_id")
        annos = tuple(int(a) for a in anno) if isinstance(anno, list) else ()
        out.append(Expression(key, text, objects, annos))
    return out


def video_frames(video: str, entry: object, meta_path: Path) -> list[str]:
    frames = entry.get("frames") if isinstance(entry, dict) else None
    if not isinstance(frames, list) or not frames:
        raise DatasetLayoutError(f'video {video!r} in {meta_path} has no "frames" list')
    return [str(f) for f in frames]


class TextExpressionDataset(EvalDataset):
    """Datasets laid out as meta_expressions + JPEGImages/<video>/ with text expressions, whose
    predictions are Annotations/<video>/<exp_id>/<frame>.png (Ref-YouTube-VOS, MeViS). Subclasses set
    ``_meta``, ``frames_root`` and ``meta_path``."""

    video_label: ClassVar[str] = "video"
    sorted_videos: ClassVar[bool] = True

    def videos(self) -> list[VideoItem]:
        items = []
        names = sorted(self._meta) if self.sorted_videos else list(self._meta)
        for video in names:
            entry = self._meta[video]
            frames = video_frames(video, entry, self.meta_path)
            frames_dir = self.frames_root / video
            check_frames(frames_dir, frames, f"{self.video_label} {video!r}")
            expressions = text_expressions(video, entry.get("expressions"), self.meta_path)
            items.append(VideoItem(video, frames_dir, tuple(frames), tuple(expressions)))
        return items

    def write_video(self, pred_root: Path, video: VideoItem, masks: dict[str, np.ndarray]) -> None:
        for e in video.expressions:
            if e.id in masks:
                write_expression_masks(pred_root, video.id, e.id, video.frame_names, masks[e.id])


class RefYouTubeVOS(TextExpressionDataset):
    name = "ref-youtube-vos"
    video_label = "Ref-YouTube-VOS video"
    protocol = None
    default_split = "valid"
    splits = ("valid",)
    layout = __doc__ or ""

    def __init__(self, root: str | Path, split: str | None = None) -> None:
        super().__init__(root, split)
        self.meta_path = self.root / "meta_expressions" / self.split / "meta_expressions.json"
        self.test_meta_path = self.root / "meta_expressions" / "test" / "meta_expressions.json"
        self.frames_root = self.root / self.split / "JPEGImages"
        meta = meta_videos(self.meta_path, "Ref-YouTube-VOS meta_expressions.json")
        test = meta_videos(self.test_meta_path, "Ref-YouTube-VOS test meta_expressions.json")
        self._meta = {k: v for k, v in meta.items() if k not in test}
        require_dir(self.frames_root, "Ref-YouTube-VOS frames folder")
