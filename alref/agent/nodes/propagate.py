"""Last step: collect every clip's decision per reference, apply the not-found rules, and hand
all valid pivots to SAM 2 (one session, one object id per reference)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from alref.agent.context import AgentContext
from alref.agent.state import RunState
from alref.media.sampling import Clip
from alref.pipeline.baseline import ClipPivot, choose_pivot

_DETAIL_KEYS = (
    "llm_none", "attempts", "fallbacks", "llm_chosen_frame", "event", "frame_reasoning", "boxes_description",
    "subject", "syntax_reasoning", "box_reasoning", "box_number", "box_colour", "candidates", "images",
)  # fmt: skip


def to_pivot(result: dict[str, Any]) -> ClipPivot:
    clip = Clip(result["clip"], result["start"], result["end"], tuple(result["samples"]))
    box = tuple(result["pivot_box"]) if result["valid"] else None
    return ClipPivot(
        clip, result["pivot_frame"] if box else None, box, result["pivot_score"], result["reason"],
        decided_by=result["decided_by"], extra={k: result.get(k) for k in _DETAIL_KEYS},
    )  # fmt: skip


def decide_reference(
    ctx: AgentContext, ref_id: int, results: list[dict[str, Any]]
) -> tuple[list[ClipPivot], str | None]:
    """The pivots of one reference, and why it is not found (None when it is)."""
    pivots = [to_pivot(r) for r in sorted(results, key=lambda r: r["clip"])]
    if any(p.valid for p in pivots):
        return pivots, None
    said_none = [r for r in results if r["llm_none"]]
    if said_none and all(r["llm_none"] or not r["candidates"] for r in results):
        reasons = "; ".join(f"clip {r['clip']}: {r['box_reasoning'] or 'no box fits'}" for r in said_none)
        if ctx.settings.not_found == "baseline":
            baseline = [choose_pivot(p.clip, ctx.detections[ref_id], ctx.settings.pivot) for p in pivots]
            for b in baseline:
                b.decided_by = "baseline"
                b.reason = "the LLM said no box fits in every clip; --not-found baseline: " + b.reason
            return baseline, None
        return pivots, f"the LLM said no candidate box holds the referent in every clip ({reasons})"
    return (
        pivots,
        "no candidate box in any sampled frame of any clip (the whole-video baseline finds nothing either)",
    )


def propagate(state: RunState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    return {"summary": collect_and_propagate(runtime.context, state)}


def collect_and_propagate(ctx: AgentContext, state: RunState) -> dict[str, Any]:
    """Also called directly when a resumed run finds the selection already finished."""
    by_ref: dict[int, list[dict[str, Any]]] = {r["id"]: [] for r in state["references"]}
    for result in state.get("clip_results", []):
        by_ref[result["ref_id"]].append(result)
    pivots: dict[int, list[ClipPivot]] = {}
    not_found: dict[int, str] = {}
    for ref_id, results in by_ref.items():
        pivots[ref_id], why = decide_reference(ctx, ref_id, results)
        if why:
            not_found[ref_id] = why
    ctx.tracer.node_start("propagate", valid_pivots={r: sum(p.valid for p in ps) for r, ps in pivots.items()})
    starts = ctx.propagate(pivots) if ctx.propagate is not None else {}
    ctx.outcome = {"pivots": pivots, "not_found": not_found, "starts": starts}
    summary = {
        str(r): {"valid_clips": sum(p.valid for p in ps), "not_found": not_found.get(r)}
        for r, ps in pivots.items()
    }
    ctx.tracer.node_end("propagate", summary=summary)
    return summary
