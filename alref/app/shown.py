"""A chat session that says what it is doing (decoding, detecting, propagating k/N) through a ``show``
hook: the page draws it on a progress bar, the terminal on a status line."""

from __future__ import annotations

from typing import Any

from alref.agent.chat.session import ChatSession
from alref.app.progress import Show


def _quiet(fraction: float | None, text: str) -> None:
    pass


class ShownChatSession(ChatSession):
    """A ChatSession that says on the page what it is doing (decoding, detecting, propagating)."""

    show: Show = staticmethod(_quiet)

    def _segmentation(self):
        if self._session is None:
            self.show(None, "decoding the video for SAM 2")
        return super()._segmentation()

    def ground(self, frame: int, phrase: str) -> dict[str, Any]:
        self.show(None, f"detecting on frame {frame}")
        return super().ground(frame, phrase)

    def _propagate(self) -> None:  # only when the masks of these objects are not stored
        self._segmentation()
        self._propagated = 0
        self.show(None, f"propagating {len(self.objects)} object(s) over {self.info.num_frames} frames")
        super()._propagate()

    def _advance(self, frames: int) -> None:
        self._propagated = getattr(self, "_propagated", 0) + frames
        total = self.info.num_frames
        self.show(min(1.0, self._propagated / total), f"propagating {self._propagated}/{total}")
