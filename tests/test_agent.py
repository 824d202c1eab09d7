"""GPT-PS through the graph with a scripted LLM and the smoke models: which frame and box reach
SAM 2, validation retries with the error as a new turn, fallbacks and their reasons, "none" in
every clip, the shared syntax analysis, the answer cache, and the trace."""

from __future__ import annotations

import json

import numpy as np
import pytest
from agent_script import Script, text_of
from scripted_llm import connection_error

import alref
from alref.media.sampling import make_clips

pytestmark = pytest.mark.slow

CLIPS = make_clips(30, 10, 5)  # the shapes video: 30 frames in clips of 10, samples at offsets 0, 2, 4, 6, 9


@pytest.fixture
def spy_sam2(monkeypatch):
    from alref.tools import segmentation

    calls = {"boxes": [], "starts": []}
    add_box, propagate = segmentation.SegmentationSession.add_box, segmentation.SegmentationSession.propagate

    def spy_add(self, frame_idx, obj_id, box):
        calls["boxes"].append((frame_idx, obj_id, tuple(round(float(v), 2) for v in box)))
        return add_box(self, frame_idx, obj_id, box)

    def spy_propagate(self, start_frame, progress=None):
        calls["starts"].append(start_frame)
        return propagate(self, start_frame, progress)

    monkeypatch.setattr(segmentation.SegmentationSession, "add_box", spy_add)
    monkeypatch.setattr(segmentation.SegmentationSession, "propagate", spy_propagate)
    return calls


def run(tmp_path, video, script: Script, name="o", **settings):
    # no answer cache unless a test asks for one: every test sees its own script's answers
    settings = {
        "models": "smoke",
        "clip_frames": 10,
        "samples": 5,
        "overlay": False,
        "cache": False,
        **settings,
    }
    return alref.segment(video, "the red square", out=tmp_path / name, chat_model=script.model(), **settings)


def detections(out):
    return json.loads((out / "work" / "detections.json").read_text())["detections"]["1"]


def test_llm_choices_reach_grounding_and_sam2(shapes_mp4, tmp_path, spy_sam2):
    # clip i, sample j (1-based on the tile): frame 2 of clip 0, frame 4 of clip 1, frame 5 of clip 2
    frame_for = {0: 2, 10: 4, 20: 5}
    script = Script(choose_frame=lambda start, _: json.dumps({"reasoning": "clear", "frame": frame_for[start]}),
                    choose_box=json.dumps({"reasoning": "second box", "box": 2}))  # fmt: skip
    result = run(tmp_path, shapes_mp4, script)
    assert result.data["mode"] == "agent" and result.status == "ok"
    dets = detections(tmp_path / "o")
    expected_frames = [CLIPS[i]["samples"][frame_for[CLIPS[i]["start"]] - 1] for i in range(3)]
    assert expected_frames == [2, 16, 29]  # absolute index arithmetic: clip.start + offsets[j - 1]
    clips = result.references[0]["clips"]
    assert [c["pivot_frame"] for c in clips] == expected_frames
    for clip, frame in zip(clips, expected_frames, strict=True):
        assert clip["decided_by"] == "llm" and clip["attempts"] == {"frame": 1, "box": 1}
        second = dets[str(frame)][1]  # the LLM chose box 2 = the second-best detection on that frame
        assert clip["pivot_box"] == [round(v, 2) for v in second["box"]]
        assert clip["frame_reasoning"] == "clear" and clip["box_reasoning"] == "second box"
        assert clip["subject"] == "the red square" and "red square moves" in clip["event"]
    assert [(f, o) for f, o, _ in spy_sam2["boxes"]] == [(f, 1) for f in expected_frames]
    for (_, _, box), clip in zip(spy_sam2["boxes"], clips, strict=True):
        assert np.allclose(box, clip["pivot_box"], atol=0.01)
    assert spy_sam2["starts"] == [expected_frames[1]]  # the middle clip's pivot
    assert script.steps["syntax_analysis"] == 1  # shared by the three clips
    assert script.steps["describe_event"] == 3 and script.steps["choose_box"] == 3


def test_the_box_prompt_names_the_colours_that_were_drawn(shapes_mp4, tmp_path):
    from alref.media.boxes import colour_for

    script = Script()
    result = run(tmp_path, shapes_mp4, script)
    first = next(
        text_of(m[-1]) for step, start, m in script.requests if step == "describe_boxes" and start == 0
    )
    clip = result.references[0]["clips"][0]
    n = len(clip["candidates"])
    assert f"with {n} candidate boxes" in first
    for i in range(n):
        assert f"box {i + 1} ({colour_for(i)[0]})" in first
    assert [c["colour"] for c in clip["candidates"]] == [colour_for(i)[0] for i in range(n)]


def test_invalid_answer_is_reasked_with_the_error(shapes_mp4, tmp_path):
    def frame(start, attempt):
        return "I pick frame 9." if attempt == 1 else json.dumps({"reasoning": "ok", "frame": 3})

    script = Script(choose_frame=frame)
    result = run(tmp_path, shapes_mp4, script)
    for clip in result.references[0]["clips"]:
        assert clip["attempts"]["frame"] == 2 and clip["decided_by"] == "llm"
        assert clip["pivot_frame"] == clip["samples"][2]
    retries = [m for step, _, m in script.requests if step == "retry_frame"]
    assert len(retries) == 3
    last_turn = text_of(retries[0][-1])
    assert "frame 9 does not exist" in last_turn and "1 to 5" in last_turn
    assert text_of(retries[0][-2]) == "I pick frame 9."  # the bad answer stays in the conversation


