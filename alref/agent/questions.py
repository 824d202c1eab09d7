"""Asking a person (LangGraph's ``interrupt()``): the question a graph stops with, reading the answer it
resumes with (``Command(resume=…)``), and :class:`QuestionPending`, which carries a stopped graph's
questions up to whoever can ask them (the terminal with ``--ask``, the chat, the LangGraph server).

An answer is a number, several numbers (``2``, ``"1, 3"``, ``[1, 3]``), ``"none"``, or free text that
the graph sends back to the LLM. A number that names no candidate is asked again, saying why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from langgraph.types import interrupt

from alref.core.records import Question

NONE_WORDS = {"none", "neither", "no", "nothing", "none of them", "null"}
_NUMBERS = re.compile(
    r"^\s*(?:(?:box|boxes|candidate|candidates|object|number|and|or|&|,|\s)*\d+)+[\s,.&]*$", re.I
)


@dataclass(frozen=True)
class Choice:
    """A person's answer, read: ``numbers`` (those named), ``none``, or ``text`` for the LLM."""

    numbers: tuple[int, ...] = ()
    none: bool = False
    text: str | None = None


def read_answer(value: Any, valid: list[int], words: dict[str, int] | None = None) -> Choice:
    """The answer ``value`` against the candidate numbers ``valid``; ValueError (its message is shown to
    the person with the question again) when it names a number that is not a candidate, or is empty."""
    if isinstance(value, dict):
        value = value.get("numbers", value.get("answer", value.get("text")))
    if isinstance(value, bool) or value is None:
        raise ValueError(
            f"answer with a number ({', '.join(map(str, valid))}), several numbers, none, or words"
        )
    if isinstance(value, int):
        numbers = [value]
    elif isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        numbers = list(value)
    else:
        text = " ".join(str(value).split())
        if not text:
            raise ValueError(
                f"the answer was empty: give a number ({', '.join(map(str, valid))}), none, or words"
            )
        key = text.lower().strip(".!")
        if words and key in words:  # e.g. yes / no for a yes-or-no question
            return Choice(numbers=(words[key],))
        if key in NONE_WORDS:
            return Choice(none=True)
        if not _NUMBERS.match(text):
            return Choice(text=text)
        numbers = [int(n) for n in re.findall(r"\d+", text)]
    if not numbers:
        raise ValueError("the answer named no candidate")
    if bad := sorted({n for n in numbers if n not in valid}):
        raise ValueError(f"{', '.join(map(str, bad))} {'is' if len(bad) == 1 else 'are'} not one of the "
                         f"candidates ({', '.join(map(str, valid))})")  # fmt: skip
    return Choice(numbers=tuple(dict.fromkeys(numbers)))


def ask(question: Question, valid: list[int], words: dict[str, int] | None = None) -> tuple[Choice, Any]:
    """Stop the graph with ``question`` until it is resumed with a usable answer (an unusable one asks
    again, with the reason); returns the answer read and as given."""
    error = None
    while True:
        value = interrupt({**question, "error": error})
        try:
            return read_answer(value, valid, words), value
        except ValueError as exc:
            error = str(exc)


@dataclass(frozen=True)
class Pending:
    """One question a stopped graph waits on: the interrupt's id (what a resume names) and its value."""

    id: str
    question: Question


class QuestionPending(Exception):  # noqa: N818 - not an error: a graph waits for a person
    """A graph stopped to ask a person; resume by calling again with ``answers`` ({interrupt id: answer})."""

    def __init__(self, pending: list[Pending], thread: str = "") -> None:
        self.pending = pending
        self.thread = thread
        super().__init__("; ".join(p.question["question"] for p in pending))


def pending_of(graph: Any, config: dict[str, Any]) -> list[Pending]:
    """The interrupts a checkpointed graph is stopped at (subgraphs included), in task order."""
    snapshot = graph.get_state(config, subgraphs=True)
    found: list[Pending] = []

    def walk(snap: Any) -> None:
        for task in snap.tasks:
            for item in task.interrupts:
                if item.id not in {p.id for p in found}:
                    found.append(Pending(item.id, item.value))
            if task.state is not None and hasattr(task.state, "tasks"):
                walk(task.state)

    walk(snapshot)
    return found


def resume_or_raise(graph: Any, config: dict[str, Any], answers: Any, thread: str) -> Any:
    """Where a checkpointed graph waits on questions: ``Command(resume=…)`` with the answers given for
    them (``answers``: {question id: answer}, ids of other graphs' questions ignored), or
    :class:`QuestionPending` when none of them is answered. None when it waits on nothing."""
    from langgraph.types import Command

    waiting = pending_of(graph, config)
    if not waiting:
        return None
    given = {p.id: answers[p.id] for p in waiting if answers and p.id in answers}
    if not given:
        raise QuestionPending(waiting, thread)
    return Command(resume=given)


def asking_through_interrupt(run: Any) -> Any:
    """``run(answers)`` inside a graph node that a person follows (the chat's tools, the LangGraph
    server's segment node): each question a nested graph stops with becomes this graph's own
    ``interrupt()``; its answer is passed on when the node runs again after ``Command(resume=…)``."""
    answers: dict[str, Any] = {}
    while True:
        try:
            return run(answers or None)
        except QuestionPending as pending:
            for item in pending.pending:
                answers[item.id] = interrupt(item.question)
