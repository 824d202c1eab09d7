"""What every dataset reader gives: videos (a frame folder, the frames to predict, the expressions)
and, where the dataset has it, ground truth; plus layout checks whose errors name what is missing."""

from __future__ import annotations

import csv
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from alref.errors import InputError
from alref.eval.errors import DatasetLayoutError

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Expression:
    """One thing to segment in a video: a sentence, or (AVSBench) the sound itself (``text`` None)."""

    id: str
    text: str | None
    object_ids: tuple[str, ...] = ()
    anno_ids: tuple[int, ...] = ()
    annotator: int | None = None  # Ref-DAVIS: 0 annot1-first, 1 annot1-full, 2 annot2-first, 3 annot2-full
    type_id: int | None = None  # ReVOS: 0 referring, 1 reasoning, 2 neither (left out of its means)


@dataclass(frozen=True)
class VideoItem:
    """One video: where its frames are, which frames need a prediction, and what to segment."""

    id: str
    frames_dir: Path
    frame_names: tuple[str, ...]
    expressions: tuple[Expression, ...]
    audio: Path | None = None
    group: str | None = None  # AVSBench: the S4 category or the AVSS subset (v1s, v1m, v2)
    extra: Mapping[str, Any] = field(default_factory=dict)


class EvalDataset(ABC):
    """Base class of the dataset readers. ``root`` is the dataset folder, ``split`` its split."""

    name: ClassVar[str] = ""
    protocol: str | None = None  # the `alref eval score` protocol, None without ground truth
    default_split: ClassVar[str] = "valid"
    splits: ClassVar[tuple[str, ...]] = ()
    sound: ClassVar[bool] = False  # AVSBench: the reference is the audio, not a sentence
    layout: ClassVar[str] = ""  # the expected layout, for help texts

    def __init__(self, root: str | Path, split: str | None = None, media: bool = True) -> None:
        self.root = Path(root).expanduser()
        self.split = split or self.default_split
        self.media = media  # False: scoring only, frames and audio need not be there
        if self.splits and self.split not in self.splits:
            raise DatasetLayoutError(
                f"{self.name} has no split {self.split!r}; choose one of {', '.join(self.splits)}"
            )
        require_dir(self.root, f"{self.name} dataset folder")

    @property
    def has_ground_truth(self) -> bool:
        return self.protocol is not None

    @abstractmethod
    def videos(self) -> list[VideoItem]:
        """Every video of the split, in dataset order (each reader implements it)."""

    def select(self, names: Sequence[str] | None = None, limit: int | None = None) -> list[VideoItem]:
        """The videos to run, in dataset order: only ``names`` if given (unknown names are an error),
        at most ``limit``."""
        videos = self.videos()
        if names:
            known = {v.id for v in videos}
            unknown = [n for n in names if n not in known]
            if unknown:
                raise DatasetLayoutError(
                    f"no video {unknown[0]!r} in {self.name} ({self.split}); "
                    f"{len(videos)} videos, e.g. {', '.join(sorted(known)[:3])}"
                )
            wanted = set(names)
            videos = [v for v in videos if v.id in wanted]
        return videos[:limit] if limit is not None else videos


# ---------------------------------------------------------------------------------------------
# layout checks


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        kind = "is not a folder" if path.exists() else "is missing"
        raise DatasetLayoutError(f"{what} {kind}: {path}")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        kind = "is not a file" if path.exists() else "is missing"
        raise DatasetLayoutError(f"{what} {kind}: {path}")
    return path


def first_existing(candidates: Sequence[Path], what: str, is_dir: bool = False) -> Path:
    """The first candidate that exists; otherwise an error naming the first (the expected place)."""
    for path in candidates:
        if path.is_dir() if is_dir else path.is_file():
            return path
    others = f" (nor {', '.join(str(p) for p in candidates[1:])})" if len(candidates) > 1 else ""
    raise DatasetLayoutError(f"{what} is missing: {candidates[0]}{others}")


def read_json(path: Path, what: str) -> Any:
    require_file(path, what)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetLayoutError(f"{what} does not parse: {path} ({exc})") from None


