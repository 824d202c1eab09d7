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
from llm_server import Reply, segment_then_list, tool_reply
from scripted_llm import ScriptedChatModel

from alref.agent.chat.agent import Chat, chat_store, list_threads
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
        Chat(session, model, saver, max_steps=max_steps),
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
    llm_server.default = segment_then_list(red)
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


def _chat_cli(llm_url, db, video=None, *args):
    return [sys.executable, "-m", "alref.cli", "chat", *([str(video)] if video else []), "--models", "smoke",
            "--llm", "m", "--llm-base-url", llm_url, "--db", str(db), "--llm-backoff", "0", "--json", *args]  # fmt: skip


def test_chat_survives_429_and_500_and_its_trace_shows_the_images(tmp_path, video, llm_server):
    from llm_server import Status

    steps = iter([tool_reply("call1", "ground_phrase", {"frame": 2, "phrase": "red square"}),
                  tool_reply("call2", "segment_box", {"frame": 2, "box_number": 1, "name": "red square"}),
                  Reply("Segmented the red square.")])  # fmt: skip
    llm_server.push(Status(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}),
                    Status(500, {"error": {"message": "upstream hiccup"}}))  # fmt: skip
    llm_server.default = lambda body: next(steps)
    out = tmp_path / "c"
    done = subprocess.run([*_chat_cli(llm_server.base_url, tmp_path / "db.sqlite", video), "-m", "segment the red square",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert [c["tool"] for c in report["calls"]] == ["ground_phrase", "segment_box"] and report[
        "status"
    ] == "ok"
    assert len(llm_server.chat_requests) == 5  # 429 and 500 retried, then the three steps
    assert report["llm"]["transport_retries"] == 2 and report["llm"]["http_calls"] == 5
    # the step after ground_phrase saw the boxes it drew
    sent = llm_server.chat_requests[-2]["messages"][-1]["content"]
    assert isinstance(sent, list) and sent[1]["type"] == "image_url"
    events = [json.loads(line) for line in (out / "trace" / "events.jsonl").read_text().splitlines()]
    calls = [e for e in events if e["kind"] == "llm_call"]
    assert len(calls) == 3 and sum(e["kind"] == "llm_retry" for e in events) == 2
    shown = [i for m in calls[1]["messages"] for i in m["images"]]
    assert shown and (out / "trace" / shown[0]).is_file()
    page = tmp_path / "chat.html"
    exported = subprocess.run([sys.executable, "-m", "alref.cli", "trace", "export", str(out), "--html", str(page)],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert page.read_text().count("data:image/jpeg;base64,") >= 1
    tree = subprocess.run([sys.executable, "-m", "alref.cli", "trace", "show", str(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "status ok" in tree.stdout and "turn 1" in tree.stdout and "no LLM calls" not in tree.stdout
    assert "3 LLM calls" in tree.stdout and "unfinished" not in tree.stdout


def test_chat_with_the_llm_down_answers_one_line_and_stays_resumable(tmp_path, video, llm_server):
    from llm_server import ScriptedOpenAIServer

    db, out = tmp_path / "db.sqlite", tmp_path / "c"
    down = subprocess.run([*_chat_cli(ScriptedOpenAIServer.closed_port_url(), db, video), "--llm-transport-retries", "1",
                           "-m", "segment the red square", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert down.returncode == 4 and "Traceback" not in down.stderr
    report = json.loads(down.stdout.splitlines()[-1])
    assert report["status"] == "llm_error" and "\n" not in report["answer"]
    assert "could not connect" in report["answer"].lower() or "connection" in report["answer"].lower()
    assert (
        f"alref chat --resume {report['thread']}" in down.stderr
        and len(down.stderr.strip().splitlines()) == 1
    )
    llm_server.default = Reply("Hello again.")
    back = subprocess.run([*_chat_cli(llm_server.base_url, db), "--resume", report["thread"], "-m", "are you there?",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout.splitlines()[-1])["answer"] == "Hello again."
    sent = [m["content"] for m in llm_server.chat_requests[-1]["messages"] if m["role"] == "user"]
    assert sent == [
        "segment the red square",
        "are you there?",
    ]  # the failed turn is kept; the notice is not sent


def test_a_resumed_chat_finds_its_video_from_another_folder(tmp_path, video, llm_server, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copy(video, tmp_path / "here.mp4")
    llm_server.default = Reply("Hi.")
    db = tmp_path / "db.sqlite"
    first = subprocess.run([*_chat_cli(llm_server.base_url, db, "here.mp4"), "-m", "hi"], capture_output=True,
                           text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr
    thread = json.loads(first.stdout.splitlines()[-1])["thread"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = subprocess.run([*_chat_cli(llm_server.base_url, db), "--resume", thread, "-m", "again"],
                           capture_output=True, text=True, timeout=300, cwd=elsewhere)  # fmt: skip
    assert again.returncode == 0, again.stderr


def test_a_tool_call_written_as_text_is_understood(tmp_path, video):
    script = [AIMessage(content='```json\n{"name": "list_objects", "arguments": {}}\n```'), AIMessage(content="None yet."),
              AIMessage(content='{"tool": "paint_it_blue", "args": {"object_id": 1}}')]  # fmt: skip
    chat, model, store = make_chat(tmp_path, video, script)
    try:
        report = chat.ask("what is there?")
        assert [c["tool"] for c in report["calls"]] == ["list_objects"] and report["answer"] == "None yet."
        told = chat.ask("paint it blue")
        assert not told["calls"] and "wrote a tool call as text" in told["answer"]
        assert "paint_it_blue" in told["answer"] and "nothing was done" in told["answer"]
    finally:
        store.__exit__(None, None, None)


def test_track_referent_makes_an_object_of_each_accepted_track(tmp_path, video):
    script = [call("track_referent", reference="the red square"), AIMessage(content="Tracked it.")]
    chat, model, store = make_chat(tmp_path, video, script)
    try:
        report = chat.ask("track the red square")
        if report["calls"][0]["error"]:  # tiny random SAM 3 found nothing: said as a tool error
            assert "no object for 'the red square'" in report["calls"][0]["result"]
        else:
            result = json.loads(report["calls"][0]["result"])
            assert result["decided_by"] == "baseline" and result["concept"] == "red square"
            assert len(report["objects"]) == len(result["objects"]) >= 1
            assert (
                report["objects"][0]["frames_with_mask"] > 0
                and report["objects"][0]["name"] == "the red square"
            )
        from alref.tools.sam3_tracks import load_cv_utils_kernel

        note = load_cv_utils_kernel()  # SAM 3 without transformers' kernel: alref's one line, told once
        assert report["notes"] == ([note] if note else [])
        assert not note or report["answer"].endswith(note)
    finally:
        store.__exit__(None, None, None)


def test_a_piped_chat_turn_shows_its_steps_as_they_happen(run_cli, tmp_path, video, llm_server, monkeypatch):
    """Piped (not a terminal): one plain line per step on stderr — the tool call, its end — before the answer
    on stdout."""
    monkeypatch.setenv("ALREF_LLM_BACKOFF", "0")
    red = list(map(float, synth.red_square_box(0, N, W, H)))
    llm_server.default = segment_then_list(red)
    code, stdout, stderr = run_cli("chat", str(video), "-m", "segment the red square", "--models", "smoke", "--llm",
                                   "m", "--llm-base-url", llm_server.base_url, "--db", str(tmp_path / "c.sqlite"),
                                   "--out", str(tmp_path / "c"))  # fmt: skip
    assert code == 0, stderr
    lines = [line.strip() for line in stderr.splitlines() if line.strip().startswith("…")]
    assert lines[0].startswith("… calling segment_box(frame=0, box=[") and "name='red square'" in lines[0]
    assert lines[1] == "… segment_box done; asking the model what next" and lines[-1] == "… answered"
    assert "Done." in stdout
    # the tool's stages, in order, between its call and its end: one line each, not one per frame
    stages = [line.strip() for line in stderr.splitlines() if line.startswith("    ")]
    assert stages[0] == "decoding the video for SAM 2" and stages[1].startswith(
        "propagating 1 object(s) over"
    )
    assert sum(line.startswith("propagating") for line in stages) == 1
    assert (
        stderr.index("calling segment_box")
        < stderr.index("decoding the video")
        < stderr.index("segment_box done")
    )


def test_refine_object_corrects_a_mask_and_a_resumed_chat_keeps_it(tmp_path, video):
    """The model calls refine_object (positive and negative points, then a bad one it is told about); the
    refinement is in the object, the conversation's saved state and a resumed session, and undo drops it."""
    red = list(map(float, synth.red_square_box(0, N, W, H)))
    script = [
        call("segment_box", frame=0, box=red, name="red square"), AIMessage(content="Segmented."),
        call("refine_object", "r1", object_id=1, frame=8, positive_points=[[40, 50]], negative_points=[[90, 20]]),
        call("refine_object", "r2", object_id=1, frame=8, positive_points=[[400, 50]]),
        AIMessage(content="Corrected it on frame 8."),
    ]  # fmt: skip
    chat, model, store = make_chat(tmp_path, video, script)
    try:
        chat.ask("segment the red square")
        report = chat.ask("it is also at 40,50 on frame 8, not at 90,20")
        assert [(c["tool"], c["error"]) for c in report["calls"]] == [
            ("refine_object", False),
            ("refine_object", True),
        ]
        refinement = {"frame": 8, "points": [[40.0, 50.0], [90.0, 20.0]], "labels": [1, 0], "box": None}
        done = json.loads(report["calls"][0]["result"])
        assert done["refinements"] == [refinement] and done["frame"] == 8  # positives first, as alref refine
        assert "the prompt (400, 50) is outside the frame" in report["calls"][1]["result"]
        assert report["objects"][0]["refinements"] == [refinement]
        tools = model.calls[-1]["kwargs"]["tools"]
        tool = next(t for t in tools if t["function"]["name"] == "refine_object")["function"]
        assert {"object_id", "frame", "positive_points", "negative_points", "box"} <= set(
            tool["parameters"]["properties"]
        )
        assert "refine_object" in model.calls[-1]["messages"][0].content  # the system prompt names it
        saved = chat.graph.get_state(chat.config).values["objects"]  # what --resume restores
        assert saved["objects"]["1"]["refinements"] == [refinement]
        resumed = ChatSession(video, tmp_path / "chat", chat.session.settings)
        resumed.restore(saved)
        assert resumed.objects[1]["refinements"] == [refinement] and resumed.masks == chat.session.masks
        resumed.undo()
        assert "refinements" not in resumed.objects[1]
    finally:
        store.__exit__(None, None, None)
