"""Where a run keeps its files: every name under ``OUT/``, ``OUT/work/`` and ``OUT/trace/``, named once.

::

    OUT/result.json  masks.json  masks/  objects/  palette/  overlay.mp4
    OUT/work/        run_key  frames_<side>.u8  frames_<side>.done  detections.json  agent.sqlite
                     samples/<frame>.jpg            (sampled frames, what the LLM is shown)
                     agent/tiles/clip<NNN>.jpg      (the clip's numbered tile)
                     agent/tiles/lbru.jpg           (the sound step's tile)
                     agent/boxes/ref<R>_clip<NNN>_frame<F>.jpg   (numbered candidate boxes)
                     agent/tracks/ref<R>_round<K>.jpg (the tracks strategy's candidates, set-of-marks)
                     agent/verify/round<K>.jpg      (verification: the masks outlined, with object ids)
                     tracks/<concept digest>.json  (a concept's tracks, masks as RLE)
                     chat/masks_<objects digest>.json (a chat's objects' masks as RLE)
                     refine/                      (`alref refine`: the new outputs before they replace
                                                   the run's, removed once they have)
    OUT/trace/       events.jsonl  images/<sha256[:16]>.jpg

``work/`` is deleted after a finished run unless ``--keep-work``, except what a rerun needs to skip
finished work. A chat keeps the same ``work/`` and ``trace/`` layout under its own folder, plus
``images/`` (what its tools made) and ``previews/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TRACE_DIR = "trace"
EVENTS_FILE = "events.jsonl"
IMAGES_DIR = "images"
WORK_DIR = "work"
RESULT_FILE = "result.json"
MASKS_FILE = "masks.json"
MASKS_DIR = "masks"
OBJECTS_DIR = "objects"
PALETTE_DIR = "palette"
OVERLAY_FILE = "overlay.mp4"
PREVIEWS_DIR = "previews"


@dataclass(frozen=True)
class Workspace:
    """The folders and files of one run (or one chat) rooted at ``out``."""

    out: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))

    # outputs
    @property
    def result(self) -> Path:
        return self.out / RESULT_FILE

    @property
    def masks_json(self) -> Path:
        return self.out / MASKS_FILE

    @property
    def masks_dir(self) -> Path:
        return self.out / MASKS_DIR

    @property
    def overlay(self) -> Path:
        return self.out / OVERLAY_FILE

    @property
    def trace(self) -> Path:
        return self.out / TRACE_DIR

    @property
    def previews(self) -> Path:
        return self.out / PREVIEWS_DIR

    @property
    def tool_images(self) -> Path:
        return self.out / IMAGES_DIR

    # work
    @property
    def work(self) -> Path:
        return self.out / WORK_DIR

    @property
    def run_key(self) -> Path:
        return self.work / "run_key"

    def frame_store(self, side: int) -> Path:
        return self.work / f"frames_{side}.u8"

    def frame_store_done(self, side: int) -> Path:
        return self.work / f"frames_{side}.done"

    @property
    def detections(self) -> Path:
        return self.work / "detections.json"

    @property
    def checkpoint(self) -> Path:
        return self.work / "agent.sqlite"

    @property
    def samples(self) -> Path:
        return self.work / "samples"

    def sample(self, frame: int) -> Path:
        return self.samples / f"{frame}.jpg"

    @property
    def agent(self) -> Path:
        """The images the agent makes for the LLM (paths in result.json are relative to it)."""
        return self.work / "agent"

    def clip_tile(self, clip: int) -> Path:
        return self.agent / "tiles" / f"clip{clip:03d}.jpg"

    @property
    def lbru_tile(self) -> Path:
        return self.agent / "tiles" / "lbru.jpg"

    def boxes_image(self, ref: int, clip: int, frame: int) -> Path:
        return self.agent / "boxes" / f"ref{ref}_clip{clip:03d}_frame{frame}.jpg"

    def round_image(self, ref: int, round_: int) -> Path:
        return self.agent / "tracks" / f"ref{ref}_round{round_}.jpg"

    def verify_image(self, round_: int) -> Path:
        return self.agent / "verify" / f"round{round_}.jpg"

    @property
    def refine_staging(self) -> Path:
        """Where ``alref refine`` writes the run's new outputs before they replace the old ones."""
        return self.work / "refine"

    def chat_masks(self, digest: str) -> Path:
        """The masks of a chat's objects (as RLE) for the objects whose prompts hash to ``digest``."""
        return self.work / "chat" / f"masks_{digest}.json"

    def concept_tracks(self, concept: str) -> Path:
        import hashlib

        digest = hashlib.sha256(concept.strip().lower().encode("utf-8")).hexdigest()[:16]
        return self.work / "tracks" / f"{digest}.json"
