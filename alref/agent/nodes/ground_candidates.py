"""Step 3: the candidate boxes on the pivot frame (GroundingDINO at low thresholds), drawn as
numbered coloured boxes. A pivot frame without boxes moves to the next-best sampled frame by
detection score; a clip with none at all is marked invalid."""

from __future__ import annotations

from typing import Any

import numpy as np
from langgraph.runtime import Runtime
from PIL import Image

from alref.agent.context import AgentContext
from alref.agent.state import ClipState
from alref.core.baseline import samples_by_score
from alref.core.records import Candidate, detections_from_state
from alref.media.boxes import draw_boxes
from alref.media.writers import write_jpeg


def ground_candidates(state: ClipState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    c = state["clip"]
    detections = detections_from_state(ctx.detections(state.get("detections"), state["ref_id"], c["samples"]))
    frame = state.get("frame")
    note = None
    if frame is None or not detections.get(frame):
        ranked = samples_by_score(c, detections)
        if not ranked:
            return {
                "pivot_frame": None,
                "candidates": [],
                "pivot_note": "no candidate box on any sampled frame of this clip; clip not used",
            }
        if frame is not None:
            note = f"frame {frame} has no candidate box; took the next-best sampled frame {ranked[0]} by detection score"
        frame = ranked[0]
    found = detections[frame]
    image = np.asarray(Image.open(ctx.frame_path(frame)).convert("RGB"))
    drawn_image, drawn = draw_boxes(image, [d.box for d in found])
    candidates: list[Candidate] = [
        {
            "number": b.number,
            "colour": b.colour,
            "box": [round(v, 2) for v in d.box],
            "score": round(d.score, 4),
            "phrase": d.phrase,
        }
        for b, d in zip(drawn, found, strict=True)
    ]
    path = write_jpeg(ctx.workspace.boxes_image(state["ref_id"], c["index"], frame), drawn_image)
    return {"pivot_frame": frame, "pivot_note": note, "candidates": candidates, "candidates_image": path}


def route_after_ground_candidates(state: ClipState) -> str:
    if not state.get("candidates"):
        return "finish_clip"
    return "choose_box_fallback" if state.get("llm_down") else "describe_boxes"
