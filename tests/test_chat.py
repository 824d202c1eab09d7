"""`alref chat`: a scripted tool-calling model drives multi-turn conversations over the smoke
models — the right tools with the right arguments, refinement replacing an object, undo, a tool
error corrected on the next step, the step bound, export — and, over HTTP, a conversation resumed
from SQLite in a new process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import synth
from langchain_core.messages import AIMessage, ToolMessage
from llm_server import Reply
from scripted_llm import ScriptedChatModel

from alref.agent.chat.agent import Chat, chat_store, list_threads
from alref.agent.chat.select import make_select_referent
from alref.agent.chat.session import ChatSession
from alref.config import load_settings

pytestmark = pytest.mark.slow
W, H, N = 160, 120, 20


def call(tool, _id=None, **args):
    return AIMessage(
        content="", tool_calls=[{"name": tool, "args": args, "id": _id or f"call_{tool}_{len(args)}"}]
    )


@pytest.fixture
def video(tmp_path):
    return synth.write_shapes_video(tmp_path / "v.mp4", num_frames=N, width=W, height=H, fps=10)


def make_chat(tmp_path, video, script, max_steps=6):
    settings = load_settings(models="smoke", clip_frames=10)
    session = ChatSession(video, tmp_path / "chat", settings)
    store = chat_store(tmp_path / "chats.sqlite")
    saver = store.__enter__()
    model = ScriptedChatModel(script)
    return (
        Chat(session, model, saver, max_steps=max_steps, select_referent=make_select_referent(session)),
        model,
        store,
    )


def test_segment_refine_undo_rename_export(tmp_path, video):
    red = list(map(float, synth.red_square_box(0, N, W, H)))
    other = [60.0, 60.0, 100.0, 100.0]
    script = [
        call("segment_box", frame=0, box=red, name="red square"), AIMessage(content="Segmented the red square."),
        call("segment_box", frame=5, box=other, name="circle", object_id=1), AIMessage(content="Replaced it."),
        call("undo"), AIMessage(content="Undone."),
        call("rename_object", object_id=1, name="the square"), call("export"), AIMessage(content="Saved."),
    ]  # fmt: skip
    chat, model, store = make_chat(tmp_path, video, script)
    try:
        first = chat.ask("segment the red square")
        assert [c["tool"] for c in first["calls"]] == ["segment_box"] and not first["calls"][0]["error"]
        assert first["objects"][0]["prompts"] == [[0, red]] and first["objects"][0]["frames_with_mask"] > 0
        assert first["preview"] and os.path.isfile(first["preview"])
        second = chat.ask("no, the other one")
        assert len(second["objects"]) == 1 and second["objects"][0]["prompts"] == [
            [5, other]
        ]  # replaced, not added
        third = chat.ask("undo")
        assert third["objects"][0]["prompts"] == [[0, red]]
        fourth = chat.ask("call it the square and save that")
        assert fourth["objects"][0]["name"] == "the square"
        exported = json.loads(fourth["calls"][1]["result"])
        folder = exported["folder"]
        assert len(os.listdir(os.path.join(folder, "masks"))) == N
        assert json.load(open(os.path.join(folder, "masks.json")))["objects"][0]["reference"] == "the square"
        # the model saw its tool results and the current objects on every step
        last_call = model.calls[-1]["messages"]
        assert any(isinstance(m, ToolMessage) for m in last_call)
        assert "the square" in last_call[0].content
    finally:
        store.__exit__(None, None, None)


def test_tool_error_goes_back_and_is_corrected(tmp_path, video):
    script = [call("segment_box", "c1", frame=999, box=[0, 0, 10, 10], name="x"),
              call("segment_box", "c2", frame=3, box=[0, 0, 10, 10], name="x"), AIMessage(content="ok")]  # fmt: skip
    chat, model, store = make_chat(tmp_path, video, script)
    try:
        report = chat.ask("segment the top-left corner")
        assert [c["error"] for c in report["calls"]] == [True, False]
        assert "frame 999 does not exist" in report["calls"][0]["result"]
        second_step = model.calls[1]["messages"]
        assert any(
            isinstance(m, ToolMessage) and "frame 999 does not exist" in m.content for m in second_step
        )
        assert report["objects"][0]["prompts"][0][0] == 3
    finally:
        store.__exit__(None, None, None)


def test_step_bound_stops_a_looping_model(tmp_path, video):
    chat, model, store = make_chat(
        tmp_path, video, [call("list_objects", f"c{i}") for i in range(20)], max_steps=3
    )
    try:
        report = chat.ask("loop")
        assert len(report["calls"]) == 3 and len(model.calls) == 3
        assert "stopped after 3 steps" in report["answer"]
    finally:
        store.__exit__(None, None, None)


def test_grounding_then_box_number_and_select_referent(tmp_path, video):
    script = [call("ground_phrase", frame=2, phrase="red square"), call("segment_box", frame=2, box_number=1, name="sq"),
              call("select_referent", reference="the blue circle"), AIMessage(content="done")]  # fmt: skip
    chat, model, store = make_chat(tmp_path, video, script)
    try:
        report = chat.ask("find the square, then the blue circle")
        grounded = json.loads(report["calls"][0]["result"])
        assert grounded["boxes"] and os.path.isfile(grounded["image"])
        assert report["objects"][0]["prompts"][0] == [2, grounded["boxes"][0]["box"]]
        selected = json.loads(report["calls"][2]["result"])
        assert selected["object_id"] == 2 and len(selected["clips"]) == 2
        # the images the tools made were shown to the model on its next step
        images = [m for m in model.calls[1]["messages"] if isinstance(m.content, list)]
        assert images and images[-1].content[1]["type"] == "image_url"
    finally:
        store.__exit__(None, None, None)


def test_resume_in_a_new_process_over_http(tmp_path, video, llm_server):
    red = list(map(float, synth.red_square_box(0, N, W, H)))
    turns = {"n": 0}

    def answer(body):
        last = body["messages"][-1]
        if last["role"] == "tool":
            return Reply("Done.")
        turns["n"] += 1
        name, args = (
            ("segment_box", {"frame": 0, "box": red, "name": "red square"})
            if turns["n"] == 1
            else ("list_objects", {})
        )
        return Reply(tool_calls=[{"id": f"call{turns['n']}", "type": "function",
                                  "function": {"name": name, "arguments": json.dumps(args)}}])  # fmt: skip

    llm_server.default = answer
    db = tmp_path / "chats.sqlite"
    base = [sys.executable, "-m", "alref.cli", "chat", "--models", "smoke", "--llm", "m", "--llm-base-url",
            llm_server.base_url, "--db", str(db), "--json"]  # fmt: skip
    first = subprocess.run([*base, str(video), "-m", "segment the red square", "--out", str(tmp_path / "c")],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout.splitlines()[-1])
    thread = report["thread"]
    assert report["calls"][0]["tool"] == "segment_box" and len(report["objects"]) == 1

    listed = subprocess.run([*base, "--list"], capture_output=True, text=True, timeout=120)
    rows = json.loads(listed.stdout)
    assert [r["thread"] for r in rows] == [thread] and rows[0]["objects"] == 1 and rows[0]["turns"] == 1

    second = subprocess.run([*base, "--resume", thread, "-m", "what objects are there?", "--out", str(tmp_path / "c")],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert second.returncode == 0, second.stderr
    resumed = json.loads(second.stdout.splitlines()[-1])
    listed_objects = json.loads(resumed["calls"][0]["result"])
    assert resumed["thread"] == thread and listed_objects[0]["name"] == "red square"
    assert listed_objects[0]["frames_with_mask"] > 0  # masks rebuilt from the saved prompts
    history = [m["role"] for m in llm_server.chat_requests[-1]["messages"]]
    assert history.count("user") >= 2  # the first turn is part of the resumed conversation
    assert list_threads(db)[0]["turns"] == 2
    shown = subprocess.run([sys.executable, "-m", "alref.cli", "trace", "show", str(tmp_path / "c")],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shown.returncode == 0 and "turn 1" in shown.stdout and "turn 2" in shown.stdout
    assert "segment_box" in shown.stdout and "list_objects" in shown.stdout


def test_chat_needs_an_llm(run_cli, video):
    code, _, err = run_cli("chat", video, "--models", "smoke", "-m", "hi")
    assert code == 2 and "needs a tool-calling LLM" in err
