"""Running the pivot-selection graph for one video, checkpointed in SQLite so that a run killed
mid-way and started again with the same arguments continues where it stopped: finished clip
branches are not run again (and repeated LLM calls are answered by the cache)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alref.agent.context import AgentContext
from alref.agent.graph import build_graph
from alref.agent.nodes.propagate import collect_and_propagate
from alref.media.sampling import Clip


def clip_dict(clip: Clip) -> dict[str, Any]:
    return {"index": clip.index, "start": clip.start, "end": clip.end, "samples": list(clip.samples)}


def run_agent(
    ctx: AgentContext,
    references: Sequence[str],
    clips: Sequence[Clip],
    checkpoint: Path,
    thread_id: str,
    hints: dict[int, int] | None = None,
) -> dict[str, Any]:
    """Select the pivots of every reference and clip, then propagate; returns ``ctx.outcome``.
    ``hints``: reference id -> a frame where the referent is easy to see (from LBRU)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(checkpoint), check_same_thread=False)
    try:
        graph = build_graph(SqliteSaver(conn))
        config = {
            "configurable": {"thread_id": thread_id},
            "max_concurrency": ctx.settings.llm_concurrency,
            "recursion_limit": 200,
        }
        snapshot = graph.get_state(config)
        if snapshot.next:
            done = len(snapshot.values.get("clip_results", []))
            ctx.tracer.event("resume", pending=list(snapshot.next), clips_done=done)
            graph.invoke(None, config, context=ctx, durability="sync")
        elif snapshot.values.get("summary") is not None:
            ctx.tracer.event(
                "resume", pending=["propagate"], clips_done=len(snapshot.values.get("clip_results", []))
            )
            collect_and_propagate(ctx, snapshot.values)
        else:
            inputs = {
                "references": [
                    {"id": i, "text": text, "hint_frame": (hints or {}).get(i)}
                    for i, text in enumerate(references, start=1)
                ],
                "clips": [clip_dict(c) for c in clips],
                "max_attempts": 1 + ctx.settings.llm_retries,
            }
            graph.invoke(inputs, config, context=ctx, durability="sync")
    finally:
        conn.close()
    return ctx.outcome
