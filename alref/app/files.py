"""The files the browser app writes or serves: a session's overlay.mp4 and masks.zip, the bundled sample
video, and the opened video as the page's player may serve it.

The page serves only files from the app's own folders (``--out``, the chats' folder) and the bundled
sample; a video opened by its path elsewhere on the machine is shown through a link (or, across file
systems, a copy) under ``OUT/player/``, made once per file version.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import alref
from alref.core.workspace import MASKS_DIR, MASKS_FILE, OBJECTS_DIR, PALETTE_DIR
from alref.media.masks import overlay_audio
from alref.media.writers import OverlayWriter, rle_to_mask

SAMPLE = "shapes.mp4"


def example_video(package: Path | None = None) -> Path | None:
    """The bundled sample video: ``alref/data/shapes.mp4`` when the package ships it, else
    ``examples/shapes.mp4`` of the source checkout alref runs from; None when neither exists (an
    installed copy without the sample: the page hides its example button)."""
    root = Path(package) if package is not None else Path(alref.__file__).resolve().parent
    for candidate in (root / "data" / SAMPLE, root.parent / "examples" / SAMPLE):
        if candidate.is_file():
            return candidate.resolve()
    return None


def served_video(video: Path, out: Path, allowed: list[Path]) -> Path | None:
    """The opened ``video`` as a file the page may serve: itself when it lies in one of ``allowed``
    (the app's folders, the sample), else a hard link (a copy across file systems) in
    ``out/player/<key>/<name>``, keyed by its path, size and modification time. None for a folder of
    frames (nothing to play)."""
    video = Path(video).resolve()
    if not video.is_file():
        return None
    for root in allowed:
        root = Path(root).resolve()
        if video == root or video.is_relative_to(root):
            return video
    stat = video.stat()
    key = hashlib.sha256(f"{video}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = Path(out) / "player" / key / video.name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(video, tmp)
        except OSError:
            shutil.copyfile(video, tmp)
        tmp.replace(target)
    return target.resolve()


def write_overlay(session: Any) -> Path | None:
    """overlay.mp4 of a chat session's current objects in its folder (removed when there are none):
    each mask tinted in its object's colour, the box prompts drawn, the sound kept."""
    target = session.workspace.overlay
    if not session.objects:
        target.unlink(missing_ok=True)
        return None
    info = session.info
    boxes: dict[int, list] = {}
    for obj, data in sorted(session.objects.items()):
        for frame, box in data["prompts"]:
            boxes.setdefault(frame, []).append((box, f"{obj} {data['name']}"))
    sound = overlay_audio(session.video, session.audio_path)  # the track it keeps
    with OverlayWriter(target, info.fps, info.width, info.height, audio=sound) as writer:
        for index, frame in session.video.iter_frames():
            masks = {obj: rle_to_mask(m[index]) for obj, m in session.masks.items() if index in m}
            writer.add(frame, masks, boxes=boxes.get(index, ()))
    return target


def zip_masks(out: Path) -> Path:
    """masks/ (and objects/, palette/, masks.json when written) of ``out`` as ``out/masks.zip``."""
    target = Path(out) / "masks.zip"
    tmp = target.with_name(".masks.zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in (MASKS_DIR, OBJECTS_DIR, PALETTE_DIR):
            folder = Path(out) / name
            if folder.is_dir():
                for file in sorted(folder.rglob("*.png")):
                    archive.write(file, file.relative_to(out).as_posix())
        if (Path(out) / MASKS_FILE).is_file():
            archive.write(Path(out) / MASKS_FILE, MASKS_FILE)
    tmp.replace(target)
    return target
