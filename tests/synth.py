"""Synthetic media for tests: tiny videos, frame folders, sounds and broken files.

Plain functions (not fixtures); each writes to the given path and returns it. Shapes move as a known
function of the frame index, so tests can check pixels: a red square slides left to right along the
top, a blue circle slides right to left along the bottom.
"""

from __future__ import annotations

import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

RED = (255, 0, 0)
BLUE = (0, 0, 255)

# container suffix -> (video codec, audio codec or None)
CODECS: dict[str, tuple[str, str | None]] = {
    ".mp4": ("libx264", "aac"),
    ".mov": ("libx264", "aac"),
    ".mkv": ("libx264", "flac"),
    ".webm": ("libvpx-vp9", "libopus"),
    ".avi": ("mpeg4", "pcm_s16le"),
}


def red_square_box(i: int, num_frames: int, width: int, height: int) -> tuple[int, int, int, int]:
    """xyxy (x1, y1 exclusive) of the red square in frame ``i``."""
    side = max(4, height // 4)
    x0 = round((width - side) * i / max(1, num_frames - 1))
    y0 = height // 10
    return x0, y0, x0 + side, y0 + side


def blue_circle_centre(i: int, num_frames: int, width: int, height: int) -> tuple[int, int, int]:
    """(cx, cy, radius) of the blue circle in frame ``i``."""
    r = max(2, height // 8)
    cx = round(width - r - (width - 2 * r) * i / max(1, num_frames - 1))
    return cx, (3 * height) // 4, r


def shapes_frame(i: int, num_frames: int, width: int, height: int) -> np.ndarray:
    """RGB uint8 frame ``i``: black background, red square, blue circle."""
    img = np.zeros((height, width, 3), np.uint8)
    x0, y0, x1, y1 = red_square_box(i, num_frames, width, height)
    img[y0:y1, x0:x1] = RED
    cx, cy, r = blue_circle_centre(i, num_frames, width, height)
    yy, xx = np.mgrid[0:height, 0:width]
    img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = BLUE
    return img


def tone(seconds: float, sample_rate: int, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _add_audio_stream(container: av.container.OutputContainer, codec: str, rate: int) -> av.AudioStream:
    stream = container.add_stream(codec, rate=rate)
    stream.layout = "mono"
    stream.format = stream.codec_context.codec.audio_formats[0].name
    return stream


def _encode_audio(
    container: av.container.OutputContainer, stream: av.AudioStream, samples: np.ndarray
) -> None:
    rate, fmt = stream.codec_context.sample_rate, stream.format.name
    size = stream.codec_context.frame_size or 1024
    resampler = av.AudioResampler(format=fmt, layout="mono", rate=rate)
    for start in range(0, len(samples), size):
        chunk = samples[start : start + size]
        if stream.codec_context.frame_size and len(chunk) < size:
            chunk = np.pad(chunk, (0, size - len(chunk)))
        frame = av.AudioFrame.from_ndarray(chunk[None, :].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        for out in resampler.resample(frame):
            container.mux(stream.encode(out))
    container.mux(stream.encode(None))


def write_shapes_video(
    path: str | Path,
    num_frames: int = 30,
    width: int = 160,
    height: int = 120,
    fps: float = 10,
    audio: bool = True,
    sample_rate: int = 16000,
    silent_from: float | None = None,
    silent_to: float | None = None,
    rotation: int = 0,
    faststart: bool = False,
) -> Path:
    """A video of moving shapes with a 440 Hz tone (silent between ``silent_from``..``silent_to`` s)."""
    path = Path(path)
    vcodec, acodec = CODECS[path.suffix.lower()]
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(vcodec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        astream = _add_audio_stream(container, acodec, sample_rate) if audio and acodec else None
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(shapes_frame(i, num_frames, width, height), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if astream is not None:
            samples = tone(num_frames / fps, sample_rate)
            if silent_from is not None:
                lo = round(silent_from * sample_rate)
                hi = len(samples) if silent_to is None else round(silent_to * sample_rate)
                samples[lo:hi] = 0.0
            _encode_audio(container, astream, samples)
    return path


def write_frames_folder(
    dir: str | Path,
    num_frames: int = 12,
    width: int = 160,
    height: int = 120,
    ext: str = ".jpg",
    names: list[str] | None = None,
) -> Path:
    """A folder of frames ``frame1.jpg`` .. ``frameN.jpg`` (or ``names``, stems without suffix)."""
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    stems = names or [f"frame{i + 1}" for i in range(num_frames)]
    for i, stem in enumerate(stems):
        Image.fromarray(shapes_frame(i, len(stems), width, height)).save(dir / f"{stem}{ext}", quality=95)
    return dir


def write_wav(
    path: str | Path,
    seconds: float = 2.0,
    sample_rate: int = 16000,
    channels: int = 1,
    segments: list[tuple[float, float, str]] | None = None,
    amplitude: float = 0.5,
) -> Path:
    """16-bit PCM wav; ``segments`` = (start_s, end_s, "tone:440" | "noise" | "silence"), else a tone."""
    path = Path(path)
    n = round(seconds * sample_rate)
    signal = np.zeros(n, np.float32)
    rng = np.random.default_rng(0)
    for start, end, kind in segments or [(0.0, seconds, "tone:440")]:
        lo, hi = round(start * sample_rate), min(n, round(end * sample_rate))
        if kind.startswith("tone:"):
            t = np.arange(lo, hi) / sample_rate
            signal[lo:hi] = amplitude * np.sin(2 * np.pi * float(kind[5:]) * t)
        elif kind == "noise":
            signal[lo:hi] = rng.uniform(-amplitude, amplitude, hi - lo)
        elif kind != "silence":
            raise ValueError(f"unknown segment kind {kind!r}")
    pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(np.repeat(pcm[:, None], channels, axis=1).tobytes())
    return path


def write_text_as_video(path: str | Path) -> Path:
    path = Path(path)
    path.write_text("this is not a video\n" * 20)
    return path


def write_truncated_video(path: str | Path, faststart: bool = False) -> Path:
    """A valid mp4 cut in half (without faststart the index, at the end, is lost)."""
    path = Path(path)
    full = path.with_name(path.stem + ".full.mp4")
    write_shapes_video(full, num_frames=30, audio=False, faststart=faststart)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_zero_frame_video(path: str | Path) -> Path:
    """A container with a video stream and no packets. Use an .avi name: the mp4 and mkv muxers
    drop a stream that never got a packet (mp4) or write a file that does not open (mkv)."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    return path


def write_empty_folder(dir: str | Path) -> Path:
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    return dir


def write_corrupt_frames_folder(dir: str | Path, first: bool = True) -> Path:
    """Four frames, one broken: ``first`` -> frame1.jpg is garbage (no image header);
    otherwise frame4.jpg is cut in half (its header reads, its pixels do not decode)."""
    dir = write_frames_folder(dir, num_frames=4)
    if first:
        (dir / "frame1.jpg").write_bytes(b"\xff\xd8 not really a jpeg" * 10)
    else:
        victim = dir / "frame4.jpg"
        data = victim.read_bytes()
        victim.write_bytes(data[: len(data) // 2])
    return dir


def write_mixed_size_folder(dir: str | Path) -> Path:
    """Three frames of 160x120 and one of 80x60."""
    dir = write_frames_folder(dir, num_frames=3)
    Image.fromarray(shapes_frame(0, 1, 80, 60)).save(dir / "frame4.jpg")
    return dir
