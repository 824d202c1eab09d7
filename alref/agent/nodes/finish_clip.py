"""End of a clip's branch: one result record with every decision and the reason for it."""

from __future__ import annotations

import os
from typing import Any

from langgraph.runtime import Runtime

from alref.agent.context import AgentContext
from alref.agent.state import ClipState


def finish_clip(state: ClipState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    clip = state["clip"]
    candidates = state.get("candidates") or []
    number = state.get("box")
    chosen = next((c for c in candidates if c["number"] == number), None) if number is not None else None
    frame = state.get("pivot_frame")
    fallbacks = [r for r in (state.get("frame_fallback_reason"), state.get("box_fallback_reason")) if r]
    if frame is None:
        reason = state.get("pivot_note") or "no candidate box; clip not used"
    elif state.get("box_none"):
        reason = "the LLM said that no candidate box holds the referent; clip not used"
    else:
        by_frame, by_box = state.get("frame_decided_by"), state.get("box_decided_by")
        reason = f"frame chosen by the {'LLM' if by_frame == 'llm' else 'baseline fallback'}, "
        reason += f"box {number} ({chosen['colour']}) chosen by the {'LLM' if by_box == 'llm' else 'baseline fallback'}"
        if state.get("pivot_note"):
            reason += f"; {state['pivot_note']}"
    decided = {state.get("frame_decided_by"), state.get("box_decided_by")} - {None}
    result = {
        "ref_id": state["ref_id"],
        "clip": clip["index"],
        "start": clip["start"],
        "end": clip["end"],
        "samples": clip["samples"],
        "valid": frame is not None and chosen is not None,
        "pivot_frame": frame if chosen is not None else None,
        "pivot_box": chosen["box"] if chosen else None,
        "pivot_score": chosen["score"] if chosen else None,
        "box_number": number,
        "box_colour": chosen["colour"] if chosen else None,
        "llm_none": bool(state.get("box_none")),
        "decided_by": "llm" if decided == {"llm"} else ("fallback" if decided else "none"),
        "reason": reason,
        "fallbacks": fallbacks,
        "attempts": {"frame": state.get("frame_attempts", 0), "box": state.get("box_attempts", 0)},
        "llm_chosen_frame": state.get("frame") if state.get("frame_decided_by") == "llm" else None,
        "event": state.get("event", ""),
        "frame_reasoning": state.get("frame_reasoning", ""),
        "boxes_description": state.get("boxes_description", ""),
        "subject": state.get("subject", ""),
        "syntax_reasoning": state.get("syntax_reasoning", ""),
        "box_reasoning": state.get("box_reasoning", ""),
        "candidates": candidates,
        "images": {  # relative to OUT/work/agent
            "tile": f"tiles/clip{clip['index']:03d}.jpg",
            "boxes": os.path.relpath(state["candidates_image"], runtime.context.work)
            if state.get("candidates_image")
            else None,
        },
    }
    runtime.context.tracer.event("clip_decided", ref=state["ref_id"], clip=clip["index"], **{
        k: result[k] for k in ("valid", "pivot_frame", "pivot_box", "box_number", "decided_by", "reason", "fallbacks")
    })  # fmt: skip
    if runtime.context.clip_done is not None:
        runtime.context.clip_done()
    return {"clip_results": [result]}
