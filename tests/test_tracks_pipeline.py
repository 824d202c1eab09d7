"""`alref segment --strategy tracks` through the pipeline with a stand-in concept tracker (the SAM 3 tool's
interface over the synthetic shapes video: a "shape" concept finds the red square and the blue circle
from their pixels) and a scripted LLM: the accepted tracks' union is what masks/ holds, result.json
records the candidates, rounds and reasons, and a sentence that names nothing is one line."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest
import synth
from test_tracks_graph import Judge, labels

import alref
from alref.core.records import Track
from alref.media.writers import mask_to_rle, rle_to_mask
from alref.pipeline import tracks as tracks_module
from alref.tools.registry import ToolSpec

pytestmark = pytest.mark.slow
N, W, H = 20, 160, 120


class ShapeTracks:
    def __init__(self, concept, masks):  # masks: track id -> frame -> RLE
        self.concept, self.masks = concept, masks
        self.tracks = [
            Track(id=tid, concept=concept, score=0.9 - 0.1 * tid, frames=sorted(per),
                  boxes={str(f): [0, 0, 1, 1] for f in per}, area={str(f): 1 for f in per})
            for tid, per in masks.items()
        ]  # fmt: skip

    def mask(self, track_id, frame):
        return rle_to_mask(self.masks[track_id][frame])

    def to_json(self):
        return {
            "concept": self.concept,
            "masks": {str(t): {str(f): r for f, r in m.items()} for t, m in self.masks.items()},
        }

    @classmethod
    def from_json(cls, data):
        return cls(
            data["concept"], {int(t): {int(f): r for f, r in m.items()} for t, m in data["masks"].items()}
        )


class ShapeTracker:
    """Finds red (track 1) and blue (track 2) pixels in the frames it decoded into the store."""

    image_size = 64
    calls: list[str] = []

    def prepare_frame(self, frame):
        return cv2.resize(frame, (self.image_size, self.image_size), interpolation=cv2.INTER_AREA)

    def track(self, store, height, width, concept, progress=None):
        ShapeTracker.calls.append(concept)
        if concept != "shape":
            return ShapeTracks(concept, {})
        masks: dict[int, dict[int, dict]] = {1: {}, 2: {}}
        for f in range(len(store)):
            frame = cv2.resize(np.asarray(store[f]), (width, height), interpolation=cv2.INTER_NEAREST).astype(
                int
            )
            red = (frame[..., 0] > 150) & (frame[..., 1] < 100) & (frame[..., 2] < 100)
            blue = (frame[..., 2] > 150) & (frame[..., 0] < 100)
            for tid, m in ((1, red), (2, blue)):
                if m.any():
                    masks[tid][f] = mask_to_rle(m)
            if progress:
                progress()
        return ShapeTracks(concept, masks)

    def tracks_from_json(self, data):
        return ShapeTracks.from_json(data)


@pytest.fixture
def shapes(tmp_path, monkeypatch):
    spec = ToolSpec(
        "shape-tracks", "concept_tracks", "red and blue shapes", lambda source, device, **_: ShapeTracker()
    )
    monkeypatch.setattr(
        tracks_module, "resolve_tracker", lambda settings: tracks_module.TrackModels(spec, None, "cpu")
    )
    ShapeTracker.calls = []
    return synth.write_shapes_video(tmp_path / "v.mp4", num_frames=N, width=W, height=H, fps=10)


def run(video, out, script=None, **settings):
    model = None if script is None else __import__("scripted_llm").ScriptedChatModel([script] * 40)
    return alref.segment(video, "the red square", out=out, strategy="tracks", chat_model=model, clip_frames=10,
                         overlay=False, cache=False, **settings)  # fmt: skip


def test_the_accepted_track_is_what_the_masks_hold(shapes, tmp_path):
    concept = json.dumps({"reasoning": "a square", "concept": "square", "alternatives": ["shape"]})
    judge = Judge({1: "accept", 2: "reject"}, concept=concept)
    result = run(shapes, tmp_path / "o", judge)
    ref = result.references[0]
    assert ShapeTracker.calls == ["square", "shape"] and ref["concepts_tried"] == ["square", "shape"]
    assert ref["status"] == "ok" and ref["accepted"] == [1] and ref["decided_by"] == "llm"
    assert [c["number"] for c in ref["candidates"]] == [1, 2] and ref["rounds"][0]["verdicts"][1][
        "verdict"
    ] == "reject"
    assert (tmp_path / "o" / "work" / "agent" / ref["rounds"][0]["image"]).is_file()  # what the LLM saw
    assert result.data["mode"] == "agent" and result.data["strategy"] == "tracks"
    for f in (0, N // 2, N - 1):
        x0, y0, x1, y1 = synth.red_square_box(f, N, W, H)
        mask = result.mask(f)
        assert mask[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].all() and not mask[H - 10 :, :].any()
    events = [json.loads(x) for x in (tmp_path / "o" / "trace" / "events.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "candidates_judged" for e in events) and any(
        e["kind"] == "tracks_decided" for e in events
    )


def test_without_an_llm_the_top_track_of_the_sentences_concept(shapes, tmp_path):
    result = alref.segment(shapes, "the shape on the left", out=tmp_path / "o", strategy="tracks", clip_frames=10,
                           overlay=False)  # fmt: skip
    ref = result.references[0]
    assert (
        result.data["mode"] == "baseline" and ref["accepted"] == [1] and "no LLM configured" in ref["reason"]
    )
    assert "highest-scoring SAM 3 track" in result.data["mode_reason"]
    timings = result.data["timings_s"]  # the part of the selection that the tracker took, named
    assert 0 < timings["tracking"] <= timings["selection"]
    again = alref.segment(shapes, "the shape on the left", out=tmp_path / "o", strategy="tracks", clip_frames=10,
                          overlay=False, force=True)  # fmt: skip
    assert again.data["timings_s"]["tracking"] == 0  # the tracks kept in OUT/work/tracks: not tracked again


def test_a_sentence_that_names_nothing_is_one_line(shapes, run_cli):
    code, _, err = run_cli("segment", shapes, "the one that is there", "--strategy", "tracks")
    assert code == 2 and err.count("\n") == 1 and "names no object to track" in err


def test_the_html_trace_shows_the_candidates_and_each_rounds_labels(shapes, tmp_path):
    from alref.trace.html import export_html

    concept = json.dumps({"reasoning": "a shape", "concept": "shape", "alternatives": []})
    run(shapes, tmp_path / "o", Judge({1: "uncertain", 2: "reject"}, {1: "accept"}, concept=concept))
    page = export_html(tmp_path / "o", tmp_path / "page.html").read_text()
    assert "round 1 (llm)" in page and "round 2 (llm)" in page and "uncertain" in page
    assert page.count("data:image/jpeg;base64,") >= 2  # the set-of-marks image of each round
    assert "accepted tracks [1]" in page


def test_tracks_with_the_smoke_sam3_over_http(run_cli, tmp_path, llm_server):
    """The real SAM 3 tool (tiny random weights) and ChatOpenAI against the local test server."""
    from llm_server import Reply

    video = synth.write_shapes_video(tmp_path / "s.mp4", num_frames=12, width=W, height=H, fps=10)
    asked = []

    def answer(body):
        text = json.dumps(body["messages"][-1]["content"])
        asked.append("judge" if "For every numbered candidate" in text else "concept")
        if "finds every object of a category" in text:
            return Reply(
                json.dumps({"reasoning": "a square", "concept": "square", "alternatives": ["shape"]})
            )
        numbers = [int(n) for n in re.search(r"numbers ([\d, ]+)", text).group(1).split(",")]
        return Reply(labels(**{f"n{n}": "accept" if n == numbers[0] else "reject" for n in numbers}))

    llm_server.default = answer
    out = tmp_path / "o"
    code, stdout, stderr = run_cli("segment", video, "the red square", "--strategy", "tracks", "--models", "smoke",
                                   "--llm", "m", "--llm-base-url", llm_server.base_url, "--out", out, "--no-overlay")  # fmt: skip
    assert code == 0, stderr
    result = json.loads((out / "result.json").read_text())
    ref = result["references"][0]
    assert result["strategy"] == "tracks" and result["mode"] == "agent" and asked[0] == "concept"
    assert ref["concepts_tried"][0] == "square" and result["models"]["concept_tracks"]["smoke"] is True
    if ref["candidates"]:  # tiny random weights: whatever SAM 3 tracks is judged
        assert ref["rounds"] and ref["accepted"] == [ref["candidates"][0]["id"]] and ref["status"] == "ok"
        assert "judge" in asked
    else:
        assert ref["status"] == "not_found" and "SAM 3 found no object" in ref["reason"]
    assert len(list((out / "masks").glob("*.png"))) == 12


def test_a_model_that_cannot_see_images_is_named(shapes, tmp_path, llm_server):
    from llm_server import Reply, Status

    def answer(body):
        if "image_url" in json.dumps(body["messages"]):
            return Status(500, {"error": {"message": "image input is not supported - provide the mmproj"}})
        return Reply(json.dumps({"reasoning": "a shape", "concept": "shape", "alternatives": []}))

    llm_server.default = answer
    result = alref.segment(shapes, "the red square", out=tmp_path / "o", strategy="tracks", clip_frames=10,
                           overlay=False, cache=False, llm="m", llm_base_url=llm_server.base_url,
                           llm_transport_retries=0)  # fmt: skip
    ref = result.references[0]
    assert ref["decided_by"] == "fallback" and ref["accepted"] == [1]  # the highest-scoring candidate
    assert "cannot see images" in ref["reason"]
    assert result.data["mode_reason"].endswith("1 of 1 references fell back: the model cannot see images")


def test_a_rounds_frames_are_decoded_in_one_pass(shapes, tmp_path, monkeypatch):
    """The set-of-marks frames of a round come from one decoding pass of the video (a file decodes from
    its start for every read: frame by frame, a round of 6 frames of a long video cost 6 passes), and
    frames already read are not decoded again."""
    from alref.core.workspace import Workspace
    from alref.media.video import Video, open_video
    from alref.progress import Reporter
    from alref.tools.video_tracks import VideoTracks

    video = open_video(shapes)
    expected = {i: video.read_frame(i) for i in (3, 11, 17)}
    passes = []
    read = Video.read_frames
    monkeypatch.setattr(
        Video, "read_frames", lambda self, indices: passes.append(list(indices)) or read(self, indices)
    )
    source = VideoTracks(ShapeTracker(), None, video, Workspace(tmp_path), Reporter(), key="k")
    got = source.frames([17, 3, 11])
    assert passes == [[17, 3, 11]] and list(got) == [17, 3, 11]  # one read of the three
    assert all(np.array_equal(got[i], expected[i]) for i in expected)
    assert list(source.frames([11, 5])) == [11, 5] and passes == [[17, 3, 11], [5]]  # 11 was kept
