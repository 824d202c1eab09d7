"""End of a clip's branch: the clip's decision record, with every step's answer and the reason."""

from __future__ import annotations

import os
from typing import Any

from langgraph.runtime import Runtime

from alref.agent.context import AgentContext
from alref.agent.state import ClipState
from alref.core.records import ClipDecision, clip_fields


def _by(decided: str | None) -> str:
    return "LLM" if decided == "llm" else "baseline fallback"


def numbering(samples: list[int]) -> str:
    """How the LLM's frame numbers (the clip's tile, 1..n) map to the video's frames (0-based)."""
    return "the LLM numbers the sampled frames as on its tile: " + ", ".join(
        f"{i} = frame {f}" for i, f in enumerate(samples, start=1)
    )


def finish_clip(state: ClipState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    clip = state["clip"]
    candidates = state.get("candidates") or []
    number = state.get("box")
    chosen = next((c for c in candidates if c["number"] == number), None) if number is not None else None
    frame = state.get("pivot_frame")
    fallbacks = [r for r in (state.get("frame_fallback_reason"), state.get("box_fallback_reason")) if r]
    if frame is None:
        reason = state.get("pivot_note") or "no candidate box; clip not used"
    elif state.get("box_none") and state.get("ambiguity"):
        reason = "clip not used"
    elif state.get("box_none"):
        reason = "the LLM said that no candidate box holds the referent; clip not used"
    else:
        shown = clip["samples"].index(frame) + 1 if frame in clip["samples"] else None
        reason = f"frame {frame}" + (f" (number {shown} on the LLM's tile)" if shown else "")
        reason += f" chosen by the {_by(state.get('frame_decided_by'))}, "
        reason += f"box {number} ({chosen['colour'] if chosen else '?'}) chosen by the {_by(state.get('box_decided_by'))}"
        if state.get("pivot_note"):
            reason += f"; {state['pivot_note']}"
    if state.get("ambiguity"):
        reason += f"; ambiguous: boxes {', '.join(map(str, state['ambiguity']['numbers']))} fit equally, {state['ambiguity']['decided']}"
    decided = {state.get("frame_decided_by"), state.get("box_decided_by")} - {None}
    image = state.get("candidates_image")
    decision = ClipDecision(
        ref_id=state["ref_id"],
        **clip_fields(clip),
        valid=frame is not None and chosen is not None,
        pivot_frame=frame if chosen is not None else None,
        pivot_box=chosen["box"] if chosen else None,
        pivot_score=chosen["score"] if chosen else None,
        decided_by=(
            "person"
            if (state.get("ambiguity") or {}).get("asked") and chosen is not None
            else "llm"
            if decided == {"llm"}
            else ("fallback" if decided else "none")
        ),  # fmt: skip
        reason=reason,
        llm_none=bool(state.get("box_none")) and not state.get("ambiguity"),
        attempts={"frame": state.get("frame_attempts", 0), "box": state.get("box_attempts", 0)},
        fallbacks=fallbacks,
        llm_chosen_frame=state.get("frame") if state.get("frame_decided_by") == "llm" else None,
        event=state.get("event", ""),
        frame_reasoning=state.get("frame_reasoning", ""),
        frame_numbers=numbering(clip["samples"]),
        boxes_description=state.get("boxes_description", ""),
        subject=state.get("subject", ""),
        syntax_reasoning=state.get("syntax_reasoning", ""),
        box_reasoning=state.get("box_reasoning", ""),
        box_number=number,
        box_colour=chosen["colour"] if chosen else None,
        candidates=candidates,
        **({"ambiguity": state["ambiguity"]} if state.get("ambiguity") else {}),
        **(
            {"extra_boxes": extra}
            if (
                extra := [
                    c["box"]
                    for c in candidates
                    if c["number"] in (state.get("extra_boxes") or []) and chosen is not None
                ]
            )
            else {}
        ),
        images={  # relative to OUT/work/agent
            "tile": os.path.relpath(ctx.workspace.clip_tile(clip["index"]), ctx.workspace.agent),
            "boxes": os.path.relpath(image, ctx.workspace.agent) if image else None,
        },
    )
    ctx.tracer.event("clip_decided", ref=state["ref_id"], clip=clip["index"], **{
        k: decision[k] for k in ("valid", "pivot_frame", "pivot_box", "box_number", "decided_by", "reason", "fallbacks", "frame_numbers")
    })  # fmt: skip
    return {"decisions": [decision]}
