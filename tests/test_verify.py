"""Verification after propagation: the cheap checks, the LLM's verdicts and what each one changes
(pivot: the next candidate, re-propagated alone; tracks: rejected or re-judged tracks; both: target
absent → empty masks), the rounds bound, the LLM down, and what result.json, the trace and the eval
summaries record."""

from __future__ import annotations

import json

import numpy as np
import pytest
import synth
import verify_script
from agent_script import Script
from scripted_llm import ScriptedChatModel, connection_error
from test_tracks_pipeline import shapes  # noqa: F401, F811 - the fixture

import alref
from alref.core.baseline import next_candidate
from alref.core.checks import mask_checks, verification_frames
from alref.core.records import ClipDecision, Detection
from alref.tools.segmentation import Sam2VideoSegmenter

N, W, H = 20, 160, 120


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    folder = tmp_path_factory.mktemp("verify")
    return synth.write_shapes_video(folder / "v.mp4", num_frames=N, width=W, height=H, fps=10)


@pytest.fixture
def sessions(monkeypatch):
    """Every SAM 2 session the run starts, as the list of object ids prompted in it."""
    started: list[list[int]] = []
    original = Sam2VideoSegmenter.start_session

    def spy(self, frames, height, width):
        session = original(self, frames, height, width)
        prompted: list[int] = []
        started.append(prompted)
        add = session.add_box

        def add_box(frame, obj_id, box):
            if obj_id not in prompted:
                prompted.append(obj_id)
            return add(frame, obj_id, box)

        session.add_box = add_box
        return session

    monkeypatch.setattr(Sam2VideoSegmenter, "start_session", spy)
    return started


def segment(video, out, script, refs=("the red square",), **settings):
    model = script.model() if isinstance(script, Script) else ScriptedChatModel(script)
    return alref.segment(video, list(refs), out=out, models="smoke", chat_model=model, clip_frames=10,
                         overlay=False, cache=False, **settings)  # fmt: skip


def events(out):
    return [json.loads(line) for line in (out / "trace" / "events.jsonl").read_text().splitlines()]


# --- the cheap checks -------------------------------------------------------------------------------


def test_cheap_checks_find_empty_vanishing_overlap_and_whole_frame():
    n, pixels = 40, 1000
    areas = {
        1: {},  # empty everywhere
        2: {f: 50 for f in range(n) if not 10 <= f < 25},  # gone for 15 frames, tracked before and after
        3: {f: 900 for f in range(5)},  # 90 % of the frame on frames 0-4
        4: {f: 100 for f in range(30)},
        5: {f: 100 for f in range(30)},
    }
    inter = {(a, b): {} for a in areas for b in areas if a < b}
    inter[(4, 5)] = {f: 80 for f in range(20)}  # IoU 80/120 on 20 of the 30 frames
    found = mask_checks(areas, inter, n, pixels)
    kinds = {(c["check"], c["object"]) for c in found}
    assert kinds == {("empty", 1), ("vanishing", 2), ("whole_frame", 3), ("overlap", 4)}
    vanishing = next(c for c in found if c["check"] == "vanishing")
    assert vanishing["frames"] == [10, 24]
    overlap = next(c for c in found if c["check"] == "overlap")
    assert overlap["other"] == 5 and overlap["frames"] == [0, 19]
    # a short gap is no vanishing; a light overlap is none
    areas[2] = {f: 50 for f in range(n) if f != 7}
    inter[(4, 5)] = {f: 10 for f in range(30)}
    assert {c["check"] for c in mask_checks(areas, inter, n, pixels)} == {"empty", "whole_frame"}
    # the frames shown: spread over the objects' span, plus the middle of a vanishing span
    areas[2] = {f: 50 for f in range(n) if not 10 <= f < 25}
    shown = verification_frames(areas, [2], mask_checks(areas, inter, n, pixels), n, 4)
    assert shown[0] == 0 and shown[-1] == n - 1 and 17 in shown and len(shown) == 5


