"""A chat turn shown as it happens: the person's message at once, then each tool call (pending, then done
or failed, with its result in one line), the stage the tools are in (decoding, detecting, propagating),
and the model's answer as soon as it is known.

:func:`stream_work` runs the turn on a worker thread and hands its stages, steps and end to the web
handler's thread in order (through a queue), so the handler draws them (Gradio's progress bar works only
from the handler's own thread). :class:`LiveTurn` holds what the chat shows meanwhile, as Chatbot
messages: tool calls are "thoughts" (``metadata`` with a title and a pending/done status). Everything
the model wrote (tool arguments, results, the answer) is escaped with :func:`render.chat_text`. Once the
turn ends, the page shows the conversation's history as before; nothing here is saved.

No web framework is imported here.
"""

from __future__ import annotations

import json
import queue
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from alref.app import render

Show = Callable[[float | None, str], None]
OnStep = Callable[[dict[str, Any]], None]

_COUNT = re.compile(r"\s+(\d+/\d+|\(\d+\))$")


def stage_label(text: str) -> str:
    """A stage's name without its count: "propagating 3/60" → "propagating"."""
    return _COUNT.sub("", text.strip())


def call_title(event: dict[str, Any]) -> str:
    """A tool call as one line: ``segment_box(frame=0, box=[10, 20, 30, 40], name="red square")``."""
    args = event.get("args") if isinstance(event.get("args"), dict) else {}
    shown = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in args.items())
    return f"{event.get('tool')}({render.short(shown, 160)})"


def one_line(text: Any, limit: int = 240) -> str:
    return render.short(" ".join(str(text or "").split()), limit)


@dataclass
class _Call:
    tool: str
    title: str
    status: str = "pending"  # pending, done, failed
    result: str = ""


@dataclass
class LiveTurn:
    """What the chat shows while a turn runs (``text`` is the person's message)."""

    text: str
    calls: list[_Call] = field(default_factory=list)
    answer: str | None = None
    stage: str = "asking the model"

    def step(self, event: dict[str, Any]) -> None:
        """A step of :meth:`Chat.ask` (``tool_call``, ``tool_result``, ``answer``)."""
        kind = event.get("step")
        if kind == "tool_call":
            self.calls.append(_Call(str(event.get("tool")), call_title(event)))
            self.stage = "running the tool"
        elif kind == "tool_result":
            call = next(
                (c for c in self.calls if c.status == "pending" and c.tool == event.get("tool")), None
            )
            if call is None:
                call = _Call(str(event.get("tool")), f"{event.get('tool')}(…)")
                self.calls.append(call)
            call.status = "failed" if event.get("error") else "done"
            call.result = one_line(event.get("result"))
            self.stage = "asking the model what next"
        elif kind == "answer":
            self.answer = str(event.get("text") or "")

    def show(self, fraction: float | None, text: str) -> bool:
        """A stage (as the session's ``show`` hook says it); whether the chat should be drawn again (its
        name changed, not only its count)."""
        changed = stage_label(text) != stage_label(self.stage)
        self.stage = text
        return changed

    def messages(self, history: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        """The chat as shown now: the history before this turn, the message, each tool call, and the
        answer (or, until it is known, what is being done)."""
        shown: list[dict[str, Any]] = render.chat_messages(history)
        shown.append({"role": "user", "content": render.chat_text(self.text)})
        for call in self.calls:
            title = f"calling {call.title}" if call.status == "pending" else f"{call.title} {call.status}"
            metadata: dict[str, Any] = {"title": render.chat_text(title),
                                        "status": "pending" if call.status == "pending" else "done"}  # fmt: skip
            if call.status == "pending":
                metadata["log"] = stage_label(self.stage)
            content = (f"failed: {call.result}" if call.status == "failed" else call.result) or " "
            shown.append({"role": "assistant", "content": render.chat_text(content), "metadata": metadata})
        if self.answer:
            shown.append({"role": "assistant", "content": render.chat_text(self.answer)})
        elif not any(c.status == "pending" for c in self.calls):
            shown.append({"role": "assistant", "content": " ",
                          "metadata": {"title": "working", "status": "pending", "log": stage_label(self.stage)}})  # fmt: skip
        return shown


def stream_work(work: Callable[[Show, OnStep], Any]) -> Iterator[tuple[str, Any]]:
    """Run ``work(show, on_step)`` on a worker thread; yield, in order and as they happen,
    ``("show", (fraction, text))`` (only the newest of those waiting), ``("step", event)``, then
    ``("done", result)`` or ``("error", exception)``."""
    events: queue.Queue[tuple[str, Any]] = queue.Queue()

    def run() -> None:
        try:
            result = work(lambda f, t: events.put(("show", (f, t))), lambda e: events.put(("step", e)))
        except BaseException as exc:  # handed to the page, which says it in one line
            events.put(("error", exc))
        else:
            events.put(("done", result))

    threading.Thread(target=run, name="alref-chat-turn", daemon=True).start()
    while True:
        waiting = [events.get()]
        while True:
            try:
                waiting.append(events.get_nowait())
            except queue.Empty:
                break
        for i, (kind, value) in enumerate(waiting):
            if kind == "show" and i + 1 < len(waiting) and waiting[i + 1][0] == "show":
                continue  # a newer stage is already waiting
            yield kind, value
            if kind in ("done", "error"):
                return
