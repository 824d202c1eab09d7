"""Step 4: show the pivot frame with its numbered boxes and ask for a description of each box.
The colour names and counts in the prompt come from the same list that drew the boxes."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from alref.agent import conversation as conv
from alref.agent.context import AgentContext
from alref.agent.state import ClipState
from alref.prompts import render


def box_list(candidates: list[dict[str, Any]]) -> str:
    return ", ".join(f"box {c['number']} ({c['colour']})" for c in candidates)


def describe_boxes(state: ClipState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    candidates = state["candidates"]
    samples = state["clip"]["samples"]
    prompt = render(
        "describe_boxes",
        frame_number=samples.index(state["pivot_frame"]) + 1,
        n_boxes=len(candidates),
        box_list=box_list(candidates),
        detector_labels=", ".join(f"box {c['number']}: '{c['phrase'] or '?'}'" for c in candidates),
    )
    conversation = list(state["conversation"]) + [conv.message("user", prompt, [state["candidates_image"]])]
    return conv.describe(ctx, state, conversation, "describe_boxes", "boxes_description")
