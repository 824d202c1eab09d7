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

With ``queue_frames`` > 0 the PNG files are written by a :class:`BackgroundWriter` thread while the
caller (SAM 2's propagation) goes on; the queue holds at most ``queue_frames`` frames, each
H × W bytes per mask written (the union, plus one per object when there are several, plus the
palette map): 16 × 0.88 MiB = 14.1 MiB for one object at 720p. The RLE (masks.json, the summary,
the overlay) is computed in the caller's thread, in the same order, so every output equals a
synchronous run's.

Memory does not grow with the video beyond a few numbers per frame: the RLE of each frame (tens of
bytes for a real object, ~18 KB for the smoke models' noisy masks at 640x360) goes to an unnamed
temporary file in the output folder (:class:`RleSpool`), the sink keeps its place there, the mask
area and, with several objects, where they meet; masks.json is written from that file one frame at a
time (:func:`~alref.media.writers.atomic_write_json_stream`), and overlay.mp4 reads one frame's RLE at
a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alref.media.offsets import OffsetFile
from alref.media.video import Video, VideoInfo
from alref.media.writers import (
    BackgroundWriter,
    OutputWriteError,
    OverlayWriter,
    add_audio_track,
    atomic_write_json_stream,
    concat_videos,
    mask_to_rle,
    rle_to_mask,
    write_mask_png,
    write_palette_png,
)

QUEUE_FRAMES = 16  # frames of masks waiting for the writer thread at most (see the module docstring)


class RleSpool:
    """An append-only unnamed temporary file of RLE counts strings (ASCII): ``append`` returns where one
    went, ``read`` gives it back. Thread-safe (the overlay thread reads while the caller appends)."""

    def __init__(self, folder: Path) -> None:
        self._file = OffsetFile.temporary(folder, ".rle-", "the masks' temporary file")

    def append(self, counts: str) -> tuple[int, int]:
        return self._file.append(counts.encode("ascii"))

    def read(self, offset: int, length: int) -> str:
        return self._file.read_at(offset, length).decode("ascii")

    def close(self) -> None:
        self._file.close()


class SpooledRles(MutableMapping[int, dict]):
    """One object's COCO RLE by frame, the counts in an :class:`RleSpool`; in memory: where each is.
    A frame given again (verification, refinement) points to its new counts."""

    def __init__(self, spool: RleSpool, size: Sequence[int]) -> None:
        self._spool, self._size = spool, [int(v) for v in size]
        self._where: dict[int, tuple[int, int]] = {}

    def __getitem__(self, frame: int) -> dict:
        offset, length = self._where[frame]
        return {"size": list(self._size), "counts": self._spool.read(offset, length)}

    def __setitem__(self, frame: int, rle: dict) -> None:
        if [int(v) for v in rle["size"]] != self._size:
            raise ValueError(f"an RLE of size {rle['size']} in a video of size {self._size}")
        counts = rle["counts"]
        self._where[frame] = self._spool.append(counts if isinstance(counts, str) else counts.decode("ascii"))

    def __delitem__(self, frame: int) -> None:
        del self._where[frame]

    def __iter__(self) -> Iterator[int]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, frame: object) -> bool:
        return frame in self._where


class MaskSink:
    """Receives propagated masks frame by frame (in any order) and writes them as they come; with
    ``queue_frames`` > 0 on a writer thread (call ``close`` or ``write_json``, or use ``with``)."""

    def __init__(
        self,
        out: Path,
        info: VideoInfo,
        objects: Mapping[int, str],
        gate: Mapping[int, set[int]] | None = None,
        palette_ids: Mapping[int, int] | None = None,
        queue_frames: int = 0,
    ) -> None:
        self.out = out
        self.info = info
        self.objects = dict(objects)  # id -> reference text
        self.gate = {obj: set(frames) for obj, frames in (gate or {}).items()}  # frames whose mask is removed
        self.removed: dict[int, set[int]] = {obj: set() for obj in self.objects}
        self.palette_ids = dict(palette_ids or {})  # object id -> palette index (default: the id)
        self.multi = len(self.objects) > 1
        (out / "masks").mkdir(parents=True, exist_ok=True)
        self._spool = RleSpool(out)
        size = (info.height, info.width)
        #: object -> frame -> COCO RLE (read back from the spool; a plain dict works too)
        self.rles: dict[int, MutableMapping[int, dict]] = {
            obj: SpooledRles(self._spool, size) for obj in self.objects
        }
        self.area: dict[int, dict[int, int]] = {obj: {} for obj in self.objects}
        #: (a, b), a < b -> frame -> pixels in both masks (frames where they meet): the overlap check
        self.intersections: dict[tuple[int, int], dict[int, int]] = {
            (a, b): {} for a in self.objects for b in self.objects if a < b
        }
        if self.multi or self.palette_ids:
            (out / "palette").mkdir(exist_ok=True)
        if self.multi:
            for obj in self.objects:
                (out / "objects" / str(obj)).mkdir(parents=True, exist_ok=True)
        self.writer = BackgroundWriter(self._write, queue_frames, "mask PNGs") if queue_frames > 0 else None
        self.listeners: list[Callable[[int], None]] = []  # told each frame whose masks are all known

    def frame_bytes(self) -> int:
        """Bytes of masks one queued frame holds (what ``queue_frames`` multiplies)."""
        planes = 1 + (len(self.objects) if self.multi else 0) + (1 if self.multi or self.palette_ids else 0)
        return planes * self.info.height * self.info.width

    def close(self) -> None:
        """Wait until every PNG is written; raises OutputWriteError if one could not be. Masks added
        later (verification replacing an object's masks) are written at once, on the caller's thread."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> MaskSink:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.writer is None:
            return
        if exc_type is None:
            self.writer.close()
        else:
            self.writer.abort()

    def _empty(self) -> np.ndarray:
        return np.zeros((self.info.height, self.info.width), dtype=bool)

    def add(self, frame: int, masks: Mapping[int, np.ndarray]) -> None:
        name = self.info.frame_names[frame]
        union = self._empty()
        palette = np.zeros(union.shape, dtype=np.uint8) if (self.multi or self.palette_ids) else None
        per_object: list[tuple[int, np.ndarray]] = []
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
            if self.multi:  # a copy when queued: the caller may reuse its array
                per_object.append((obj, mask if self.writer is None else mask.copy()))
            if palette is not None:
                palette[mask] = self.palette_ids.get(obj, obj)
        if self.multi:
            self._intersect(frame, per_object)
        item = (name, per_object, union, palette)
        if self.writer is None:
            self._write(item)
        else:
            self.writer.put(item)
        for listener in self.listeners:
            listener(frame)

    def _intersect(self, frame: int, per_object: list[tuple[int, np.ndarray]]) -> None:
        areas = {obj: self.area[obj][frame] for obj, _ in per_object}
        for i, (a, mask_a) in enumerate(per_object):
            for b, mask_b in per_object[i + 1 :]:
                both = int(np.count_nonzero(mask_a & mask_b)) if areas[a] and areas[b] else 0
                if both:
                    self.intersections[(a, b)][frame] = both
                else:
                    self.intersections[(a, b)].pop(frame, None)

    def replace(self, frame: int, masks: Mapping[int, np.ndarray]) -> None:
        """New masks for some objects on ``frame`` (verification re-propagated them, or found the
        target absent); the other objects keep theirs. Every file of the frame is rewritten atomically."""
        current = {obj: rle_to_mask(self.rles[obj][frame]) for obj in self.objects if obj not in masks}
        self.add(frame, current | dict(masks))

    def _write(self, item: tuple[str, list[tuple[int, np.ndarray]], np.ndarray, np.ndarray | None]) -> None:
        name, per_object, union, palette = item
        for obj, mask in per_object:
            write_mask_png(self.out / "objects" / str(obj) / f"{name}.png", mask)
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
        """masks.json, after every PNG is written (it marks the masks finished)."""
        self.close()
        n = self.info.num_frames
        atomic_write_json_stream(  # one frame's RLE in memory at a time
            self.out / "masks.json",
            {
                "format": "coco-rle",
                "size": [self.info.height, self.info.width],
                "frames": list(self.info.frame_names),
                "objects": [
                    {"id": obj, "reference": ref, "masks": map(self.rles[obj].__getitem__, range(n))}
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
    audio: Path | None = None,
) -> None:
    """Second decoding pass: tint every frame with its masks, draw pivot boxes on pivot frames. The
    mp4 keeps the audio track of ``audio`` (a separate file), else the video's own (:func:`overlay_audio`)."""
    info = video.info
    with OverlayWriter(path, info.fps, info.width, info.height, audio=overlay_audio(video, audio)) as writer:
        for index, frame in video.iter_frames():
            writer.add(frame, sink.masks_at(index), boxes=pivot_boxes.get(index, ()))
            if stage is not None:
                stage.advance()


def overlay_audio(video: Video, audio: Path | None = None) -> Path | None:
    """The file whose audio track overlay.mp4 keeps: ``audio`` when the run was given a separate
    one, else the video itself when it has a track (a frames folder has none)."""
    if audio is not None:
        return Path(audio)
    return Path(video.info.path) if video.info.has_audio else None


class OverlayStream:
    """overlay.mp4 made on a thread while the masks arrive (``with OverlayStream(...) as stream``,
    then ``stream.finish()`` once every frame is in the sink).

    A video is encoded in index order, but SAM 2 delivers start+1 .. last first and start .. 0 last.
    So the thread encodes, as their masks arrive, the frames from the first one delivered to the
    end (part A, while the forward propagation goes on), then frames 0 .. first-1 (part B) in
    chunks from the top down, each as soon as its lowest frame is in, while the backward
    propagation goes on: chunk boundaries halve towards frame 0 (first/2, first/4, …, down to
    ``MIN_CHUNK`` frames), so what is left to encode once SAM 2 has finished is the last chunk
    (under 2 × ``MIN_CHUNK`` frames), and the chunks decode the video from its start at most about
    twice over. The parts are joined without re-encoding (``concat_videos``; encoded again in one
    pass if that is refused). It holds one decoded frame at a time; the masks are the sink's RLE.
    The frames are those of ``write_overlay`` (same pixels, same boxes); the file differs from its
    bytes only in where the encoder put keyframes (at the start of each part)."""

    MIN_CHUNK = 16

    def __init__(self, path: Path, video: Video, sink: MaskSink,
                 pivot_boxes: Mapping[int, Sequence[tuple[Sequence[float], str]]],
                 audio: Path | None = None) -> None:  # fmt: skip
        self.path, self.video, self.sink, self.boxes = Path(path), video, sink, pivot_boxes
        self.audio = overlay_audio(video, audio)  # added once the parts are joined
        self._ready: set[int] = set()
        self._order: list[int] = []
        self._cond = threading.Condition()
        self._closing = self._abort = False
        self._error: BaseException | None = None
        self.encoded = 0
        self._parts: list[Path] = []  # the parts written so far, removed on leaving
        self._thread = threading.Thread(target=self._run, name="alref-overlay", daemon=True)

    def __enter__(self) -> OverlayStream:
        self.sink.listeners.append(self._frame_done)
        self._thread.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None or self._thread.is_alive():  # an error, or finish() was not reached
            with self._cond:
                self._abort = True
                self._cond.notify_all()
            self._thread.join()
        self.sink.listeners.remove(self._frame_done)
        for part in self._parts:
            part.unlink(missing_ok=True)

    def _frame_done(self, frame: int) -> None:
        with self._cond:
            if frame not in self._ready:
                self._ready.add(frame)
                self._order.append(frame)
            self._cond.notify_all()

    def finish(self, stage=None) -> None:
        """Wait for the thread (every frame is in the sink now); raise its error, if any."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        reported = 0
        while self._thread.is_alive():
            self._thread.join(timeout=0.2)  # a short wait between progress updates
            if stage is not None:
                stage.advance(self.encoded - reported)
                reported = self.encoded
        if stage is not None:
            stage.advance(self.encoded - reported)
        if self._error is not None:
            raise OutputWriteError(
                f"could not write {self.path.name}: {type(self._error).__name__}: {self._error}"
            ) from self._error

    def _wait_for(self, frame: int) -> bool:
        with self._cond:
            while frame not in self._ready:
                if self._abort:
                    return False
                if self._closing:
                    raise RuntimeError(f"overlay: frame {frame} never got its masks")
                self._cond.wait()
            return not self._abort

    def _part(self, name: str) -> Path:
        path = self.path.with_name(f".{self.path.stem}.{name}{self.path.suffix}")
        if path not in self._parts:
            self._parts.append(path)
        return path

    def _encode(self, path: Path, frames: range, audio: Path | None = None) -> bool:
        info = self.video.info
        # one encoder thread: this runs beside SAM 2, which has the cores
        with OverlayWriter(path, info.fps, info.width, info.height, threads=1, audio=audio) as writer:
            for index, image in self.video.iter_frames(frames):
                if not self._wait_for(index):
                    raise _Aborted
                writer.add(image, self.sink.masks_at(index), boxes=self.boxes.get(index, ()))
                self.encoded += 1
        return True

    def _run(self) -> None:
        n = self.video.info.num_frames
        try:
            with self._cond:
                while not self._order and not self._abort:
                    if self._closing:
                        raise RuntimeError("overlay: no frame got masks")
                    self._cond.wait()
                if self._abort:
                    return
                split = self._order[0]  # the first frame delivered: in order from here to the end
            if split == 0:
                self._encode(self.path, range(n), audio=self.audio)
                return
            self._encode(self._part("a"), range(split, n))
            chunks = backward_chunks(split, self.MIN_CHUNK)
            for i, frames in enumerate(chunks):  # from the top: the order their frames complete in
                self._encode(self._part(f"b{i}"), frames)
            parts = [self._part(f"b{i}") for i in reversed(range(len(chunks)))] + [self._part("a")]
            if not concat_videos(parts, self.path):  # pragma: no cover - same settings, same SPS
                write_overlay(self.path, self.video, self.sink, self.boxes, audio=self.audio)
            elif self.audio is not None:
                add_audio_track(self.path, self.audio)
        except _Aborted:
            pass
        except BaseException as error:  # raised again by finish()
            self._error = error


def backward_chunks(first: int, min_chunk: int) -> list[range]:
    """Frames 0 .. first-1 as ranges from the top down, boundaries halving towards 0 while a chunk
    keeps at least ``min_chunk`` frames: 100, 16 -> [50, 100), [25, 50), [0, 25)."""
    chunks, top = [], first
    while top // 2 >= min_chunk:
        chunks.append(range(top // 2, top))
        top //= 2
    return chunks + [range(0, top)]


class _Aborted(Exception):
    """The run stopped: the overlay thread leaves without writing anything."""
