"""Step 1: show the clip's sampled frames as one numbered tile and ask what happens."""

from __future__ import annotations

from typing import Any

import numpy as np
from langgraph.runtime import Runtime
from PIL import Image

from alref.agent import conversation as conv
from alref.agent.context import AgentContext
from alref.agent.state import ClipState
from alref.core.records import Clip
from alref.media.tiles import tile_frames
from alref.media.writers import write_jpeg
from alref.prompts import render


def clip_tile(ctx: AgentContext, clip: Clip) -> str:
    """The clip's sampled frames tiled with their 1-based numbers (written once, shared by references)."""
    path = ctx.workspace.clip_tile(clip["index"])
    if not path.is_file():
        frames = [np.asarray(Image.open(ctx.frame_path(f)).convert("RGB")) for f in clip["samples"]]
        tile = tile_frames(
            frames, list(range(1, len(frames) + 1)), ctx.settings.tile_columns, ctx.settings.tile_max_side
        )
        write_jpeg(path, tile.image)
    return str(path)


def describe_event(state: ClipState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    clip = state["clip"]
    samples = clip["samples"]
    prompt = render(
        "describe_event", n_frames=len(samples), first_frame=clip["start"], last_frame=clip["end"] - 1,
        reference=state["reference"],
    )  # fmt: skip
    conversation = conv.start(prompt, [clip_tile(ctx, clip)])
    return conv.describe(ctx, state, conversation, "describe_event", "event")
