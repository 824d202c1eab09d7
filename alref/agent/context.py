"""The runtime context of alref's graphs: fixed dependencies only — the settings, the LLM client, the
loaded tools, the tracer, the workspace and, where the inputs are still arriving, their
:class:`~alref.agent.feed.InputFeed`. Never results, never callbacks: results come out of a graph's
state, progress from ``graph.stream(...)``, and resume from the checkpointer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alref.agent.feed import InputFeed
from alref.agent.llm import LLMClient
from alref.config import Settings
from alref.core.records import StateDetections
from alref.core.workspace import Workspace
from alref.trace.record import NullTracer, Tracer


@dataclass(frozen=True)
class AgentContext:
    settings: Settings
    llm: LLMClient
    workspace: Workspace
    tracer: Tracer = field(default_factory=NullTracer)
    tools: Any = None  # the loaded tools a graph may call (the chat's session); None for GPT-PS and LBRU
    feed: InputFeed | None = None  # frames and detections still arriving (GPT-PS in `alref segment`)

    def frame_path(self, frame: int) -> Path:
        """A sampled frame as the agent is shown it (written by whoever decoded the video; with a
        feed, this waits until it is written)."""
        if self.feed is not None:
            self.feed.wait_samples([frame])
        return self.workspace.sample(frame)

    def detections(
        self, given: StateDetections | None, ref_id: int, frames: Sequence[int]
    ) -> StateDetections:
        """``ref_id``'s detections on ``frames``: those ``given`` in the graph's state, else the feed's
        (waiting until they have arrived)."""
        if given is not None:
            return {str(f): given.get(str(f), []) for f in frames}
        if self.feed is None:
            raise RuntimeError("the pivot selection has neither detections in its state nor a feed")
        return self.feed.detections(ref_id, frames)

    @property
    def llm_dead(self) -> str | None:
        """Set once a failure shows the LLM cannot answer at all (refused connection, bad key, …)."""
        return self.llm.dead