def meta_videos(path: Path, what: str) -> dict[str, Any]:
    """The ``videos`` object of a meta_expressions.json (Ref-YouTube-VOS / Ref-DAVIS / MeViS)."""
    data = read_json(path, what)
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, dict):
        raise DatasetLayoutError(f'{what} has no "videos" object: {path}')
    return videos


def read_csv_rows(path: Path, what: str, columns: Mapping[str, int | None]) -> list[dict[str, str]]:
    """Rows of a CSV as {column: value} for the wanted ``columns``; a column missing from the header
    is taken by its position (the official loaders index some of them by position) when one is
    given, else it is an error that names it."""
    require_file(path, what)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DatasetLayoutError(f"{what} {path} is empty")
    header = [h.strip() for h in rows[0]]
    where: dict[str, int] = {}
    for name, position in columns.items():
        if name in header:
            where[name] = header.index(name)
        elif position is not None and position < len(header):
            where[name] = position
        else:
            raise DatasetLayoutError(
                f"{what} {path} has no column {name!r} (columns: {', '.join(header) or 'none'})"
            )
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(where.values()):
            raise DatasetLayoutError(f"{what} {path}: line {line} has {len(row)} columns, too few")
        out.append({name: row[i].strip() for name, i in where.items()})
    return out


def frame_file(frames_dir: Path, name: str) -> Path | None:
    for suffix in FRAME_SUFFIXES:
        path = frames_dir / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def check_frames(frames_dir: Path, names: Sequence[str], what: str) -> None:
    """Every listed frame exists in ``frames_dir`` (as .jpg, .jpeg or .png)."""
    require_dir(frames_dir, what)
    for name in names:
        if frame_file(frames_dir, name) is None:
            raise DatasetLayoutError(f"frame {name!r} of {what} is missing: {frames_dir / name}.jpg")


def expression_sort_key(key: str) -> tuple[int, str]:
    return (int(key), key) if key.isdigit() else (1 << 30, key)


# ---------------------------------------------------------------------------------------------
# mask files


def read_index_png(
    path: Path, what: str = "mask", error: type[InputError] = DatasetLayoutError
) -> np.ndarray:
    """An HxW uint8 map of a palette (or 8-bit grey) PNG's values, as the DAVIS tools read them."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "1"):
                raise error(
                    f"{what} {path} is a {im.mode} image; expected a palette (P) PNG of object indices"
                )
            return np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise error(f"{what} is missing: {path}") from None
    except (OSError, ValueError) as exc:
        raise error(f"{what} {path} cannot be read ({exc})") from None


def read_grey_png(path: Path, what: str = "mask", error: type[InputError] = DatasetLayoutError) -> np.ndarray:
    """A mask PNG as the HxW uint8 grey values OpenCV's ``IMREAD_GRAYSCALE`` gives, which is how the
    MeViS and ReVOS scripts read predictions (foreground: value ≠ 0; ReVOS's R uses the values)."""
    import cv2

    if not path.is_file():
        raise error(f"{what} is missing: {path}")
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise error(f"{what} {path} cannot be read (not an image OpenCV decodes)")
    return grey


def read_binary_png(
    path: Path, what: str = "mask", error: type[InputError] = DatasetLayoutError
) -> np.ndarray:
    """A mask PNG as bool: palette index ≠ 0, grey ≥ 128 (or > 0 for 0/1 masks), colour ≠ black."""
    return read_level_png(path, what, error) >= 128


def read_level_png(
    path: Path, what: str = "mask", error: type[InputError] = DatasetLayoutError
) -> np.ndarray:
    """A mask PNG as uint8 foreground levels (255 = foreground; grey PNGs keep their values, which
    the AVSBench F-measure reads as probabilities)."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "P":
                return np.where(np.asarray(im) != 0, 255, 0).astype(np.uint8)
            if im.mode in ("RGB", "RGBA"):
                rgb = np.asarray(im.convert("RGB"))
                return np.where(rgb.any(axis=2), 255, 0).astype(np.uint8)
            grey = np.asarray(im.convert("L") if im.mode != "L" else im)
            if grey.max(initial=0) <= 1:
                return (grey * 255).astype(np.uint8)
            return grey.astype(np.uint8)
    except FileNotFoundError:
        raise error(f"{what} is missing: {path}") from None
    except (OSError, ValueError) as exc:
        raise error(f"{what} {path} cannot be read ({exc})") from None
