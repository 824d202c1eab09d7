"""ReVOS (VISA, ECCV 2024): referring and reasoning expressions, ground truth for ``valid`` and ``train``.

The layout of the release (github.com/cilinyan/ReVOS-api), one folder for both splits::

    ROOT/JPEGImages/<video>/<frame>.jpg    the frames of train and valid
    ROOT/meta_expressions_valid_.json      {"videos": {v: {"expressions": {"0": {"exp", "obj_id": [..],
                                           "anno_id": [..], "type_id": 0|1|2}}, "frames": [..],
                                           "height", "width"}}}
    ROOT/meta_expressions_train_.json      the same for train
    ROOT/mask_dict.json                    {"<anno_id>": [COCO RLE or null per frame]} (both splits)
    ROOT/mask_dict_foreground.json         {"<video>": {"masks_rle": [COCO RLE per frame],
                                           "foreground_ratio": [..]}}

(``meta_expressions_<split>.json`` without the trailing underscore is accepted too.) ``type_id`` is 0
for a referring expression and 1 for a reasoning one; the official scorer (VISA's
``tools/eval_revos.py``) names 2 ``is_nan`` and leaves it out of every mean. An expression's target
is the union of its ``anno_id`` masks; the RLE lists follow the order of the video's ``frames``. The
foreground of a video is the union of every annotated object of the video (VISA's
``tools/generate_foreground_mask.py``); without ``mask_dict_foreground.json`` it is computed that way
from ``mask_dict.json`` and the split's expressions. Predictions:
``Annotations/<video>/<exp_id>/<frame>.png`` (0/255 grey, as VISA writes them), scored by
``alref eval score --protocol revos`` (see :mod:`alref.eval.protocols`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from alref.eval.datasets.base import (
    DatasetLayoutError,
    VideoItem,
    expression_sort_key,
    first_existing,
    meta_videos,
    read_json,
    require_dir,
    require_file,
)
from alref.eval.datasets.refytvos import TextExpressionDataset, video_frames
from alref.media.writers import rle_to_mask

FOREGROUND_FILE = "mask_dict_foreground.json"


def meta_candidates(root: Path, split: str) -> list[Path]:
    return [root / f"meta_expressions_{split}_.json", root / f"meta_expressions_{split}.json"]


def _decode(rle: Any, what: str, shape: tuple[int, int]) -> np.ndarray:
    """An HxW uint8 mask from a COCO RLE (a list of RLEs: their uint8 sum, as pycocotools decodes it
    to HxWxN and the script sums the channels)."""
    if isinstance(rle, list):
        if not rle:
            return np.zeros(shape, np.uint8)
        return np.sum([_decode(r, what, shape) for r in rle], axis=0, dtype=np.uint8)
    if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
        raise DatasetLayoutError(f"{what} is not a COCO RLE ({type(rle).__name__})")
    mask = rle_to_mask(rle)
    if mask.shape != tuple(shape):
        raise DatasetLayoutError(
            f"{what} is {mask.shape[1]}x{mask.shape[0]}, the prediction is {shape[1]}x{shape[0]}"
        )
    return mask.view(np.uint8)


class RevosGroundTruth:
    """A split's ``meta_expressions_<split>_.json`` + ``mask_dict.json`` (+ ``mask_dict_foreground.json``);
    ``gt_dir`` is the ReVOS folder that holds them."""

    def __init__(
        self,
        gt_dir: str | Path,
        split: str = "valid",
        meta_path: Path | None = None,
        mask_path: Path | None = None,
    ) -> None:
        gt_dir = Path(gt_dir).expanduser()
        require_dir(gt_dir, "ReVOS ground-truth folder")
        self.meta_path = meta_path or first_existing(
            meta_candidates(gt_dir, split), f"ReVOS meta_expressions_{split}_.json"
        )
        folder = self.meta_path.parent
        self.mask_path = mask_path or require_file(
            folder / "mask_dict.json", "ReVOS mask_dict.json (the ground truth)"
        )
        self.videos = meta_videos(self.meta_path, "ReVOS meta expressions")
        masks = read_json(self.mask_path, "ReVOS mask_dict.json")
        if not isinstance(masks, dict):
            raise DatasetLayoutError(f"ReVOS mask_dict.json is not an object: {self.mask_path}")
        wanted = {str(a) for entry in self.videos.values() for a in _anno_ids_of_video(entry)}
        self._masks: dict[str, Any] = {k: v for k, v in masks.items() if k in wanted}  # this split's only
        del masks
        self.foreground_path: Path | None = folder / FOREGROUND_FILE
        self._foreground: dict[str, Any] | None = None
        if self.foreground_path.is_file():
            data = read_json(self.foreground_path, f"ReVOS {FOREGROUND_FILE}")
            if not isinstance(data, dict):
                raise DatasetLayoutError(f"ReVOS {FOREGROUND_FILE} is not an object: {self.foreground_path}")
            self._foreground = {k: v for k, v in data.items() if k in self.videos}
        else:
            self.foreground_path = None  # derived from mask_dict.json, as generate_foreground_mask.py does

    def expressions(self) -> list[tuple[str, str, list[str], int | None]]:
        """(video, expression id, frame names, type_id) for every expression, in order."""
        out = []
        for video, entry in self.videos.items():
            frames = video_frames(video, entry, self.meta_path)
            expressions = entry.get("expressions") if isinstance(entry, dict) else None
            if not isinstance(expressions, dict):
                raise DatasetLayoutError(f'video {video!r} in {self.meta_path} has no "expressions" object')
            for key in sorted(expressions, key=expression_sort_key):
                out.append((video, key, frames, _type_id(expressions[key], video, key, self.meta_path)))
        return out

    def _rles(self, anno: object, video: str, expression: str | None) -> list[Any]:
        rles = self._masks.get(str(anno))
        where = f"{video}/{expression}" if expression is not None else video
        if rles is None:
            raise DatasetLayoutError(f"anno_id {anno} of {where} is not in {self.mask_path}")
        frames = len(self.videos[video]["frames"])
        if not isinstance(rles, list) or len(rles) != frames:
            count = len(rles) if isinstance(rles, list) else "no list of"
            raise DatasetLayoutError(
                f"anno_id {anno} has {count} masks in {self.mask_path} but {video} has {frames} frames"
            )
        return rles

    def target(self, video: str, expression: str, t: int, shape: tuple[int, int]) -> np.ndarray:
        """Frame ``t``'s HxW uint8 target as the script builds it: the sum of the expression's
        ``anno_id`` masks (0 where every mask is null; not 0 = foreground)."""
        out = np.zeros(shape, np.uint8)
        for anno in _anno_ids(self.videos[video]["expressions"][expression]):
            rle = self._rles(anno, video, expression)[t]
            if rle:
                out += _decode(rle, f"ground truth of {video}/{expression}", shape)
        return out

    def masks(self, video: str, expression: str, shape: tuple[int, int]) -> np.ndarray:
        """(T, H, W) bool: the union of the expression's ``anno_id`` masks on every frame."""
        frames = len(self.videos[video]["frames"])
        return np.stack([self.target(video, expression, t, shape) != 0 for t in range(frames)])

    def foreground(self, video: str, t: int, shape: tuple[int, int]) -> np.ndarray:
        """Frame ``t``'s HxW 0/1 uint8 foreground of the video (every annotated object)."""
        what = f"foreground of {video} frame {t}"
        if self._foreground is not None:
            entry = self._foreground.get(video)
            rles = entry.get("masks_rle") if isinstance(entry, dict) else None
            frames = len(self.videos[video]["frames"])
            if not isinstance(rles, list) or len(rles) != frames:
                raise DatasetLayoutError(
                    f'{self.foreground_path} has no "masks_rle" list of {frames} masks for video {video!r}'
                )
            return _decode(rles[t], what, shape)
        out = np.zeros(shape, np.uint8)
        for anno in _anno_ids_of_video(self.videos[video]):
            rle = self._rles(anno, video, None)[t]
            if rle:
                out |= _decode(rle, what, shape)
        return out


