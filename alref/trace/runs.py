"""Listing the runs under a folder (``alref trace list``): one summary row per run folder that holds
``trace/events.jsonl``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from alref.core.workspace import EVENTS_FILE, TRACE_DIR
from alref.errors import InputError
from alref.trace.cost import Event, as_key, cost_estimate
from alref.trace.record import read_events

MAX_DEPTH = 3  # how far below its root list_runs looks for run folders


def _run_folders(folder: Path, depth: int) -> Iterator[Path]:
    if (folder / TRACE_DIR / EVENTS_FILE).is_file():
        yield folder
        return
    if depth <= 0:
        return
    try:
        with os.scandir(folder) as entries:
            children = sorted(
                e.path for e in entries if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
            )
    except OSError:
        return
    for child in children:
        yield from _run_folders(Path(child), depth - 1)


def _seconds_between(first: Any, last: Any) -> float | None:
    try:
        return round((datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds(), 3)
    except (TypeError, ValueError):
        return None


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file holding an object (result.json, masks.json, objects.json), or ``{}`` when it is
    missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_result(run: Path, events: list[Event]) -> dict[str, Any]:
    """result.json when it belongs to this trace's (last) run, else ``{}``."""
    key = next((e.get("run_key") for e in reversed(events) if e.get("kind") == "run_start"), None)
    result = read_json_object(run / "result.json")
    return result if key and result.get("run_key") == key else {}


def status_of(events: list[Event]) -> str:
    """A run's status (its run_end event; ``unfinished`` without one); a chat's is its last turn's."""
    end = run_end_event(events)
    if end is not None:
        return str(end.get("status", "?"))
    turns = [e for e in events if e.get("kind") == "chat_turn"]
    if turns and not any(e.get("kind") == "run_start" for e in events):
        return str(turns[-1].get("status") or "ok")
    return "unfinished"


def run_end_event(events: list[Event]) -> Event | None:
    """The run_end event that closes the last run_start; None while the run is unfinished."""
    last_start = max((i for i, e in enumerate(events) if e.get("kind") == "run_start"), default=-1)
    end = max((i for i, e in enumerate(events) if e.get("kind") == "run_end"), default=-1)
    return events[end] if end >= 0 and end > last_start else None


def run_summary(run: Path, events: list[Event] | None = None) -> dict[str, Any]:
    """One row of ``alref trace list``."""
    run = Path(run)
    events = read_events(run / TRACE_DIR) if events is None else events
    start = next((e for e in events if e.get("kind") == "run_start"), {})
    end, result, cost = run_end_event(events), run_result(run, events), cost_estimate(events)
    kinds = {e.get("kind") for e in events}
    if end and end.get("mode"):  # what really decided: "agent (2 of 2 clips fell back: …)"
        mode = str(end["mode"])
    elif result.get("mode"):
        mode = str(result["mode"])
    elif "chat_turn" in kinds:
        mode = "chat"
    elif kinds & {"llm_call", "node_start"}:
        mode = "agent"
    else:
        mode = "baseline" if any(e.get("decided_by") == "baseline" for e in events) else "unknown"
    total = ((end or {}).get("timings_s") or {}).get("total")
    if not isinstance(total, int | float):
        total = _seconds_between(events[0].get("ts"), events[-1].get("ts")) if events else None
    refs = result.get("references") or start.get("references")
    clips = {(as_key(e.get("ref")), as_key(e.get("clip"))) for e in events if e.get("kind") == "clip_decided"}
    return {
        "path": str(run),
        "started": start.get("ts") or (events[0].get("ts") if events else None),
        "status": status_of(events),
        "mode": mode,
        "references": len(refs) if isinstance(refs, list) else 0,
        "clips": len(clips),
        "llm_calls": cost["calls"],
        "tokens": cost["input_tokens"] + cost["output_tokens"],
        "cost_usd": round(cost["usd"], 6),
        "unknown_price": cost["unknown_price"],
        "models": sorted(cost["models"]),
        "duration_s": total,
    }


def list_runs(root: Path) -> list[dict[str, Any]]:
    """Every run folder (one with ``trace/events.jsonl``) up to 3 levels below ``root``, newest first."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder")
    runs = [run_summary(folder) for folder in _run_folders(root, MAX_DEPTH)]
    return sorted(runs, key=lambda r: str(r["started"] or ""), reverse=True)
