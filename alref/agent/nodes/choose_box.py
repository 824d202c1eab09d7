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
        if bad := sorted({b for b in answer.ambiguous if not 1 <= b <= n}):
            raise ValueError(f"ambiguous boxes {bad} do not exist: the boxes are numbered 1 to {n}")

    update, answer = conv.choose(
        ctx, state, step="choose_box", schema=BoxChoice,
        first_prompt=person_turn(state, n) or render("choose_box", reference=state["reference"], subject=state.get("subject") or state["reference"], n_boxes=n),
        expected=expected_answer(n), attempts_key="box_attempts", error_key="box_error", validate=validate, cuts_key="box_cuts",
    )  # fmt: skip
    if answer is not None:
        others = sorted({b for b in answer.ambiguous if b != answer.box}) if answer.box is not None else []
        update |= {
            "box": answer.box,
            "box_none": answer.box is None,
            "box_reasoning": answer.reasoning,
            "box_decided_by": "llm",
            "box_ambiguous": others,
            "person_said": None,
        }
    return update


def person_turn(state: ClipState, n: int) -> str | None:
    """The person's words about the boxes (answering a question), as the next question to the LLM."""
    said = state.get("person_said")
    if not said:
        return None
    return (f'The person you are helping was asked which box they mean and said: "{said}". With that, choose the '
            f"box again.\n\n" + expected_answer_line(n))  # fmt: skip


def expected_answer_line(n: int) -> str:
    return (f'Answer with a JSON object only: {{"reasoning": "<why this box>", "box": <a number from 1 to {n}, '
            f'or null if no box fits>, "ambiguous": [<other numbers that fit just as well; usually empty>]}}')  # fmt: skip


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
    if state.get("box_decided_by") == "llm" and state.get("box_ambiguous"):
        return "resolve_ambiguity"
    return conv.route_choice(
        state, "box_decided_by", "box_attempts", "finish_clip", "choose_box", "choose_box_fallback"
    )
