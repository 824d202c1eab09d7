"""Step 5: choose the box that holds the whole subject and nothing else, or none (validated,
re-asked, then the baseline fallback: the highest-scoring box)."""

from __future__ import annotations

import json
from typing import Any

from langgraph.runtime import Runtime

from alref.agent import conversation as conv
from alref.agent.answers import BoxChoice
from alref.agent.context import AgentContext
from alref.agent.state import ClipState
from alref.prompts import render


def expected_answer(n: int) -> str:
    return json.dumps({"reasoning": "...", "box": f"<a number from 1 to {n}, or null>"})


def choose_box(state: ClipState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    if state.get("llm_down"):
        return {}
    n = len(state["candidates"])

    def validate(answer: BoxChoice) -> None:
        if answer.box is not None and not 1 <= answer.box <= n:
            raise ValueError(
                f"box {answer.box} does not exist: the boxes are numbered 1 to {n} (or null for none)"
            )

    update, answer = conv.choose(
        ctx, state, step="choose_box", schema=BoxChoice,
        first_prompt=render("choose_box", reference=state["reference"], subject=state.get("subject") or state["reference"], n_boxes=n),
        expected=expected_answer(n), attempts_key="box_attempts", error_key="box_error", validate=validate, cuts_key="box_cuts",
    )  # fmt: skip
    if answer is not None:
        update |= {
            "box": answer.box,
            "box_none": answer.box is None,
            "box_reasoning": answer.reasoning,
            "box_decided_by": "llm",
        }
    return update


def choose_box_fallback(state: ClipState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """No usable answer: take the highest-scoring box (the baseline)."""
    ctx = runtime.context
    if state.get("llm_down"):
        why = f"LLM unavailable: {state['llm_down']}"
    else:
        why = (
            f"no valid answer after {state.get('box_attempts', 0)} attempts (last: {state.get('box_error')})"
        )
    ctx.tracer.event("fallback", step="choose_box", **conv.trace_context(state), reason=why, box=1)
    return {
        "box": 1,
        "box_none": False,
        "box_decided_by": "fallback",
        "box_fallback_reason": why + "; took the highest-scoring box",
        "box_reasoning": "",
    }


def route_after_choose_box(state: ClipState) -> str:
    return conv.route_choice(
        state, "box_decided_by", "box_attempts", "finish_clip", "choose_box", "choose_box_fallback"
    )
