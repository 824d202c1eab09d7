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

from alref.trace.html import is_chat
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


def _add_references(node: Tree, grouped: dict[tuple[Any, Any], list[dict[str, Any]]], refs: dict[int, str],
                    named: bool = True) -> None:  # fmt: skip
    """Each reference with its own events, then its clips with theirs and the clip's decision (``named``
    False: straight under ``node``, which names the one reference)."""
    for ref_id in sorted({r for r, _ in grouped if r is not None}):
        ref_node = (
            node.add(f"[bold]reference {ref_id}[/] “{escape(refs.get(ref_id, '?'))}”") if named else node
        )
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


def _selections(
    events: list[dict[str, Any]],
) -> list[tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]]:
    """A chat's selections (select_referent, track_referent): (start, end, the events between), in
    order. A selection's reference is always number 1 of its own graph; its text is on its start."""
    found, current = [], None
    for e in events:
        kind = e.get("kind")
        if kind == "selection_start":
            current = (e, {}, [])
            found.append(current)
        elif kind == "selection_end" and current is not None:
            found[-1] = (current[0], e, current[2])
            current = None
        elif current is not None:
            current[2].append(e)
    return found


def _add_selection(
    turn: Tree, start: dict[str, Any], end: dict[str, Any], inner: list[dict[str, Any]]
) -> None:
    status = end.get("status") or "unfinished"
    label = f"[bold]{escape(str(start.get('tool')))}[/] “{_short(start.get('reference'))}” · {escape(str(status))}"
    if end.get("objects"):
        label += " → object " + ", ".join(map(str, end["objects"]))
    node = turn.add(label)
    grouped: dict[tuple[Any, Any], list[dict[str, Any]]] = defaultdict(list)
    for e in inner:
        grouped[_where(e)].append(e)
    for e in grouped.pop((None, None), []):
        if (line := _event_line(e)) is not None:
            node.add(line)
    _add_references(node, grouped, {1: str(start.get("reference") or "")}, named=False)
    if end.get("reason") and status != "ok":
        node.add(f"[yellow]why[/]: {_short(end['reason'])}")


def _selections_by_turn(events: list[dict[str, Any]]) -> dict[Any, list[tuple[dict, dict, list]]]:
    """Each chat turn's selections: those that started before its ``chat_turn`` event (and after the
    previous turn's)."""
    by_turn: dict[Any, list[tuple[dict, dict, list]]] = defaultdict(list)
    turn_of: dict[int, Any] = {}
    pending: list[int] = []
    for index, e in enumerate(events):
        if e.get("kind") == "selection_start":
            pending.append(index)
        elif e.get("kind") == "chat_turn":
            for i in pending:
                turn_of[i] = e.get("turn")
            pending = []
    starts = [i for i, e in enumerate(events) if e.get("kind") == "selection_start"]
    for index, selection in zip(starts, _selections(events), strict=True):
        by_turn[turn_of.get(index)].append(selection)
    return by_turn


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
    chat = is_chat(events)
    grouped: dict[tuple[Any, Any], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        grouped[_where(e)].append(e)
    if not chat:
        _add_references(tree, grouped, refs)
    verify_calls = _verification_calls(events)
    chat_selections = _selections_by_turn(events) if chat else {}
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
            for selection in chat_selections.pop(e.get("turn"), []):
                _add_selection(turn, *selection)
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
    for selection in chat_selections.pop(None, []):  # the turn that ran it did not finish
        _add_selection(tree.add("[bold]unfinished turn[/]"), *selection)
    if end.get("timings_s"):
        tree.add("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in end["timings_s"].items()))
    return tree
