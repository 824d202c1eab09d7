"""Audio input: the audio track of a video file, or an audio file, as 16 kHz mono float32.

One second of 16 kHz float32 audio is 64 KB, so a whole track is held in memory (10 min = 38 MB).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from alref.errors import MediaError, NoAudioError

SAMPLE_RATE = 16000
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".m4a", ".ogg", ".aac")
_HINT = "pass a separate file with --audio PATH"


def _one_line(error: BaseException) -> str:
    """The error's text on one line, without PyAV's "[Errno N]" prefix."""
    text = getattr(error, "strerror", None) or str(error)
    return " ".join(str(text).split()) or type(error).__name__


def _check_path(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"no such file or folder: {path} (expected an audio file or a video with sound)")
    if path.is_dir():
        raise NoAudioError(f"{path} is a folder of frames and has no audio track; {_HINT}")


def has_audio(path: str | Path) -> bool:
    """True when ``path`` is a readable file with at least one audio stream."""
    path = Path(path).expanduser()
    if not path.is_file():
        return False
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, OSError, ValueError):
        return False


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream of ``path`` to mono float32 in [-1, 1] at ``sample_rate`` Hz.

    Raises NoAudioError when there is no audio stream, MediaError when the file cannot be read.
    """
    path = Path(path).expanduser()
    _check_path(path)
    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise NoAudioError(f"{path} has no audio track; {_HINT}")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            for frame in container.decode(stream):
                frame.pts = None  # let the resampler count samples; odd timestamps must not drop audio
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError) as error:
        raise MediaError(
            f"unreadable audio in {path}: {_one_line(error)} (expected {', '.join(AUDIO_EXTENSIONS)} "
            "or a video with sound)"
        ) from error
    if not chunks:
        raise NoAudioError(f"{path} has an empty audio track; {_HINT}")
    samples = np.concatenate(chunks).astype(np.float32, copy=False)
    return np.clip(samples, -1.0, 1.0)