def test_next_candidate_takes_the_next_box_then_the_next_frame():
    det = {0: [Detection((0, 0, 10, 10), 0.9, "a"), Detection((20, 0, 30, 10), 0.5, "b")],
           5: [Detection((40, 0, 50, 10), 0.7, "c")], 9: []}  # fmt: skip
    decision = ClipDecision(ref_id=1, clip=0, start=0, end=10, samples=[0, 5, 9], valid=True, pivot_frame=0,
                            pivot_box=[0, 0, 10, 10], pivot_score=0.9, decided_by="llm", reason="r",
                            box_reasoning="box 1 is the square")  # fmt: skip
    first = next_candidate(decision, det, [[0, 0, 0, 10, 10]], 1)
    assert first["valid"] and first["pivot_frame"] == 0 and first["pivot_box"] == [20, 0, 30, 10]
    assert first["decided_by"] == "verification" and first["box_reasoning"] == "box 1 is the square"
    assert (
        first["revised"]["previous_box"] == [0, 0, 10, 10]
        and first["revised"]["previous_decided_by"] == "llm"
    )
    second = next_candidate(first, det, [[0, 0, 0, 10, 10], [0, 20, 0, 30, 10]], 2)
    assert second["pivot_frame"] == 5 and second["pivot_box"] == [40, 0, 50, 10]
    assert second["revised"]["previous_box"] == [0, 0, 10, 10]  # the LLM's own choice, not the first revision
    none = next_candidate(second, det, [[0, 0, 0, 10, 10], [0, 20, 0, 30, 10], [5, 40, 0, 50, 10]], 3)
    assert not none["valid"] and none["pivot_box"] is None and "no other candidate" in none["reason"]


# --- the pivot strategy -----------------------------------------------------------------------------


def test_correct_masks_are_kept_and_the_verification_is_recorded(video, tmp_path, sessions):
    script = Script()
    out = tmp_path / "o"
    result = segment(video, out, script).data
    assert script.steps["verify_masks"] == 1 and len(sessions) == 1
    record = result["verification"]
    assert record["llm"] and record["changed_objects"] == [] and record["repropagated"] == []
    (round1,) = record["rounds"]
    assert round1["verdicts"] == [
        {"object": 1, "verdict": "correct", "reason": "correct 1", "decided_by": "llm"}
    ]
    assert round1["frames"][0] >= 0 and (out / "work" / "agent" / round1["image"]).is_file()
    assert result["references"][0]["verification"]["verdict"] == "correct"
    # the LLM was shown the frames with the video's frame numbers, and the image
    (_, _, messages) = next(r for r in script.requests if r[0] == "verify_masks")
    question = verify_script.text_of(messages[-1])
    assert f"frames {', '.join(map(str, round1['frames']))} of the video" in question
    assert any(p.get("type") == "image_url" for p in messages[-1].content if isinstance(p, dict))
    traced = [e for e in events(out) if e["kind"] == "verification_round"]
    assert len(traced) == 1 and traced[0]["image"].startswith("images/")
    assert (out / "trace" / traced[0]["image"]).is_file()
    from alref.trace.html import export_html

    page = export_html(out, tmp_path / "page.html").read_text()
    assert "<h2>Verification</h2>" in page and "verification round 1: frames" in page and "correct 1" in page


