"""The tracks strategy's track source over one video: SAM 3 (a concept tracker tool) runs once per
concept over the video's frame store; its tracks are kept as RLE in ``OUT/work/tracks/`` (keyed by the
run's identity) so a resumed run or a later chat turn does not track again."""

from __future__ import annotations

import inspect
import json
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from alref.core.records import Track
from alref.core.workspace import Workspace
from alref.media.writers import atomic_write_json_stream
from alref.progress import Reporter


def saved_form(found: Any) -> Any:
    """``found.to_json()``; ``to_json(streamed=True)`` where the tracks take it (alref's ConceptTracks: each
    mask read from its spool as it is written, so the whole set is never in memory at once)."""
    if "streamed" in inspect.signature(found.to_json).parameters:
        return found.to_json(streamed=True)
    return found.to_json()


class VideoTracks:
    """The tracks strategy's :class:`~alref.agent.tracks.state.TrackSource` over one video."""

    def __init__(
        self, tracker: Any, store: Any, video: Any, workspace: Workspace, reporter: Reporter, key: str
    ):
        self.tracker, self.store, self.video, self.workspace, self.reporter, self.key = (
            tracker, store, video, workspace, reporter, key,
        )  # fmt: skip
        self._concepts: dict[str, Any] = {}
        self.tracking_s = 0.0  # the time the tracker took (the rest of a selection is alref's and the LLM's)
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()

    def _of(self, concept: str) -> Any:
        if concept in self._concepts:
            return self._concepts[concept]
        path = self.workspace.concept_tracks(concept)
        saved = json.loads(path.read_text()) if path.is_file() else {}
        if saved.get("key") == self.key:
            found = self._from_json(saved["tracks"])
        else:
            info = self.video.info
            started = time.perf_counter()
            with self.reporter.stage(f"tracks '{concept}'"[:24], info.num_frames) as stage:
                found = self.tracker.track(
                    self.store, info.height, info.width, concept, progress=stage.advance
                )
            self.tracking_s += time.perf_counter() - started
            atomic_write_json_stream(path, {"key": self.key, "tracks": saved_form(found)})  # not one string
        self._concepts[concept] = found
        return found

    def _from_json(self, data: Any) -> Any:
        loader = getattr(self.tracker, "tracks_from_json", None)
        if loader is None:
            from alref.tools.sam3 import ConceptTracks

            loader = ConceptTracks.from_json
        return loader(data)

    def tracks(self, concept: str) -> list[Track]:
        return list(self._of(concept).tracks)

    def mask(self, concept: str, track_id: int, frame: int) -> np.ndarray:
        return self._of(concept).mask(track_id, frame)

    def frames(self, indices: list[int]) -> dict[int, np.ndarray]:
        """Full-resolution frames to draw on: those not kept yet read in one decoding pass (a video file
        decodes from its start for every read, so a round's frames read one by one cost one pass each)."""
        missing = [i for i in indices if i not in self._frames]
        if missing:
            self._frames.update(self.video.read_frames(missing))
        found = {i: self._frames[i] for i in indices}
        for index in indices:
            self._frames.move_to_end(index)
        while len(self._frames) > max(32, len(indices)):
            self._frames.popitem(last=False)
        return found
