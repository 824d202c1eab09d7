"""What a run's LLM calls cost: tokens and an estimate in USD from a dated price table, read from
the ``llm_call`` events of its trace."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rich.markup import escape as rich_escape

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
    """Tokens and USD of the ``llm_call`` events the server answered. A cache hit costs nothing and
    counts no tokens; a failed call (the server rejected or never answered it) counts nothing. The
    server's own usage is used when it gave one; an answered call without usage counts its estimated
    image tokens as input, kept apart as an estimate (``estimated_input_tokens``, a lower bound).
    ``input_tokens`` is the sum of both, what the USD figure is computed from."""
    total: dict[str, Any] = dict(calls=0, cached_calls=0, failed_calls=0, input_tokens=0, output_tokens=0,
                                 server_input_tokens=0, estimated_input_tokens=0, estimated_calls=0,
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
        if e.get("ok") is False:
            total["failed_calls"] += 1
            continue
        images = as_int(e.get("image_tokens_estimate"))
        if e.get("prompt_tokens") is None:
            inp = images
            total["estimated_input_tokens"] += images
            total["estimated_calls"] += 1
        else:
            inp = as_int(e.get("prompt_tokens"))
            total["server_input_tokens"] += inp
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
    text = f"≈ ${c['usd']:.4f} for {c['server_input_tokens']:,} in + {c['output_tokens']:,} out tokens"
    if c["estimated_input_tokens"]:
        text += (f" + ≈{c['estimated_input_tokens']:,} input tokens estimated for {c['estimated_calls']} "
                 f"call{'s' if c['estimated_calls'] != 1 else ''} the server gave no usage for")  # fmt: skip
    text += f", {c['calls']} LLM calls"
    text += f", {c['cached_calls']} cached (free)" if c["cached_calls"] else ""
    text += f", {c['failed_calls']} failed (not counted)" if c["failed_calls"] else ""
    if c["image_tokens_estimate"]:
        text += f" · images ≈{c['image_tokens_estimate']:,} tokens by OpenAI's formula (an estimate)"
    if c["unknown_price"]:
        text += f" · unknown price: {', '.join(c['unknown_price'])} (counted as $0)"
    return text


def cost_line(events: Iterable[Event]) -> str:
    """One line for ``alref trace show`` (rich markup; the model names from the trace are escaped)."""
    return "cost: " + rich_escape(cost_text(cost_estimate(events)))
