"""Cutting a video into clips and choosing the frames to show from each clip.

Clip ``i`` covers frames ``[i*clip_frames, min((i+1)*clip_frames, num_frames))``; the last clip may
be shorter. Its sampled frames are evenly spaced and include the clip's first and last frame.
All indices in a ``Clip`` are absolute (frame numbers of the whole video, 0-based).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alref.core.records import Clip

__all__ = ["Clip", "make_clips", "middle_clip", "sample_positions"]


def sample_positions(length: int, samples: int) -> list[int]:
    """Offsets inside a clip of ``length`` frames: ``min(samples, length)`` evenly spaced ones,
    first and last included (truncated to int: 23 frames, 5 samples -> 0, 5, 11, 16, 22);
    ``samples=1`` gives the middle frame."""
    if length < 1:
        raise ValueError(f"clip length must be >= 1, got {length}")
    if samples < 1:
        raise ValueError(f"samples per clip must be >= 1, got {samples}")
    if samples == 1:
        return [(length - 1) // 2]
    offsets = np.linspace(0, length - 1, min(samples, length)).astype(int)
    return sorted({int(o) for o in offsets})


def make_clips(num_frames: int, clip_frames: int = 50, samples: int = 5) -> list[Clip]:
    """Consecutive clips of ``clip_frames`` frames covering ``num_frames``, with sampled frames."""
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got num_frames={num_frames}")
    if clip_frames < 1:
        raise ValueError(f"clip length must be >= 1 frame, got clip_frames={clip_frames}")
    clips = []
    for index, start in enumerate(range(0, num_frames, clip_frames)):
        end = min(start + clip_frames, num_frames)
        offsets = sample_positions(end - start, samples)
        clips.append(Clip(index=index, start=start, end=end, samples=[start + o for o in offsets]))
    return clips


def middle_clip(clips: Sequence[Clip]) -> Clip:
    """The clip propagation starts from: ``clips[(len(clips) - 1) // 2]``."""
    if not clips:
        raise ValueError("no clips")
    return clips[(len(clips) - 1) // 2]
