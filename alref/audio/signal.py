"""Plain signal helpers shared by the audio tools and the sound-event logic (numpy and PyAV, no models).

Every per-window computation in alref (tagger scores, CLAP embeddings, the energy gate) uses the same
window grid, :func:`window_times`, so their i-th entries describe the same stretch of audio.
"""

from __future__ import annotations

import math

import av
import numpy as np

from alref.errors import NoAudioError

__all__ = ["MIN_LAST_WINDOW_S", "as_mono", "resample", "rms_db", "window_times"]

#: a last, partial window shorter than this is dropped (its few samples belong to no window)
MIN_LAST_WINDOW_S = 0.25


def as_mono(waveform: np.ndarray) -> np.ndarray:
    """``waveform`` as 1-D float32: a 2-D array (channels first or last) is averaged over channels.

    Raises NoAudioError for an empty array and ValueError for one with more than two dimensions.
    """
    samples = np.asarray(waveform)
    if samples.ndim == 2:  # the shorter axis holds the channels
        samples = samples.mean(axis=0 if samples.shape[0] <= samples.shape[1] else 1)
    if samples.ndim != 1:
        raise ValueError(f"audio must be a 1-D array of samples (mono), got shape {samples.shape}")
    if samples.size == 0:
        raise NoAudioError("the audio is empty (0 samples); give audio that is at least a few samples long")
    samples = samples.astype(np.float32, copy=False)
    if not np.all(np.isfinite(samples)):
        samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    return samples


def resample(waveform: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample mono float32 audio with libswresample (PyAV); the output has round(n * to / from) samples."""
    samples = as_mono(waveform)
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive (got {from_rate} and {to_rate})")
    if from_rate == to_rate:
        return samples
    frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
    frame.sample_rate = from_rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=to_rate)
    chunks = [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
    chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    out = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    expected = round(len(samples) * to_rate / from_rate)
    if len(out) < expected:  # the resampler holds back a few samples of very short inputs
        out = np.pad(out, (0, expected - len(out)))
    return out[:expected].astype(np.float32, copy=False)


def window_times(
    duration_s: float, window_s: float, min_last_s: float = MIN_LAST_WINDOW_S
) -> list[tuple[float, float]]:
    """Consecutive windows ``[i * window_s, (i + 1) * window_s)`` over ``[0, duration_s]``.

    The last window may be shorter; it is kept when it lasts at least ``min_last_s`` seconds, or when it
    is the only window (audio shorter than ``min_last_s`` still gets one window).
    """
    if not window_s > 0:
        raise ValueError(f"window_s must be positive, got {window_s}")
    if not duration_s > 0:
        return []
    count = max(1, math.ceil(duration_s / window_s - 1e-9))
    windows = [(round(i * window_s, 9), min(round((i + 1) * window_s, 9), duration_s)) for i in range(count)]
    if len(windows) > 1 and windows[-1][1] - windows[-1][0] < min_last_s - 1e-9:
        windows.pop()
    return windows


def rms_db(samples: np.ndarray) -> float:
    """RMS level in dBFS (1.0 = full scale): a full-scale sine is about -3 dB, digital silence -200 dB."""
    if samples.size == 0:
        return -200.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20.0 * math.log10(max(rms, 1e-10))
