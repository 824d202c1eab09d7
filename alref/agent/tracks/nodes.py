"""The tracks strategy's steps, one function per node:

``extract_concepts`` (LLM: the referent's category as short noun phrases) → ``generate_tracks`` (the
track source runs SAM 3 on a concept; none found: the next concept) → ``describe_candidates``
(optional) → rounds of ``show_candidates`` (set-of-marks on frames where the pending candidates
are) and ``judge_candidates`` (LLM: accept / reject / uncertain per candidate; the next round shows
only the uncertain ones, on frames not shown before) → ``finish_tracks`` (the union of the accepted
tracks, or the fallback choice). Every step is validated, re-asked with the error, then falls back."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from alref.agent import conversation as conv
from alref.agent.answers import CandidateLabels, ConceptChoice
from alref.agent.context import AgentContext
from alref.agent.questions import ask
from alref.agent.tracks.state import TracksState, number_of, verdict_record
from alref.core.baseline import concept_of
from alref.core.records import Ambiguity, Question, QuestionOption, TrackDecision, TrackRound
from alref.media.boxes import colour_for
from alref.media.marks import draw_marks
from alref.media.tiles import tile_frames
from alref.media.writers import write_jpeg
from alref.prompts import render

MAX_CONCEPT_WORDS = 5


# --- concepts --------------------------------------------------------------------------------------


def extract_concepts(state: TracksState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    if ctx.llm_dead:
        return {"llm_down": ctx.llm_dead}
    extra = max(0, ctx.settings.track_concepts - 1)

    def validate(answer: ConceptChoice) -> None:
        for phrase in [answer.concept, *answer.alternatives]:
            if not phrase.strip():
                raise ValueError("a concept must name a kind of object, e.g. 'dog'")
            if len(phrase.split()) > MAX_CONCEPT_WORDS:
                raise ValueError(
                    f"'{phrase}' is not a short noun phrase: use at most {MAX_CONCEPT_WORDS} words"
                )

    expected = json.dumps({"reasoning": "...", "concept": "<short noun phrase>", "alternatives": ["..."]})
    update, answer = conv.choose(
        ctx, state, step="extract_concepts", schema=ConceptChoice,
        first_prompt=render("extract_concepts", reference=state["reference"], n_alternatives=extra),
        expected=expected, attempts_key="concept_attempts", error_key="concept_error", validate=validate,
        cuts_key="concept_cuts",
    )  # fmt: skip
    if state.get("concept_attempts", 0) == 0:  # the system turn opens the conversation
        update["conversation"] = [conv.message("system", render("system"))] + update["conversation"]
    if answer is not None:
        concepts: list[str] = []
        for phrase in [answer.concept, *answer.alternatives]:
            phrase = " ".join(phrase.lower().split())
            if phrase not in concepts:
                concepts.append(phrase)
        update |= {"concepts": concepts[: 1 + extra], "concepts_decided_by": "llm",
                   "concept_reasoning": answer.reasoning, "concept_index": 0}  # fmt: skip
    return update


def extract_concepts_fallback(state: TracksState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """No usable answer: the sentence's first noun phrase (:func:`alref.core.baseline.concept_of`)."""
    why = conv.fallback_reason(state, "concept_attempts", "concept_error")
    concept = concept_of(state["reference"]) or state["reference"]
    runtime.context.tracer.event(
        "fallback", step="extract_concepts", ref=state["ref_id"], reason=why, concept=concept
    )
    return {"concepts": [concept], "concepts_decided_by": "fallback", "concept_index": 0,
            "concept_fallback_reason": why + f"; took '{concept}' from the sentence"}  # fmt: skip


def route_after_extract_concepts(state: TracksState) -> str:
    return conv.route_choice(state, "concepts_decided_by", "concept_attempts", "generate_tracks", "extract_concepts",
                             "extract_concepts_fallback")  # fmt: skip


# --- tracks ----------------------------------------------------------------------------------------


