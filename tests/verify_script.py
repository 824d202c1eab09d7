"""Scripted answers to the verification question (``verify_masks``), shared by the agent scripts."""

from __future__ import annotations

import json
import re
from typing import Any

MARKER = "judge whether its outlined mask is what its sentence refers to"


def text_of(message: Any) -> str:
    content = message.content if hasattr(message, "content") else message.get("content")
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content if isinstance(part, dict))


def is_verify(messages: list[Any]) -> bool:
    """The verification question, or a re-ask of it (the conversation holds the question)."""
    return any(MARKER in text_of(m) for m in messages)


def objects_in(messages: list[Any]) -> list[int]:
    for m in messages:
        found = re.search(r"one verdict for each of the objects ([\d, ]+)", text_of(m))
        if found:
            return [int(n) for n in found.group(1).split(",") if n.strip()]
    raise AssertionError("no verification question")


def verdicts(messages: list[Any], default: str = "correct", **by_object: str) -> str:
    """Every object asked about gets ``default``, or ``by_object["o<id>"]``."""
    return json.dumps({"reasoning": "looked at the outlines", "verdicts": [
        {"object": n, "verdict": by_object.get(f"o{n}", default), "reason": f"{by_object.get(f'o{n}', default)} {n}"}
        for n in objects_in(messages)]})  # fmt: skip
