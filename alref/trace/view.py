"""Reading a run's trace (``OUT/trace/events.jsonl``) and showing it as a tree a person can follow:
run → reference → clip → steps, with each LLM call (attempt, tokens, latency, cache hit), the
validation errors, the fallbacks and the decision with its reasoning.

The LLM's answers, reasons and errors are shown in full (on one line each, which the tree wraps at the
terminal's width); only tool arguments and results are shortened, at a word. With ``full`` nothing is
shortened and each answer is the raw text the model wrote, its line breaks kept."""

from __future__ import annotations

import contextvars
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.tree import Tree

from alref.trace.runs import status_of


def _where(event: dict[str, Any]) -> tuple[Any, Any]:
    context = event.get("context") or {}
    return event.get("ref", context.get("ref")), event.get("clip", context.get("clip"))


_FULL: contextvars.ContextVar[bool] = contextvars.ContextVar("alref_trace_full", default=False)


def _short(text: Any, limit: int | None = None) -> str:
    """``text`` on one line, escaped; past ``limit`` characters (not with ``full``) cut after a word, "…" marking
    the cut. A word is never cut."""
    text = " ".join(("" if text is None else str(text)).split())  # 0 (frame 0, box 0) is shown
    if limit is not None and len(text) > limit and not _FULL.get():
        end = text.rfind(" ", 0, limit + 1)
        end = end if end > 0 else text.find(" ", limit)
        if end > 0:
            text = text[:end].rstrip(",;:") + " …"
    return escape(text)


def _answer(e: dict[str, Any]) -> str:
    """An LLM call's answer in full; with ``full`` the raw text, line breaks kept."""
    if _FULL.get():
        raw = e.get("raw", e.get("answer"))
        return escape("" if raw is None else str(raw))
    return _short(e.get("answer", e.get("raw")))


def _llm_line(e: dict[str, Any]) -> str:
    context = e.get("context") or {}
    attempt = context.get("attempt")
    parts = [f"[cyan]LLM[/] {e.get('step', '?')}" + (f" attempt {attempt}" if attempt else "")]
    if e.get("cache_hit"):
        parts.append("[green]cache hit[/]")
    else:
        tokens = f"{e.get('prompt_tokens') or 0}+{e.get('completion_tokens') or 0} tokens"
        parts.append(f"{tokens}, {e.get('latency_s') or 0:.2f}s, {e.get('transport_attempts') or 0} HTTP")
    if e.get("error"):
        parts.append(f"[red]failed: {_short(e.get('error'))}[/]")
    elif e.get("answer") is not None or e.get("raw") is not None:
        parts.append(f"→ {_answer(e)}")
    return " · ".join(parts)


def _event_line(e: dict[str, Any]) -> str | None:
    kind = e.get("kind")
    if kind == "llm_call":
        return _llm_line(e)
    if kind == "llm_retry":
        return f"[yellow]retry[/] {e.get('error_kind', e.get('reason', ''))}, waited {e.get('wait_s', 0)}s"
    if kind == "validation_error":
        attempt = (e.get("context") or {}).get("attempt", e.get("attempt"))
        return f"[yellow]invalid answer[/] ({e.get('step')} attempt {attempt}): {_short(e.get('error'))}"
    if kind == "fallback":
        return f"[magenta]fallback[/] {e.get('step')}: {_short(e.get('reason'))}"
    if kind == "node_end":
        output = e.get("output") or {}
        shown = {
            k: v
            for k, v in output.items()
            if k in ("frame", "pivot_frame", "box", "subject", "pivot_note", "llm_down")
        }
        detail = ", ".join(f"{k}={_short(v, 80)}" for k, v in shown.items() if v not in (None, ""))
        return f"[bold]{e.get('node')}[/] {e.get('seconds', 0):.2f}s" + (f" · {detail}" if detail else "")
    return None


