"""What the browser app shows, as plain data and escaped HTML, with no web framework imported.

Nothing the LLM (or a saved conversation, or result.json) says is trusted: chat text goes through
:func:`chat_text` (HTML escaped and Markdown's punctuation backslash-escaped, so ``<script>`` and
``![x](http://…)`` are shown as text and never run or fetched), and every value in the trace and
result tables through ``html.escape``. Attributes hold only values made here. Image paths read from a
trace are only followed inside its folder.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MAX_TEXT = 2_000  # characters of one value shown in the trace table
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$])")


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def chat_text(value: Any) -> str:
    """Untrusted text for a Markdown component (the chat): shown exactly as written, never as markup."""
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value, default=str)
    return e(_MARKDOWN.sub(r"\\\1", text))


def short(value: Any, limit: int = MAX_TEXT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def chat_messages(pairs: Iterable[tuple[str, Any]]) -> list[dict[str, str]]:
    """(role, text) pairs as Chatbot messages, each text escaped."""
    return [{"role": role, "content": chat_text(text)} for role, text in pairs if text not in (None, "")]


def object_rows(objects: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [o["object_id"], o["name"], o["frames_with_mask"], o["first_frame"], o["last_frame"]] for o in objects
    ]


OBJECT_COLUMNS = ["id", "name", "frames with mask", "first frame", "last frame"]


def swatch(object_id: int) -> str:
    """A square in object ``object_id``'s colour, the one the overlay, the previews and the viewer tint
    its mask with (``colour_for(id - 1)``); its title is the colour's name."""
    from alref.media.boxes import colour_for

    name, (r, g, b) = colour_for(int(object_id) - 1)
    return (f'<span class="alref-swatch" title="{e(name)}" data-colour="{e(name)}" '
            f'style="background-color:rgb({int(r)},{int(g)},{int(b)})"></span>')  # fmt: skip


def legend_html(objects: list[dict[str, Any]]) -> str:
    """The overlay's legend: each object's colour swatch, id and name (escaped)."""
    if not objects:
        return ""
    items = "".join(
        f'<li data-object="{int(o["object_id"])}">{swatch(o["object_id"])} {int(o["object_id"])} {e(o["name"])}</li>'
        for o in objects
    )
    return f'<ul class="alref-legend" aria-label="colours of the objects">{items}</ul>'


def objects_sentence(objects: list[dict[str, Any]]) -> str:
    """The objects as a clause: "object 1 “red square” (frames 0–19), object 2 “dog” (no mask)"."""
    if not objects:
        return "there are no objects"
    parts = []
    for o in objects:
        where = f"frames {o['first_frame']}–{o['last_frame']}" if o.get("frames_with_mask") else "no mask"
        parts.append(f"object {o['object_id']} “{o['name']}” ({where})")
    return "the objects are " + ", ".join(parts)


def edit_text(action: str, result: dict[str, Any], objects: list[dict[str, Any]]) -> str:
    """What an edit button did, as the sentence the conversation shows."""
    if action == "rename":
        return f"Renamed object {result['object_id']} to “{result['name']}”."
    if action == "remove":
        return f"Removed object {result['removed']} (“{result['name']}”); {objects_sentence(objects)}."
    if action == "undo":
        return f"Undid the last change; {objects_sentence(objects)}."
    return f"{action}: done; {objects_sentence(objects)}."


def refine_text(new: bool, result: dict[str, Any], objects: list[dict[str, Any]]) -> str:
    """What the viewer's Apply did, as the sentence the conversation shows."""
    obj, frame = result["object_id"], result["frame"]
    done = f"Added object {obj} (“{result['name']}”) from your prompt" if new else f"Corrected object {obj}"
    return f"{done} on frame {frame} and propagated it again; {objects_sentence(objects)}."


def prompt_sentence(points: list[list[float]], labels: list[int], box: list[float] | None) -> str:
    """Pending clicks as a clause: "2 positive points, 1 negative point and a box"."""
    positives = sum(1 for v in labels if v == 1)
    negatives = len(labels) - positives
    parts = [
        f"{n} {kind} point{'s' if n != 1 else ''}"
        for n, kind in ((positives, "positive"), (negatives, "negative"))
        if n
    ]
    if box is not None:
        parts.append(f"a box ({', '.join(f'{v:g}' for v in box)})")
    return _and(parts) if parts else "nothing yet"


