"""The example plugin (a second grounding implementation, installed from tests/plugins) fills the
grounding role in `alref segment` when selected with --grounding, through a real subprocess whose
only knowledge of the plugin is its installed entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import synth
from test_registry import install_example_plugin

pytestmark = pytest.mark.slow


def test_segment_uses_the_plugin_grounding(tmp_path):
    site = install_example_plugin(tmp_path / "plugin")
    video = synth.write_shapes_video(
        tmp_path / "v.mp4", num_frames=30, width=160, height=120, fps=10, audio=False
    )
    out = tmp_path / "o"
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "alref.cli", "segment", str(video), "the red square", "--grounding", "color-boxes",
           "--models", "smoke", "--out", str(out), "--clip-frames", "10", "--no-overlay"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["models"]["grounding"]["tool"] == "color-boxes"
    assert result["models"]["grounding"]["origin"] == "alref-example-grounding"
    for clip in result["references"][0]["clips"]:
        truth = synth.red_square_box(clip["pivot_frame"], 30, 160, 120)
        assert np.allclose(clip["pivot_box"], truth, atol=2), (clip["pivot_frame"], clip["pivot_box"], truth)
    # the same command without the plugin on the path names the installed tools
    without = [a if a != str(out) else str(tmp_path / "x") for a in cmd]
    proc = subprocess.run(without, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "unknown grounding tool 'color-boxes'" in proc.stderr


def test_chat_uses_the_plugin_grounding(tmp_path):
    """The chat's ground_phrase / segment_box tools run on the selected plugin, driven by a scripted model."""
    from langchain_core.messages import AIMessage
    from scripted_llm import ScriptedChatModel
    from test_registry import _add_site, _remove_site

    from alref.agent.chat.agent import Chat, chat_store
    from alref.agent.chat.session import ChatSession
    from alref.config import load_settings

    site = install_example_plugin(tmp_path / "plugin")
    _add_site(site)
    try:
        video = synth.write_shapes_video(
            tmp_path / "v.mp4", num_frames=12, width=160, height=120, fps=10, audio=False
        )
        session = ChatSession(
            video, tmp_path / "chat", load_settings(models="smoke", grounding="color-boxes")
        )
        script = [
            AIMessage(content="", tool_calls=[{"name": "ground_phrase", "args": {"frame": 4, "phrase": "the red square"}, "id": "a"}]),
            AIMessage(content="", tool_calls=[{"name": "segment_box", "args": {"frame": 4, "box_number": 1, "name": "square"}, "id": "b"}]),
            AIMessage(content="Segmented the red square."),
        ]  # fmt: skip
        with chat_store(tmp_path / "chats.sqlite") as saver:
            report = Chat(session, ScriptedChatModel(script), saver).ask("segment the red square")
        boxes = json.loads(report["calls"][0]["result"])["boxes"]
        assert np.allclose(boxes[0]["box"], synth.red_square_box(4, 12, 160, 120), atol=2)
        assert report["objects"][0]["prompts"] == [[4, boxes[0]["box"]]]
        assert session.models.grounding_tool.name == "color-boxes"
    finally:
        _remove_site(site, ["alref_example_grounding"])
