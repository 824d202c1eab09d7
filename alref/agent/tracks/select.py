"""The tracks strategy for every caller: the graph when an LLM is configured, else the highest-scoring
track of the sentence's first concept. Returns one :class:`TrackDecision` per reference, in order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from alref.agent.context import AgentContext
from alref.agent.questions import QuestionPending, pending_of, resume_or_raise
from alref.agent.tracks.state import TrackSource
from alref.config import Settings
from alref.core.baseline import concept_of
from alref.core.records import ObjectVerdict, Reference, TrackDecision
from alref.trace.record import NullTracer, Tracer


def select_tracks(
    references: Sequence[Reference],
    settings: Settings,
    source: TrackSource,
    ctx: AgentContext | None = None,
    *,
    checkpointer: Any = None,
    thread_id: str = "tracks",
    on_reference: Callable[[], None] | None = None,
    tracer: Tracer | None = None,
    resume: dict[str, Any] | None = None,
) -> list[TrackDecision]:
    """One decision per reference, in order. With ``ctx.settings.ask`` a reference whose candidates stay
    uncertain stops the graph with a question (:class:`QuestionPending`); ``resume`` answers it."""
    if ctx is None:
        decisions = []
        for ref in references:
            decisions.append(_top_track(ref, source, tracer or NullTracer()))
            if on_reference is not None:
                on_reference()
        return decisions
    from alref.agent.tracks.graph import build_tracks_graph

    graph = build_tracks_graph(settings, checkpointer)
    config = {"configurable": {"thread_id": thread_id}, "max_concurrency": settings.llm_concurrency,
              "recursion_limit": 200}  # fmt: skip
    inputs: dict[str, Any] | None = {
        "references": [dict(r) for r in references],
        "max_attempts": 1 + settings.llm_retries,
    }
    if checkpointer is not None:
        snapshot = graph.get_state(config)
        if snapshot.values.get("decisions") and not snapshot.next:
            return _ordered(snapshot.values["decisions"], references)
        if snapshot.next:
            inputs = resume_or_raise(graph, config, resume, thread_id)  # None: an interrupted run continues
    durable = {"durability": "sync"} if checkpointer is not None else {}
    decisions: list[TrackDecision] = []
    for mode, chunk in graph.stream(
        inputs, config, context=ctx, stream_mode=["updates", "values"], **durable
    ):
        if mode == "updates" and on_reference is not None:
            for update in chunk.values():
                for _ in (update or {}).get("decisions", []) if isinstance(update, dict) else []:
                    on_reference()
        elif mode == "values":
            decisions = chunk.get("decisions", decisions)
    if checkpointer is not None and (waiting := pending_of(graph, config)):
        raise QuestionPending(waiting, thread_id)
    return _ordered(decisions, references)


def _ordered(decisions: list[TrackDecision], references: Sequence[Reference]) -> list[TrackDecision]:
    by_id = {d["id"]: d for d in decisions}
    return [by_id[r["id"]] for r in references]


def _top_track(ref: Reference, source: TrackSource, tracer: Tracer) -> TrackDecision:
    """No LLM: the highest-scoring track of the sentence's first concept."""
    concept = concept_of(ref["text"]) or ref["text"]
    tracks = sorted(source.tracks(concept), key=lambda t: (-t["score"], t["id"]))
    if not tracks:
        why = (
            f"SAM 3 found no object for the concept '{concept}' (taken from the sentence; no LLM configured)"
        )
        decision = TrackDecision(id=ref["id"], text=ref["text"], concepts_tried=[concept], concept=concept, candidates=[],
                                 rounds=[], accepted=[], decided_by="baseline", reason=why, not_found=why)  # fmt: skip
    else:
        why = (f"no LLM configured: the highest-scoring SAM 3 track ({tracks[0]['score']:.3f}) of the concept "
               f"'{concept}' taken from the sentence")  # fmt: skip
        decision = TrackDecision(id=ref["id"], text=ref["text"], concepts_tried=[concept], concept=concept,
                                 candidates=tracks, rounds=[], accepted=[tracks[0]["id"]], decided_by="baseline",
                                 reason=why, not_found=None)  # fmt: skip
    tracer.event(
        "tracks_decided", ref=ref["id"], accepted=decision["accepted"], decided_by="baseline", reason=why
    )
    return decision


def rejudge(
    decision: TrackDecision,
    verdict: ObjectVerdict,
    round_: int,
    ctx: AgentContext,
    *,
    checkpointer: Any = None,
    thread_id: str = "rejudge",
    answers: dict[str, Any] | None = None,
) -> TrackDecision:
    """A reference's decision after verification said its masks follow the wrong object (its accepted
    tracks are rejected; the uncertain ones are judged again) or only part of what the sentence means
    (the rejected and uncertain tracks are judged again). The judge is told what verification saw."""
    from alref.agent.tracks.graph import build_rejudge_graph

    verdicts: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for r in decision["rounds"]:
        for v in r["verdicts"]:
            verdicts[str(v["track"])], reasons[str(v["track"])] = v["verdict"], v["reason"]
    for t in decision["candidates"]:
        verdicts.setdefault(str(t["id"]), "uncertain")
    if verdict["verdict"] == "wrong_object":
        for tid in decision["accepted"]:
            verdicts[str(tid)] = "reject"
            reasons[str(tid)] = f"verification: {verdict['reason']}"
        pending = [t["id"] for t in decision["candidates"] if verdicts[str(t["id"])] == "uncertain"]
        told = "follow the wrong object"
    else:
        pending = [t["id"] for t in decision["candidates"]
                   if verdicts[str(t["id"])] in ("reject", "uncertain") and t["id"] not in decision["accepted"]]  # fmt: skip
        told = "miss part of what the sentence means"
    shown = sorted({f for r in decision["rounds"] for f in r["frames"]})
    last = max((r["round"] for r in decision["rounds"]), default=0)
    state: dict[str, Any] = {
        "ref_id": decision["id"], "reference": decision["text"], "max_attempts": 1 + ctx.settings.llm_retries,
        "concept": decision["concept"], "concepts_tried": decision["concepts_tried"],
        "candidates": decision["candidates"], "rounds": decision["rounds"], "verdicts": verdicts,
        "reasons": reasons, "pending": pending, "round": last, "shown_frames": shown, "max_rounds": last + 1,
        "feedback": f"A check of the masks after tracking (verification round {round_}) found that the accepted "
                    f"candidates {told}: {verdict['reason']}. Judge the candidates shown again with this in mind.",
    }  # fmt: skip
    graph = build_rejudge_graph(checkpointer)
    config = {"configurable": {"thread_id": thread_id}, "recursion_limit": 50}
    inputs: dict[str, Any] | None = state
    if checkpointer is not None:
        snapshot = graph.get_state(config)
        if snapshot.values.get("decisions") and not snapshot.next:
            return snapshot.values["decisions"][-1]
        if snapshot.next:
            inputs = resume_or_raise(graph, config, answers, thread_id)
    durable = {"durability": "sync"} if checkpointer is not None else {}
    final = graph.invoke(inputs, config, context=ctx, **durable)
    if checkpointer is not None and (waiting := pending_of(graph, config)):
        raise QuestionPending(waiting, thread_id)
    return final["decisions"][-1]
