"""The runtime context of alref's graphs: fixed dependencies only — the settings, the LLM client, the
loaded tools, the tracer and the workspace. Never results, never callbacks: results come out of a
graph's state, progress from ``graph.stream(...)``, and resume from the checkpointer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alref.agent.llm import LLMClient
from alref.config import Settings
from alref.core.workspace import Workspace
from alref.trace.record import NullTracer, Tracer


@dataclass(frozen=True)
class AgentContext:
    settings: Settings
    llm: LLMClient
    workspace: Workspace
    tracer: Tracer = field(default_factory=NullTracer)
    tools: Any = None  # the loaded tools a graph may call (the chat's session); None for GPT-PS and LBRU

    def frame_path(self, frame: int) -> Path:
        """A sampled frame as the agent is shown it (written by whoever decoded the video)."""
        return self.workspace.sample(frame)

    @property
    def llm_dead(self) -> str | None:
        """Set once a failure shows the LLM cannot answer at all (refused connection, bad key, …)."""
        return self.llm.dead
