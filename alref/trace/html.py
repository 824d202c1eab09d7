"""A run's or a chat's trace as a single self-contained HTML page (:func:`export_html`).

A run's folder gets the run's page (:class:`~alref.trace.run_html.RunPage`: the references, their clips,
the images the LLM saw, the candidate boxes, the decisions with their reasoning, attempts, validation
errors and fallbacks, mask previews). A chat's folder (``alref chat``, ``alref app``) gets the
conversation's page (:class:`~alref.trace.chat_html.ChatPage`: the chat's video and settings, then one
section per turn with what was asked, the tool calls with their results, the answer, the preview, and
each selection the turn ran, with its clips, grouped under that turn).

Both are read offline and passed around: images inlined, no script, every text from the trace escaped,
and a Content-Security-Policy that allows no script and no fetch.
"""

from __future__ import annotations

import os
from pathlib import Path

from alref.trace.chat_html import ChatPage
from alref.trace.cost import Event
from alref.trace.record import read_events, trace_folder
from alref.trace.run_html import RunPage


def is_chat(events: list[Event]) -> bool:
    """A chat's trace: turns (or a chat's start) and no segment run."""
    kinds = {e.get("kind") for e in events}
    return bool(kinds & {"chat_turn", "chat_start"}) and "run_start" not in kinds


def render_page(run: Path, events: list[Event]) -> str:
    """The HTML page of the folder ``run`` whose trace holds ``events`` (a chat's: its conversation)."""
    if is_chat(events):
        return ChatPage(run, events).render()
    return RunPage(run, events).render()


def export_html(run: Path, html: Path) -> Path:
    """Write the trace of ``run`` (a run or chat folder, or its trace/ folder) as one self-contained HTML
    page; no script, readable offline. Returns ``html``."""
    folder = trace_folder(Path(run))
    page = render_page(folder.parent, read_events(folder))
    html = Path(html)
    html.parent.mkdir(parents=True, exist_ok=True)
    tmp = html.with_name(f".{html.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, html)
    return html