def _verification_calls(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The verification's LLM calls, retries, invalid answers and fallbacks, one list per round (in the
    order of the rounds: each round's events come before its ``verification_round``)."""
    rounds: list[list[dict[str, Any]]] = [[]]
    for e in events:
        if e.get("kind") == "verification_round":
            rounds.append([])
        elif e.get("step") == "verify_masks" and e.get("kind") in (
            "llm_call",
            "validation_error",
            "fallback",
        ):
            rounds[-1].append(e)
    return rounds[:-1]


def render_tree(events: list[dict[str, Any]], run: Path | str = "", full: bool = False) -> Tree:
    """The trace as a tree; ``full``: nothing shortened, the LLM's raw answers (see the module docstring)."""
    token = _FULL.set(full)
    try:
        return _render_tree(events, run)
    finally:
        _FULL.reset(token)


def _render_tree(events: list[dict[str, Any]], run: Path | str) -> Tree:
    start = next((e for e in events if e.get("kind") == "run_start"), {})
    end = next((e for e in reversed(events) if e.get("kind") == "run_end"), {})
    title = f"[bold]run[/] {escape(str(run))} · status {escape(status_of(events))}"
    if start.get("resumed"):
        title += " · resumed"
    tree = Tree(title)
    refs = {i: text for i, text in enumerate(start.get("references") or [], start=1)}
    grouped: dict[tuple[Any, Any], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        grouped[_where(e)].append(e)
    for ref_id in sorted({r for r, _ in grouped if r is not None}):
        ref_node = tree.add(f"[bold]reference {ref_id}[/] “{escape(refs.get(ref_id, '?'))}”")
        for e in grouped.get((ref_id, None), []):
            if (line := _event_line(e)) is not None:
                ref_node.add(line)
        for clip in sorted({c for r, c in grouped if r == ref_id and c is not None}):
            clip_events = grouped[(ref_id, clip)]
            decided = next((e for e in clip_events if e.get("kind") == "clip_decided"), None)
            label = f"clip {clip}"
            if decided:
                label += (
                    f" → frame {decided.get('pivot_frame')}, box {decided.get('box_number') or 'top-scoring'}"
                    f" · {decided.get('decided_by')}"
                    if decided.get("valid")
                    else " → [red]no pivot[/]"
                )
            clip_node = ref_node.add(label)
            for e in clip_events:
                if (line := _event_line(e)) is not None:
                    clip_node.add(line)
            if decided:
                clip_node.add(f"[green]decision[/]: {_short(decided.get('reason'))}")
                if decided.get("frame_numbers"):
                    clip_node.add(f"[dim]{_short(decided['frame_numbers'])}[/]")
    verify_calls = _verification_calls(events)
    for e in grouped.get((None, None), []):
        if e.get("kind") == "chat_turn":
            turn = tree.add(
                f"[bold]turn {e.get('turn')}[/]: “{_short(e.get('text'))}” · {escape(str(e.get('status') or 'ok'))}"
            )
            for call in (
                c
                for c in events
                if c.get("kind") == "llm_call" and (c.get("context") or {}).get("turn") == e.get("turn")
            ):
                if (line := _event_line(call)) is not None:
                    turn.add(line)
            for c in e.get("calls") or []:
                mark = "[red]✗[/]" if c.get("error") else "[green]✓[/]"
                turn.add(
                    f"{mark} {escape(str(c.get('tool')))}({_short(c.get('args'), 100)}) → {_short(c.get('result'), 120)}"
                )
            turn.add(f"answer: {_short(e.get('answer'))}")
            if e.get("preview"):
                turn.add(f"preview: {escape(str(e['preview']))}")
        if e.get("kind") == "verification_round":
            frames = ", ".join(map(str, e.get("frames") or []))
            asked = verify_calls.pop(0) if verify_calls else []
            node = tree.add(
                f"[bold]verification round {e.get('round')}[/] · frames {frames} · image {escape(str(e.get('image') or '-'))}"
            )
            for call in asked:
                if (line := _event_line(call)) is not None:
                    node.add(line)
            for c in e.get("checks") or []:
                node.add(f"[yellow]check[/] {escape(str(c.get('check')))}: {_short(c.get('detail'))}")
            for v in e.get("verdicts") or []:
                colour = "green" if v.get("verdict") == "correct" else "yellow"
                node.add(
                    f"object {v.get('object')}: [{colour}]{escape(str(v.get('verdict')))}[/] ({escape(str(v.get('decided_by')))}) · {_short(v.get('reason'))}"
                )
            for c in e.get("changes") or []:
                if c.get("action") != "none":
                    node.add(f"[magenta]changed[/] object {c.get('object')}: {_short(c.get('detail'), 240)}")
        if e.get("kind") == "resume":
            tree.add(f"[yellow]resumed[/]: {e.get('clips_done', 0)} clip branches were already done")
    if end.get("timings_s"):
        tree.add("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in end["timings_s"].items()))
    return tree
