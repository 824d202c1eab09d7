"""Verification after propagation: the LLM looks at the masks and says, per referent, whether they
follow the object the sentence means (``correct``), another object (``wrong_object``), only part of
it (``partial``), nothing at all because the target is absent (``target_absent``), or cannot tell
(``unsure``).

A small LangGraph graph in the style of the strategies: ``verify_masks`` asks (with the frames the
caller drew: every mask outlined with its object number, each frame labelled with its frame number
in the video), validates (one verdict per object shown, no other object), is re-asked with the error
up to ``--llm-retries`` times, then ``verify_fallback`` keeps the masks as they are and records why.
It decides and nothing else: what a verdict changes (the next candidate, a rejected track, empty
masks) is the caller's business (:mod:`alref.pipeline.verify`). Checkpointed like the strategies, so
a run killed after the answer does not ask again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from typing_extensions import TypedDict

from alref.agent import conversation as conv
from alref.agent.answers import MaskVerdicts
from alref.agent.context import AgentContext
from alref.agent.graph import traced
from alref.agent.questions import QuestionPending, ask, pending_of, resume_or_raise
from alref.agent.state import Message
from alref.core.records import MaskCheck, ObjectVerdict, Question, QuestionOption
from alref.prompts import render


class VerifyObject(TypedDict):
    id: int
    text: str


class VerifyState(TypedDict, total=False):
    round: int
    objects: list[VerifyObject]
    frames: list[int]  # video frame numbers, as labelled on the image
    image: str
    checks: list[MaskCheck]
    max_attempts: int
    conversation: list[Message]
    llm_down: str | None
    verify_attempts: int
    verify_cuts: int
    verify_error: str | None
    verify_decided_by: str | None
    reasoning: str
    verdicts: list[ObjectVerdict]
    person_said: str | None  # the person's words about unsure objects, sent back to the LLM


class VerifyOutput(TypedDict):
    verdicts: list[ObjectVerdict]
    reasoning: str


def _prompt(state: VerifyState) -> str:
    objects = "\n".join(f'- object {o["id"]}: "{o["text"]}"' for o in state["objects"])
    checks = state.get("checks") or []
    notes = ""
    if checks:
        notes = "\n\nAutomatic checks flagged: " + "; ".join(c["detail"] for c in checks) + "."
    return render("verify_masks", frame_list=", ".join(map(str, state["frames"])), object_list=objects,
                  checks=notes, numbers=", ".join(str(o["id"]) for o in state["objects"]))  # fmt: skip


def verify_masks(state: VerifyState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    if state.get("llm_down") or ctx.llm_dead:
        return {"llm_down": state.get("llm_down") or ctx.llm_dead}
    ids = [o["id"] for o in state["objects"]]

    def validate(answer: MaskVerdicts) -> None:
        given = [v.object for v in answer.verdicts]
        if unknown := sorted(set(given) - set(ids)):
            raise ValueError(f"objects {unknown} do not exist: give a verdict for exactly the objects {ids}")
        if missing := sorted(set(ids) - set(given)):
            raise ValueError(f"objects {missing} have no verdict: give one for each of the objects {ids}")
        if len(given) != len(set(given)):
            raise ValueError(f"give each object one verdict: the objects are {ids}")

    if not state.get("conversation"):
        state = {**state, "conversation": [conv.message("system", render("system"))]}
    expected = json.dumps({"reasoning": "...", "verdicts": [
        {"object": i, "verdict": "correct | wrong_object | partial | target_absent | unsure", "reason": "..."}
        for i in ids]})  # fmt: skip
    first = _prompt(state)
    if state.get("person_said"):
        first = (f"{state['person_said']} With that, judge the objects again.\n\nAnswer with a JSON object only, "
                 f"one verdict for each of the objects {', '.join(map(str, ids))}: {expected}")  # fmt: skip
    update, answer = conv.choose(
        ctx, state, step="verify_masks", schema=MaskVerdicts, first_prompt=first,
        first_images=[state["image"]], expected=expected, attempts_key="verify_attempts",
        error_key="verify_error", validate=validate, cuts_key="verify_cuts",
    )  # fmt: skip
    if answer is None:
        return update
    verdicts = [ObjectVerdict(object=v.object, verdict=v.verdict, reason=v.reason, decided_by="llm")
                for v in sorted(answer.verdicts, key=lambda v: v.object)]  # fmt: skip
    person = {v["object"]: v for v in state.get("verdicts") or [] if v["decided_by"] == "person"}
    verdicts = [person.get(v["object"], v) for v in verdicts]  # what the person said stays
    return update | {"verify_decided_by": "llm", "verdicts": verdicts, "reasoning": answer.reasoning}


def verify_fallback(state: VerifyState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """No usable verdict: the masks stay as they are, and every object says why it is unverified."""
    ctx = runtime.context
    why = conv.fallback_reason(state, "verify_attempts", "verify_error") + "; the masks are kept as they are"
    verdicts = [ObjectVerdict(object=o["id"], verdict="unverified", reason=why, decided_by="fallback")
                for o in state["objects"]]  # fmt: skip
    ctx.tracer.event("fallback", step="verify_masks", round=state.get("round"), reason=why)
    return {"verify_decided_by": "fallback", "verdicts": verdicts, "reasoning": ""}


def route_after_verify(state: VerifyState, ask_person: bool = False) -> str:
    unsure = any(v["verdict"] == "unsure" for v in state.get("verdicts") or [])
    if ask_person and state.get("verify_decided_by") == "llm" and unsure:
        return "ask_about_masks"
    return conv.route_choice(
        state, "verify_decided_by", "verify_attempts", END, "verify_masks", "verify_fallback"
    )


#: yes / no answers to "is object N what you meant?" (1: the masks are right; 2: another object)
YES_NO = {"yes": 1, "y": 1, "correct": 1, "right": 1, "no": 2, "n": 2, "wrong": 2}


def ask_about_masks(state: VerifyState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """The LLM is unsure about some objects and a person is there: ask about each (``interrupt()``):
    yes (the masks are right), no (another object), none (it is not in the video), or words, which go
    back to the LLM."""
    ctx = runtime.context
    verdicts = list(state["verdicts"])
    texts = {o["id"]: o["text"] for o in state["objects"]}
    said = []
    for i, v in enumerate(verdicts):
        if v["verdict"] != "unsure":
            continue
        obj = v["object"]
        question = Question(
            kind="verify_unsure", ref=obj, reference=texts[obj], frame=None, image=state["image"],
            question=(f'I am not sure that object {obj}, outlined on frames {", ".join(map(str, state["frames"]))}, is '
                      f'"{texts[obj]}" ({v["reason"]}). Is it? Answer yes, no (it is another object), none (it is not '
                      "in the video), or say it in words."),
            options=[QuestionOption(number=1, label="yes: the masks are right"),
                     QuestionOption(number=2, label="no: it is another object")],
        )  # fmt: skip
        choice, given = ask(question, [1, 2], words=YES_NO)
        ctx.tracer.event("person_answered", ref=obj, step="verify_masks", answer=given)
        if choice.text is not None:
            said.append(f'About object {obj}, the person says: "{choice.text}".')
            continue
        verdict = (
            "target_absent" if choice.none else ("correct" if choice.numbers[0] == 1 else "wrong_object")
        )
        verdicts[i] = ObjectVerdict(object=obj, verdict=verdict, reason=f"the person answered {given!r}",
                                    decided_by="person")  # fmt: skip
    if said:  # back to the LLM with the person's words
        return {"person_said": " ".join(said), "verify_attempts": 0, "verify_cuts": 0, "verify_decided_by": None,
                "verify_error": None, "verdicts": verdicts}  # fmt: skip
    return {"verdicts": verdicts, "person_said": None}


def build_verify_graph(checkpointer: Any = None, ask_person: bool = False):
    g = StateGraph(VerifyState, context_schema=AgentContext, output_schema=VerifyOutput)
    g.add_node("verify_masks", traced("verify_masks", verify_masks))
    g.add_node("verify_fallback", traced("verify_fallback", verify_fallback))
    g.add_node("ask_about_masks", traced("ask_about_masks", ask_about_masks))
    g.add_edge(START, "verify_masks")
    g.add_conditional_edges("verify_masks", lambda s: route_after_verify(s, ask_person),
                            [END, "verify_masks", "verify_fallback", "ask_about_masks"])  # fmt: skip
    g.add_conditional_edges("ask_about_masks", lambda s: "verify_masks" if s.get("person_said") else END,
                            ["verify_masks", END])  # fmt: skip
    g.add_edge("verify_fallback", END)
    return g.compile(checkpointer=checkpointer)


def run_verification(
    objects: Sequence[VerifyObject],
    frames: Sequence[int],
    image: str,
    checks: Sequence[MaskCheck],
    ctx: AgentContext,
    *,
    round_: int = 1,
    checkpointer: Any = None,
    thread_id: str = "verify",
    answers: dict[str, Any] | None = None,
) -> tuple[list[ObjectVerdict], str]:
    """The verdicts (one per object, in id order) and the LLM's reasoning. With a checkpointer, a
    finished verification under ``thread_id`` is returned as it was, an interrupted one continues."""
    graph = build_verify_graph(checkpointer, ask_person=ctx.settings.ask and checkpointer is not None)
    config = {"configurable": {"thread_id": thread_id}, "recursion_limit": 50}
    inputs: dict[str, Any] | None = {
        "round": round_, "objects": [dict(o) for o in objects], "frames": list(frames), "image": str(image),
        "checks": [dict(c) for c in checks], "max_attempts": 1 + ctx.settings.llm_retries,
    }  # fmt: skip
    if checkpointer is not None:
        snapshot = graph.get_state(config)
        if snapshot.values.get("verdicts") and not snapshot.next:
            return snapshot.values["verdicts"], snapshot.values.get("reasoning", "")
        if snapshot.next:
            inputs = resume_or_raise(graph, config, answers, thread_id)  # None: an interrupted run continues
    durable = {"durability": "sync"} if checkpointer is not None else {}
    final = graph.invoke(inputs, config, context=ctx, **durable)
    if checkpointer is not None and (waiting := pending_of(graph, config)):
        raise QuestionPending(waiting, thread_id)  # the person is asked about unsure objects
    return final["verdicts"], final.get("reasoning", "")
