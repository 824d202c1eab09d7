"""Sound as the reference: from the audio track to the objects to segment and the frames where each
is silent.

1. the audio (the video's own track, or a separate file) at 16 kHz mono;
2. the AudioSet tagger's top-k labels over the whole clip and per one-second window;
3. LBRU turns labels into sounding object categories (LLM, or the label table without one); a text
   reference given with ``--audio`` is itself the category ("the sounding object matching this text");
4. each category becomes the reference "the <object> that is making sound";
5. sound events: the audio is cut where adjacent one-second CLAP embeddings differ (cosine below
   ``event_threshold``) or where it turns silent (energy gate, the tagger's Silence score); per event,
   CLAP audio–text similarity decides which categories sound; a category's mask is removed on the
   frames whose time falls in an event where it does not sound (``keep_silent`` turns this off).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alref.audio.events import WINDOW_S, silent_frames, sound_events
from alref.config import Settings
from alref.core.workspace import Workspace
from alref.errors import InputError
from alref.media.audio import SAMPLE_RATE, load_audio
from alref.media.tiles import tile_frames
from alref.media.video import VideoInfo
from alref.media.writers import write_jpeg
from alref.tools.loading import ModelSource, audio_models

VIDEO_TRACK = "@video"
__all__ = [
    "VIDEO_TRACK",
    "AudioPlan",
    "AudioRequest",
    "audio_models",
    "plan_audio",
    "silent_frames",
    "sound_events",
]


@dataclass(frozen=True)
class AudioRequest:
    source: str  # a path, or VIDEO_TRACK for the video's own audio
    text: str | None = None  # a text reference given together with --audio

    def path(self, video_path: Path) -> Path:
        return Path(video_path) if self.source == VIDEO_TRACK else Path(self.source).expanduser()

    def key(self, video_path: Path) -> dict[str, Any]:
        path = self.path(video_path)
        stat = path.stat() if path.is_file() else None
        return {"audio": str(path), "size": stat.st_size if stat else None, "mtime": stat.st_mtime_ns if stat else None,
                "text": self.text}  # fmt: skip


@dataclass
class AudioPlan:
    categories: list[dict[str, Any]]  # id, category, reference, labels, hint_frame
    gate: dict[int, set[int]] = field(default_factory=dict)  # object id -> frames whose mask is removed
    report: dict[str, Any] = field(default_factory=dict)  # result.json["audio"]

    @property
    def references(self) -> list[str]:
        return [c["reference"] for c in self.categories]

    @property
    def hints(self) -> dict[int, int]:
        return {c["id"]: c["hint_frame"] for c in self.categories if c.get("hint_frame") is not None}


SHIPPED_VOCABULARIES = {"avsbench": "avsbench_categories.txt"}


def read_vocabulary(path: Path | None) -> list[str] | None:
    """A closed vocabulary: one category per line ('background' and blank lines ignored).
    ``avsbench`` names the AVSBench classes shipped with alref."""
    if path is None:
        return None
    if str(path) in SHIPPED_VOCABULARIES:
        from importlib import resources

        path = Path(str(resources.files("alref").joinpath("data", SHIPPED_VOCABULARIES[str(path)])))
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"--categories {path}: no such file (one category name per line)")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n and not n.startswith("#") and n.lower() != "background"]
    if not names:
        raise InputError(f"--categories {path} lists no category")
    return names


def frame_ranges(frames: Iterable[int]) -> list[list[int]]:
    """[[first, last], …] inclusive runs of consecutive frames: 20–34 instead of fifteen numbers."""
    runs: list[list[int]] = []
    for f in sorted(frames):
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    return runs


def sound_reference(category: str) -> str:
    category = category.strip()
    category = category[4:] if category.lower().startswith("the ") else category
    return f"the {category} that is making sound"


def _lbru_tile(
    frames: dict[int, np.ndarray], count: int, workspace: Workspace, settings: Settings
) -> tuple[str, list[int]]:
    indices = sorted(frames)
    if len(indices) > count:
        indices = [indices[round(i)] for i in np.linspace(0, len(indices) - 1, count)]
    tile = tile_frames(
        [frames[i] for i in indices],
        list(range(1, len(indices) + 1)),
        settings.tile_columns,
        settings.tile_max_side,
    )
    return write_jpeg(workspace.lbru_tile, tile.image), indices


def plan_audio(
    request: AudioRequest,
    video_path: Path,
    info: VideoInfo,
    settings: Settings,
    sampled_frames: dict[int, np.ndarray],
    workspace: Workspace,
    sources: tuple[ModelSource, ModelSource],
    device: str,
    lbru_context: Any = None,
) -> AudioPlan:
    """Everything audio decides before detection: categories, references, hints and the silence gate."""
    from alref.agent.lbru import label_table_sources, merge_sources, run_lbru
    from alref.tools.audio_tagging import AudioTagger
    from alref.tools.audio_text import AudioTextMatcher

    path = request.path(video_path)
    waveform = load_audio(path)
    duration = len(waveform) / SAMPLE_RATE
    tagger = AudioTagger.load(sources[0], device)
    tags = tagger.tag(waveform, SAMPLE_RATE, top_k=settings.audio_top_k, window_s=WINDOW_S)
    offered = [{"label": t.label, "score": round(float(t.score), 4)} for t in tags.labels]
    vocabulary = read_vocabulary(settings.categories)
    lbru: dict[str, Any]
    if request.text:
        found = [{"category": request.text.strip(), "labels": [], "hint_frame": None}]
        lbru = {
            "decided_by": "text",
            "reasoning": "a text reference was given with --audio",
            "sources": found,
            "dropped": [],
        }
    elif lbru_context is not None:
        tile, frames = _lbru_tile(sampled_frames, settings.lbru_frames, workspace, settings)
        lbru = run_lbru(lbru_context, offered, tile, frames, vocabulary)
        lbru["tile"] = tile
    else:
        found, dropped = merge_sources(label_table_sources(offered), vocabulary)
        lbru = {"decided_by": "label_table", "reasoning": "no LLM: labels mapped to objects by the label table",
                "sources": found, "dropped": dropped}  # fmt: skip
    categories = [
        {"id": i, "category": s["category"], "reference": sound_reference(s["category"]), "labels": s["labels"],
         "hint_frame": s.get("hint_frame"),
         "palette_index": (vocabulary.index(s["category"]) + 1) if vocabulary and s["category"] in vocabulary else i}
        for i, s in enumerate(lbru["sources"], start=1)
    ]  # fmt: skip

    matcher = AudioTextMatcher.load(sources[1], device)
    events = sound_events(waveform, [c["category"] for c in categories], settings, tags, matcher)
    gate: dict[int, set[int]] = {}
    if not settings.keep_silent:
        gate = {c["id"]: silent_frames(events, c["category"], info) for c in categories}
    report = {
        "source": "video track" if request.source == VIDEO_TRACK else str(path),
        "duration_s": round(duration, 3),
        "tags": offered,
        "silence": round(float(tags.silence), 4),
        "lbru": {k: v for k, v in lbru.items() if k != "sources"},
        "vocabulary": str(settings.categories) if vocabulary else None,
        "categories": categories,
        "events": [
            {
                "start_s": round(e.start_s, 3),
                "end_s": round(e.end_s, 3),
                "silent": e.silent,
                "categories": e.categories,
                "scores": e.scores,
            }
            for e in events
        ],  # fmt: skip
        "keep_silent": settings.keep_silent,
        "removed_frames": {str(k): frame_ranges(v) for k, v in gate.items()},
    }
    return AudioPlan(categories, gate, report)
