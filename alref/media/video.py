"""Video input: a video file (read with PyAV) or a folder of JPEG/PNG frames.

``open_video`` reads only metadata; frames are decoded on demand, one at a time, in order.
Memory: one RGB uint8 frame takes H*W*3 bytes (480p 0.9 MB, 720p 2.6 MB, 1080p 6.2 MB, 4K 24.9 MB),
so a 1000-frame 1080p video would need 6 GB if held at once; nothing here holds more than one frame
(plus those a caller of ``read_frames`` asks for). ``max_side`` shrinks frames as they are decoded.

Frame counts of files come from demuxing the video stream's packets (no decoding), which is exact
for every container we write and fast; decoding must then produce exactly that many frames, else the
stream is corrupt. A display rotation (phone videos) is applied, so width/height are as displayed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av
import cv2
import numpy as np
from PIL import Image

from alref.errors import MediaError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
DEFAULT_FRAMES_FPS = 24.0
_EXPECTED = "expected mp4, mov, mkv, webm, avi or a folder of JPEG/PNG frames"


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a video without decoding it."""

    path: Path
    kind: Literal["file", "frames"]
    fps: float
    width: int
    height: int
    num_frames: int
    frame_names: tuple[str, ...]
    has_audio: bool

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "num_frames": self.num_frames,
            "duration": round(self.duration, 3),
            "has_audio": self.has_audio,
        }


def _one_line(error: BaseException) -> str:
    """The error's text on one line, without PyAV's "[Errno N]" prefix."""
    text = getattr(error, "strerror", None) or str(error)
    return " ".join(str(text).split()) or type(error).__name__


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key: "frame2" before "frame10" (digit runs compare as numbers)."""
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def fit_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) scaled down so the longer side is <= ``max_side``; never scaled up."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_max_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    height, width = image.shape[:2]
    size = fit_size(width, height, max_side)
    if size == (width, height):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _video_stream(container: Any) -> Any:
    """The first real video stream (not an album-cover picture inside an audio file), or None."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _rotate(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a counter-clockwise display rotation (degrees, multiple of 90)."""
    k = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


