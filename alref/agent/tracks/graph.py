"""The tracks strategy as a LangGraph state machine, in the style of the pivot graph: one branch per
reference (``Send``), one node per step, validation / re-ask / fallback edges, every decision in the
state. It decides and nothing else: its output is a :class:`~alref.core.records.TrackDecision` per
reference; the caller writes the masks of the accepted tracks.

    START ─► extract_concepts ─ valid ─► generate_tracks ─ tracks ─► [describe_candidates] ─► show_candidates
               ▲  │ invalid, attempts left      │  ▲ none: next concept                         │
               └──┘                             └──┘                                            ▼
             exhausted / LLM down ─► extract_concepts_fallback ─► generate_tracks   judge_candidates ◄─┐ invalid
                                                                                    │ valid: uncertain left ─► show_candidates
             generate_tracks ─ none left ─► finish_tracks ◄── all decided / rounds spent ┘ exhausted ─► judge_candidates_fallback

    rounds spent, nothing accepted, some uncertain ─► resolve_uncertain (ask the person: interrupt(), or
    --ambiguous) ─► finish_tracks;  the person answered in words ─► show_candidates (one more round)
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from alref.agent.context import AgentContext
from alref.agent.graph import traced
from alref.agent.tracks import nodes
from alref.agent.tracks.state import TracksInput, TracksOutput, TracksRunState, TracksState


def build_reference_graph(settings: Any):
    g = StateGraph(TracksState, context_schema=AgentContext, output_schema=TracksOutput)
    for name in ("extract_concepts", "extract_concepts_fallback", "generate_tracks", "describe_candidates",
                 *JUDGING):  # fmt: skip
        g.add_node(name, traced(name, getattr(nodes, name)))
    g.add_edge(START, "extract_concepts")
    g.add_conditional_edges("extract_concepts", nodes.route_after_extract_concepts,
                            ["generate_tracks", "extract_concepts", "extract_concepts_fallback"])  # fmt: skip
    g.add_edge("extract_concepts_fallback", "generate_tracks")
    g.add_conditional_edges(
        "generate_tracks", lambda s: nodes.route_after_generate_tracks(s, settings),
        ["describe_candidates", "show_candidates", "generate_tracks", "judge_candidates_fallback", "finish_tracks"],
    )  # fmt: skip
    g.add_edge("describe_candidates", "show_candidates")
    add_judging(g, settings.track_rounds)
    return g.compile()


JUDGING = (
    "show_candidates",
    "judge_candidates",
    "judge_candidates_fallback",
    "resolve_uncertain",
    "finish_tracks",
)


def add_judging(g: StateGraph, track_rounds: int) -> None:
    """The judging rounds and the end, shared by the reference graph and the re-judging one: show →
    judge (re-asked, falling back) → the next round, the person or the policy for candidates left
    uncertain, and ``finish_tracks``. A state's ``max_rounds`` (a re-judging) overrides ``track_rounds``."""
    g.add_edge("show_candidates", "judge_candidates")
    g.add_conditional_edges(
        "judge_candidates", lambda s: nodes.route_after_judge(s, s.get("max_rounds") or track_rounds),
        ["show_candidates", "judge_candidates", "judge_candidates_fallback", "resolve_uncertain", "finish_tracks"],
    )  # fmt: skip
    g.add_edge("judge_candidates_fallback", "finish_tracks")
    g.add_conditional_edges(
        "resolve_uncertain", nodes.route_after_resolve, ["show_candidates", "finish_tracks"]
    )
    g.add_edge("finish_tracks", END)


def fan_out(state: TracksRunState) -> list[Send]:
    return [
        Send("reference", {"ref_id": r["id"], "reference": r["text"], "max_attempts": state["max_attempts"]})
        for r in state["references"]
    ]


def build_tracks_graph(settings: Any, checkpointer: Any = None):
    g = StateGraph(
        TracksRunState, context_schema=AgentContext, input_schema=TracksInput, output_schema=TracksOutput
    )
    g.add_node("reference", build_reference_graph(settings))
    g.add_conditional_edges(START, fan_out, ["reference"])
    g.add_edge("reference", END)
    return g.compile(checkpointer=checkpointer)


def build_rejudge_graph(checkpointer: Any = None):
    """Judging again, after verification: the candidates still pending get one more round (each
    re-asked and falling back as in the first judging), then ``finish_tracks``; nothing pending:
    ``finish_tracks`` at once (the verdicts already changed decide)."""
    g = StateGraph(TracksState, context_schema=AgentContext, output_schema=TracksOutput)
    for name in JUDGING:
        g.add_node(name, traced(name, getattr(nodes, name)))
    g.add_conditional_edges(START, lambda s: "show_candidates" if s.get("pending") else "finish_tracks",
                            ["show_candidates", "finish_tracks"])  # fmt: skip
    add_judging(g, 1)  # the state's max_rounds decides
    return g.compile(checkpointer=checkpointer)
