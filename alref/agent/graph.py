"""GPT-PS pivot selection as a LangGraph state machine.

Per (reference, clip) branch — fanned out with ``Send`` under ``max_concurrency``::

    START ─► describe_event ─► choose_frame ─┬─ valid ─► ground_candidates ─┬─► describe_boxes ─┐
      │                          ▲  │        └─ retry ─┘ (same node)       └─ no box ─► finish_clip
      │                          └──┘ invalid, attempts left               choose_frame_fallback ◄┘ (exhausted / LLM down)
      └─► syntax_analysis ────────────────────────────────────────────────────────────────────────┴─► choose_box
    choose_box ─ valid ─► finish_clip;  invalid ─► choose_box;  exhausted / LLM down ─► choose_box_fallback ─► finish_clip
    choose_box ─ several boxes fit equally ─► resolve_ambiguity (ask the person: interrupt(), or --ambiguous)
        ─► finish_clip;  the person answered in words ─► choose_box

then ``decide_references`` collects each reference's clips and applies the not-found rules. The
graph decides and nothing else: its output is its state (``results``: a :class:`ReferenceDecision`
per reference); it writes no masks and calls back into nobody. Its runtime context is an
:class:`~alref.agent.context.AgentContext` of fixed dependencies. :func:`alref.agent.select.select_pivots`
runs it (checkpointed, so an interrupted run resumes through the checkpointer alone).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from alref.agent.context import AgentContext
from alref.agent.nodes.choose_box import choose_box, choose_box_fallback, route_after_choose_box
from alref.agent.nodes.choose_frame import choose_frame, choose_frame_fallback, route_after_choose_frame
from alref.agent.nodes.decide_references import decide_references
from alref.agent.nodes.describe_boxes import describe_boxes
from alref.agent.nodes.describe_event import describe_event
from alref.agent.nodes.finish_clip import finish_clip
from alref.agent.nodes.ground_candidates import ground_candidates, route_after_ground_candidates
from alref.agent.nodes.resolve_ambiguity import resolve_ambiguity, route_after_resolve
from alref.agent.nodes.syntax_analysis import syntax_analysis
from alref.agent.state import ClipOutput, ClipState, PivotInput, PivotOutput, PivotState

Node = Callable[[Any, Runtime[AgentContext]], dict[str, Any]]


def _summary(update: dict[str, Any]) -> dict[str, Any]:
    """A short, JSON-able view of a node's output for the trace."""
    out: dict[str, Any] = {}
    for key, value in update.items():
        if key == "conversation":
            out["turns"] = len(value)
        elif key in ("decisions", "results"):
            continue
        elif isinstance(value, str):
            out[key] = value if len(value) <= 300 else value[:300] + "…"
        elif isinstance(value, list):
            out[key] = value if len(value) <= 12 else f"{len(value)} items"
        else:
            out[key] = value
    return out


def traced(name: str, node: Node) -> Node:
    """Wrap a node so the trace records its start and end with a summary of what it decided (and so
    that no node starts once the context's feed says the run cannot finish)."""

    def run(state: Any, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        ctx = runtime.context
        if ctx.feed is not None:  # the inputs' producer failed or the run was interrupted: stop here
            ctx.feed.check()
        where = {"ref": state.get("ref_id"), "clip": (state.get("clip") or {}).get("index")}
        ctx.tracer.node_start(name, **where)
        started = time.perf_counter()
        update = node(state, runtime)
        ctx.tracer.node_end(
            name, **where, seconds=round(time.perf_counter() - started, 3), output=_summary(update)
        )
        return update

    run.__name__ = name
    return run


def build_clip_graph():
    g = StateGraph(ClipState, context_schema=AgentContext, output_schema=ClipOutput)
    for name, node in [
        ("describe_event", describe_event),
        ("choose_frame", choose_frame),
        ("choose_frame_fallback", choose_frame_fallback),
        ("ground_candidates", ground_candidates),
        ("describe_boxes", describe_boxes),
        ("syntax_analysis", syntax_analysis),
        ("choose_box", choose_box),
        ("choose_box_fallback", choose_box_fallback),
        ("resolve_ambiguity", resolve_ambiguity),
        ("finish_clip", finish_clip),
    ]:
        g.add_node(name, traced(name, node))
    g.add_edge(START, "describe_event")
    g.add_edge(START, "syntax_analysis")
    g.add_edge("describe_event", "choose_frame")
    g.add_conditional_edges(
        "choose_frame",
        route_after_choose_frame,
        ["ground_candidates", "choose_frame", "choose_frame_fallback"],
    )
    g.add_edge("choose_frame_fallback", "ground_candidates")
    g.add_conditional_edges(
        "ground_candidates",
        route_after_ground_candidates,
        ["describe_boxes", "choose_box_fallback", "finish_clip"],
    )
    g.add_edge(["describe_boxes", "syntax_analysis"], "choose_box")
    g.add_conditional_edges(
        "choose_box", route_after_choose_box,
        ["finish_clip", "choose_box", "choose_box_fallback", "resolve_ambiguity"],
    )  # fmt: skip
    g.add_conditional_edges("resolve_ambiguity", route_after_resolve, ["finish_clip", "choose_box"])
    g.add_edge("choose_box_fallback", "finish_clip")
    g.add_edge("finish_clip", END)
    return g.compile()


def fan_out(state: PivotState) -> list[Send]:
    """One branch per (reference, clip), each with its reference's boxes on the clip's sampled frames
    when the input has them (else the branch takes them from the context's feed as they arrive)."""
    branches = []
    for ref in state["references"]:
        found = state["detections"][str(ref["id"])] if state.get("detections") is not None else None
        for clip in state["clips"]:
            branch: ClipState = {
                "ref_id": ref["id"],
                "reference": ref["text"],
                "clip": clip,
                "max_attempts": state["max_attempts"],
                "hint_frame": ref.get("hint_frame"),
            }
            if found is not None:
                branch["detections"] = {str(f): found.get(str(f), []) for f in clip["samples"]}
            branches.append(Send("clip", branch))
    return branches


def build_graph(checkpointer: Any = None):
    g = StateGraph(
        PivotState, context_schema=AgentContext, input_schema=PivotInput, output_schema=PivotOutput
    )
    g.add_node("clip", build_clip_graph())
    g.add_node("decide_references", traced("decide_references", decide_references))
    g.add_conditional_edges(START, fan_out, ["clip"])
    g.add_edge("clip", "decide_references")
    g.add_edge("decide_references", END)
    return g.compile(checkpointer=checkpointer)
