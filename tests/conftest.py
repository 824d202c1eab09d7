"""Shared media fixtures, written once per session with tests/synth.py (read-only for tests)."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import synth  # noqa: E402

# No test reads the user's caches or config, and none can reach the Hugging Face Hub. Set at import
# time: huggingface_hub reads HF_HOME / HF_HUB_OFFLINE when it is first imported.
_ENV_ROOT = Path(tempfile.mkdtemp(prefix="alref-tests-"))
atexit.register(shutil.rmtree, _ENV_ROOT, True)
os.environ["ALREF_CACHE_DIR"] = str(_ENV_ROOT / "alref-cache")
os.environ["HF_HOME"] = str(_ENV_ROOT / "hf")
os.environ["HF_HUB_OFFLINE"] = "1"
for _key in [
    k for k in os.environ if k == "ALREF_CONFIG" or k.startswith("ALREF_LLM") or k == "OPENAI_API_KEY"
]:
    del os.environ[_key]

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


@pytest.fixture
def run_cli(capsys, monkeypatch, tmp_path):
    """Run `alref ARGS…` in-process from a clean folder; returns (exit code, stdout, stderr)."""
    from alref.cli import main

    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def llm_server():
    """A started scripted OpenAI-compatible server (tests/llm_server.py), stopped after the test."""
    from llm_server import ScriptedOpenAIServer

    server = ScriptedOpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run as fast on one thread, and stay fast when other processes share the CPU.
    Model test modules use it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def short_shapes_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 frames, 160x120, 10 fps, written for each module that asks (the click stand-in's tests)."""
    return synth.write_shapes_video(
        tmp_path_factory.mktemp("v") / "v.mp4", num_frames=20, width=160, height=120, fps=10
    )


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory):
    """The click stand-in segmentation tool (tests/click_segmenter.py) registered through its entry point
    in this process for the module; its name (``--segmentation`` / ``segmentation=``)."""
    import click_segmenter

    from alref.tools.registry import registry

    site = click_segmenter.install(tmp_path_factory.mktemp("site"))
    sys.path.insert(0, str(site))
    registry(refresh=True)
    yield click_segmenter.NAME
    sys.path.remove(str(site))
    registry(refresh=True)