def test_exhausted_retries_fall_back_to_the_baseline_with_the_reason(shapes_mp4, tmp_path, spy_sam2):
    script = Script(choose_frame="I'm not sure.", choose_box=json.dumps({"reasoning": "x", "box": 42}))
    result = run(tmp_path, shapes_mp4, script, llm_retries=1)
    dets = detections(tmp_path / "o")
    for clip in result.references[0]["clips"]:
        assert clip["attempts"] == {"frame": 2, "box": 2} and clip["decided_by"] == "fallback"
        best = max(clip["samples"], key=lambda f: (dets[str(f)][0]["score"] if dets[str(f)] else -1, -f))
        assert clip["pivot_frame"] == best
        assert clip["pivot_box"] == [round(v, 2) for v in dets[str(best)][0]["box"]]
        assert any("no valid answer after 2 attempts" in f for f in clip["fallbacks"])
        assert any("box 42 does not exist" in f for f in clip["fallbacks"])
    assert result.status == "ok"


def test_llm_down_falls_back_and_the_run_finishes(shapes_mp4, tmp_path):
    from scripted_llm import ScriptedChatModel

    model = ScriptedChatModel([connection_error()] * 200)
    result = alref.segment(shapes_mp4, "the red square", out=tmp_path / "o", chat_model=model, models="smoke",
                           clip_frames=10, overlay=False, llm_transport_retries=1, llm_backoff=0)  # fmt: skip
    assert result.status == "ok" and result.data["mode"] == "agent"
    for clip in result.references[0]["clips"]:
        assert clip["decided_by"] == "fallback" and clip["valid"]
        assert any("LLM unavailable" in f for f in clip["fallbacks"])
    # a refused connection is fatal: later clips stop asking instead of retrying again and again
    assert len(model.calls) <= 2 * 2  # at most one ask (two attempts) per branch that raced the first failure
    assert result.data["llm"]["failed"] >= 1


def test_none_in_every_clip_is_not_found_with_reasons(shapes_mp4, tmp_path):
    none = json.dumps({"reasoning": "no box holds a square", "box": None})
    result = run(tmp_path, shapes_mp4, Script(choose_box=none))
    assert result.status == "not_found"
    ref = result.references[0]
    assert (
        ref["status"] == "not_found" and "no candidate box holds the referent in every clip" in ref["reason"]
    )
    assert "no box holds a square" in ref["reason"]
    assert all(not c["valid"] and c["llm_none"] for c in ref["clips"])
    assert not result.masks().any()

    fallback = run(tmp_path, shapes_mp4, Script(choose_box=none), name="b", not_found="baseline")
    assert fallback.status == "ok"
    assert all(c["valid"] and c["decided_by"] == "baseline" for c in fallback.references[0]["clips"])


def test_none_in_some_clips_keeps_the_others(shapes_mp4, tmp_path, spy_sam2):
    def box(start, _):
        return json.dumps({"reasoning": "r", "box": None if start == 10 else 1})

    result = run(tmp_path, shapes_mp4, Script(choose_box=box))
    clips = result.references[0]["clips"]
    assert [c["valid"] for c in clips] == [True, False, True]
    assert [f for f, _, _ in spy_sam2["boxes"]] == [clips[0]["pivot_frame"], clips[2]["pivot_frame"]]
    assert spy_sam2["starts"] == [clips[0]["pivot_frame"]]  # the middle clip has none: the nearest valid


def test_cached_rerun_makes_no_llm_call_and_no_cache_does(shapes_mp4, tmp_path):
    cache = {"cache": True, "cache_dir": tmp_path / "cache"}
    first = Script()
    run(tmp_path, shapes_mp4, first, **cache)
    asked = sum(first.steps.values())
    assert asked > 0
    again = Script()
    result = run(tmp_path, shapes_mp4, again, force=True, **cache)
    assert sum(again.steps.values()) == 0
    llm = result.data["llm"]
    # every question is answered from the cache; the three clips ask the one syntax question each
    assert llm["cache_hits"] == llm["asks"] == asked + 2 and llm["http_calls"] == 0
    uncached = Script()
    run(tmp_path, shapes_mp4, uncached, name="p", cache=False)
    assert sum(uncached.steps.values()) == asked


def test_trace_records_nodes_calls_and_decisions_without_the_key(shapes_mp4, tmp_path, monkeypatch):
    from alref.trace.record import read_events

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-123456")
    script = Script(
        choose_frame=lambda s, a: "frame 7" if a == 1 else json.dumps({"reasoning": "r", "frame": 1})
    )
    run(tmp_path, shapes_mp4, script)
    trace = tmp_path / "o" / "trace"
    events = read_events(trace)
    kinds = {e["kind"] for e in events}
    assert {
        "run_start",
        "node_start",
        "node_end",
        "llm_call",
        "validation_error",
        "clip_decided",
        "run_end",
    } <= kinds
    nodes = {e["node"] for e in events if e["kind"] == "node_end"}
    assert nodes >= {"describe_event", "choose_frame", "ground_candidates", "describe_boxes", "syntax_analysis",
                     "choose_box", "finish_clip", "decide_references"}  # fmt: skip
    call = next(e for e in events if e["kind"] == "llm_call" and e["step"] == "describe_event")
    images = [i for m in call["messages"] for i in m.get("images", [])]
    assert images and all((trace / i).is_file() for i in images)
    text = (trace / "events.jsonl").read_text()
    assert "sk-test-secret-123456" not in text and "base64" not in text
    result = json.loads((tmp_path / "o" / "result.json").read_text())
    assert "sk-test-secret-123456" not in json.dumps(result)
