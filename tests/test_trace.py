"""The trace writer: JSON lines, images saved once per content, secrets scrubbed, torn lines tolerated."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from alref.trace.record import NullTracer, Tracer, read_events

SECRET = "sk-live-0123456789abcdef"


def test_events_are_json_lines_with_time_and_kind(tmp_path):
    tracer = Tracer(tmp_path / "trace")
    tracer.event("run_start", video="v.mp4", clips=3)
    tracer.node_start("choose_frame", clip=1)
    tracer.node_end("choose_frame", clip=1, frame=4)
    lines = (tmp_path / "trace" / "events.jsonl").read_text().splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    assert [r["kind"] for r in records] == ["run_start", "node_start", "node_end"]
    assert records[0]["clips"] == 3 and records[2] == {**records[2], "node": "choose_frame", "frame": 4}
    assert all("T" in r["ts"] and r["ts"].endswith("+00:00") for r in records)
    assert 0 <= records[0]["t"] <= records[1]["t"] <= records[2]["t"]
    assert (tmp_path / "trace" / "images").is_dir()


def test_a_resumed_run_appends(tmp_path):
    Tracer(tmp_path).event("first")
    Tracer(tmp_path).event("second")
    assert [e["kind"] for e in read_events(tmp_path)] == ["first", "second"]


def test_non_json_values_become_text(tmp_path):
    tracer = Tracer(tmp_path)
    tracer.event("x", path=Path("/a/b.mp4"), box=np.array([1.5, 2.0]), score=np.float32(0.5), obj=object())
    (event,) = read_events(tmp_path)
    assert event["path"] == "/a/b.mp4" and event["box"] == [1.5, 2.0] and event["score"] == 0.5
    assert event["obj"].startswith("<object object")


def test_images_are_saved_once_per_content_and_referenced_by_path(tmp_path):
    tracer = Tracer(tmp_path / "trace")
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:, :30] = (250, 10, 10)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels).save(tmp_path / "copy.png")  # same bytes, another path
    Image.fromarray(pixels).save(tmp_path / "c.jpg", quality=80)
    Image.fromarray(255 - pixels).save(tmp_path / "other.png")

    first = tracer.image(tmp_path / "a.png")
    assert first.startswith("images/") and first.endswith(".jpg") and len(Path(first).stem) == 16
    assert tracer.image(str(tmp_path / "a.png")) == first
    assert tracer.image(tmp_path / "copy.png") == first
    jpeg = tracer.image(tmp_path / "c.jpg")
    other = tracer.image(tmp_path / "other.png")
    array = tracer.image(pixels)
    assert tracer.image(pixels.copy()) == array
    assert len({first, jpeg, other, array}) == 4
    assert len(list((tmp_path / "trace" / "images").iterdir())) == 4

    saved = tmp_path / "trace" / first
    assert saved.read_bytes()[:3] == b"\xff\xd8\xff"  # PNG re-encoded as JPEG
    with Image.open(saved) as img:
        assert img.size == (60, 40) and img.getpixel((5, 5))[0] > 200
    assert (tmp_path / "trace" / jpeg).read_bytes() == (tmp_path / "c.jpg").read_bytes()  # JPEG copied as is
    with Image.open(tmp_path / "trace" / array) as img:
        assert img.getpixel((5, 5))[0] > 200  # arrays are RGB


def test_an_unreadable_image_does_not_break_the_run(tmp_path):
    tracer = Tracer(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert tracer.image(tmp_path / "missing.png") == ""
    assert tracer.image(tmp_path / "broken.png") == ""
    assert [e["kind"] for e in read_events(tmp_path)] == ["trace_error", "trace_error"]


def test_secrets_are_scrubbed_everywhere(tmp_path):
    tracer = Tracer(tmp_path, secrets=[SECRET])
    tracer.event(
        "llm_call",
        error=f"Incorrect API key provided: {SECRET}.",
        headers={"authorization": f"Bearer {SECRET}", SECRET: "as a key"},
        nested=[{"deep": [f"x{SECRET}y", 3]}],
        settings=Path(f"/tmp/{SECRET}"),
    )
    tracer.add_secret("another-secret-value")
    tracer.event("later", note="another-secret-value and more")
    text = (tmp_path / "events.jsonl").read_text()
    assert SECRET not in text and "another-secret-value" not in text
    first, later = read_events(tmp_path)
    assert first["error"] == "Incorrect API key provided: ***."
    assert first["headers"] == {"authorization": "Bearer ***", "***": "as a key"}
    assert first["nested"] == [{"deep": ["x***y", 3]}]
    assert later["note"] == "*** and more"


def test_short_or_empty_secrets_do_not_scrub_ordinary_text(tmp_path):
    tracer = Tracer(tmp_path, secrets=["", "a"])
    tracer.add_secret(None)
    tracer.event("x", text="a cat")
    assert read_events(tmp_path)[0]["text"] == "a cat"


def test_read_events_tolerates_a_torn_last_line(tmp_path):
    tracer = Tracer(tmp_path)
    tracer.event("one")
    tracer.event("two")
    with open(tmp_path / "events.jsonl", "a") as handle:
        handle.write('{"ts": "2026-01-01T00:00:00", "kind": "thr')
    assert [e["kind"] for e in read_events(tmp_path)] == ["one", "two"]
    assert read_events(tmp_path / "nowhere") == []


def test_events_from_many_threads_are_whole_lines(tmp_path):
    tracer = Tracer(tmp_path)

    def work(worker: int) -> None:
        for i in range(50):
            tracer.event("tick", worker=worker, i=i, payload="x" * 500)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(lines) == 400 and len({(e["worker"], e["i"]) for e in map(json.loads, lines)}) == 400


def test_null_tracer_does_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tracer = NullTracer()
    tracer.event("x", a=1)
    tracer.node_start("n")
    tracer.node_end("n")
    assert tracer.image(np.zeros((4, 4, 3), np.uint8)) == ""
    assert not tracer.enabled and list(tmp_path.iterdir()) == []


def test_trace_show_groups_a_chats_selections_under_their_turns():
    """A chat's selections each run reference 1 of their own graph: `trace show` names each by its
    sentence under the turn that ran it (never `reference 1 "?"`), its clips and decisions inside."""
    import io

    from rich.console import Console

    from alref.trace.view import render_tree

    def selection(text: str, frame: int, obj: int) -> list[dict]:
        return [
            {"kind": "selection_start", "tool": "select_referent", "reference": text, "object_id": None},
            {"kind": "llm_call", "context": {"ref": 1, "clip": 0, "step": "choose_frame"}, "answer": "frame 2",
             "usage": {}, "latency_s": 0.1},
            {"kind": "clip_decided", "ref": 1, "clip": 0, "valid": True, "pivot_frame": frame, "box_number": 1,
             "decided_by": "llm", "reason": f"{text} is clearest on frame {frame}"},
            {"kind": "selection_end", "tool": "select_referent", "reference": text, "status": "ok", "objects": [obj]},
        ]  # fmt: skip

    events = [
        {"kind": "chat_start", "thread": "t1"},
        *selection("the red square", 2, 1),
        {"kind": "chat_turn", "turn": 1, "text": "segment the red square", "status": "ok", "answer": "Done.",
         "calls": [{"tool": "select_referent", "args": {"reference": "the red square"}, "result": "{}"}]},
        *selection("the blue circle", 7, 2),
        {"kind": "chat_turn", "turn": 2, "text": "and the circle", "status": "ok", "answer": "Done too.", "calls": []},
        {"kind": "selection_start", "tool": "track_referent", "reference": "the dogs"},
    ]  # fmt: skip
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(render_tree(events, "c"))
    text = console.file.getvalue()
    assert "“?”" not in text
    turn1, turn2 = text.index("turn 1"), text.index("turn 2")
    assert turn1 < text.index("select_referent “the red square” · ok → object 1") < turn2
    assert turn2 < text.index("select_referent “the blue circle” · ok → object 2")
    assert text.index("the red square is clearest on frame 2") < turn2  # the clip's decision, in its turn
    assert "clip 0 → frame 7, box 1 · llm" in text
    assert "unfinished turn" in text and "track_referent “the dogs” · unfinished" in text
