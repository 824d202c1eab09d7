"""Predictions in each benchmark's layout, and the submission zip. Every file is written atomically.

- Ref-YouTube-VOS and MeViS: ``Annotations/<video>/<exp_id>/<frame>.png``, 0/255 grey PNGs, one
  folder per expression; ``submission.zip`` holds the ``Annotations/`` tree (what the Codalab
  servers take).
- Ref-DAVIS17: ``anno_<k>/<video>/<frame>.png`` for the annotators k = 0..3, DAVIS palette PNGs
  whose index is the object's position in the video's expression list (1, 2, …); the objects of one
  annotator are merged per frame, a later object winning where masks overlap.
- AVSBench: the ground truth's relative paths — S4 ``<category>/<video>/<video>_<i>.png``, MS3
  ``<video>/<video>_<i>.png`` (0/255 grey), AVSS ``<subset>/<uid>/<i>.png`` (RGB colour masks in
  the AVSBench palette: class k has DAVIS palette colour k), AVSS-V2-Binary ``v2/<uid>/<i>.png``.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from alref.media.writers import (
    atomic_write_bytes,
    davis_palette,
    write_mask_png,
    write_palette_png,
)


def write_expression_masks(
    root: Path, video: str, expression: str, frame_names: Sequence[str], masks: np.ndarray
) -> Path:
    """``root/Annotations/<video>/<expression>/<frame>.png`` for every frame; returns the folder."""
    masks = np.asarray(masks)
    if len(masks) != len(frame_names):
        raise ValueError(f"{len(masks)} masks for {len(frame_names)} frames of {video}")
    folder = Path(root) / "Annotations" / video / expression
    for name, mask in zip(frame_names, masks, strict=True):
        write_mask_png(folder / f"{name}.png", mask)
    return folder


def merge_objects(masks: Sequence[np.ndarray | None], shape: tuple[int, ...]) -> np.ndarray:
    """(T, H, W) uint8 label maps from per-object (T, H, W) masks: object i (0-based) gets index
    i + 1; ``None`` (no prediction for that object) leaves it out; later objects win overlaps."""
    labels = np.zeros(shape, np.uint8)
    for index, mask in enumerate(masks, start=1):
        if mask is not None:
            labels[np.asarray(mask, bool)] = index
    return labels


def write_davis_annotator(
    root: Path, annotator: int, video: str, frame_names: Sequence[str], labels: np.ndarray
) -> Path:
    """``root/anno_<k>/<video>/<frame>.png`` palette PNGs from (T, H, W) object indices."""
    folder = Path(root) / f"anno_{annotator}" / video
    for name, frame in zip(frame_names, labels, strict=True):
        write_palette_png(folder / f"{name}.png", frame)
    return folder


def write_binary_png(path: Path, mask: np.ndarray) -> None:
    write_mask_png(Path(path), mask)


def write_colour_png(path: Path, classes: np.ndarray) -> None:
    """An RGB PNG with class k painted in palette colour k (AVSBench-semantic's colour masks)."""
    palette = np.array(davis_palette(), np.uint8).reshape(256, 3)
    rgb = palette[np.asarray(classes, np.uint8)]
    import io

    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())


def zip_folder(folder: Path, zip_path: Path, arc_root: str | None = None) -> Path:
    """Zip ``folder`` (files in sorted order, under ``arc_root``/ — default the folder's name) into
    ``zip_path`` atomically; returns ``zip_path``."""
    folder, zip_path = Path(folder), Path(zip_path)
    arc_root = folder.name if arc_root is None else arc_root
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=zip_path.parent, prefix=f".{zip_path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
                archive.write(path, str(Path(arc_root) / path.relative_to(folder)))
        os.replace(tmp, zip_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return zip_path