def threads_html(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="alref-muted">no saved conversations yet</p>'
    head = "".join(f"<th>{e(c)}</th>" for c in ("thread", "video", "turns", "objects", "last message"))
    body = "".join(
        "<tr>" + "".join(f"<td>{e(short(r.get(k) or '', 120))}</td>" for k in ("thread", "video", "turns", "objects", "last")) + "</tr>"
        for r in rows
    )  # fmt: skip
    return f'<table class="alref-table"><tr>{head}</tr>{body}</table>'


# --- the trace -------------------------------------------------------------------------------------

#: the event kinds shown in the trace table, and what each is called there
KINDS = {
    "llm_call": "LLM call",
    "llm_retry": "retry",
    "validation_error": "invalid answer",
    "fallback": "fallback",
    "clip_decided": "decision",
    "candidates_judged": "candidates judged",
    "pivots_decided": "pivots",
    "node_end": "step",
    "llm_structured_disabled": "structured output off",
    "resume": "resumed",
    "trace_error": "trace error",
    "chat_turn": "turn",
    "run_end": "run end",
}


def _detail(event: dict[str, Any]) -> str:
    kind = event.get("kind")
    if kind == "llm_call":
        parts = [f"{event.get('step', '?')}"]
        attempt = (event.get("context") or {}).get("attempt")
        if attempt:
            parts.append(f"attempt {attempt}")
        if event.get("cache_hit"):
            parts.append("cache hit")
        else:
            parts.append(f"{event.get('prompt_tokens') or 0}+{event.get('completion_tokens') or 0} tokens")
            parts.append(f"{event.get('latency_s') or 0:.2f}s")
        if event.get("error"):
            parts.append(f"failed: {event['error']}")
        else:
            if event.get("tool_calls"):
                parts.append(
                    "calls "
                    + ", ".join(f"{c.get('name')}({short(c.get('args'), 200)})" for c in event["tool_calls"])
                )
            if event.get("answer"):
                parts.append(f"answer: {event['answer']}")
        return " · ".join(parts)  # fmt: skip
    if kind == "llm_retry":
        return f"{event.get('error_kind', event.get('reason', ''))}, waited {event.get('wait_s', 0)}s"
    if kind == "validation_error":
        return f"{event.get('step')}: {event.get('error')}"
    if kind == "fallback":
        return f"{event.get('step')}: {event.get('reason')}"
    if kind == "clip_decided":
        where = f"reference {event.get('ref')}, clip {event.get('clip')}"
        if not event.get("valid"):
            return f"{where}: no pivot · {event.get('reason') or ''}"
        box = event.get("box_number") or "top-scoring"
        return f"{where}: frame {event.get('pivot_frame')}, box {box} ({event.get('decided_by')}) · {event.get('reason') or ''}"
    if kind == "candidates_judged":  # the tracks strategy: one judging round, as sentences
        return (
            f"reference {event.get('ref')}, round {event.get('round')} ({event.get('decided_by')}): "
            + verdicts_sentence(event.get("verdicts") or [])
        )
    if kind == "node_end":
        output = event.get("output") or {}
        shown = {k: v for k, v in output.items() if v not in (None, "", [], {})}
        return f"{event.get('node')} {event.get('seconds', 0):.2f}s · {short(shown, 400)}"
    if kind == "chat_turn":
        calls = ", ".join(
            f"{'✗' if c.get('error') else '✓'} {c.get('tool')}" for c in event.get("calls") or []
        )
        return f"turn {event.get('turn')} ({event.get('status')}): {calls or 'no tool calls'}"
    keep = {k: v for k, v in event.items() if k not in ("ts", "t", "kind", "messages")}
    return short(keep)


def trace_rows(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(KINDS[ev["kind"]], short(_detail(ev))) for ev in events if ev.get("kind") in KINDS]


def trace_html(events: list[dict[str, Any]], title: str = "") -> str:
    """The events as one escaped table: LLM calls with their answers and tool calls, retries, invalid
    answers, fallbacks and the decisions with their reasons."""
    rows = trace_rows(events)
    if not rows:
        return '<p class="alref-muted">no trace events in this turn</p>'
    marked = {"fallback", "invalid answer", "retry", "trace error"}
    body = "".join(
        f'<tr class="{"alref-warn" if kind in marked else ""}"><td>{e(kind)}</td><td class="alref-text">{e(text)}</td></tr>'
        for kind, text in rows
    )
    caption = f"<caption>{e(title)}</caption>" if title else ""
    return f'<table class="alref-table alref-trace">{caption}{body}</table>'


def seen_images(events: list[dict[str, Any]], trace: Path) -> list[tuple[str, str]]:
    """(path, caption) of every image the LLM was shown in ``events``, once each, in order; only files
    inside ``trace``."""
    root = Path(trace).resolve()
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for ev in events:
        if ev.get("kind") != "llm_call":
            continue
        for message in ev.get("messages") or []:
            for rel in message.get("images") or []:
                if not isinstance(rel, str) or not rel or rel in seen:
                    continue
                path = (root / rel).resolve()
                if path.is_relative_to(root) and path.is_file():
                    seen.add(rel)
                    out.append((str(path), f"shown at {ev.get('step', '?')}"))
    return out


def result_html(result: dict[str, Any]) -> str:
    """One `alref segment` result: each reference with its status and masks, then every decision with its
    reasoning, attempts and fallbacks (escaped)."""
    lines = [f"<p>status <b>{e(result.get('status'))}</b> · {e(result.get('mode', ''))}</p>"]
    if result.get("smoke"):
        lines.append(f'<p class="alref-warn">{e(result.get("smoke_note"))}</p>')
    frames = (result.get("input") or {}).get("num_frames")
    refs, decisions = [], []
    for ref in result.get("references") or []:
        masks = (ref.get("masks") or {}).get("frames_with_mask")
        refs.append(
            (ref.get("id"), ref.get("text"), ref.get("status"), ref.get("reason"), f"{masks}/{frames}")
        )
        if result.get("strategy") == "tracks":
            decided, reasoning = tracks_sentences(ref)
            decisions.append((ref.get("id"), ref.get("decided_by") or "tracks", decided, reasoning, ""))
            continue
        for c in ref.get("clips") or []:
            chosen = (f"frame {c.get('pivot_frame')}, box {c.get('box_number') or 'top-scoring'} "
                      f"{c.get('box_colour') or ''} of {len(c.get('candidates') or [])} candidates"
                      if c.get("valid") else "no pivot")  # fmt: skip
            why = " · ".join(str(v) for v in (c.get("frame_reasoning"), c.get("subject") and f"subject: {c['subject']}",
                                              c.get("box_reasoning")) if v)  # fmt: skip
            tries = attempts_sentence(c.get("attempts") or {}, c.get("fallbacks") or [])
            decisions.append(
                (
                    f"{ref.get('id')} · clip {c.get('clip')}",
                    c.get("decided_by"),
                    chosen,
                    why or c.get("reason"),
                    tries,
                )
            )
    lines.append(_table(("id", "reference", "status", "reason", "frames with mask"), refs))
    lines.append(_table(("decision", "by", "chosen", "reasoning", "attempts, fallbacks"), decisions))
    timings = result.get("timings_s") or {}
    if timings:
        shown = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items() if isinstance(v, int | float))
        lines.append(f'<p class="alref-muted" id="alref-timings">timings: {e(shown)}</p>')
    return "".join(lines)


