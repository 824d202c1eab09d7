"""Step 2: choose the sampled frame where the referent is clearest (validated, re-asked, then
the baseline fallback: the sampled frame with the highest detection score)."""

from __future__ import annotations

import json
from typing import Any

from langgraph.runtime import Runtime

from alref.agent import conversation as conv
from alref.agent.answers import FrameChoice
from alref.agent.context import AgentContext
from alref.agent.state import ClipState
from alref.core.baseline import samples_by_score
from alref.core.records import detections_from_state
from alref.prompts import render


def expected_answer(n: int) -> str:
    return json.dumps({"reasoning": "...", "frame": f"<a number from 1 to {n}>"})


def hint_text(state: ClipState) -> str:
    """LBRU's pivot-frame hint, as the number of the nearest sampled frame when it falls in this clip."""
    hint, clip = state.get("hint_frame"), state["clip"]
    if hint is None or not clip["start"] <= hint < clip["end"]:
        return ""
    nearest = min(range(len(clip["samples"])), key=lambda j: abs(clip["samples"][j] - hint))
    return f" A first look at the whole video suggested that it is easy to see near frame {nearest + 1}."


def choose_frame(state: ClipState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    if state.get("llm_down"):
        return {}
    samples = state["clip"]["samples"]
    n = len(samples)

    def validate(answer: FrameChoice) -> None:
        if not 1 <= answer.frame <= n:
            raise ValueError(f"frame {answer.frame} does not exist: the frames are numbered 1 to {n}")

    update, answer = conv.choose(
        ctx, state, step="choose_frame", schema=FrameChoice,
        first_prompt=render("choose_frame", n_frames=n, reference=state["reference"], hint=hint_text(state)),
        expected=expected_answer(n), attempts_key="frame_attempts", error_key="frame_error", validate=validate, cuts_key="frame_cuts",
    )  # fmt: skip
    if answer is not None:
        update |= {
            "frame": samples[answer.frame - 1],
            "frame_reasoning": answer.reasoning,
            "frame_decided_by": "llm",
        }
    return update


def choose_frame_fallback(state: ClipState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """No usable answer: take the sampled frame with the highest detection score (the baseline)."""
    ctx = runtime.context
    why = conv.fallback_reason(state, "frame_attempts", "frame_error")
    clip = state["clip"]
    ranked = samples_by_score(
        clip, detections_from_state(ctx.detections(state.get("detections"), state["ref_id"], clip["samples"]))
    )
    frame = ranked[0] if ranked else None
    ctx.tracer.event("fallback", step="choose_frame", **conv.trace_context(state), reason=why, frame=frame)
    return {
        "frame": frame,
        "frame_decided_by": "fallback",
        "frame_fallback_reason": why + "; took the sampled frame with the highest detection score",
        "frame_reasoning": "",
    }


def route_after_choose_frame(state: ClipState) -> str:
    return conv.route_choice(state, "frame_decided_by", "frame_attempts", "ground_candidates", "choose_frame",
                             "choose_frame_fallback")  # fmt: skip
