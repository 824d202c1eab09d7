"""Progress reporting for long work, decoupled from the terminal.

The pipeline calls ``reporter.stage(name, total)`` and advances it; the CLI passes a rich-backed
reporter that draws bars on stderr, the Python API a silent one. Messages (which mode runs, what
was skipped) go through ``reporter.note``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Stage(Protocol):
    def advance(self, amount: int = 1) -> None: ...


class Reporter:
    """Silent reporter: the default for the Python API and tests."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    @contextmanager
    def stage(self, name: str, total: int | None) -> Iterator[Stage]:
        yield _NullStage()

    def note(self, message: str) -> None:
        self.notes.append(message)

    def warn(self, message: str) -> None:
        """Something the user must know even when only the exit status is read."""
        self.notes.append(f"warning: {message}")


class _NullStage:
    def advance(self, amount: int = 1) -> None:
        pass


class RichReporter(Reporter):
    """Draws one rich progress bar per stage on the given console (stderr in the CLI)."""

    def __init__(self, console) -> None:
        super().__init__()
        self.console = console

    @contextmanager
    def stage(self, name: str, total: int | None) -> Iterator[Stage]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("[bold]{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        ) as progress:
            task = progress.add_task(name, total=total)
            yield _RichStage(progress, task)

    def note(self, message: str) -> None:
        super().note(message)
        self.console.print(message, highlight=False, markup=False)

    def warn(self, message: str) -> None:
        super().warn(message)
        self.console.print(f"warning: {message}", style="yellow", highlight=False, markup=False)


class _RichStage:
    def __init__(self, progress, task) -> None:
        self.progress = progress
        self.task = task

    def advance(self, amount: int = 1) -> None:
        self.progress.advance(self.task, amount)
