"""The pivot-selection nodes one by one, called with a fake runtime context (a workspace of JPEGs and a
scripted LLM; no SAM 2, no detector, no HTTP): what each returns into the state."""

from __future__ import annotations

import json

import numpy as np
import pytest
from langgraph.runtime import Runtime
from scripted_llm import ScriptedChatModel

from alref.agent.context import AgentContext
from alref.agent.llm import LLMClient
from alref.agent.nodes.choose_frame import choose_frame, choose_frame_fallback, route_after_choose_frame
from alref.agent.nodes.decide_references import decide_references
from alref.agent.nodes.finish_clip import finish_clip
from alref.agent.nodes.ground_candidates import ground_candidates, route_after_ground_candidates
from alref.config import Settings
from alref.core.records import Clip, Detection, detections_to_state
from alref.core.workspace import Workspace
from alref.media.writers import save_samples

CLIP = Clip(index=0, start=0, end=10, samples=[0, 2, 4, 6, 9])
BOXES = {0: [], 2: [Detection((1, 1, 9, 9), 0.4, "square")], 4: [],
         6: [Detection((2, 2, 20, 20), 0.7, "square"), Detection((30, 5, 50, 25), 0.5, "circle")], 9: []}  # fmt: skip


@pytest.fixture
def runtime(tmp_path):
    def make(*answers, **settings):
        ws = Workspace(tmp_path / "run")
        save_samples(
            {f: np.full((40, 60, 3), 40 * i, np.uint8) for i, f in enumerate(CLIP["samples"])}, ws.sample
        )
        s = Settings(cache=False, **settings)
        model = ScriptedChatModel(list(answers))
        return Runtime(
            context=AgentContext(settings=s, llm=LLMClient(s, chat_model=model), workspace=ws)
        ), model

    return make


def branch(**extra):
    return {"ref_id": 1, "reference": "the red square", "clip": CLIP, "max_attempts": 2,
            "detections": detections_to_state(BOXES, CLIP["samples"]), "conversation": [], **extra}  # fmt: skip


def test_choose_frame_maps_the_tile_number_to_the_frame_and_rejects_a_number_out_of_range(runtime):
    rt, model = runtime(
        json.dumps({"reasoning": "clear", "frame": 4}), json.dumps({"reasoning": "x", "frame": 9})
    )
    update = choose_frame(branch(), rt)
    assert update["frame"] == 6 and update["frame_decided_by"] == "llm" and update["frame_attempts"] == 1
    bad = choose_frame(branch(), rt)
    assert "frame 9 does not exist" in bad["frame_error"] and "frame" not in bad
    assert route_after_choose_frame({**branch(), **bad}) == "choose_frame"  # one attempt left
    assert route_after_choose_frame({**branch(), **bad, "frame_attempts": 2}) == "choose_frame_fallback"


def test_the_fallback_takes_the_best_scoring_sampled_frame(runtime):
    rt, _ = runtime()
    update = choose_frame_fallback(branch(frame_attempts=2, frame_error="no number"), rt)
    assert update["frame"] == 6 and update["frame_decided_by"] == "fallback"
    assert "no valid answer after 2 attempts" in update["frame_fallback_reason"]


def test_ground_candidates_draws_the_boxes_or_moves_to_a_frame_that_has_some(runtime):
    rt, _ = runtime()
    update = ground_candidates(branch(frame=6), rt)
    assert [c["number"] for c in update["candidates"]] == [1, 2] and update["pivot_frame"] == 6
    assert update["candidates_image"] == str(rt.context.workspace.boxes_image(1, 0, 6))
    moved = ground_candidates(branch(frame=4), rt)  # frame 4 has no box: the next-best sampled frame
    assert moved["pivot_frame"] == 6 and "frame 4 has no candidate box" in moved["pivot_note"]
    empty = ground_candidates(branch(frame=0, detections=detections_to_state({}, CLIP["samples"])), rt)
    assert (
        empty["pivot_frame"] is None and route_after_ground_candidates({**branch(), **empty}) == "finish_clip"
    )


def test_finish_clip_and_decide_references_make_the_decision_records(runtime):
    rt, _ = runtime()
    state = branch(**ground_candidates(branch(frame=6), rt), frame=6, frame_decided_by="llm", box=2,
                   box_decided_by="llm", box_none=False)  # fmt: skip
    decision = finish_clip(state, rt)["decisions"][0]
    assert (
        decision["valid"]
        and decision["pivot_frame"] == 6
        and decision["pivot_box"] == [30.0, 5.0, 50.0, 25.0]
    )
    assert decision["decided_by"] == "llm" and decision["images"]["boxes"] == "boxes/ref1_clip000_frame6.jpg"
    said_none = finish_clip({**state, "box": None, "box_none": True}, rt)["decisions"][0]
    run = {"references": [{"id": 1, "text": "the red square"}], "detections": {"1": branch()["detections"]}}
    found = decide_references({**run, "decisions": [decision]}, rt)["results"][0]
    assert found["not_found"] is None and found["clips"] == [decision]
    missing = decide_references({**run, "decisions": [said_none]}, rt)["results"][0]
    assert missing["not_found"].startswith("the LLM said no candidate box holds the referent")
