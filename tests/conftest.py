"""Shared media fixtures, written once per session with tests/synth.py (read-only for tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import synth  # noqa: E402

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def shapes_mp4(media_dir: Path) -> Path:
    """30 frames, 160x120, 10 fps, with a 440 Hz tone (3 s)."""
    return synth.write_shapes_video(media_dir / "shapes.mp4", num_frames=30, width=160, height=120, fps=10)


@pytest.fixture(scope="session", params=VIDEO_SUFFIXES)
def shapes_video(request: pytest.FixtureRequest, media_dir: Path) -> Path:
    """The shapes video in each container (30 frames, 160x120, 10 fps, with audio)."""
    return synth.write_shapes_video(media_dir / f"shapes_all{request.param}")


@pytest.fixture(scope="session")
def silent_mp4(media_dir: Path) -> Path:
    """The shapes video without an audio track."""
    return synth.write_shapes_video(media_dir / "silent.mp4", audio=False)


@pytest.fixture(scope="session")
def shapes_frames_dir(media_dir: Path) -> Path:
    """12 JPEGs frame1.jpg .. frame12.jpg (natural order differs from string order)."""
    return synth.write_frames_folder(media_dir / "frames", num_frames=12)


@pytest.fixture(scope="session")
def speech_wav(media_dir: Path) -> Path:
    """2 s at 16 kHz mono: silence 0-0.5 s, 440 Hz tone 0.5-1.5 s, noise 1.5-2 s."""
    segments = [(0.0, 0.5, "silence"), (0.5, 1.5, "tone:440"), (1.5, 2.0, "noise")]
    return synth.write_wav(media_dir / "speech.wav", seconds=2.0, segments=segments)