def test_wrong_object_takes_the_next_candidate_and_repropagates_only_that_object(video, tmp_path, sessions):
    plain = segment(
        video, tmp_path / "plain", Script(), refs=("the red square", "the blue circle"), verify=False
    )
    script = Script(verify_masks=lambda m: verify_script.verdicts(m, o2="wrong_object"))
    out = tmp_path / "o"
    result = segment(video, out, script, refs=("the red square", "the blue circle"))
    assert sessions[-2:] == [[1, 2], [2]]  # the run's one session, then object 2 alone
    record = result.data["verification"]
    assert record["repropagated"] == [2] and record["changed_objects"] == [2]
    first, second = result.references
    was = plain.references[1]
    for before, after in zip(was["clips"], second["clips"], strict=True):
        assert after["decided_by"] == "verification"
        assert (after["pivot_frame"], after["pivot_box"]) != (before["pivot_frame"], before["pivot_box"])
        assert after["revised"]["previous_box"] == before["pivot_box"]
    assert first["clips"] == plain.references[0]["clips"]
    # object 1's masks are untouched; object 2's are those of its new prompts (files and masks.json agree)
    masks = json.loads((out / "masks.json").read_text())
    before = json.loads((tmp_path / "plain" / "masks.json").read_text())
    assert masks["objects"][0]["masks"] == before["objects"][0]["masks"]
    for f in (0, N // 2, N - 1):
        assert np.array_equal(result.mask(f, 2), alref.SegmentResult(out, result.data).mask(f, 2))
        png = np.asarray(__import__("PIL.Image").Image.open(out / "objects" / "2" / f"{f:05d}.png")) > 0
        assert np.array_equal(png, result.mask(f, 2))
    assert not list(out.rglob(".*.tmp"))  # no temporary file left behind


def test_target_absent_empties_the_masks_with_the_reason(video, tmp_path, sessions):
    script = Script(verify_masks=lambda m: verify_script.verdicts(m, o1="target_absent"))
    result = segment(video, tmp_path / "o", script)
    ref = result.references[0]
    assert result.status == "not_found" and ref["status"] == "not_found"
    assert "target is absent" in ref["reason"] and "target_absent 1" in ref["reason"]
    assert not result.masks(1).any() and ref["masks"]["frames_with_mask"] == 0
    assert len(sessions) == 1  # nothing to propagate again


def test_rounds_are_bounded(video, tmp_path, sessions):
    script = Script(verify_masks=lambda m: verify_script.verdicts(m, o1="wrong_object"))
    result = segment(video, tmp_path / "o", script, verify_rounds=2)
    record = result.data["verification"]
    assert [r["round"] for r in record["rounds"]] == [1, 2] and script.steps["verify_masks"] == 2
    assert record["repropagated"] == [1, 1] and len(sessions) == 3
    assert all(c["revised"]["round"] == 2 for c in result.references[0]["clips"] if c["valid"])


def test_a_bad_verdict_is_asked_again(video, tmp_path):
    answers = iter(
        [json.dumps({"reasoning": "r", "verdicts": [{"object": 7, "verdict": "correct", "reason": "x"}]})]
    )

    def verify(messages):
        return next(answers, None) or verify_script.verdicts(messages)

    script = Script(verify_masks=verify)
    out = tmp_path / "o"
    result = segment(video, out, script)
    assert script.steps["verify_masks"] == 2
    assert result.data["verification"]["rounds"][0]["verdicts"][0]["verdict"] == "correct"
    invalid = [e for e in events(out) if e["kind"] == "validation_error" and e["step"] == "verify_masks"]
    assert len(invalid) == 1 and "objects [7] do not exist" in invalid[0]["error"]


def test_the_llm_down_during_verification_keeps_the_masks(video, tmp_path, sessions):
    script = Script()
    calls = {"n": 0}

    def answer(messages):
        if verify_script.is_verify(messages):
            calls["n"] += 1
            raise connection_error()
        return script(messages)

    out = tmp_path / "o"
    result = segment(video, out, [answer] * 60, llm_transport_retries=0, llm_backoff=0)
    plain = segment(video, tmp_path / "plain", Script(), verify=False)
    assert calls["n"] >= 1 and result.status == "ok" and len(sessions) == 2
    (verdict,) = result.data["verification"]["rounds"][0]["verdicts"]
    assert verdict["verdict"] == "unverified" and verdict["decided_by"] == "fallback"
    assert "LLM unavailable" in verdict["reason"] and "kept" in verdict["reason"]
    assert np.array_equal(result.masks(1), plain.masks(1))
    assert any(e["kind"] == "fallback" and e["step"] == "verify_masks" for e in events(out))


def test_without_an_llm_only_the_cheap_checks_run(video, tmp_path):
    result = alref.segment(video, "the red square", out=tmp_path / "o", models="smoke", clip_frames=10,
                           overlay=False, no_llm=True).data  # fmt: skip
    record = result["verification"]
    assert not record["llm"] and record["rounds"] == [] and "no LLM configured" in record["reason"]
    assert isinstance(record["checks"], list)


# --- the tracks strategy ----------------------------------------------------------------------------


def test_tracks_partial_judges_the_rejected_again_and_wrong_rejects(tmp_path, shapes):  # noqa: F811 - the imported fixture
    """``shapes``: the shapes video, tracked by the stand-in concept tracker (test_tracks_pipeline)."""
    from test_tracks_graph import Judge

    concept = json.dumps({"reasoning": "shapes", "concept": "shape", "alternatives": []})

    def run(out, judge, **settings):
        model = ScriptedChatModel([judge] * 40)
        return alref.segment(shapes, "the shapes", out=out, strategy="tracks", chat_model=model, clip_frames=10,
                             overlay=False, cache=False, **settings)  # fmt: skip

    partial = lambda m: verify_script.verdicts(m, o1="partial")  # noqa: E731
    judge = Judge({1: "accept", 2: "reject"}, {2: "accept"}, concept=concept, verify=[partial])
    result = run(tmp_path / "p", judge)
    ref = result.references[0]
    assert judge.asked == [[1, 2], [2]]  # the second round shows the rejected candidate again
    assert ref["accepted"] == [1, 2] and [r["round"] for r in ref["rounds"]] == [1, 2]
    assert result.data["verification"]["rounds"][0]["changes"][0]["action"] == "rejudge"
    mask = result.mask(N // 2)  # the union of both tracks is what masks/ holds now
    x0, y0, x1, y1 = synth.red_square_box(N // 2, N, W, H)
    cx, cy, _ = synth.blue_circle_centre(N // 2, N, W, H)
    assert mask[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].all() and mask[cy, cx]
    wrong = lambda m: verify_script.verdicts(m, o1="wrong_object")  # noqa: E731
    judge = Judge({1: "accept", 2: "reject"}, concept=concept, verify=[wrong])
    result = run(tmp_path / "w", judge)
    ref = result.references[0]
    assert judge.asked == [[1, 2]] and ref["status"] == "not_found" and not result.masks(1).any()
    assert "rejected every candidate" in ref["reason"]


# --- through the CLI, against the local OpenAI-compatible server ---------------------------------------


def test_segment_verifies_over_http_and_says_so(run_cli, video, tmp_path, llm_server, monkeypatch):
    from llm_server import Reply

    monkeypatch.setenv("ALREF_LLM_BACKOFF", "0")
    script = Script()
    llm_server.default = lambda body: Reply(script(body["messages"]))

    def images_sent() -> int:
        return sum(any(isinstance(m["content"], list) and any(p.get("type") == "image_url" for p in m["content"])
                       for m in r["messages"]) for r in llm_server.chat_requests)  # fmt: skip

    def run(out, *extra):
        return run_cli("segment", str(video), "the red square", "--models", "smoke", "--llm", "m", "--llm-base-url",
                       llm_server.base_url, "--out", str(out), "--clip-frames", "10", "--no-cache", *extra)  # fmt: skip

    code, _, stderr = run(tmp_path / "off", "--no-verify")
    assert code == 0, stderr
    without = images_sent()
    off = json.loads((tmp_path / "off" / "result.json").read_text())
    assert off["verification"]["rounds"] == [] and "--no-verify" in off["verification"]["reason"]
    code, _, stderr = run(tmp_path / "on", "--verify", "--verify-rounds", "2")
    assert code == 0, stderr
    assert images_sent() - without > without  # the second run sent its own requests plus the verification
    result = json.loads((tmp_path / "on" / "result.json").read_text())
    assert result["verification"]["rounds"][0]["verdicts"][0]["verdict"] == "correct"
    assert result["settings"]["verify"] is True and result["settings"]["verify_rounds"] == 2
    code, shown, _ = run_cli("trace", "show", str(tmp_path / "on"))
    assert code == 0 and "verification round 1" in shown and "correct" in shown
    code, helptext, _ = run_cli("segment", "--help")
    assert "--verify" in helptext and "--verify-rounds" in helptext
