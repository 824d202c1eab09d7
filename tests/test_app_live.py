"""The page's pure parts for #19 parts 2 and 4: a chat turn shown as it happens (LiveTurn, the worker
thread's ordered events), the colour legend, the bundled sample and the video the player serves."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from alref.app import render
from alref.app.files import example_video, served_video
from alref.app.live import LiveTurn, call_title, stage_label, stream_work
from alref.media.boxes import colour_for

ROOT = Path(__file__).resolve().parents[1]


def test_a_turn_shows_the_message_then_each_call_then_the_answer():
    history = [("user", "hi"), ("assistant", "Hello.")]
    live = LiveTurn("segment the <b>red</b> square")
    shown = live.messages(history)
    assert shown[:2] == render.chat_messages(history)
    assert shown[2] == {"role": "user", "content": render.chat_text("segment the <b>red</b> square")}
    assert shown[3]["metadata"] == {"title": "working", "status": "pending", "log": "asking the model"}

    live.step({"step": "tool_call", "tool": "segment_box", "args": {"frame": 0, "name": "*x*"}})
    assert live.show(0.0, "propagating 0/20") and not live.show(0.5, "propagating 10/20")  # only a new stage
    call = live.messages(history)[3]
    assert call["metadata"] == {
        "title": render.chat_text('calling segment_box(frame=0, name="*x*")'),
        "status": "pending",
        "log": "propagating",
    }
    assert len(live.messages(history)) == 4  # the pending call stands for the work

    live.step({"step": "tool_result", "tool": "segment_box", "error": False, "result": '{"object_id":\n 1}'})
    done = live.messages(history)
    assert done[3]["metadata"]["status"] == "done" and done[3]["metadata"]["title"].endswith(" done")
    assert done[3]["content"] == render.chat_text('{"object_id": 1}')  # one line
    assert done[4]["metadata"]["log"] == "asking the model what next"

    live.step({"step": "tool_call", "tool": "rename", "args": {}})
    live.step({"step": "tool_result", "tool": "rename", "error": True, "result": "there is no object 7"})
    live.step({"step": "answer", "text": "Done: <script>x</script>"})
    final = live.messages(history)
    assert final[4]["content"] == render.chat_text("failed: there is no object 7")
    assert final[4]["metadata"]["title"] == render.chat_text("rename() failed")
    assert final[-1] == {"role": "assistant", "content": render.chat_text("Done: <script>x</script>")}
    assert all("<" not in str(m) for m in final)  # everything the model wrote is escaped


def test_stage_names_and_call_titles():
    assert stage_label("propagating 3/60") == "propagating" and stage_label("listening (4)") == "listening"
    assert stage_label("asking the LLM (step 2)") == "asking the LLM (step 2)"
    long = call_title({"tool": "t", "args": {"text": "x" * 400}})
    assert long.startswith('t(text="xxx') and len(long) < 200 and long.endswith("…)")


def test_the_work_runs_on_another_thread_and_its_events_come_in_order():
    gate = threading.Event()
    seen: list[str] = []

    def work(show, on_step):
        seen.append(threading.current_thread().name)
        on_step({"step": "tool_call", "tool": "a", "args": {}})
        gate.wait(30)  # the handler has the first step before the work goes on
        for k in range(1, 4):
            show(k / 3, f"propagating {k}/3")
        on_step({"step": "answer", "text": "ok"})
        return {"status": "ok"}

    events = stream_work(work)
    assert next(events) == ("step", {"step": "tool_call", "tool": "a", "args": {}})
    gate.set()
    rest = list(events)
    assert rest[-2:] == [("step", {"step": "answer", "text": "ok"}), ("done", {"status": "ok"})]
    shows = [v for k, v in rest if k == "show"]
    assert shows and shows[-1] == (1.0, "propagating 3/3")  # waiting stages collapse to the newest
    assert seen == ["alref-chat-turn"]

    def broken(show, on_step):
        raise ValueError("boom")

    kind, error = list(stream_work(broken))[-1]
    assert kind == "error" and isinstance(error, ValueError)


def test_the_legend_has_each_objects_colour_id_and_name():
    objects = [{"object_id": 1, "name": "red square"}, {"object_id": 2, "name": "<b>ball</b>"}]
    page = render.legend_html(objects)
    for obj in (1, 2):
        name, (r, g, b) = colour_for(obj - 1)
        assert f'data-colour="{name}" style="background-color:rgb({r},{g},{b})"' in page
    assert "1 red square</li>" in page and "2 &lt;b&gt;ball&lt;/b&gt;</li>" in page and "<b>" not in page
    assert render.legend_html([]) == ""


def test_the_sample_video_is_found_in_the_package_or_the_checkout(tmp_path):
    assert example_video() == ROOT / "examples" / "shapes.mp4"  # this checkout
    package = tmp_path / "site" / "alref"
    (package / "data").mkdir(parents=True)
    assert example_video(package) is None  # installed without the sample: the button is hidden
    (package / "data" / "shapes.mp4").write_bytes(b"x")
    assert example_video(package) == (package / "data" / "shapes.mp4").resolve()


def test_the_player_serves_the_apps_own_files_and_links_others(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (out / "uploads").mkdir(parents=True)
    elsewhere.mkdir()
    inside = out / "uploads" / "a.mp4"
    inside.write_bytes(b"video")
    assert served_video(inside, out, [out]) == inside.resolve()
    video = elsewhere / "b.mp4"
    video.write_bytes(b"other video")
    served = served_video(video, out, [out])
    assert served is not None and served.is_relative_to(out.resolve() / "player") and served.name == "b.mp4"
    assert served.read_bytes() == b"other video" and served_video(video, out, [out]) == served  # made once
    os.utime(video, ns=(1, 1))  # another version of the file: another link
    assert served_video(video, out, [out]) != served
    assert served_video(tmp_path, out, [out]) is None  # a folder of frames: nothing to play


@pytest.mark.parametrize("given", [{"models": "smoke"}])
def test_without_an_llm_the_tab_has_its_own_session(tmp_path, given, shapes_mp4):
    from alref.app.session import AppConfig, TabSession
    from alref.errors import InputError

    tab = TabSession(AppConfig(given=given, db=tmp_path / "db", out=tmp_path / "app"))
    tab.open(shapes_mp4)
    try:
        assert tab.chat is None and tab.own is not None and tab.session is tab.own
        assert tab.session.out.is_relative_to(tmp_path / "app" / "sessions")
        with pytest.raises(InputError, match="needs a tool-calling LLM"):
            tab.check_message("hi")
        folder = tab.session.out
        folder.mkdir(parents=True, exist_ok=True)
    finally:
        tab.close()
    assert tab.session is None and not folder.exists()  # the tab's own session goes with it
