"""After ``choose_box``, when the LLM says several boxes fit the sentence equally: ask the person
(``--ask``, the chat, the app, the LangGraph server: a LangGraph ``interrupt()``), or decide by
``--ambiguous`` — ``best`` (the LLM's pick), ``all`` (every box that fits: one SAM 2 object each, one
mask for the referent) or ``not-found``. Either way the clip records that it was ambiguous and what was
taken. The person may name boxes, say "none", or say it in words: words go back to ``choose_box``."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from alref.agent.context import AgentContext
from alref.agent.questions import ask
from alref.agent.state import ClipState
from alref.core.records import Ambiguity, Question, QuestionOption


def _label(candidates: list[dict[str, Any]], numbers: list[int]) -> str:
    colour = {c["number"]: c["colour"] for c in candidates}
    return ", ".join(f"{n} ({colour.get(n, '?')})" for n in numbers)


def question_of(state: ClipState) -> Question:
    numbers = [state["box"], *state["box_ambiguous"]]
    candidates = state["candidates"]
    options = [QuestionOption(number=c["number"], label=f"box {c['number']} ({c['colour']})", box=c["box"])
               for c in candidates]  # fmt: skip
    text = (f'Several boxes fit "{state["reference"]}" equally on frame {state.get("pivot_frame")}: '
            f"{_label(candidates, numbers)}. Which do you mean? Answer with a number, several numbers, "
            f'"none", or say it in words.')  # fmt: skip
    return Question(kind="ambiguous_box", ref=state["ref_id"], clip=state["clip"]["index"], reference=state["reference"],
                    frame=state.get("pivot_frame"), question=text, options=options,
                    image=state.get("candidates_image"))  # fmt: skip


def resolve_ambiguity(state: ClipState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    numbers = [state["box"], *state["box_ambiguous"]]
    where = {"ref": state["ref_id"], "clip": state["clip"]["index"]}
    if ctx.settings.ask:
        choice, given = ask(question_of(state), [c["number"] for c in state["candidates"]])
        ctx.tracer.event("person_answered", **where, numbers=numbers, answer=given)
        if choice.text is not None:  # words: back to the LLM with them
            return {"person_said": choice.text, "box_attempts": 0, "box_cuts": 0, "box_decided_by": None,
                    "box_error": None, "box_ambiguous": []}  # fmt: skip
        if choice.none:
            decided, update = (
                "none (the clip is not used)",
                {"box": None, "box_none": True, "extra_boxes": []},
            )
        else:
            first, *more = choice.numbers
            decided = f"box{'es' if more else ''} {', '.join(map(str, choice.numbers))}"
            update = {"box": first, "box_none": False, "extra_boxes": list(more)}
        record = Ambiguity(
            numbers=numbers, asked=True, answer=str(given), policy=None, decided=f"the person chose {decided}"
        )
        return update | {"box_ambiguous": [], "ambiguity": record, "box_reasoning": f"{state.get('box_reasoning', '')} "
                         f"(the person was asked and chose {decided})".strip()}  # fmt: skip
    policy = ctx.settings.ambiguous
    if policy == "all":
        update, decided = (
            {"extra_boxes": numbers[1:]},
            f"every box that fits ({', '.join(map(str, numbers))})",
        )
    elif policy == "not-found":
        update, decided = {"box": None, "box_none": True, "extra_boxes": []}, "none: the clip is not used"
    else:
        update, decided = {"extra_boxes": []}, f"the LLM's pick, box {numbers[0]}"
    record = Ambiguity(
        numbers=numbers, asked=False, answer=None, policy=policy, decided=f"--ambiguous {policy}: {decided}"
    )
    ctx.tracer.event("ambiguous", **where, numbers=numbers, policy=policy, decided=record["decided"])
    return update | {"box_ambiguous": [], "ambiguity": record}


def route_after_resolve(state: ClipState) -> str:
    return "choose_box" if state.get("person_said") else "finish_clip"
