"""AVSBench: S4 (single source), MS3 (multiple sources), AVSS (semantic, 71 classes) and
AVSS-V2-Binary (the ``v2`` rows of AVSS, sounding or not). The reference is the sound.

```
S4:   ROOT/s4_meta_data.csv (name, split, category)
      ROOT/s4_data/visual_frames/<split>/<category>/<name>/<name>_<i>.png     i = 1..5
      ROOT/s4_data/audio_wav/<split>/<category>/<name>.wav
      ROOT/s4_data/gt_masks/<split>/<category>/<name>/<name>_<i>.png
MS3:  ROOT/ms3_meta_data.csv (name, split)
      ROOT/ms3_data/visual_frames/<name>/<name>.mp4_<i>.png
      ROOT/ms3_data/audio_wav/<split>/<name>.wav
      ROOT/ms3_data/gt_masks/<split>/<name>/<name>_<i>.png
AVSS: ROOT/metadata.csv (uid, label, split), ROOT/label2idx.json (71 classes, background first)
      ROOT/<label>/<uid>/frames/<i>.jpg, audio.wav, labels_rgb/<i>.png       i = 0..T-1
      (label v1s, v1m: T = 5; v2: T = 10; class k is drawn in palette colour k)
```

Predictions use the ground truth's relative paths under the prediction folder (S4
``<category>/<name>/<name>_<i>.png``, MS3 ``<name>/<name>_<i>.png``, AVSS ``<label>/<uid>/<i>.png``,
AVSS-V2-Binary ``v2/<uid>/<i>.png``); AL-Ref-SAM 2's ``<i+1>_video_mask.png`` names are read too.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from alref.eval.datasets.base import (
    DatasetLayoutError,
    EvalDataset,
    Expression,
    VideoItem,
    check_frames,
    read_csv_rows,
    read_json,
    require_dir,
    require_file,
)
from alref.eval.writers import write_binary_png, write_colour_png

SOUND = Expression("sound", None)
AVSS_NUM_CLASSES = 71


class AvsDataset(EvalDataset):
    """Shared by the AVSBench settings: one expression per video (its sound)."""

    default_split = "test"
    splits = ("test", "val", "train")
    sound = True
    binary: ClassVar[bool] = True

    @abstractmethod
    def gt_paths(self, video: VideoItem) -> list[Path]:
        """The ground-truth mask files of a video, per frame (each setting implements it)."""

    @abstractmethod
    def pred_candidates(self, pred_root: Path, video: VideoItem, index: int) -> list[Path]:
        """Where a prediction for frame ``index`` may be, in order of preference."""

    def write_video(self, pred_root: Path, video: VideoItem, labels: np.ndarray) -> None:
        """``labels``: (T, H, W) uint8 classes per frame (0 = background; binary settings write
        0/255 masks of labels > 0)."""
        for index, frame in enumerate(labels):
            path = self.pred_candidates(pred_root, video, index)[0]
            if self.binary:
                write_binary_png(path, frame > 0)
            else:
                write_colour_png(path, frame)

    def _item(
        self, vid: str, frames_dir: Path, names: list[str], audio: Path, group: str | None
    ) -> VideoItem:
        if self.media:
            check_frames(frames_dir, names, f"{self.name} video {vid!r}")
            require_file(audio, f"audio of {self.name} video {vid!r}")
        return VideoItem(vid, frames_dir, tuple(names), (SOUND,), audio=audio, group=group)


class AvsS4(AvsDataset):
    name = "avsbench-s4"
    protocol = "avsbench-s4"
    layout = __doc__ or ""
    frames_per_video = 5

    def __init__(self, root: str | Path, split: str | None = None, media: bool = True) -> None:
        super().__init__(root, split, media)
        self.rows = [
            r
            for r in read_csv_rows(
                self.root / "s4_meta_data.csv",
                "AVSBench S4 metadata",
                {"name": 0, "category": 2, "split": None},
            )
            if r["split"] == self.split
        ]
        self.data = require_dir(self.root / "s4_data", "AVSBench S4 data folder")

    def videos(self) -> list[VideoItem]:
        out = []
        for r in self.rows:
            name, category = r["name"], r["category"]
            frames_dir = self.data / "visual_frames" / self.split / category / name
            names = [f"{name}_{i}" for i in range(1, self.frames_per_video + 1)]
            audio = self.data / "audio_wav" / self.split / category / f"{name}.wav"
            out.append(self._item(name, frames_dir, names, audio, category))
        return out

    def gt_paths(self, video: VideoItem) -> list[Path]:
        folder = self.data / "gt_masks" / self.split / str(video.group) / video.id
        return [folder / f"{video.id}_{i}.png" for i in range(1, len(video.frame_names) + 1)]

    def pred_candidates(self, pred_root: Path, video: VideoItem, index: int) -> list[Path]:
        folder = Path(pred_root) / str(video.group) / video.id
        return [folder / f"{video.id}_{index + 1}.png", folder / f"{index + 1}_video_mask.png"]


class AvsMS3(AvsDataset):
    name = "avsbench-ms3"
    protocol = "avsbench-ms3"
    layout = __doc__ or ""
    frames_per_video = 5

    def __init__(self, root: str | Path, split: str | None = None, media: bool = True) -> None:
        super().__init__(root, split, media)
        self.rows = [
            r
            for r in read_csv_rows(
                self.root / "ms3_meta_data.csv", "AVSBench MS3 metadata", {"name": 0, "split": None}
            )
            if r["split"] == self.split
        ]
        self.data = require_dir(self.root / "ms3_data", "AVSBench MS3 data folder")

    def videos(self) -> list[VideoItem]:
        out = []
        for r in self.rows:
            name = r["name"]
            frames_dir = self.data / "visual_frames" / name
            names = [f"{name}.mp4_{i}" for i in range(1, self.frames_per_video + 1)]
            audio = self.data / "audio_wav" / self.split / f"{name}.wav"
            out.append(self._item(name, frames_dir, names, audio, None))
        return out

    def gt_paths(self, video: VideoItem) -> list[Path]:
        folder = self.data / "gt_masks" / self.split / video.id
        return [folder / f"{video.id}_{i}.png" for i in range(1, len(video.frame_names) + 1)]

    def pred_candidates(self, pred_root: Path, video: VideoItem, index: int) -> list[Path]:
        folder = Path(pred_root) / video.id
        return [folder / f"{video.id}_{index + 1}.png", folder / f"{index + 1}_video_mask.png"]


class Avss(AvsDataset):
    name = "avss"
    protocol = "avss"
    layout = __doc__ or ""
    binary = False
    subsets: ClassVar[tuple[str, ...]] = ("v1s", "v1m", "v2")

    def __init__(self, root: str | Path, split: str | None = None, media: bool = True) -> None:
        super().__init__(root, split, media)
        rows = read_csv_rows(
            self.root / "metadata.csv", "AVSBench-semantic metadata", {"uid": 1, "label": 6, "split": None}
        )
        self.rows = [r for r in rows if r["split"] == self.split and r["label"] in self.subsets]
        classes = read_json(self.root / "label2idx.json", "AVSBench-semantic label2idx.json")
        if not isinstance(classes, dict) or len(classes) != AVSS_NUM_CLASSES:
            raise DatasetLayoutError(
                f"{self.root / 'label2idx.json'} should map {AVSS_NUM_CLASSES} class names (background "
                f"first) to indices, found {len(classes) if isinstance(classes, dict) else 'no mapping'}"
            )
        self.classes = [name for name, _ in sorted(classes.items(), key=lambda kv: int(kv[1]))]

    @staticmethod
    def frames_for(label: str) -> int:
        return 10 if label == "v2" else 5

    def videos(self) -> list[VideoItem]:
        out = []
        for r in self.rows:
            uid, label = r["uid"], r["label"]
            folder = self.root / label / uid
            names = [str(i) for i in range(self.frames_for(label))]
            out.append(self._item(uid, folder / "frames", names, folder / "audio.wav", label))
        return out

    def gt_paths(self, video: VideoItem) -> list[Path]:
        folder = self.root / str(video.group) / video.id / "labels_rgb"
        return [folder / f"{i}.png" for i in range(len(video.frame_names))]

    def pred_candidates(self, pred_root: Path, video: VideoItem, index: int) -> list[Path]:
        folder = Path(pred_root) / str(video.group) / video.id
        return [folder / f"{index}.png", folder / f"{index + 1}_video_mask.png"]


class AvssV2Binary(Avss):
    name = "avss-v2-binary"
    protocol = "avss-v2-binary"
    binary = True
    subsets = ("v2",)

    def pred_candidates(self, pred_root: Path, video: VideoItem, index: int) -> list[Path]:
        pred_root = Path(pred_root)
        return [
            pred_root / "v2" / video.id / f"{index}.png",
            pred_root / video.id / f"{index}.png",
            pred_root / video.id / f"{index + 1}_video_mask.png",
            pred_root / "v2" / video.id / f"{index + 1}_video_mask.png",
        ]
