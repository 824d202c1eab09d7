"""The browser app's parts that need no browser: escaping of untrusted text, the trace table, the images
shown (only from inside the trace folder), the progress adapter, the missing-extra message and the
warning for a non-loopback host. tests/test_web_app.py drives the page itself."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from alref.app import render
from alref.app.progress import WebReporter

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = "<script>alert(1)</script> **bold** ![x](http://example.invalid/x.png) $$x$$"


def test_chat_text_shows_markup_as_text():
    shown = render.chat_text(SCRIPT)
    assert "<" not in shown and ">" not in shown and "&lt;script&gt;" in shown
    assert r"\*\*bold\*\*" in shown and r"\!\[x\]\(http://example\.invalid/x\.png\)" in shown
    assert r"\$\$x\$\$" in shown
    assert render.chat_messages([("assistant", SCRIPT), ("user", ""), ("user", None)]) == [
        {"role": "assistant", "content": shown}
    ]


def test_the_trace_table_escapes_what_the_llm_said(tmp_path):
    events = [
        {"kind": "llm_call", "step": "chat", "answer": SCRIPT, "prompt_tokens": 3, "completion_tokens": 4,
         "latency_s": 0.5, "tool_calls": [{"name": "segment_box", "args": {"name": "<b>x</b>"}}]},
        {"kind": "fallback", "step": "choose_box", "reason": "<img src=x onerror=alert(1)>"},
        {"kind": "clip_decided", "ref": 1, "clip": 0, "valid": True, "pivot_frame": 4, "box_number": 2,
         "decided_by": "llm", "reason": "box 2 <i>fits</i>"},
        {"kind": "not_shown"},
    ]  # fmt: skip
    page = render.trace_html(events)
    assert "<script>" not in page and "<img" not in page and "<b>x</b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "segment_box" in page
    assert [kind for kind, _ in render.trace_rows(events)] == ["LLM call", "fallback", "decision"]
    assert 'class="alref-warn"' in page  # the fallback is marked
    assert "frame 4, box 2 (llm)" in render.trace_rows(events)[2][1]
    assert "no trace events" in render.trace_html([])


def test_images_shown_come_only_from_the_trace_folder(tmp_path):
    trace = tmp_path / "trace"
    (trace / "images").mkdir(parents=True)
    (trace / "images" / "a.jpg").write_bytes(b"\xff\xd8\xff")
    (tmp_path / "secret.jpg").write_bytes(b"\xff\xd8\xff")
    events = [{"kind": "llm_call", "step": "chat", "messages": [
        {"role": "user", "images": ["images/a.jpg", "../secret.jpg", "images/missing.jpg", "images/a.jpg"]}]}]  # fmt: skip
    assert render.seen_images(events, trace) == [
        (str((trace / "images" / "a.jpg").resolve()), "shown at chat")
    ]


def test_the_result_table_escapes_the_reasoning():
    result = {"status": "ok", "mode": "agent", "input": {"num_frames": 10}, "references": [
        {"id": 1, "text": "<u>the dog</u>", "status": "ok", "masks": {"frames_with_mask": 7}, "clips": [
            {"clip": 0, "valid": True, "pivot_frame": 3, "box_number": 1, "box_colour": "red", "candidates": [{}, {}],
             "decided_by": "llm", "frame_reasoning": "<script>x</script>", "attempts": {"frame": 1},
             "fallbacks": ["choose_box"]}]}]}  # fmt: skip
    page = render.result_html(result)
    assert "<u>" not in page and "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "frame 3, box 1 red of 2 candidates" in page and "7/10" in page and "choose_box" in page


def test_the_reporter_shows_each_stage_on_the_page():
    shown: list[tuple[float | None, str]] = []
    reporter = WebReporter(lambda fraction, text: shown.append((fraction, text)))
    with reporter.stage("decode", 4) as stage:
        stage.advance()
        stage.advance(3)
    with reporter.stage("audio", None) as stage:
        stage.advance()
    reporter.note("mode: baseline")
    assert shown == [(0.0, "decoding"), (0.25, "decoding 1/4"), (1.0, "decoding 4/4"), (None, "listening"),
                     (None, "listening (1)")]  # fmt: skip
    assert reporter.stages == ["decode", "audio"] and reporter.notes == ["mode: baseline"]


def test_without_the_extra_the_app_says_what_to_install(run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio raises ImportError
    code, out, err = run_cli("app", "--models", "smoke")
    assert code == 2 and out == ""
    assert (
        err.strip()
        == 'alref: error: the browser app needs Gradio: pip install -c constraints.txt -e ".[app]"'
    )


class _Page:
    server_port = 7999

    def __init__(self) -> None:
        self.launched: dict = {}

    def queue(self, **kwargs):
        return self

    def launch(self, **kwargs):
        self.launched = kwargs

    def block_thread(self):
        raise KeyboardInterrupt

    def close(self):
        pass


@pytest.mark.parametrize(("host", "warned"), [("127.0.0.1", False), ("0.0.0.0", True)])
def test_a_host_that_is_not_loopback_is_warned_about(host, warned, tmp_path, monkeypatch, capsys):
    pytest.importorskip("gradio")
    from alref.app import web
    from alref.app.session import AppConfig

    page = _Page()
    monkeypatch.setattr(web, "build_app", lambda config: page)
    web.serve(
        AppConfig(given={}, db=tmp_path / "db", out=tmp_path / "app", chat_out=tmp_path / "chats"), host, 0
    )
    err = capsys.readouterr().err
    assert ("alref: warning: serving on 0.0.0.0" in err) is warned and len(err.splitlines()) == 1 + warned
    assert f"alref app: http://{host}:7999/" in err
    assert page.launched["server_name"] == host and page.launched["server_port"] == 0
    assert set(page.launched["allowed_paths"]) == {
        str((tmp_path / "app").resolve()),
        str((tmp_path / "chats").resolve()),
        str(ROOT / "examples" / "shapes.mp4"),  # the bundled sample, served to the example button
    }


def test_the_tracks_reasoning_is_sentences_with_the_numbers_the_llm_saw():
    result = {"status": "ok", "mode": "agent", "strategy": "tracks", "input": {"num_frames": 30}, "references": [
        {"id": 1, "text": "the dog", "status": "ok", "decided_by": "llm", "concept": "dog", "masks": {"frames_with_mask": 9},
         "candidates": [{"id": 101, "number": 1, "score": 0.9, "frames": [0, 1]}, {"id": 107, "number": 2, "score": 0.8, "frames": [3]}],
         "accepted": [107], "reason": "candidate 2 is the dog on the left",
         "rounds": [{"round": 1, "frames": [3, 8], "candidates": [101, 107], "image": "tracks/ref1_round1.jpg",
                     "decided_by": "llm", "verdicts": [
                         {"track": 101, "number": 1, "verdict": "reject", "reason": "a <b>cat</b>"},
                         {"track": 107, "number": 2, "verdict": "accept", "reason": "the dog on the left"}]}]}]}  # fmt: skip
    chosen, reasoning = render.tracks_sentences(result["references"][0])
    assert chosen == "SAM 3 tracked “dog”: 2 candidate(s); accepted candidate 2."
    assert reasoning.splitlines() == [
        "Round 1 (frames 3, 8) decided by the LLM: candidate 1 rejected: a <b>cat</b>; candidate 2 accepted: the dog on the left.",
        "candidate 2 is the dog on the left.",
    ]
    page = render.result_html(result)
    assert "101" not in page and "107" not in page and "{" not in page  # no internal ids, no JSON
    assert "candidate 1 rejected: a &lt;b&gt;cat&lt;/b&gt;" in page


def test_edit_results_are_sentences():
    objects = [{"object_id": 2, "name": "dog", "frames_with_mask": 5, "first_frame": 3, "last_frame": 7}]
    assert (
        render.edit_text("rename", {"object_id": 2, "name": "dog"}, objects) == "Renamed object 2 to “dog”."
    )
    assert render.edit_text("remove", {"removed": 1, "name": "cat"}, objects) == (
        "Removed object 1 (“cat”); the objects are object 2 “dog” (frames 3–7)."
    )
    assert render.edit_text("undo", {"objects": []}, []) == "Undid the last change; there are no objects."


def test_each_action_draws_one_progress_bar(tmp_path):
    pytest.importorskip("gradio")
    from alref.app.session import AppConfig
    from alref.app.web import build_app

    page = build_app(AppConfig(given={"models": "smoke"}, db=tmp_path / "db", out=tmp_path / "app"))
    ids = {b._id: getattr(b, "elem_id", None) for b in page.blocks.values()}
    deps = page.config["dependencies"]
    for dep in deps:
        targets = dep.get("show_progress_on")
        if len(dep["outputs"]) > 1:  # a bar on every output otherwise: three on the segment tab
            assert targets is not None and len(targets) == 1, dep

    def bar_of(trigger: str) -> list[str]:
        dep = next(d for d in deps if any(ids.get(t[0]) == trigger for t in d["targets"]))
        return [ids[i] for i in dep["show_progress_on"]]

    assert bar_of("alref-segment") == ["alref-result"]
    assert bar_of("alref-open") == bar_of("alref-example") == bar_of("alref-resume") == ["alref-status"]
    assert bar_of("alref-message") == ["alref-turn"]  # under the chat, which shows the turn meanwhile
    assert bar_of("alref-viewer-apply") == bar_of("alref-viewer-undo") == ["alref-viewer-status"]
    assert bar_of("alref-undo") == ["alref-objects"]


def test_a_turn_that_asks_shows_the_candidates_image(tmp_path):
    """A chat turn that stopped to ask (status "question") shows the image its question names; the next
    turn goes back to the objects' preview."""
    from alref.app.session import AppConfig, TabSession

    tab = TabSession(AppConfig(given={}, db=tmp_path / "db", out=tmp_path / "app"))
    image = tmp_path / "boxes.jpg"
    tab.reports.append({"status": "question", "preview": str(image), "answer": "Which do you mean?"})
    assert tab.preview() == str(image)
    tab.reports.append({"status": "ok", "preview": None, "answer": "done"})
    assert tab.preview() is None  # no objects yet: nothing to preview


def test_a_judging_round_and_the_attempts_read_as_sentences():
    event = {"kind": "candidates_judged", "ref": 1, "round": 2, "decided_by": "llm",
             "verdicts": [{"number": 1, "verdict": "reject", "reason": "a <b>cat</b>"},
                          {"number": 3, "verdict": "uncertain", "reason": ""}]}  # fmt: skip
    assert render.trace_rows([event]) == [
        (
            "candidates judged",
            "reference 1, round 2 (llm): candidate 1 rejected: a <b>cat</b>; candidate 3 uncertain",
        )
    ]
    assert "&lt;b&gt;cat" in render.trace_html([event]) and "{" not in render.trace_html([event])
    assert render.attempts_sentence({"frame": 1, "box": 2}, []) == "frame asked once, box asked 2 times"
    assert render.attempts_sentence({}, ["choose_frame", "choose_box"]) == (
        "no LLM step; fell back at choose_frame and choose_box"
    )
