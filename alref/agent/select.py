"""Pivot selection, one function for every caller (``alref segment``, the chat, the LangGraph server
graphs): the GPT-PS graph when an LLM is configured, the paper's baseline otherwise. It decides and
returns the decisions; propagating and writing masks is the caller's business.

With a checkpointer the graph's progress is saved after every step under ``thread_id``: calling
again with the same thread continues an interrupted selection (finished clip branches are not run
again) or returns the finished one — the checkpointer alone decides, there is no other resume path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from alref.agent.context import AgentContext
from alref.agent.questions import QuestionPending, pending_of, resume_or_raise
from alref.config import Settings
from alref.core.baseline import baseline_decisions
from alref.core.records import Clip, Detections, Reference, ReferenceDecision, detections_to_state
from alref.trace.record import NullTracer, Tracer

NO_BOX = "no candidate box in any sampled frame of any clip"


def select_pivots(
    references: Sequence[Reference],
    clips: Sequence[Clip],
    detections: Mapping[int, Detections] | None,
    settings: Settings,
    ctx: AgentContext | None = None,
    *,
    checkpointer: Any = None,
    thread_id: str = "pivots",
    on_clip: Callable[[], None] | None = None,
    tracer: Tracer | None = None,
    resume: Mapping[str, Any] | None = None,
) -> list[ReferenceDecision]:
    """Every reference's decision in every clip. ``ctx`` None: the baseline. ``on_clip`` is called
    once per (reference, clip) decided, for progress. ``detections`` None: they arrive while the
    graph runs, through ``ctx.feed`` (the agent only)."""
    if detections is None and (ctx is None or ctx.feed is None):
        raise ValueError("select_pivots: without detections the agent needs ctx.feed to bring them")
    if ctx is None:
        return _baseline(references, clips, detections, settings, tracer or NullTracer(), on_clip)
    from alref.agent.graph import build_graph

    graph = build_graph(checkpointer)
    config = {
        "configurable": {"thread_id": thread_id},
        "max_concurrency": settings.llm_concurrency,
        "recursion_limit": 200,
    }
    sampled = sorted({f for c in clips for f in c["samples"]})
    inputs: dict[str, Any] | None = {
        "references": [dict(r) for r in references],
        "clips": [dict(c) for c in clips],
        "max_attempts": 1 + settings.llm_retries,
    }
    if detections is not None:
        inputs["detections"] = {
            str(r["id"]): detections_to_state(detections[r["id"]], sampled) for r in references
        }
    if checkpointer is not None:
        snapshot = graph.get_state(config)
        done = len(snapshot.values.get("decisions", []))
        if snapshot.values.get("results") is not None and not snapshot.next:
            ctx.tracer.event("resume", pending=[], clips_done=done)
            return snapshot.values["results"]
        if snapshot.next:
            ctx.tracer.event("resume", pending=list(snapshot.next), clips_done=done)
            inputs = None  # the stream replays the saved branches' updates, so progress counts them too
            if (command := resume_or_raise(graph, config, resume, thread_id)) is not None:
                inputs = command
                ctx.tracer.event("answers", answers=command.resume)
    results: list[ReferenceDecision] | None = None
    durable = {"durability": "sync"} if checkpointer is not None else {}  # every step saved before the next
    for mode, chunk in graph.stream(
        inputs, config, context=ctx, stream_mode=["updates", "values"], **durable
    ):
        if mode == "updates" and on_clip is not None:
            for update in chunk.values():
                for _ in (update or {}).get("decisions", []) if isinstance(update, dict) else []:
                    on_clip()
        elif mode == "values" and chunk.get("results") is not None:
            results = chunk["results"]
    if results is None and checkpointer is not None and (waiting := pending_of(graph, config)):
        raise QuestionPending(waiting, thread_id)  # a clip asks the person (--ask, the chat, the server)
    if results is None:  # pragma: no cover - the graph always ends in decide_references
        raise RuntimeError("the pivot selection ended without results")
    return results


def _baseline(references, clips, detections, settings, tracer: Tracer, on_clip) -> list[ReferenceDecision]:
    results = []
    for ref in references:
        decisions = baseline_decisions(clips, detections[ref["id"]], settings.pivot, ref["id"])
        for d in decisions:
            tracer.event("clip_decided", ref=ref["id"], clip=d["clip"], valid=d["valid"], pivot_frame=d["pivot_frame"],
                         pivot_box=d["pivot_box"], decided_by="baseline", reason=d["reason"])  # fmt: skip
            if on_clip is not None:
                on_clip()
        found = any(d["valid"] for d in decisions)
        results.append(ReferenceDecision(id=ref["id"], text=ref["text"], clips=decisions,
                                         not_found=None if found else NO_BOX))  # fmt: skip
    return results