def _anno_ids(entry: object) -> list[Any]:
    anno = entry.get("anno_id") if isinstance(entry, dict) else None
    return list(anno) if isinstance(anno, list) else ([] if anno is None else [anno])


def _anno_ids_of_video(entry: object) -> list[Any]:
    expressions = entry.get("expressions") if isinstance(entry, dict) else None
    if not isinstance(expressions, dict):
        return []
    return sorted({str(a) for e in expressions.values() for a in _anno_ids(e)}, key=expression_sort_key)


def _type_id(entry: object, video: str, key: str, meta_path: Path) -> int | None:
    value = entry.get("type_id") if isinstance(entry, dict) else None
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DatasetLayoutError(
            f"expression {key} of video {video!r} in {meta_path} has type_id {value!r}, not 0, 1 or 2"
        ) from None


class Revos(TextExpressionDataset):
    name = "revos"
    video_label = "ReVOS video"
    sorted_videos = False  # the order of the meta expressions file, as the script iterates it
    protocol = "revos"
    default_split = "valid"
    splits = ("valid", "train")
    layout = __doc__ or ""

    def __init__(self, root: str | Path, split: str | None = None) -> None:
        super().__init__(root, split)
        self.meta_path = first_existing(
            meta_candidates(self.root, self.split), f"ReVOS meta_expressions_{self.split}_.json"
        )
        self.frames_root = require_dir(self.root / "JPEGImages", "ReVOS frames folder")
        self._meta = meta_videos(self.meta_path, "ReVOS meta expressions")
        self.gt = RevosGroundTruth(self.root, self.split, self.meta_path)

    def videos(self) -> list[VideoItem]:
        items = super().videos()
        out = []
        for item in items:
            entries = self._meta[item.id]["expressions"]
            expressions = tuple(
                replace(e, type_id=_type_id(entries[e.id], item.id, e.id, self.meta_path))
                for e in item.expressions
            )
            out.append(replace(item, expressions=expressions))
        return out
