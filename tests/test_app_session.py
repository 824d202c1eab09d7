"""The page's tab session (#19 parts 1 to 3 on the page), with the click stand-in segmenter
(tests/click_segmenter.py): without an LLM the tab has its own session, so clicks make and correct objects
and undo works; with an LLM a correction made before the first message is saved in the conversation's
thread, so `alref chat --resume THREAD` continues with it; a turn tells its steps and stages as they
happen; one action at a time per tab."""

from __future__ import annotations

import json
import threading

import pytest
import synth
from llm_server import Reply, tool_reply

from alref.app.session import AppConfig, TabSession
from alref.errors import InputError

W, H, N = 160, 120, 20  # short_shapes_mp4 (conftest.py)
RED = [float(v) for v in synth.red_square_box(0, N, W, H)]


def _tab(tmp_path, given) -> TabSession:
    return TabSession(AppConfig(given=given, db=tmp_path / "db.sqlite", out=tmp_path / "app",
                                chat_out=tmp_path / "chats"))  # fmt: skip


def test_without_an_llm_clicks_make_and_correct_objects_and_undo_restores(
    tmp_path, short_shapes_mp4, standin
):
    tab = _tab(tmp_path, {"models": "smoke", "segmentation": standin})
    try:
        tab.open(short_shapes_mp4)
        assert tab.chat is None and tab.session is tab.own
        made = tab.refine(None, 0, [], [], box=RED, name="red square")
        assert made["object_id"] == 1 and made["mask_pixels_on_frame"] > 0
        assert tab.objects()[0]["name"] == "red square" and tab.session.workspace.overlay.is_file()
        assert tab.objects()[0]["last_frame"] == 2  # the stand-in reaches 2 frames from a prompt
        shown: list[tuple[float | None, str]] = []
        fixed = tab.refine(1, 12, [[40, 50]], [1], show=lambda f, t: shown.append((f, t)))
        assert fixed["mask_pixels_on_frame"] > 0 and tab.objects()[0]["last_frame"] == 14
        assert shown[-1] == (None, "writing overlay.mp4")
        assert tab.history[-1][1].startswith("Corrected object 1 on frame 12")
        tab.edit("undo")
        assert tab.objects()[0]["last_frame"] == 2
        files = tab.downloads()
        result = json.loads(files[-1].read_text())
        assert result["kind"] == "clicks" and result["thread"] is None and len(result["objects"]) == 1
        assert tab.threads() == []  # no conversation was stored
    finally:
        tab.close()


def test_a_correction_before_the_first_message_is_saved_for_resume(
    run_cli, tmp_path, short_shapes_mp4, standin, llm_server
):
    def answer(body):
        if body["messages"][-1]["role"] == "tool":
            return Reply("Done.")
        return tool_reply("l", "list_objects", {})

    llm_server.default = answer
    given = {"models": "smoke", "segmentation": standin, "llm": "m", "llm_base_url": llm_server.base_url,
             "llm_backoff": 0}  # fmt: skip
    tab = _tab(tmp_path, given)
    try:
        tab.open(short_shapes_mp4)
        thread = tab.chat.thread
        tab.refine(None, 12, [[40, 50]], [1], name="ball")
        tab.edit("rename", 1, "the ball")
        saved = tab.chat.graph.get_state(tab.chat.config)
        assert saved.next == () and saved.values["objects"]["objects"]["1"]["name"] == "the ball"
        assert saved.values["video"] == str(short_shapes_mp4.resolve()) and saved.values["settings"]["llm"] == "m"  # fmt: skip
    finally:
        tab.close()
    listed = run_cli("chat", "--db", tmp_path / "db.sqlite", "--list", "--json")[1]
    assert [(r["thread"], r["turns"], r["objects"]) for r in json.loads(listed)] == [(thread, 0, 1)]
    code, out, err = run_cli("chat", "--resume", thread, "--db", tmp_path / "db.sqlite", "-m", "list the objects",
                             "--json")  # fmt: skip
    assert code == 0, err
    report = json.loads(out.splitlines()[-1])
    assert report["thread"] == thread and report["answer"] == "Done."
    assert [(o["object_id"], o["name"]) for o in report["objects"]] == [(1, "the ball")]
    assert json.loads(report["calls"][0]["result"])[0]["refinements"][0]["frame"] == 12


def test_a_turn_tells_its_steps_as_they_happen_and_holds_the_tab(
    tmp_path, short_shapes_mp4, standin, llm_server
):
    gate, asked = threading.Event(), threading.Event()

    def answer(body):
        if body["messages"][-1]["role"] == "tool":
            asked.set()
            gate.wait(60)  # the test looks at the tab while the model "thinks"
            return Reply("Done: the red square is object 1.")
        return tool_reply("s", "segment_box", {"frame": 0, "box": RED, "name": "red square"})

    llm_server.default = answer
    given = {"models": "smoke", "segmentation": standin, "llm": "m", "llm_base_url": llm_server.base_url,
             "llm_backoff": 0}  # fmt: skip
    tab = _tab(tmp_path, given)
    steps: list[dict] = []
    stages: list[str] = []
    try:
        tab.open(short_shapes_mp4)
        with pytest.raises(InputError, match="type a message first"):
            tab.check_message("   ")
        turn = threading.Thread(
            target=tab.ask, args=("segment the red square", lambda f, t: stages.append(t), steps.append)
        )
        turn.start()
        assert asked.wait(60)
        assert [s["step"] for s in steps] == ["tool_call", "tool_result"]  # told before the turn ends
        assert "propagating" in " ".join(stages) and tab.history == []
        with pytest.raises(InputError, match="still working on the last message"):
            tab.edit("undo")
        with pytest.raises(InputError, match="still working on the last message"):
            tab.check_message("again")
        gate.set()
        turn.join(60)
        assert steps[-1] == {"step": "answer", "text": "Done: the red square is object 1."}
        assert tab.history == [("user", "segment the red square"),
                               ("assistant", "Done: the red square is object 1.\n\n(tools: segment_box ✓)")]  # fmt: skip
    finally:
        gate.set()
        tab.close()