def tracks_sentences(ref: dict[str, Any]) -> tuple[str, str]:
    """A tracks-strategy reference as (what was chosen, how): candidates by the numbers the LLM saw on
    the frames (never the internal track ids), each round's frames, verdicts and reasons, as sentences."""
    candidates = [c for c in ref.get("candidates") or [] if isinstance(c, dict)]
    number = {c.get("id"): c.get("number") or n for n, c in enumerate(candidates, start=1)}
    accepted = [number.get(t, "?") for t in ref.get("accepted") or []]
    concept = f"SAM 3 tracked “{ref.get('concept')}”: {len(candidates)} candidate(s)"
    if accepted:
        chosen = f"{concept}; accepted {_and(f'candidate {n}' for n in accepted)}."
    else:
        chosen = f"{concept}; none accepted."
    lines = []
    for r in ref.get("rounds") or []:
        if not isinstance(r, dict):
            continue
        frames = ", ".join(str(f) for f in r.get("frames") or [])
        head = f"Round {r.get('round')}" + (f" (frames {frames})" if frames else "")
        head += (
            " decided by the LLM" if r.get("decided_by") == "llm" else f" decided by {r.get('decided_by')}"
        )
        verdicts = verdicts_sentence(r.get("verdicts") or [], number)
        lines.append(head + (": " + verdicts if verdicts else "") + ".")
    if ref.get("reason"):
        lines.append(str(ref["reason"]).rstrip(".") + ".")
    return chosen, short("\n".join(lines), 1200)


def verdicts_sentence(verdicts: list[Any], number: dict[Any, Any] | None = None) -> str:
    """A judging round's verdicts: "candidate 1 rejected: a cat; candidate 2 accepted: the dog"."""
    parts = []
    for v in verdicts:
        if not isinstance(v, dict):
            continue
        n = v.get("number") or (number or {}).get(v.get("track"), "?")
        word = {"accept": "accepted", "reject": "rejected", "uncertain": "uncertain"}.get(
            str(v.get("verdict")), str(v.get("verdict"))
        )
        reason = f": {v['reason']}" if v.get("reason") else ""
        parts.append(f"candidate {n} {word}{reason}")
    return "; ".join(parts)


def attempts_sentence(attempts: dict[str, Any], fallbacks: list[Any]) -> str:
    """How often each step was asked, and the fallbacks: "frame asked once, box asked 2 times; fell back
    at choose_box"."""
    asked = [f"{step} asked {'once' if n == 1 else f'{n} times'}" for step, n in attempts.items()]
    said = ", ".join(asked) if asked else "no LLM step"
    return said + (f"; fell back at {_and(str(f) for f in fallbacks)}" if fallbacks else "")


def _and(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _table(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="alref-text">{e(c)}</td>' for c in row) + "</tr>" for row in rows
    )
    return f'<table class="alref-table"><tr>{head}</tr>{body}</table>'