class Video:
    """A readable video. Holds only metadata; every read decodes from the start, once."""

    def __init__(self, info: VideoInfo, files: tuple[Path, ...] = (), rotation: int = 0) -> None:
        self.info = info
        self._files = files
        self._rotation = rotation

    def __repr__(self) -> str:
        i = self.info
        return f"Video({str(i.path)!r}, {i.num_frames} frames, {i.width}x{i.height}, {i.fps:g} fps)"

    def iter_frames(
        self, indices: Iterable[int] | None = None, max_side: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (index, RGB uint8 HxWx3) in increasing order, for all frames or ``indices``."""
        n = self.info.num_frames
        wanted = None if indices is None else sorted({int(i) for i in indices})
        if wanted is not None:
            bad = [i for i in wanted if not 0 <= i < n]
            if bad:
                raise IndexError(
                    f"frame {bad[0]} is out of range: {self.info.path} has {n} frames (0..{n - 1})"
                )
            if not wanted:
                return
        frames = self._iter_folder(wanted) if self.info.kind == "frames" else self._iter_file(wanted)
        for index, image in frames:
            yield index, resize_max_side(image, max_side)

    def read_frames(self, indices: Iterable[int]) -> dict[int, np.ndarray]:
        return dict(self.iter_frames(indices))

    def read_frame(self, index: int) -> np.ndarray:
        return self.read_frames([index])[index]

    def _iter_folder(self, wanted: list[int] | None) -> Iterator[tuple[int, np.ndarray]]:
        for index in wanted if wanted is not None else range(self.info.num_frames):
            image = _read_image(self._files[index])
            if image.shape[:2] != (self.info.height, self.info.width):
                raise MediaError(
                    f"frames of different sizes in {self.info.path}: {self._files[index].name} is "
                    f"{image.shape[1]}x{image.shape[0]}, expected {self.info.width}x{self.info.height}; "
                    "resize the frames to one size"
                )
            yield index, image

    def _iter_file(self, wanted: list[int] | None) -> Iterator[tuple[int, np.ndarray]]:
        n = self.info.num_frames
        last = n - 1 if wanted is None else wanted[-1]
        todo = None if wanted is None else set(wanted)
        decoded = 0
        try:
            with av.open(str(self.info.path)) as container:
                stream = _video_stream(container)
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    index = decoded
                    decoded += 1
                    if todo is None or index in todo:
                        yield index, _rotate(frame.to_ndarray(format="rgb24"), self._rotation)
                    if index >= last:
                        return
        except av.FFmpegError as error:
            raise MediaError(
                f"corrupt video stream in {self.info.path}: decoded {decoded} of {n} frames "
                f"({_one_line(error)}); re-encode the file or extract its frames to a folder"
            ) from error
        raise MediaError(
            f"corrupt video stream in {self.info.path}: decoded {decoded} of {n} frames; "
            "re-encode the file or extract its frames to a folder"
        )


def open_video(path: str | Path, fps: float | None = None) -> Video:
    """Open a video file or a folder of frames; ``fps`` sets a folder's frame rate (default 24)
    and is ignored for files, whose stream rate is used.

    Raises MediaError for anything that cannot be read as a video.
    """
    path = Path(path).expanduser()
    if fps is not None and not fps > 0:
        raise MediaError(f"bad frame rate {fps}: fps must be a positive number")
    if not path.exists():
        raise MediaError(f"no such file or folder: {path} ({_EXPECTED})")
    if path.is_dir():
        return _open_folder(path, fps or DEFAULT_FRAMES_FPS)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise MediaError(
            f"not a video: {path} is a single image; put the frames in a folder and pass the folder"
        )
    return _open_file(path)


def _read_image(file: Path) -> np.ndarray:
    try:
        with Image.open(file) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise MediaError(
            f"unreadable frame {file}: {_one_line(error)}; replace or remove the file"
        ) from error


def _open_folder(path: Path, fps: float) -> Video:
    files = sorted(
        (f for f in path.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")),
        key=lambda f: natural_key(f.stem),
    )
    if not files:
        raise MediaError(f"no frames in {path}: the folder has no .jpg, .jpeg or .png files ({_EXPECTED})")
    stems = [f.stem for f in files]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise MediaError(f"two frames named {dup!r} in {path} (different extensions); keep one of them")
    height, width = _read_image(files[0]).shape[:2]
    for file in files[1:]:
        try:
            with Image.open(file) as im:
                size = im.size
        except (OSError, ValueError) as error:
            raise MediaError(
                f"unreadable frame {file}: {_one_line(error)}; replace or remove the file"
            ) from error
        if size != (width, height):
            raise MediaError(
                f"frames of different sizes in {path}: {files[0].name} is {width}x{height} but "
                f"{file.name} is {size[0]}x{size[1]}; resize the frames to one size"
            )
    info = VideoInfo(path, "frames", float(fps), width, height, len(files), tuple(stems), False)
    return Video(info, tuple(files))


def _open_file(path: Path) -> Video:
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container)
            if stream is None:
                raise MediaError(f"not a video: {path} has no video stream ({_EXPECTED})")
            has_audio = bool(container.streams.audio)
            rate = stream.average_rate or stream.guessed_rate or 25
            header_frames = stream.frames
            packets = frames = 0
            for packet in container.demux(stream):
                if packet.dts is None and not packet.size:
                    continue  # the flush packet PyAV yields at the end
                packets += 1
                frames += bool(packet.size)
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError) as error:
        raise MediaError(
            f"not a video: {path} cannot be read ({_one_line(error)}; damaged or truncated?) ({_EXPECTED})"
        ) from error
    if frames == 0:
        raise MediaError(f"no frames in {path}: the video stream is empty; pass a video with frames")
    if header_frames and packets < header_frames:
        raise MediaError(
            f"corrupt video stream in {path}: the file holds {packets} of its {header_frames} frames "
            "(truncated?); download or copy it again"
        )
    try:
        with av.open(str(path)) as container:
            first = next(container.decode(_video_stream(container)), None)
    except (av.FFmpegError, OSError, ValueError) as error:
        first, detail = None, f" ({_one_line(error)})"
    else:
        detail = ""
    if first is None:
        raise MediaError(
            f"corrupt video stream in {path}: its first frame does not decode{detail}; "
            "re-encode the file or extract its frames to a folder"
        )
    rotation = int(first.rotation or 0)
    width, height = first.width, first.height
    if round(rotation / 90) % 2:
        width, height = height, width
    digits = max(5, len(str(frames - 1)))
    names = tuple(f"{i:0{digits}d}" for i in range(frames))
    info = VideoInfo(path, "file", float(rate), width, height, frames, names, has_audio)
    return Video(info, rotation=rotation)
