"""Prompt templates, one plain-text file per chain-of-thought step (``str.format`` fields)."""

from __future__ import annotations

from functools import cache
from importlib import resources

STEPS = (
    "system",
    "describe_event",
    "choose_frame",
    "describe_boxes",
    "syntax_analysis",
    "choose_box",
    "retry",
)


@cache
def template(name: str) -> str:
    if name not in STEPS:
        raise KeyError(f"no prompt template '{name}'; known: {', '.join(STEPS)}")
    return resources.files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8").strip()


def render(name: str, **fields: object) -> str:
    """The template ``name`` with its fields filled in (a missing field is a KeyError)."""
    return template(name).format(**fields)
