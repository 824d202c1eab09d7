"""Asking a person on the terminal what a stopped graph wants to know (``alref segment --ask``, and
the terminal chat): the question, the image with the numbered candidates, the options; one line read
per question. Stdin closed: :class:`~alref.errors.QuestionUnansweredError` (the run is saved and the
same command continues from the question)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape

from alref.agent.questions import QuestionPending
from alref.errors import QuestionUnansweredError


def ask_on_terminal(
    pending: QuestionPending, console: Console, read: Callable[[str], str] = input, again: str = ""
) -> dict[str, Any]:
    """The person's answer to each pending question, by question id (what ``answers=`` takes)."""
    answers: dict[str, Any] = {}
    for item in pending.pending:
        q = item.question
        console.print(f"[bold yellow]question[/] (reference {q['ref']}"
                      + (f", clip {q['clip']}" if q.get("clip") is not None else "") + f"): {escape(q['question'])}")  # fmt: skip
        if q.get("error"):
            console.print(f"  [red]{escape(q['error'])}[/]")
        if q.get("image"):
            console.print(f"  the candidates are drawn in {escape(str(q['image']))}")
        for option in q.get("options") or []:
            console.print(f"  {option['number']}: {escape(option['label'])}")
        try:
            answers[item.id] = read("answer> ").strip()
        except EOFError:
            raise QuestionUnansweredError(
                "the run stopped to ask which candidate you mean and got no answer; everything it finished is "
                f"saved: run the same command again to answer{again}"
            ) from None
    return answers
