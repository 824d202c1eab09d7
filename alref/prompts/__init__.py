"""Prompt templates, one plain-text file per chain-of-thought step (``str.format`` fields):
system, describe_event, choose_frame, describe_boxes, syntax_analysis, choose_box, retry, lbru."""

from __future__ import annotations

from functools import cache
from importlib import resources


def steps() -> list[str]:
    return sorted(
        p.name.removesuffix(".txt") for p in resources.files(__package__).iterdir() if p.name.endswith(".txt")
    )


@cache
def template(name: str) -> str:
    path = resources.files(__package__).joinpath(f"{name}.txt")
    if not path.is_file():
        raise KeyError(f"no prompt template '{name}'; known: {', '.join(steps())}")
    return path.read_text(encoding="utf-8").strip()


def render(name: str, **fields: object) -> str:
    """The template ``name`` with its fields filled in (a missing field is a KeyError)."""
    return template(name).format(**fields)
