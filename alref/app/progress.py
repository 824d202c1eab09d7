"""alref's :class:`~alref.progress.Reporter` drawn on a web page's progress bar.

``show`` is any callable taking ``(fraction_or_None, description)``; the app passes one that forwards
to Gradio's ``gr.Progress``. A stage with a known total reports ``done/total``, one without it only its
name. Notes and warnings are kept (the page shows them after the run) as the silent reporter keeps them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from alref.progress import Reporter, Stage

Show = Callable[[float | None, str], None]

#: the pipeline's stage names as the page words them
LABELS = {
    "decode": "decoding",
    "detection": "detecting",
    "reasoning": "reasoning (LLM)",
    "selection": "selecting",
    "propagation": "propagating",
    "overlay": "writing overlay.mp4",
    "audio": "listening",
    "masks": "writing masks",
}


class WebReporter(Reporter):
    def __init__(self, show: Show) -> None:
        super().__init__()
        self.show = show
        self.stages: list[str] = []  # the stages run, in order

    @contextmanager
    def stage(self, name: str, total: int | None) -> Iterator[Stage]:
        label = LABELS.get(name, name)
        self.stages.append(name)
        self.show(0.0 if total else None, label)
        yield _WebStage(self.show, label, total)


class _WebStage:
    def __init__(self, show: Show, label: str, total: int | None) -> None:
        self.show, self.label, self.total = show, label, total
        self.done = 0
        self._lock = threading.Lock()  # agent clips advance from several threads

    def advance(self, amount: int = 1) -> None:
        with self._lock:
            self.done += amount
            done = self.done
        if self.total:
            self.show(min(1.0, done / self.total), f"{self.label} {done}/{self.total}")
        else:
            self.show(None, f"{self.label} ({done})")
