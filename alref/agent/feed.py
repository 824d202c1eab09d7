"""The pivot selection's inputs as they arrive: sampled frames and detections that another thread
is still producing while the graph already runs.

``alref segment`` decodes the video and runs the detector on its sampled frames while the GPT-PS
agent already reasons about the first clips: a clip's branch waits only for its own frames (to
show them) and, at ``ground_candidates``, for its own reference's boxes. The feed is a fixed
dependency of the run (in :class:`~alref.agent.context.AgentContext`), like the workspace the frames
are written to: it holds no decision, and the graph's state and checkpoints stay what they are.
Without a feed the detections come in the graph's input state, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence

from alref.core.records import Detection, StateDetections, detections_to_state


class FeedClosed(RuntimeError):
    """The producer stopped (it failed or was cancelled) before the awaited input arrived."""


class InputFeed:
    """Thread-safe: the producer calls ``add_samples`` / ``add_detections`` and finally ``close``
    (with the error, if it failed); the graph's nodes call ``wait_samples`` and ``detections``,
    which block until what they ask for has arrived, or raise :class:`FeedClosed`."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._samples: set[int] = set()
        self._found: dict[int, StateDetections] = {}
        self._closed: BaseException | str | None = None

    # the producer's side

    def add_samples(self, frames: Iterable[int]) -> None:
        """These sampled frames are on disk (``workspace.sample(frame)``)."""
        with self._ready:
            self._samples.update(frames)
            self._ready.notify_all()

    def add_detections(self, ref_id: int, found: Mapping[int, Sequence[Detection]]) -> None:
        """``ref_id``'s boxes on these sampled frames (best first), as the detector returned them."""
        with self._ready:
            self._found.setdefault(ref_id, {}).update(detections_to_state(found, list(found)))
            self._ready.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        """No more input will come; waits for what is missing raise :class:`FeedClosed`. With
        ``error`` (the producer failed, or the run was interrupted) the graph's next node raises it
        too (see :meth:`check`), so a run that cannot finish asks the LLM nothing more."""
        with self._ready:
            if self._closed is None:
                self._closed = error if error is not None else "the input ended"
            self._ready.notify_all()

    def check(self) -> None:
        """Raise :class:`FeedClosed` if the producer failed; every node calls it before it runs."""
        with self._ready:
            if isinstance(self._closed, BaseException):
                raise FeedClosed(f"the selection stopped ({self._why()})")

    # the graph's side

    def wait_samples(self, frames: Iterable[int]) -> None:
        wanted = set(frames)
        self._wait(lambda: wanted <= self._samples, f"sampled frames {sorted(wanted - self._samples)}")

    def detections(self, ref_id: int, frames: Sequence[int]) -> StateDetections:
        """``ref_id``'s detections on ``frames`` (state records, best first), once all have arrived."""

        def arrived() -> bool:
            have = self._found.get(ref_id, {})
            return all(str(f) in have for f in frames)

        self._wait(arrived, f"the detections of reference {ref_id}")
        have = self._found[ref_id] if frames else {}
        return {str(f): have[str(f)] for f in frames}

    def _wait(self, arrived, what: str) -> None:
        with self._ready:
            while not arrived():
                if self._closed is not None:
                    raise FeedClosed(f"{what} never arrived ({self._why()})")
                self._ready.wait()

    def _why(self) -> str:
        closed = self._closed
        return closed if isinstance(closed, str) else f"{type(closed).__name__}: {closed}"
