"""Progress reporting for long work, decoupled from the terminal.

The pipeline calls ``reporter.stage(name, total)`` and advances it; the CLI passes a rich-backed
reporter that draws bars on stderr, the Python API a silent one. Messages (which mode runs, what
was skipped) go through ``reporter.note``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Protocol


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
    """Draws one rich progress bar per stage on the given console (stderr in the CLI). Stages open
    at the same time (decoding while the agent reasons) share one live display, a bar each."""

    def __init__(self, console) -> None:
        super().__init__()
        self.console = console
        self._progress = None
        self._open = 0

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

        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]{task.description:<12}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        progress = self._progress
        self._open += 1
        try:
            task = progress.add_task(name, total=total)
            yield _RichStage(progress, task)
        finally:
            self._open -= 1
            if self._open == 0:
                self._progress = None
                progress.stop()

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


class Relay(Reporter):
    """Progress of work that runs on other threads, drawn by the thread that owns ``target``.

    A reporter belongs to the thread that opened it (a LangGraph stream writer, a browser's
    progress bar, a rich display): workers report to the relay, which queues their calls, and
    :meth:`run` (on the owner's thread) runs the workers, each on its own thread, and replays
    their calls on ``target`` until all have ended."""

    def __init__(self, target: Reporter) -> None:
        super().__init__()
        self.target = target
        self._calls: queue.SimpleQueue = queue.SimpleQueue()

    @contextmanager
    def stage(self, name: str, total: int | None) -> Iterator[Stage]:
        key = object()
        self._calls.put(("open", key, name, total))
        try:
            yield _RelayStage(self._calls, key)
        finally:
            self._calls.put(("close", key))

    def note(self, message: str) -> None:
        self._calls.put(("note", message))

    def warn(self, message: str) -> None:
        self._calls.put(("warn", message))

    def run(self, *work: Callable[[], Any], cancel: Callable[[], None] | None = None) -> list[Any]:
        """Run each of ``work`` on its own thread; their results, in order. The first error (in the
        order given) is raised once every worker has ended: each worker must end on its own when
        another fails (see ``InputFeed``). Interrupted here (Ctrl-C), ``cancel()`` asks the workers
        to stop, and the interruption is raised at once."""
        results: list[Any] = [None] * len(work)
        errors: list[BaseException | None] = [None] * len(work)

        def worker(i: int) -> None:
            try:
                results[i] = work[i]()
            except BaseException as error:  # raised again on the owner's thread
                errors[i] = error
            finally:
                self._calls.put(("ended", i))

        threads = [threading.Thread(target=worker, args=(i,), name=f"alref-work-{i}", daemon=True)
                   for i in range(len(work))]  # fmt: skip
        for thread in threads:
            thread.start()
        try:
            self._replay(len(threads))
        except BaseException:
            if cancel is not None:
                cancel()
            raise
        for thread in threads:
            thread.join()
        for error in errors:
            if error is not None:
                raise error
        return results

    def _replay(self, running: int) -> None:
        """The workers' calls on the target, until ``running`` workers have ended."""
        with ExitStack() as stages:
            opened: dict[object, tuple[Stage, ExitStack]] = {}
            while running:
                call = self._calls.get()
                kind = call[0]
                if kind == "ended":
                    running -= 1
                elif kind == "open":
                    one = ExitStack()
                    opened[call[1]] = (one.enter_context(self.target.stage(call[2], call[3])), one)
                    stages.callback(one.close)
                elif kind == "advance":
                    opened[call[1]][0].advance(call[2])
                elif kind == "close":
                    opened.pop(call[1])[1].close()
                elif kind == "note":
                    self.target.note(call[1])
                elif kind == "warn":
                    self.target.warn(call[1])


class _RelayStage:
    def __init__(self, calls: queue.SimpleQueue, key: object) -> None:
        self.calls, self.key = calls, key

    def advance(self, amount: int = 1) -> None:
        self.calls.put(("advance", self.key, amount))