def generate_tracks(state: TracksState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """SAM 3 tracks of the next concept; the best-scoring ``track_candidates`` become the candidates."""
    ctx = runtime.context
    index = state.get("concept_index", 0)
    concept = state["concepts"][index]
    tracks = sorted(ctx.tools.tracks(concept), key=lambda t: (-t["score"], t["id"]))
    limit = ctx.settings.track_candidates
    update: dict[str, Any] = {
        "concept_index": index + 1,
        "concepts_tried": [*state.get("concepts_tried", []), concept],
    }
    if tracks:
        update |= {"concept": concept, "candidates": tracks[:limit], "dropped": [t["id"] for t in tracks[limit:]],
                   "pending": [t["id"] for t in tracks[:limit]], "round": 0, "rounds": [], "verdicts": {},
                   "reasons": {}, "shown_frames": []}  # fmt: skip
    return update


def route_after_generate_tracks(state: TracksState, settings: Any) -> str:
    if state.get("candidates"):
        if state.get("llm_down"):
            return "judge_candidates_fallback"
        return "describe_candidates" if settings.describe_candidates else "show_candidates"
    if state.get("concept_index", 0) < len(state["concepts"]):
        return "generate_tracks"
    return "finish_tracks"


# --- judging ---------------------------------------------------------------------------------------


def _spread(frames: list[int], count: int) -> list[int]:
    if len(frames) <= count:
        return frames
    return [frames[round(i)] for i in np.linspace(0, len(frames) - 1, count)]


def round_frames(state: TracksState, count: int) -> list[int]:
    """The frames where a pending candidate exists, those not shown yet first, evenly spread."""
    pending = {t["id"]: t for t in state["candidates"] if t["id"] in state["pending"]}
    present = sorted({f for t in pending.values() for f in t["frames"]})
    shown = set(state.get("shown_frames", []))
    fresh = [f for f in present if f not in shown]
    return sorted(
        _spread(fresh, count) if len(fresh) >= min(count, len(present)) else _spread(present, count)
    )


def candidate_list(state: TracksState, ids: list[int]) -> str:
    return ", ".join(f"{number_of(state, i)} ({colour_for(number_of(state, i) - 1)[0]})" for i in ids)


def draw_round(ctx: AgentContext, state: TracksState, frames: list[int], ids: list[int], path: Any) -> str:
    """``frames`` with the candidates ``ids`` drawn (set-of-marks), tiled with the frame numbers."""
    source, concept = ctx.tools, state["concept"]
    by_id = {t["id"]: t for t in state["candidates"]}
    images = []
    pictures = source.frames(frames)
    for f in frames:
        marks = [(number_of(state, i), number_of(state, i) - 1, source.mask(concept, i, f))
                 for i in ids if f in by_id[i]["frames"]]  # fmt: skip
        images.append(draw_marks(pictures[f], marks))
    tile = tile_frames(images, frames, ctx.settings.tile_columns, ctx.settings.tile_max_side)
    return write_jpeg(path, tile.image)


def describe_candidates(state: TracksState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    ids = state["pending"]
    frames = round_frames(state, ctx.settings.track_frames)
    path = draw_round(ctx, state, frames, ids, ctx.workspace.round_image(state["ref_id"], 0))
    prompt = render("describe_candidates", frame_list=", ".join(map(str, frames)), n_candidates=len(ids),
                    concept=state["concept"], candidate_list=candidate_list(state, ids))  # fmt: skip
    conversation = list(state.get("conversation") or [conv.message("system", render("system"))])
    conversation.append(conv.message("user", prompt, [path]))
    return conv.describe(ctx, state, conversation, "describe_candidates", "descriptions")


def show_candidates(state: TracksState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Start a round: the frames to show and the set-of-marks image of the pending candidates."""
    ctx = runtime.context
    number = state.get("round", 0) + 1
    frames = round_frames(state, ctx.settings.track_frames)
    path = draw_round(
        ctx, state, frames, state["pending"], ctx.workspace.round_image(state["ref_id"], number)
    )
    return {"round": number, "round_frames": frames, "round_image": path, "judge_attempts": 0, "judge_cuts": 0,
            "judge_error": None, "judge_decided_by": None, "judge_fallback_reason": None,
            "shown_frames": sorted({*state.get("shown_frames", []), *frames})}  # fmt: skip


def _history(state: TracksState) -> str:
    lines = []
    for r in state.get("rounds", []):
        for v in r["verdicts"]:
            lines.append(f"candidate {v['number']}: {v['verdict']} ({v['reason']})")
    if state.get("descriptions"):
        lines.insert(0, f"Your descriptions of the candidates: {' '.join(state['descriptions'].split())}")
    text = ("\n\nEarlier: " + "; ".join(lines) + ".") if lines else ""
    if state.get("feedback"):  # verification looked at the masks of the accepted candidates
        text += f"\n\n{state['feedback']}"
    return text


def judge_candidates(state: TracksState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    if state.get("llm_down") or ctx.llm_dead:
        return {"llm_down": state.get("llm_down") or ctx.llm_dead}
    numbers = sorted(number_of(state, i) for i in state["pending"])

    def validate(answer: CandidateLabels) -> None:
        given = [label.number for label in answer.labels]
        unknown = sorted(set(given) - set(numbers))
        if unknown:
            raise ValueError(f"candidates {unknown} were not shown: label exactly the numbers {numbers}")
        missing = sorted(set(numbers) - set(given))
        if missing:
            raise ValueError(f"candidates {missing} have no label: label every one of the numbers {numbers}")
        if len(given) != len(set(given)):
            raise ValueError(f"label each candidate once: the numbers are {numbers}")

    prompt = render("judge_candidates", reference=state["reference"], frame_list=", ".join(map(str, state["round_frames"])),
                    n_candidates=len(numbers), concept=state["concept"], candidate_list=candidate_list(state, state["pending"]),
                    history=_history(state), numbers=", ".join(map(str, numbers)))  # fmt: skip
    first = state.get("judge_attempts", 0) == 0
    if first:  # a round is its own conversation: the system turn, then this round's question
        state = {**state, "conversation": [conv.message("system", render("system"))]}
    expected = json.dumps({"reasoning": "...", "labels": [{"number": n, "verdict": "accept | reject | uncertain",
                                                           "reason": "..."} for n in numbers]})  # fmt: skip
    update, answer = conv.choose(
        ctx, state, step="judge_candidates", schema=CandidateLabels, first_prompt=prompt,
        first_images=[state["round_image"]], expected=expected, attempts_key="judge_attempts",
        error_key="judge_error", validate=validate, cuts_key="judge_cuts",
    )  # fmt: skip
    if answer is None:
        return update
    ids = {number_of(state, i): i for i in state["pending"]}
    verdicts = [
        verdict_record(ids[label.number], label.number, label.verdict, label.reason)
        for label in answer.labels
    ]
    return update | _record_round(state, ctx, verdicts, "llm")


def _record_round(state: TracksState, ctx: AgentContext, verdicts: list, decided_by: str) -> dict[str, Any]:
    image = state.get("round_image")
    record = TrackRound(round=state["round"], frames=list(state["round_frames"]), candidates=list(state["pending"]),
                        image=os.path.relpath(image, ctx.workspace.agent) if image else None,
                        verdicts=sorted(verdicts, key=lambda v: v["number"]), decided_by=decided_by)  # fmt: skip
    ctx.tracer.event("candidates_judged", ref=state["ref_id"], round=state["round"], decided_by=decided_by,
                     verdicts=[{k: v[k] for k in ("number", "verdict", "reason")} for v in record["verdicts"]])  # fmt: skip
    return {
        "judge_decided_by": decided_by,
        "rounds": [*state.get("rounds", []), record],
        "verdicts": {**state.get("verdicts", {}), **{str(v["track"]): v["verdict"] for v in verdicts}},
        "reasons": {**state.get("reasons", {}), **{str(v["track"]): v["reason"] for v in verdicts}},
        "pending": [v["track"] for v in verdicts if v["verdict"] == "uncertain"],
    }


def judge_candidates_fallback(state: TracksState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """No usable labels for this round: the pending candidates stay uncertain (finish_tracks decides)."""
    ctx = runtime.context
    why = conv.fallback_reason(state, "judge_attempts", "judge_error")
    ctx.tracer.event("fallback", step="judge_candidates", ref=state["ref_id"], reason=why)
    verdicts = [verdict_record(i, number_of(state, i), "uncertain", why) for i in state["pending"]]
    if not state.get("round"):  # the LLM was down before any round was shown
        state = {**state, "round": 0, "round_frames": [], "round_image": None}
    return {"judge_fallback_reason": why} | _record_round(state, ctx, verdicts, "fallback") | {"pending": []}


def route_after_judge(state: TracksState, max_rounds: int) -> str:
    if state.get("judge_decided_by") == "llm":
        if state["pending"] and state["round"] < max_rounds:
            return "show_candidates"
        return "resolve_uncertain" if undecided(state) else "finish_tracks"
    if state.get("judge_decided_by") == "fallback":
        return "finish_tracks"
    if not state.get("llm_down") and state.get("judge_attempts", 0) < state.get("max_attempts", 3):
        return "judge_candidates"
    return "judge_candidates_fallback"


# --- the answer --------------------------------------------------------------------------------------


def undecided(state: TracksState) -> list[int]:
    """The candidates still uncertain when none was accepted (the LLM could not tell them apart)."""
    verdicts = state.get("verdicts") or {}
    if any(v == "accept" for v in verdicts.values()):
        return []
    return [
        t["id"]
        for t in state.get("candidates") or []
        if verdicts.get(str(t["id"]), "uncertain") == "uncertain"
    ]


def resolve_uncertain(state: TracksState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """The rounds are spent, nothing was accepted and some candidates stay uncertain: ask the person
    (``--ask``, the chat, the server: ``interrupt()``) or decide by ``--ambiguous`` (``best``: the
    highest-scoring uncertain candidate, as before; ``all``: every uncertain one; ``not-found``)."""
    ctx = runtime.context
    ids = undecided(state)
    numbers = [number_of(state, i) for i in ids]
    by_number = dict(zip(numbers, ids, strict=True))
    verdicts, reasons = dict(state.get("verdicts") or {}), dict(state.get("reasons") or {})
    if ctx.settings.ask:
        question = Question(
            kind="ambiguous_tracks", ref=state["ref_id"], reference=state["reference"], frame=None,
            question=(f'After {state.get("round", 0)} rounds it is still unclear which of the candidates '
                      f'{candidate_list(state, ids)} "{state["reference"]}" means. Which do you mean? Answer with '
                      'a number, several numbers, "none", or say it in words.'),
            options=[QuestionOption(number=number_of(state, i), label=f"candidate {candidate_list(state, [i])}")
                     for i in ids],
            image=state.get("round_image"),
        )  # fmt: skip
        choice, given = ask(question, numbers)
        ctx.tracer.event("person_answered", ref=state["ref_id"], numbers=numbers, answer=given)
        if choice.text is not None:  # one more round, with the person's words
            return {"pending": ids, "max_rounds": state.get("round", 0) + 1,
                    "feedback": f'The person you are helping was asked which candidate they mean and said: "{choice.text}".'}  # fmt: skip
        chosen = set() if choice.none else set(choice.numbers)
        decided = f"the person chose {'none' if choice.none else ', '.join(map(str, sorted(chosen)))}"
        record = Ambiguity(numbers=numbers, asked=True, answer=str(given), policy=None, decided=decided)
    else:
        policy = ctx.settings.ambiguous
        best = max(
            ids, key=lambda i: next((t["score"], -t["id"]) for t in state["candidates"] if t["id"] == i)
        )
        chosen = (
            {number_of(state, best)} if policy == "best" else (set(numbers) if policy == "all" else set())
        )
        what = {"best": "the highest-scoring one", "all": "every one of them", "not-found": "none"}[policy]
        record = Ambiguity(numbers=numbers, asked=False, answer=None, policy=policy,
                           decided=f"--ambiguous {policy}: {what} ({', '.join(map(str, sorted(chosen))) or 'none'})")  # fmt: skip
        ctx.tracer.event(
            "ambiguous", ref=state["ref_id"], numbers=numbers, policy=policy, decided=record["decided"]
        )
    if (
        record["policy"] == "best"
    ):  # finish_tracks takes the highest-scoring uncertain one, as without a policy
        return {"ambiguity": record, "pending": []}
    for n, i in by_number.items():
        verdicts[str(i)] = "accept" if n in chosen else "reject"
        reasons[str(i)] = record["decided"] + (f" ({reasons[str(i)]})" if reasons.get(str(i)) else "")
    return {"verdicts": verdicts, "reasons": reasons, "ambiguity": record, "pending": []}


def route_after_resolve(state: TracksState) -> str:
    return "show_candidates" if state.get("pending") else "finish_tracks"


def finish_tracks(state: TracksState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    candidates, verdicts = state.get("candidates") or [], state.get("verdicts") or {}
    accepted = [t["id"] for t in candidates if verdicts.get(str(t["id"])) == "accept"]
    uncertain = [t for t in candidates if verdicts.get(str(t["id"]), "uncertain") == "uncertain"]
    not_found = None
    if not candidates:
        tried = ", ".join(f"'{c}'" for c in state.get("concepts_tried", []))
        not_found = reason = f"SAM 3 found no object for the concepts tried ({tried})"
        decided_by = "none"
    elif state.get("ambiguity") and (accepted or not uncertain):  # a person or --ambiguous settled it
        amb = state["ambiguity"]
        decided_by = "person" if amb["asked"] else "fallback"
        reason = f"candidates {', '.join(map(str, amb['numbers']))} stayed uncertain; {amb['decided']}"
        if not accepted:
            not_found = reason
    elif accepted:
        decided_by = "llm" if all(r["decided_by"] == "llm" for r in state.get("rounds", [])) else "fallback"
        reason = f"the LLM accepted candidate{'s' if len(accepted) > 1 else ''} " + ", ".join(
            f"{number_of(state, i)} ({state['reasons'].get(str(i), '')})" for i in accepted
        )
    elif uncertain:
        best = max(uncertain, key=lambda t: (t["score"], -t["id"]))
        accepted, decided_by = [best["id"]], "fallback"
        why = (
            state.get("judge_fallback_reason")
            or f"still uncertain after {len(state.get('rounds', []))} rounds"
        )
        reason = f"no candidate was accepted ({why}); took the highest-scoring uncertain candidate {number_of(state, best['id'])}"
        if state.get("ambiguity"):
            reason += " (--ambiguous best)"
    else:
        decided_by = "llm"
        not_found = reason = "the LLM rejected every candidate: " + "; ".join(
            f"{number_of(state, t['id'])}: {state['reasons'].get(str(t['id']), '')}" for t in candidates
        )
    extra = {"ambiguity": state["ambiguity"]} if state.get("ambiguity") else {}
    decision = TrackDecision(id=state["ref_id"], text=state["reference"], concepts_tried=state.get("concepts_tried", []),
                             concept=state.get("concept"), candidates=candidates, rounds=state.get("rounds", []),
                             accepted=accepted, decided_by=decided_by, reason=reason, not_found=not_found, **extra)  # fmt: skip
    ctx.tracer.event(
        "tracks_decided", ref=state["ref_id"], accepted=accepted, decided_by=decided_by, reason=reason
    )
    return {"decisions": [decision]}
