"""LBRU: language-based reference for sound. The audio tagger's top labels and a tile of frames go
to the LLM, which drops labels with no visible source or that name no object, merges labels of the
same object, and names each sounding object's category with the frame where it is easiest to see.

Its own small graph, nodes named for their steps::

    START ─► name_sound_sources ─ valid ─► map_to_vocabulary ─► END
                  ▲   │ invalid, attempts left
                  └───┘
             exhausted / LLM down ─► name_sound_sources_fallback (the label table) ─► map_to_vocabulary

Without an LLM the label table decides directly (:func:`label_table_sources`). With a closed
vocabulary (``--categories FILE``) the LLM is told to answer from it and every category is mapped
onto it; a category that maps to nothing is dropped and reported.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from alref.agent import conversation as conv
from alref.agent.answers import SoundSources
from alref.agent.context import AgentContext
from alref.agent.state import Message
from alref.prompts import render


class LbruState(TypedDict, total=False):
    labels: list[dict[str, Any]]  # {"label", "score"} as offered
    tile: str
    frames: list[int]  # absolute frame index of tile number k at frames[k - 1]
    vocabulary: list[str] | None
    max_attempts: int
    conversation: list[Message]
    attempts: int
    cuts: int
    error: str | None
    llm_down: str | None
    sources: list[dict[str, Any]]  # {"category", "labels", "hint_frame"}
    reasoning: str
    decided_by: str
    fallback_reason: str | None
    dropped: list[str]


def _expected(n: int) -> str:
    return json.dumps(
        {"reasoning": "...", "objects": [{"category": "...", "labels": ["..."], "frame": f"<1 to {n}>"}]}
    )


def name_sound_sources(state: LbruState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    if ctx.llm_dead:
        return {"llm_down": ctx.llm_dead}
    n = len(state["frames"])
    offered = {item["label"].casefold(): item["label"] for item in state["labels"]}
    vocabulary = state.get("vocabulary")
    known = {v.casefold() for v in vocabulary or ()}

    def validate(answer: SoundSources) -> None:
        for source in answer.objects:
            if not source.category.strip():
                raise ValueError("every object needs a category name")
            unknown = [label for label in source.labels if label.casefold() not in offered]
            if unknown:
                raise ValueError(
                    f"labels {unknown} were not offered; use only: {', '.join(offered.values())}"
                )
            if not 1 <= source.frame <= n:
                raise ValueError(f"frame {source.frame} does not exist: the frames are numbered 1 to {n}")
            if vocabulary and source.category.strip().casefold() not in known:
                raise ValueError(
                    f"'{source.category}' is not one of the allowed categories: {', '.join(vocabulary)}"
                )

    labels = "\n".join(f"- {item['label']} ({item['score']:.2f})" for item in state["labels"])
    rule = f", chosen from this list: {', '.join(vocabulary)}" if vocabulary else ""
    update, answer = conv.choose(
        ctx, state, step="name_sound_sources", schema=SoundSources,
        first_prompt=render("lbru", n_frames=n, labels=labels, vocabulary_rule=rule), first_images=[state["tile"]],
        expected=_expected(n), attempts_key="attempts", error_key="error", validate=validate, cuts_key="cuts",
    )  # fmt: skip
    if state.get("attempts", 0) == 0:  # the system turn opens the conversation
        update["conversation"] = [conv.message("system", render("system"))] + update["conversation"]
    if answer is not None:
        sources = [
            {
                "category": s.category.strip(),
                "labels": [offered[label.casefold()] for label in s.labels],
                "hint_frame": state["frames"][s.frame - 1],
            }
            for s in answer.objects
        ]
        update |= {"sources": sources, "reasoning": answer.reasoning, "decided_by": "llm"}
    return update


def label_table_sources(labels: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The no-LLM decision: each label's object from the documented table, merged by object."""
    from alref.audio.events import label_to_object

    merged: dict[str, dict[str, Any]] = {}
    for item in labels:
        category = label_to_object(item["label"])
        if category is None:
            continue
        entry = merged.setdefault(category, {"category": category, "labels": [], "hint_frame": None})
        entry["labels"].append(item["label"])
    return list(merged.values())


def name_sound_sources_fallback(state: LbruState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    why = conv.fallback_reason(state, "attempts", "error")
    runtime.context.tracer.event("fallback", step="name_sound_sources", reason=why)
    return {
        "sources": label_table_sources(state["labels"]),
        "decided_by": "fallback",
        "fallback_reason": why + "; used the label-to-object table",
        "reasoning": "",
    }


def map_to_vocabulary(state: LbruState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    return dict(
        zip(
            ("sources", "dropped"),
            merge_sources(state.get("sources", []), state.get("vocabulary")),
            strict=True,
        )
    )


def merge_sources(
    sources: Sequence[dict[str, Any]], vocabulary: Sequence[str] | None
) -> tuple[list[dict], list[str]]:
    """Categories mapped onto the vocabulary (when given) and merged; returns (sources, dropped names)."""
    from alref.audio.events import map_to_vocabulary as to_vocabulary

    merged: dict[str, dict[str, Any]] = {}
    dropped: list[str] = []
    for source in sources:
        name = source["category"].strip().lower()
        if vocabulary:
            mapped = to_vocabulary(name, vocabulary)
            if mapped is None:
                dropped.append(source["category"])
                continue
            name = mapped
        entry = merged.setdefault(
            name, {"category": name, "labels": [], "hint_frame": source.get("hint_frame")}
        )
        entry["labels"] += [label for label in source["labels"] if label not in entry["labels"]]
    return list(merged.values()), dropped


def route_after_name_sound_sources(state: LbruState) -> str:
    return conv.route_choice(state, "decided_by", "attempts", "map_to_vocabulary", "name_sound_sources",
                             "name_sound_sources_fallback")  # fmt: skip


def build_lbru_graph():
    from alref.agent.graph import traced

    g = StateGraph(LbruState, context_schema=AgentContext)
    for name, node in [
        ("name_sound_sources", name_sound_sources),
        ("name_sound_sources_fallback", name_sound_sources_fallback),
        ("map_to_vocabulary", map_to_vocabulary),
    ]:
        g.add_node(name, traced(name, node))
    g.add_edge(START, "name_sound_sources")
    g.add_conditional_edges(
        "name_sound_sources",
        route_after_name_sound_sources,
        ["map_to_vocabulary", "name_sound_sources", "name_sound_sources_fallback"],
    )
    g.add_edge("name_sound_sources_fallback", "map_to_vocabulary")
    g.add_edge("map_to_vocabulary", END)
    return g.compile()


def run_lbru(ctx: AgentContext, labels: Sequence[dict[str, Any]], tile: str, frames: Sequence[int],
             vocabulary: Sequence[str] | None) -> dict[str, Any]:  # fmt: skip
    """The sounding objects: {"sources", "reasoning", "decided_by", "fallback_reason", "dropped"}."""
    state = build_lbru_graph().invoke(
        {"labels": list(labels), "tile": tile, "frames": list(frames), "vocabulary": list(vocabulary) if vocabulary else None,
         "max_attempts": 1 + ctx.settings.llm_retries, "conversation": []},
        context=ctx,
    )  # fmt: skip
    return {
        k: state.get(k)
        for k in ("sources", "reasoning", "decided_by", "fallback_reason", "dropped", "attempts")
    }
