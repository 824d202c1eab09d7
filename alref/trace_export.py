"""Listing runs, estimating what their LLM calls cost, and exporting one run's trace as a single
self-contained HTML page: ``alref trace list [DIR]``, the cost line of ``alref trace show`` and
``alref trace export RUN --html FILE`` (the page itself is built by :mod:`alref.trace_html`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.markup import escape as rich_escape

from alref.agent.trace import EVENTS_FILE, read_events
from alref.errors import InputError
from alref.trace_view import trace_folder

# USD per 1M tokens (input, output): OpenAI standard-tier list prices (https://openai.com/api/pricing,
# as of 2025-08). Dated snapshots ("gpt-4o-2024-08-06") and provider prefixes ("openai/gpt-4o") count
# as their model. Cached-input discounts and the Batch tier are ignored; image tokens are part of the
# prompt tokens the server reports. Any other model (a local server, a scripted test model) costs 0
# here and is reported as "unknown price".
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o4-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
}
MAX_DEPTH = 3  # how far below its root list_runs looks for run folders
Event = dict[str, Any]


def as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def as_key(value: Any) -> Any:
    """A ref or clip id usable as a dict key (the trace is untrusted: it may hold anything)."""
    return value if value is None or isinstance(value, int | str) else str(value)


def price_of(model: Any) -> tuple[float, float] | None:
    name = str(model or "").strip().lower().rsplit("/", 1)[-1]
    return PRICES.get(re.sub(r"-\d{4}-\d{2}-\d{2}$", "", name))


def cost_estimate(events: Iterable[Event]) -> dict[str, Any]:
    """Tokens and USD of the ``llm_call`` events. A cache hit costs nothing and counts no tokens; a call
    whose server reported no usage counts its estimated image tokens as input (a lower bound)."""
    total: dict[str, Any] = dict(calls=0, cached_calls=0, failed_calls=0, input_tokens=0, output_tokens=0,
                                 image_tokens_estimate=0, usd=0.0)  # fmt: skip
    models: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.get("kind") != "llm_call":
            continue
        name = str(e.get("model") or "unknown")
        price = price_of(name)
        m = models.setdefault(name, dict(calls=0, input_tokens=0, output_tokens=0, price=price, usd=0.0))
        total["calls"] += 1
        m["calls"] += 1
        if e.get("cache_hit"):
            total["cached_calls"] += 1
            continue
        total["failed_calls"] += e.get("ok") is False
        images = as_int(e.get("image_tokens_estimate"))
        inp = images if e.get("prompt_tokens") is None else as_int(e.get("prompt_tokens"))
        out = as_int(e.get("completion_tokens"))
        usd = (inp * price[0] + out * price[1]) / 1e6 if price else 0.0
        for key, value in (("input_tokens", inp), ("output_tokens", out), ("usd", usd)):
            total[key] += value
            m[key] += value
        total["image_tokens_estimate"] += images
    total["models"] = models
    total["unknown_price"] = sorted(n for n, m in models.items() if m["price"] is None)
    return total


def cost_text(c: dict[str, Any]) -> str:
    if not c["calls"]:
        return "no LLM calls"
    text = f"≈ ${c['usd']:.4f} for {c['input_tokens']:,} in + {c['output_tokens']:,} out tokens"
    text += f" (≈{c['image_tokens_estimate']:,} of them images), {c['calls']} LLM calls"
    text += f", {c['cached_calls']} cached (free)" if c["cached_calls"] else ""
    if c["unknown_price"]:
        text += f" · unknown price: {', '.join(c['unknown_price'])} (counted as $0)"
    return text


def cost_line(events: Iterable[Event]) -> str:
    """One line for ``alref trace show`` (rich markup; the model names from the trace are escaped)."""
    return "cost: " + rich_escape(cost_text(cost_estimate(events)))


# listing runs


def _run_folders(folder: Path, depth: int) -> Iterator[Path]:
    if (folder / "trace" / EVENTS_FILE).is_file():
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


def run_result(run: Path, events: list[Event]) -> dict[str, Any]:
    """result.json when it belongs to this trace's (last) run, else ``{}``."""
    key = next((e.get("run_key") for e in reversed(events) if e.get("kind") == "run_start"), None)
    try:
        result = json.loads((run / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return result if isinstance(result, dict) and key and result.get("run_key") == key else {}


def run_end_event(events: list[Event]) -> Event | None:
    """The run_end event that closes the last run_start; None while the run is unfinished."""
    last_start = max((i for i, e in enumerate(events) if e.get("kind") == "run_start"), default=-1)
    end = max((i for i, e in enumerate(events) if e.get("kind") == "run_end"), default=-1)
    return events[end] if end >= 0 and end > last_start else None


def run_summary(run: Path, events: list[Event] | None = None) -> dict[str, Any]:
    """One row of ``alref trace list``."""
    run = Path(run)
    events = read_events(run / "trace") if events is None else events
    start = next((e for e in events if e.get("kind") == "run_start"), {})
    end, result, cost = run_end_event(events), run_result(run, events), cost_estimate(events)
    kinds = {e.get("kind") for e in events}
    if result.get("mode"):
        mode = str(result["mode"])
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
        "started": start.get("ts"),
        "status": str(end.get("status", "?")) if end else "unfinished",
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


def export_html(run: Path, html: Path) -> Path:
    """Write the trace of ``run`` (a run folder or its trace/ folder) as one self-contained HTML page:
    the images the LLM saw, the candidate boxes, the decisions with their reasoning, attempts, validation
    errors and fallbacks, and mask previews; no script, readable offline. Returns ``html``."""
    from alref.trace_html import render_page

    folder = trace_folder(Path(run))
    page = render_page(folder.parent, read_events(folder))
    html = Path(html)
    html.parent.mkdir(parents=True, exist_ok=True)
    tmp = html.with_name(f".{html.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, html)
    return html
