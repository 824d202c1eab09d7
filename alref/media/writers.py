"""Writing results: atomic files, mask PNGs (binary and palette), COCO RLE, and overlay videos.

Every writer goes through a temporary file in the target folder and ``os.replace``, so a reader (or
a rerun that skips finished work) never sees a half-written file. :class:`BackgroundWriter` runs
writes on one thread behind a bounded queue, so a producer (SAM 2's propagation) is not held up by
them and memory stays bounded by what the queue may hold.
"""

from __future__ import annotations

import io
import json
import os
import queue
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from alref.errors import AlrefError
from alref.media.boxes import colour_for, default_thickness, draw_outlined_boxes


class OutputWriteError(AlrefError):
    """An output file could not be written (disk full, no permission): nothing was marked finished."""


_STOP = object()


class BackgroundWriter:
    """Runs ``write(item)`` for every ``put(item)``, in order, on one thread.

    At most ``max_pending`` items wait in the queue (plus the one being written): ``put`` blocks
    while it is full, which bounds memory to what that many items hold. The first error raised by
    ``write`` is raised again, as :class:`OutputWriteError` naming ``what``, by the next ``put`` or
    by ``close``; items after it are dropped, so the caller stops before marking anything finished.
    Use as a context manager: a clean exit waits for every write (``close``); an exception drops
    the pending items and stops the thread without hiding that exception. ``on_full`` (tests) is
    called once each time a ``put`` has to wait."""

    def __init__(
        self,
        write: Callable[[Any], None],
        max_pending: int,
        what: str = "outputs",
        on_full: Callable[[], None] | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self._write = write
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._what = what
        self._on_full = on_full
        self._error: BaseException | None = None
        self._drop = False
        self._closed = False
        self.written = 0
        self._thread = threading.Thread(target=self._run, name=f"alref-writer-{what}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is None and not self._drop:
                try:
                    self._write(item)
                    self.written += 1
                except BaseException as error:  # raised again in the caller's thread
                    self._error = error

    def _raise_if_failed(self) -> None:
        error = self._error
        if error is not None:
            raise OutputWriteError(
                f"could not write the {self._what}: {type(error).__name__}: {error}; check the output "
                "folder's free space and permissions, then rerun (nothing was marked finished)"
            ) from error

    def put(self, item: Any) -> None:
        if self._closed:
            raise RuntimeError("BackgroundWriter.put() after close()")
        self._raise_if_failed()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            if self._on_full is not None:
                self._on_full()
            self._queue.put(item)

    def close(self) -> None:
        """Wait for every queued write; raise the writer's error, if any."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()
        self._raise_if_failed()

    def abort(self) -> None:
        """Drop what is still queued and stop the thread (the write in progress completes)."""
        self._drop = True
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_write_json_stream(path: Path, obj: Any) -> None:
    """``atomic_write_json``'s text, the same bytes, written piece by piece: any iterable that is not a
    str, bytes or mapping (a generator included) is written as an array, one item at a time, so a
    document of many large items (masks.json's RLE per frame) is never one string in memory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            for piece in _json_pieces(obj, 0):
                f.write(piece)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_pieces(value: Any, depth: int) -> Any:
    """``json.dumps(value, indent=2, ensure_ascii=False)`` as pieces (str keys only)."""
    if isinstance(value, str | bytes | int | float | bool) or value is None:
        yield json.dumps(value, ensure_ascii=False)
        return
    inner, outer = "\n" + "  " * (depth + 1), "\n" + "  " * depth
    if isinstance(value, Mapping):
        if not value:
            yield "{}"
            return
        for i, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"a streamed JSON object's keys are str, got {key!r}")
            yield ("{" if i == 0 else ",") + inner + json.dumps(key, ensure_ascii=False) + ": "
            yield from _json_pieces(item, depth + 1)
        yield outer + "}"
        return
    empty = True
    for item in value:
        yield ("[" if empty else ",") + inner
        empty = False
        yield from _json_pieces(item, depth + 1)
    yield "[]" if empty else outer + "]"


def write_jpeg(path: Path, image: np.ndarray, quality: int = 92) -> str:
    """An RGB uint8 image as a JPEG file (atomically); returns the path as a string."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return str(path)


def save_samples(frames: Mapping[int, np.ndarray], path_of: Any) -> None:
    """Sampled frames as JPEG files (``path_of(frame)`` names each; existing files are kept): the
    agent's images are referenced by path, never held in state."""
    for index, frame in frames.items():
        path = Path(path_of(index))
        if not path.is_file():
            write_jpeg(path, frame, quality=95)


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_mask_png(path: Path, mask: np.ndarray) -> None:
    """A binary HxW mask (bool or 0/1) as an 8-bit grey PNG with values 0 and 255."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be HxW, got shape {mask.shape}")
    atomic_write_bytes(path, _png_bytes(Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8))))


def davis_palette() -> list[int]:
    """The DAVIS / PASCAL VOC palette: 256 RGB triples flattened (0 black, 1 (128,0,0), 2 (0,128,0)...)."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


def write_palette_png(path: Path, labels: np.ndarray, palette: list[int] | None = None) -> None:
    """An HxW map of object indices (0..255) as a palette ('P') PNG, DAVIS palette by default."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"a label map must be HxW, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"label values must be 0..255, got {labels.min()}..{labels.max()}")
    height, width = labels.shape
    image = Image.frombytes("P", (width, height), np.ascontiguousarray(labels, dtype=np.uint8).tobytes())
    image.putpalette(palette or davis_palette())
    atomic_write_bytes(path, _png_bytes(image))


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of a binary HxW mask: {"size": [h, w], "counts": str}."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be HxW, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray((mask > 0).astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (counts as str or bytes) to a bool HxW mask."""
    counts = rle["counts"]
    coded = {
        "size": list(rle["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }
    with warnings.catch_warnings():  # pycocotools' Cython array predates numpy 2's copy= keyword
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return mask_utils.decode(coded).astype(bool)


def render_overlay(
    frame: np.ndarray,
    masks: Mapping[int, np.ndarray] | None = None,
    boxes: Sequence[tuple[Sequence[float], str]] = (),
    alpha: float = 0.5,
) -> np.ndarray:
    """One RGB frame with each object's mask tinted (and outlined) in ``colour_for(id - 1)`` and
    the (xyxy, label) boxes drawn, box i in ``colour_for(i)``. Used by overlay.mp4 and previews.

    The tint is computed in float32 over the masks' bounding rectangle only (the rest of the frame
    is copied as it is), so its cost follows the objects' size, not the frame's; the pixels are
    those of tinting the whole frame (tested)."""
    binary = []
    for obj_id, mask in (masks or {}).items():
        m = np.asarray(mask) > 0
        if m.shape != frame.shape[:2]:
            raise ValueError(f"mask of object {obj_id} is {m.shape}, the frame is {frame.shape[:2]}")
        binary.append((obj_id, m))
    out = np.array(frame, dtype=np.uint8, copy=True)
    outlines = []
    union = np.logical_or.reduce([m for _, m in binary]) if binary else None
    if union is not None and union.any():
        rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
        crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        image = out[crop].astype(np.float32)
        blend = np.empty_like(image)
        for obj_id, m in binary:  # a dense blend and a masked copy, in place: a scattered mask costs
            # what a solid one does; the colour as a whole row and the mask per channel, since numpy
            # is slow on a broadcast axis of 3
            row = np.tile(np.array(colour_for(obj_id - 1)[1], np.float32) * alpha, (image.shape[1], 1))
            np.multiply(image, 1 - alpha, out=blend)
            blend += row
            np.copyto(image, blend, where=np.repeat(m[crop][..., None], 3, axis=2))
        image += 0.5
        np.clip(image, 0, 255, out=image)
        out[crop] = image  # cast to uint8 as astype does (truncation)
    for obj_id, m in binary:
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        outlines.append((contours, colour_for(obj_id - 1)[1]))
    thickness = default_thickness(frame.shape[1], frame.shape[0])
    for contours, rgb in outlines:
        cv2.drawContours(out, contours, -1, rgb, thickness)
    if boxes:
        canvas = Image.fromarray(out)
        draw_outlined_boxes(canvas, [(box, label, colour_for(i)[1]) for i, (box, label) in enumerate(boxes)])
        out = np.array(canvas)
    return out


class OverlayWriter:
    """An H.264 mp4 of frames with tinted masks, contours and labelled boxes. Use as a context manager:
    the file appears under ``path`` only when the block ends without an exception."""

    def __init__(
        self, path: Path, fps: float, width: int, height: int, alpha: float = 0.5, threads: int | None = None,
        audio: Path | None = None,
    ) -> None:  # fmt: skip
        if fps <= 0 or width < 1 or height < 1:
            raise ValueError(f"bad overlay video settings: fps={fps}, size={width}x{height}")
        self.path = Path(path)
        self.width, self.height, self.alpha = width, height, float(alpha)
        self.fps = Fraction(fps).limit_denominator(10000)
        self.frames = 0
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self.threads = threads  # encoder threads (None: the encoder's own choice)
        self.audio = audio  # a file whose first audio track the mp4 keeps (see add_audio_track)
        self._container: Any = None
        self._stream: Any = None

    def __enter__(self) -> OverlayWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self._tmp), "w")
        stream = self._container.add_stream("libx264", rate=self.fps)
        stream.width, stream.height = self.width + self.width % 2, self.height + self.height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"} | (
            {"threads": str(self.threads)} if self.threads else {}
        )
        self._stream = stream
        return self

    def add(
        self,
        frame: np.ndarray,
        masks: Mapping[int, np.ndarray] | None = None,
        boxes: Sequence[tuple[Sequence[float], str]] = (),
    ) -> None:
        """Add one RGB frame; ``masks`` maps object id (1-based) to a HxW mask, tinted in
        ``colour_for(id - 1)``; ``boxes`` are (xyxy, label) pairs, box i in ``colour_for(i)``."""
        if self._container is None:
            raise RuntimeError("OverlayWriter.add() outside its `with` block")
        if frame.shape != (self.height, self.width, 3):
            raise ValueError(f"frame is {frame.shape}, the overlay expects ({self.height}, {self.width}, 3)")
        out = render_overlay(frame, masks, boxes, self.alpha)
        if out.shape[:2] != (self._stream.height, self._stream.width):
            out = np.pad(out, ((0, self.height % 2), (0, self.width % 2), (0, 0)))
        video_frame = av.VideoFrame.from_ndarray(out, format="rgb24")
        video_frame.pts = self.frames
        video_frame.time_base = 1 / self.fps
        self._container.mux(self._stream.encode(video_frame))
        self.frames += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        container, self._container = self._container, None
        if container is None:
            return
        if exc_type is not None:
            self._discard(container)
            return
        try:
            if self.frames == 0:
                raise ValueError(f"no frames were added to the overlay video {self.path}")
            container.mux(self._stream.encode(None))
            container.close()
            if self.audio is not None:
                add_audio_track(self._tmp, self.audio)
        except BaseException:
            self._discard(container)
            raise
        os.replace(self._tmp, self.path)

    def _discard(self, container: Any) -> None:
        try:
            container.close()
        except Exception:  # closing a broken encoder: the original error is the one to report
            pass
        self._tmp.unlink(missing_ok=True)


#: audio codecs the mp4 muxer takes as they are; any other track (PCM from a WAV, Vorbis) becomes AAC
MP4_AUDIO = {"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3"}


def add_audio_track(path: Path, source: Path) -> bool:
    """Give the video-only mp4 at ``path`` the first audio track of ``source`` (a video or an audio
    file), in place and atomically: the video packets are copied as they are; the audio is copied
    when mp4 takes its codec, else encoded as AAC. Audio past the video's end is cut. Returns False,
    changing nothing, when ``source`` has no audio track."""
    path, source = Path(path), Path(source)
    tmp = path.with_name(f".{path.stem}.audio{path.suffix or '.mp4'}")
    with av.open(str(source)) as src:
        if not src.streams.audio:
            return False
        a_in = src.streams.audio[0]
        try:
            with av.open(str(path)) as vid, av.open(str(tmp), "w") as out:
                v_in = vid.streams.video[0]
                v_out = out.add_stream_from_template(v_in)  # every stream before the first packet
                copy = a_in.codec_context.name in MP4_AUDIO
                rate = a_in.codec_context.sample_rate or 48000
                a_out = out.add_stream_from_template(a_in) if copy else out.add_stream("aac", rate=rate)
                end = Fraction(0)
                for packet in vid.demux(v_in):
                    if packet.dts is None:
                        continue
                    end = max(end, (packet.pts + (packet.duration or 0)) * v_in.time_base)
                    packet.stream = v_out
                    out.mux(packet)
                if copy:
                    _copy_audio(src, a_in, a_out, out, end)
                else:
                    _encode_audio(src, a_in, a_out, out, int(end * rate))
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return True


def _copy_audio(src: Any, a_in: Any, a_out: Any, out: Any, end: Fraction) -> None:
    """The packets of ``a_in`` that start before ``end`` seconds, into ``a_out`` as they are."""
    for packet in src.demux(a_in):
        if packet.dts is None or packet.pts is None:
            continue
        if (packet.pts - (a_in.start_time or 0)) * a_in.time_base >= end:
            break
        packet.stream = a_out
        out.mux(packet)


def _encode_audio(src: Any, a_in: Any, a_out: Any, out: Any, limit: int) -> None:
    """The first ``limit`` samples of ``a_in`` (about; whole frames) encoded into ``a_out``."""
    resampler = av.AudioResampler(
        format=a_out.codec_context.codec.audio_formats[0].name,
        layout=a_in.codec_context.layout.name or "mono",
        rate=a_out.codec_context.sample_rate,
    )
    written = 0
    for frame in src.decode(a_in):
        if written >= limit:
            break
        frame.pts = None
        for piece in resampler.resample(frame):
            written += piece.samples
            out.mux(a_out.encode(piece))
    for piece in resampler.resample(None):
        out.mux(a_out.encode(piece))
    out.mux(a_out.encode(None))


def concat_videos(parts: Sequence[Path], path: Path) -> bool:
    """Join H.264 mp4 files written by :class:`OverlayWriter` with the same settings into ``path``
    (atomically), copying their packets without re-encoding. Returns False, writing nothing, when
    the parts' encoder parameters (size, SPS/PPS) differ, so that the caller encodes again."""
    sources = [av.open(str(p)) for p in parts]
    tmp = path.with_name(f".{path.stem}.partial{path.suffix or '.mp4'}")
    try:
        streams = [s.streams.video[0] for s in sources]
        first = streams[0].codec_context
        if any(
            (s.codec_context.width, s.codec_context.height, s.codec_context.extradata)
            != (first.width, first.height, first.extradata)
            for s in streams
        ):
            return False
        with av.open(str(tmp), "w") as out:
            target = out.add_stream_from_template(streams[0])
            offset = Fraction(0)  # seconds already written
            for source, stream in zip(sources, streams, strict=True):
                shift = int(round(offset / stream.time_base))
                end = offset
                for packet in source.demux(stream):
                    if packet.dts is None:  # the demuxer's final empty packet
                        continue
                    duration = packet.duration or 0
                    end = max(end, offset + (packet.pts + duration) * stream.time_base)
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = target
                    out.mux(packet)
                offset = end
        os.replace(tmp, path)
        return True
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        for source in sources:
            source.close()
