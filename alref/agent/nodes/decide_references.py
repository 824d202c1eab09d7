"""Last step: every clip's decision, collected per reference in clip order, and the not-found rules:
a reference where the LLM said "no box fits" in every clip that had boxes is not found (or, with
``--not-found baseline``, takes the baseline decisions); one with no box anywhere is not found."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from alref.agent.context import AgentContext
from alref.agent.state import PivotState
from alref.core.baseline import choose_pivot
from alref.core.records import ClipDecision, ReferenceDecision, decision_clip, detections_from_state


def decide_reference(
    ctx: AgentContext, ref_id: int, text: str, decisions: list[ClipDecision], detections: Any
) -> ReferenceDecision:
    clips = sorted(decisions, key=lambda d: d["clip"])
    if any(d["valid"] for d in clips):
        return ReferenceDecision(id=ref_id, text=text, clips=clips, not_found=None)
    undecided = [d for d in clips if d.get("ambiguity")]
    if (
        undecided
    ):  # several candidates fitted equally and none was taken (--ambiguous not-found, or the person)
        what = "; ".join(f"clip {d['clip']}: boxes {', '.join(map(str, d['ambiguity']['numbers']))}, {d['ambiguity']['decided']}"
                         for d in undecided)  # fmt: skip
        return ReferenceDecision(id=ref_id, text=text, clips=clips,
                                 not_found=f"the sentence fits several candidates equally ({what})")  # fmt: skip
    said_none = [d for d in clips if d.get("llm_none")]
    if said_none and all(d.get("llm_none") or not d.get("candidates") for d in clips):
        reasons = "; ".join(f"clip {d['clip']}: {d.get('box_reasoning') or 'no box fits'}" for d in said_none)
        if ctx.settings.not_found == "baseline":
            found = detections_from_state(detections)
            baseline = [choose_pivot(decision_clip(d), found, ctx.settings.pivot, ref_id) for d in clips]
            for b in baseline:
                b["reason"] = "the LLM said no box fits in every clip; --not-found baseline: " + b["reason"]
            return ReferenceDecision(id=ref_id, text=text, clips=baseline, not_found=None)
        why = f"the LLM said no candidate box holds the referent in every clip ({reasons})"
        return ReferenceDecision(id=ref_id, text=text, clips=clips, not_found=why)
    why = "no candidate box in any sampled frame of any clip (the whole-video baseline finds nothing either)"
    return ReferenceDecision(id=ref_id, text=text, clips=clips, not_found=why)


def decide_references(state: PivotState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    by_ref: dict[int, list[ClipDecision]] = {r["id"]: [] for r in state["references"]}
    for decision in state.get("decisions", []):
        by_ref[decision["ref_id"]].append(decision)
    given = state.get("detections")

    def found(ref_id: int):  # the input's detections, else the feed's (all arrived by now)
        if given is not None:
            return given[str(ref_id)]
        return ctx.detections(None, ref_id, sorted({f for c in state["clips"] for f in c["samples"]}))

    results = [
        decide_reference(ctx, r["id"], r["text"], by_ref[r["id"]], found(r["id"]))
        for r in state["references"]
    ]
    summary = {str(r["id"]): {"valid_clips": sum(d["valid"] for d in r["clips"]), "not_found": r["not_found"]}
               for r in results}  # fmt: skip
    ctx.tracer.event("pivots_decided", summary=summary)
    return {"results": results}
