"""Ref-DAVIS17 in the ReferFormer layout, and the DAVIS 2017 unsupervised ground truth.

```
ROOT/
  meta_expressions/valid/meta_expressions.json   {"videos": {v: {"expressions": {"0": {"exp", "obj_id"}, …}, "frames": […]}}}
  valid/JPEGImages/<video>/<frame>.jpg
  DAVIS/Annotations_unsupervised/480p/<video>/<frame>.png   palette PNGs, 255 = void
  DAVIS/ImageSets/2017/val.txt                              (optional: the sequences to score)
```

Each object has four expressions, in the order annot1-first, annot1-full, annot2-first, annot2-full
(ReferFormer's ``exp_id = object × 4 + annotator``); annotator k's run segments the k-th expression
of every object and is scored as one DAVIS unsupervised submission; the reported numbers are the
mean over the four runs. If ``DAVIS/Annotations_unsupervised/480p`` is absent, the copy that
ReferFormer's conversion moves to ``valid/Annotations`` is used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alref.eval.datasets.base import (
    DatasetLayoutError,
    EvalDataset,
    Expression,
    VideoItem,
    check_frames,
    expression_sort_key,
    first_existing,
    meta_videos,
    read_index_png,
    require_dir,
)
from alref.eval.writers import merge_objects, write_davis_annotator

ANNOTATORS = ("annot1-first", "annot1-full", "annot2-first", "annot2-full")


class DavisGroundTruth:
    """DAVIS unsupervised ground truth: ``<annotations>/<sequence>/<frame>.png``.

    ``gt_dir`` may be the folder that holds ``Annotations_unsupervised/480p`` (the DAVIS root), the
    Ref-DAVIS root (holding ``DAVIS/``), or the ``480p`` folder itself. The sequences are those of
    ``ImageSets/2017/val.txt`` next to the annotations when it exists, else every sequence folder."""

    def __init__(self, gt_dir: str | Path, sequences: list[str] | None = None) -> None:
        gt_dir = Path(gt_dir).expanduser()
        require_dir(gt_dir, "DAVIS ground-truth folder")
        self.annotations = first_existing(
            [
                gt_dir / "Annotations_unsupervised" / "480p",
                gt_dir / "DAVIS" / "Annotations_unsupervised" / "480p",
                gt_dir,
            ][: 3 if _holds_sequences(gt_dir) else 2],
            "DAVIS unsupervised ground truth (Annotations_unsupervised/480p)",
            is_dir=True,
        )
        if sequences is None:
            imageset = self.annotations.parent.parent / "ImageSets" / "2017" / "val.txt"
            if imageset.is_file():
                sequences = [s.strip() for s in imageset.read_text().splitlines() if s.strip()]
            else:
                sequences = sorted(p.name for p in self.annotations.iterdir() if p.is_dir())
        self.sequences = list(sequences)
        if not self.sequences:
            raise DatasetLayoutError(f"no sequence folders in the DAVIS ground truth {self.annotations}")
        for seq in self.sequences:
            require_dir(self.annotations / seq, f"ground truth of sequence {seq!r}")

    def frames(self, sequence: str) -> list[str]:
        """The ground-truth frame names of a sequence, sorted (every one of them is scored)."""
        names = sorted(p.stem for p in (self.annotations / sequence).glob("*.png"))
        if not names:
            raise DatasetLayoutError(f"no ground-truth PNGs in {self.annotations / sequence}")
        return names

    def read(self, sequence: str) -> np.ndarray:
        """(T, H, W) uint8: object ids, 0 background, 255 void."""
        folder = self.annotations / sequence
        frames = [read_index_png(folder / f"{n}.png", "ground-truth mask") for n in self.frames(sequence)]
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise DatasetLayoutError(
                f"ground-truth masks of {sequence} have different sizes: {sorted(shapes)}"
            )
        return np.stack(frames)


def _holds_sequences(folder: Path) -> bool:
    """True when ``folder`` itself looks like ``480p/``: sequence folders of PNGs."""
    return any(p.is_dir() and any(p.glob("*.png")) for p in folder.iterdir())


class RefDavis(EvalDataset):
    name = "ref-davis"
    protocol = "davis"
    default_split = "valid"
    splits = ("valid", "train")
    layout = __doc__ or ""

    def __init__(self, root: str | Path, split: str | None = None) -> None:
        super().__init__(root, split)
        self.meta_path = self.root / "meta_expressions" / self.split / "meta_expressions.json"
        self.frames_root = self.root / self.split / "JPEGImages"
        self._meta = meta_videos(self.meta_path, "Ref-DAVIS meta_expressions.json")
        require_dir(self.frames_root, "Ref-DAVIS frames folder")
        self.gt_dir = first_existing(
            [
                self.root / "DAVIS" / "Annotations_unsupervised" / "480p",
                self.root / self.split / "Annotations",
            ],
            "Ref-DAVIS ground truth (DAVIS/Annotations_unsupervised/480p)",
            is_dir=True,
        )

    def ground_truth(self, sequences: list[str] | None = None) -> DavisGroundTruth:
        return DavisGroundTruth(self.gt_dir, sequences=sequences)

    def videos(self) -> list[VideoItem]:
        items = []
        for video, entry in self._meta.items():
            expressions = entry.get("expressions") if isinstance(entry, dict) else None
            frames = entry.get("frames") if isinstance(entry, dict) else None
            if not isinstance(expressions, dict) or not isinstance(frames, list):
                raise DatasetLayoutError(
                    f'video {video!r} in {self.meta_path} needs "expressions" and "frames"'
                )
            frames_dir = self.frames_root / video
            check_frames(frames_dir, frames, f"Ref-DAVIS video {video!r}")
            items.append(VideoItem(video, frames_dir, tuple(frames), tuple(_with_annotators(expressions))))
        return items

    def objects(self, video: VideoItem) -> list[str]:
        """The video's object ids in order of first appearance (palette index = position + 1)."""
        seen: list[str] = []
        for e in video.expressions:
            if e.object_ids and e.object_ids[0] not in seen:
                seen.append(e.object_ids[0])
        return seen

    def write_video(self, pred_root: Path, video: VideoItem, masks: dict[str, np.ndarray]) -> None:
        """One palette PNG per frame and annotator, the objects merged (``anno_<k>/<video>/``)."""
        objects = self.objects(video)
        shape = next(iter(masks.values())).shape if masks else None
        if shape is None:
            return
        for k in range(len(ANNOTATORS)):
            per_object: list[np.ndarray | None] = [None] * len(objects)
            for e in video.expressions:
                if e.annotator == k and e.id in masks:
                    per_object[objects.index(e.object_ids[0])] = masks[e.id]
            write_davis_annotator(pred_root, k, video.id, video.frame_names, merge_objects(per_object, shape))


def _with_annotators(expressions: dict) -> list[Expression]:
    """Expressions in id order; the k-th expression of an object is annotator k's."""
    position: dict[str, int] = {}
    out = []
    for key in sorted(expressions, key=expression_sort_key):
        entry = expressions[key]
        obj = str(entry.get("obj_id", ""))
        k = position.get(obj, 0)
        position[obj] = k + 1
        out.append(
            Expression(key, str(entry.get("exp", "")), (obj,), annotator=k if k < len(ANNOTATORS) else None)
        )
    return out
