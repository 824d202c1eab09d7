"""The tracks strategy for every caller: the graph when an LLM is configured, else the highest-scoring
track of the sentence's first concept. Returns one :class:`TrackDecision` per reference, in order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from alref.agent.context import AgentContext
from alref.agent.tracks.state import TrackSource
from alref.config import Settings
from alref.core.baseline import concept_of
from alref.core.records import Reference, TrackDecision
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
) -> list[TrackDecision]:
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
            inputs = None
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
