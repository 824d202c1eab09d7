"""A chat's trace as one HTML page (``alref trace export`` on a chat's folder), as :mod:`alref.trace.run_html`
writes a run's: self-contained, no script, every text escaped.

The conversation comes first (its video, settings, LLM calls, cost and the time each turn took), then
one section per turn: what was asked, the tool calls with their arguments and results, the answer, the
preview of the objects after the turn, and each selection the turn ran (``select_referent``: its clips
with the images the LLM saw, the candidate boxes and the decisions; ``track_referent``: its judging
rounds) under the turn that ran it, named by its reference. The chat's own steps follow.

A turn is the events up to its ``chat_turn`` event; a selection is the events between its
``selection_start`` and ``selection_end`` (in a trace written before those existed: each run of
selection events, matched in order with the turn's selection tool calls).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from alref.trace.cost import Event, as_int, cost_estimate, cost_text
from alref.trace.run_html import Images, RunPage, esc, page, rows_table, text_block, video_text
from alref.trace.runs import read_json_object, status_of

#: the chat's tools that run a selection, whose steps the page groups under the call
SELECTION_TOOLS = ("select_referent", "track_referent")
SMOKE_NOTE = "smoke models: tiny random weights, the masks are meaningless"
_CHAT_KINDS = {"chat_start", "chat_turn", "selection_start", "selection_end"}
_ENDS = {"pivots_decided", "tracks_decided"}  # the last event of a selection (traces without markers)


def _selection_event(e: Event) -> bool:
    """An event of a selection's graph (not of the chat's own steps)."""
    if e.get("kind") in _CHAT_KINDS:
        return False
    step = e.get("step")
    return step != "chat" if step is not None else e.get("kind") not in ("llm_retry", "trace_error")


def _seconds(first: Any, last: Any) -> float | None:
    try:
        return round((datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds(), 3)
    except (TypeError, ValueError):
        return None


class _Turn:
    def __init__(self, end: Event | None, events: list[Event]) -> None:
        self.end = end or {}  # the chat_turn event; {} for a turn that did not finish
        self.events = events
        self.number = self.end.get("turn")
        seconds = self.end.get("seconds")
        if not isinstance(seconds, int | float) and events and end is not None:
            seconds = _seconds(events[0].get("ts"), end.get("ts"))
        self.seconds = seconds


class ChatPage:
    def __init__(self, run: Path, events: list[Event]) -> None:
        self.run, self.events = run, events
        self.images = Images(run)
        self.starts = [e for e in events if e.get("kind") == "chat_start"]
        self.turns: list[_Turn] = []
        current: list[Event] = []
        for e in events:
            if e.get("kind") == "chat_start":
                continue
            current.append(e)
            if e.get("kind") == "chat_turn":
                self.turns.append(_Turn(e, current[:-1]))
                current = []
        if current:
            self.turns.append(_Turn(None, current))

    def render(self) -> str:
        body = [self.summary()] + [self.turn(t) for t in self.turns]
        return page(self.run, f"alref chat · {self.run.name}", body)

    # --- the conversation -------------------------------------------------------------------------

    def summary(self) -> str:
        start = self.starts[-1] if self.starts else {}
        result = read_json_object(self.run / "result.json")  # the page's downloads write one for a chat
        result = result if result.get("kind") == "chat" else {}
        settings = start.get("settings") if isinstance(start.get("settings"), dict) else {}
        ends = [t.end for t in self.turns if t.end]
        video = (
            start.get("video")
            or result.get("video")
            or read_json_object(self.run / "objects.json").get("video")
        )
        info = start.get("input") or result.get("input")
        facts = video_text({k: v for k, v in info.items() if k != "path"} if isinstance(info, dict) else None)
        cost = cost_estimate(self.events)
        stamps = [e.get("ts") for e in self.events if e.get("ts")]
        duration = _seconds(stamps[0], stamps[-1]) if stamps else None
        timings = " · ".join(
            f"turn {t.number} {t.seconds} s"
            for t in self.turns
            if t.end and isinstance(t.seconds, int | float)
        )
        smoke = settings.get("models") == "smoke" or result.get("smoke")
        resumed = sum(bool(s.get("resumed")) for s in self.starts)
        rows = [
            ("status", status_of(self.events)),
            ("mode", "chat"),
            (
                "thread",
                start.get("thread") or (ends[-1].get("thread") if ends else None) or result.get("thread"),
            ),
            ("video", " · ".join(str(v) for v in (video, facts) if v) or None),
            ("audio", start.get("audio") or result.get("audio")),
            ("model profile", settings.get("models")),
            ("LLM model", ", ".join(sorted(cost["models"])) or settings.get("llm")),
            ("LLM server", settings.get("llm_base_url")),
            ("started", stamps[0] if stamps else None),
            ("duration", duration and f"{duration} s"),
            ("turns", f"{len(ends)}" + (f" (resumed {resumed} time(s))" if resumed else "")),
            ("LLM calls", f"{cost['calls']} ({cost['cached_calls']} cached, {cost['failed_calls']} failed)"),
            ("cost", cost_text(cost)),
            ("note", SMOKE_NOTE if smoke else None),
            ("timings", timings or None),
        ]
        for model, m in cost["models"].items():
            price = f"${m['price'][0]} / ${m['price'][1]} per 1M tokens in / out" if m["price"] else None
            rows.append(
                (f"model {model}", f"{m['calls']} calls · {price or 'unknown price'} · ${m['usd']:.4f}")
            )
        return f'<section><h2>Conversation</h2><p class="muted">{esc(self.run)}</p>{rows_table(rows)}</section>\n'

    # --- one turn ---------------------------------------------------------------------------------

    def turn(self, turn: _Turn) -> str:
        end = turn.end
        head = f"Turn {turn.number}: “{end.get('text')}”" if end else "A turn that did not finish"
        calls = [c for c in end.get("calls") or [] if isinstance(c, dict)]
        llm_calls = sum(e.get("kind") == "llm_call" for e in turn.events)
        objects = end.get("objects") if isinstance(end.get("objects"), list) else None
        rows = [
            ("status", end.get("status")),
            ("answer", end.get("answer")),
            ("took", isinstance(turn.seconds, int | float) and f"{turn.seconds} s"),
            ("LLM calls", llm_calls),
            ("objects after the turn", objects is not None and _objects(objects)),
        ]
        parts = [f"<section><h2>{esc(head)}</h2>{rows_table(rows)}", self.calls_table(calls)]
        selections, own = self.selections(turn.events)
        wanted = [c for c in calls if c.get("tool") in SELECTION_TOOLS]
        for n, group in enumerate(selections):
            parts.append(self.selection(group, wanted[n] if n < len(wanted) else {}))
        parts.append(self.preview(end))
        sub = RunPage(self.run, own, images=self.images, result={}, chat=True)
        parts.append("<h3>The chat's steps</h3>" + sub.timeline(own))
        return "\n".join(p for p in parts if p) + "</section>\n"

    @staticmethod
    def calls_table(calls: list[dict[str, Any]]) -> str:
        if not calls:
            return '<p class="muted">no tool calls</p>'
        rows = "".join(
            f"<tr class={'warn' if c.get('error') else 'chosen'}><td>{esc(c.get('tool'))}</td>"
            f"<td>{text_block(json.dumps(c.get('args'), ensure_ascii=False, default=str), 'span')}</td>"
            f"<td>{'failed' if c.get('error') else 'ok'}</td><td>{text_block(c.get('result'), 'span')}</td></tr>"
            for c in calls
        )
        head = "<tr><th>tool</th><th>arguments</th><th></th><th>result</th></tr>"
        return f'<h3>Tool calls</h3><table class="grid">{head}{rows}</table>'

    @staticmethod
    def selections(events: list[Event]) -> tuple[list[list[Event]], list[Event]]:
        """(each selection's events, marker events first and last; the chat's own events)."""
        groups: list[list[Event]] = []
        own: list[Event] = []
        current: list[Event] | None = None
        marked = False  # the current selection opened with a selection_start (ends at selection_end)
        for e in events:
            kind = e.get("kind")
            if kind == "selection_start":
                current, marked = [e], True
                groups.append(current)
            elif kind == "selection_end":
                if current is None:
                    groups.append([e])
                else:
                    current.append(e)
                current, marked = None, False
            elif _selection_event(e):
                if current is None:
                    current, marked = [], False
                    groups.append(current)
                current.append(e)
                if kind in _ENDS and not marked:
                    current = None
            else:
                own.append(e)
                if not marked:
                    current = None
        return groups, own

    def selection(self, group: list[Event], call: dict[str, Any]) -> str:
        start = next((e for e in group if e.get("kind") == "selection_start"), {})
        end = next((e for e in group if e.get("kind") == "selection_end"), {})
        args = call.get("args") if isinstance(call.get("args"), dict) else {}
        tracks = any(e.get("kind") in ("candidates_judged", "tracks_decided") for e in group)
        tool = start.get("tool") or call.get("tool") or ("track_referent" if tracks else "select_referent")
        reference = start.get("reference") or args.get("reference") or "(the reference was not recorded)"
        objects = end.get("objects") or _objects_of(call.get("result"))
        heading = f"{tool} “{reference}”"
        if objects:
            heading += f" → object {', '.join(str(o) for o in objects)}"
        elif end.get("status") == "not_found" or call.get("error"):
            heading += " → nothing found"
        decided = next((e for e in group if e.get("kind") == "tracks_decided"), {})
        ref = {"id": 1, "text": reference, "status": end.get("status") or ("failed" if call.get("error") else None),
               "reason": end.get("reason") or decided.get("reason"), "concept": end.get("concept"),
               "accepted": decided.get("accepted"), "decided_by": end.get("decided_by") or decided.get("decided_by"),
               "clips": end.get("clips") if isinstance(end.get("clips"), list) else []}  # fmt: skip
        inner = [e for e in group if e.get("kind") not in _CHAT_KINDS]
        sub = RunPage(self.run, inner, images=self.images, result={}, chat=True)
        return sub.reference(ref, heading)

    def preview(self, end: Event) -> str:
        """The turn's preview (the objects after it), when it is inside the chat's folder."""
        turn = as_int(end.get("turn"))
        path = self.images.find(end.get("preview"), self.run) if end.get("preview") else None
        path = path or (self.images.find(f"previews/turn{turn:03d}.jpg", self.run) if turn else None)
        if path is None:
            return ""
        figure, ident = self.images.figure(path, f"after turn {turn}: the masks on the newest object's frame")
        shown = figure or f'<p><a href="#{ident}">[the same preview as above]</a></p>'
        return f'<h3>Preview</h3><div class="gallery">{shown}</div>'


def _objects(objects: list[Any]) -> str:
    if not objects:
        return "none"
    parts = []
    for o in objects:
        if not isinstance(o, dict):
            continue
        where = (
            f"frames {o.get('first_frame')}–{o.get('last_frame')}" if o.get("frames_with_mask") else "no mask"
        )
        parts.append(f"{o.get('object_id')} “{o.get('name')}” ({where})")
    return "; ".join(parts)


def _objects_of(result: Any) -> list[Any]:
    """The object ids a selection tool's result (JSON text) names."""
    try:
        data = json.loads(result) if isinstance(result, str) else None
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    if data.get("object_id") is not None:
        return [data["object_id"]]
    made = data.get("objects") if isinstance(data.get("objects"), list) else []
    return [o.get("object_id") for o in made if isinstance(o, dict) and o.get("object_id") is not None]
