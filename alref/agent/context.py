"""What the graph's nodes use but that never goes into state or checkpoints: the settings, the
LLM client, the detections, the trace, the work folder and the propagation callback."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alref.agent.llm import LLMClient, LLMUnavailableError
from alref.config import Settings
from alref.tools.grounding import Detection
from alref.trace.record import NullTracer, Tracer

#: LLM failures after which no later call in this run can succeed
FATAL_KINDS = frozenset({"connection", "auth", "not_found", "cannot_see_images"})


@dataclass
class AgentContext:
    settings: Settings
    llm: LLMClient
    detections: Mapping[int, Mapping[int, Sequence[Detection]]]  # ref id -> frame -> detections
    samples_dir: Path  # sampled frames as <frame>.jpg
    work: Path  # tiles and box images are written here
    propagate: Callable[[dict[int, list[dict[str, Any]]]], dict[str, Any]] | None = None
    tracer: Tracer = field(default_factory=NullTracer)
    outcome: dict[str, Any] = field(default_factory=dict)  # set by the propagate node
    clip_done: Callable[[], None] | None = None  # progress callback, once per finished clip branch
    _dead: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _memo: dict[Any, Any] = field(default_factory=dict)
    _memo_locks: dict[Any, threading.Lock] = field(default_factory=dict)

    @property
    def llm_dead(self) -> str | None:
        """Set once a failure shows the LLM cannot answer at all (refused connection, bad key, …)."""
        return self._dead

    def note_failure(self, error: LLMUnavailableError) -> None:
        if getattr(error, "kind", None) in FATAL_KINDS:
            with self._lock:
                self._dead = self._dead or str(error)

    def once(self, key: Any, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """Compute a value once per run (e.g. one syntax analysis per reference, shared by its clips).
        Returns (value, computed_now)."""
        with self._lock:
            lock = self._memo_locks.setdefault(key, threading.Lock())
        with lock:
            if key in self._memo:
                return self._memo[key], False
            value = compute()
            self._memo[key] = value
            return value, True

    def frame_path(self, frame: int) -> Path:
        return self.samples_dir / f"{frame}.jpg"
