"""Sound events: cut the audio where it changes, decide what sounds in each event, gate frames.

Pure logic on numbers (numpy only, no models), so every rule here is testable with synthetic input:

1. :func:`silent_windows` marks each window silent by an energy gate (RMS below ``energy_db`` dBFS) or
   by the tagger's "Silence" score (above ``silence_threshold``).
2. :func:`cut_events` starts a new event where two adjacent window embeddings differ (cosine similarity
   below ``threshold``) and wherever the silent/non-silent state changes. Events are contiguous and
   cover ``[0, duration_s]`` exactly; an event starts on a window boundary.
3. :func:`assign_categories` scores, per event, the prompts "the sound of a <c>" for each category and
   each combination of up to ``max_combination`` categories, and keeps the best-scoring set.
4. :func:`refine_silence` (optional) splits events at silences found on a finer grid (0.1 s), so the
   gate follows a silence that does not start or end on a window boundary.
5. :func:`frames_to_remove` lists the frames whose time falls in an event where a category is not
   sounding (a silent event, or one whose categories do not include it).

The label table (:func:`label_to_object`) and closed-vocabulary mapping (:func:`map_to_vocabulary`) live
in :mod:`alref.audio.labels` and :mod:`alref.audio.vocabulary`; they are re-exported here.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Any

import numpy as np

from alref.audio.labels import LABEL_OBJECTS, label_to_object
from alref.audio.signal import as_mono, rms_db, window_times
from alref.audio.vocabulary import map_to_vocabulary
from alref.media.audio import SAMPLE_RATE

__all__ = [
    "LABEL_OBJECTS",  # re-exported from alref.audio.labels
    "SoundEvent",
    "assign_categories",
    "cut_events",
    "event_embeddings",
    "frames_to_remove",
    "label_events",
    "label_to_object",  # re-exported from alref.audio.labels
    "map_to_vocabulary",  # re-exported from alref.audio.vocabulary
    "normalize_category",
    "refine_silence",
    "silent_windows",
    "sound_prompt",
]


@dataclass
class SoundEvent:
    """A stretch of audio ``[start_s, end_s)`` with one character: silent, or these categories sounding."""

    start_s: float
    end_s: float
    silent: bool
    categories: list[str] = field(default_factory=list)
    #: audio-text similarity per prompt set: "dog", "guitar", "dog + guitar", …
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "silent": self.silent,
            "categories": list(self.categories),
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
        }


def normalize_category(name: str) -> str:
    """Lowercase, hyphens and underscores as spaces, single spaces: "Emergency-car" -> "emergency car"."""
    return " ".join(str(name).lower().replace("-", " ").replace("_", " ").split())


def _unit_rows(matrix: np.ndarray, what: str) -> np.ndarray:
    rows = np.asarray(matrix, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (one row per item), got shape {rows.shape}")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)  # a zero row stays zero: similarity 0 to everything


# ----------------------------------------------------------------------------------------------
# silence and cutting


def silent_windows(
    waveform: np.ndarray,
    sample_rate: int,
    window_s: float = 1.0,
    energy_db: float = -45.0,
    silence_scores: Sequence[float] | None = None,
    silence_threshold: float = 0.5,
) -> list[bool]:
    """One flag per window of :func:`~alref.audio.signal.window_times`: True when the window is silent.

    A window is silent when its RMS level is below ``energy_db`` dBFS, or when its tagger "Silence" score
    (``silence_scores``, one per window, e.g. ``TagResult.silence_scores``) is above ``silence_threshold``.
    """
    samples = as_mono(waveform)
    windows = window_times(len(samples) / sample_rate, window_s)
    if silence_scores is not None and len(silence_scores) != len(windows):
        raise ValueError(
            f"got {len(silence_scores)} silence scores for {len(windows)} windows of {window_s} s; "
            "tag the audio with the same window_s"
        )
    flags = []
    for i, (start, end) in enumerate(windows):
        quiet = rms_db(samples[round(start * sample_rate) : round(end * sample_rate)]) < energy_db
        if silence_scores is not None and float(silence_scores[i]) > silence_threshold:
            quiet = True
        flags.append(quiet)
    return flags


def cut_events(
    embeddings: np.ndarray,
    window_s: float,
    threshold: float = 0.5,
    silent_windows: Sequence[bool] | None = None,
    duration_s: float | None = None,
) -> list[SoundEvent]:
    """Cut consecutive windows (one embedding row each, window i starting at ``i * window_s``) into events.

    A new event starts at window i when ``cos(embeddings[i - 1], embeddings[i]) < threshold`` or when
    ``silent_windows[i] != silent_windows[i - 1]``. The first event starts at 0, the last ends at
    ``duration_s`` (default: the end of the last window), so the events cover the audio with no gap.
    No windows give no events.
    """
    if not window_s > 0:
        raise ValueError(f"window_s must be positive, got {window_s}")
    unit = _unit_rows(embeddings, "embeddings")
    n = unit.shape[0]
    silent = [bool(s) for s in silent_windows] if silent_windows is not None else [False] * n
    if len(silent) != n:
        raise ValueError(f"got {len(silent)} silence flags for {n} window embeddings")
    if n == 0:
        return []
    end_s = float(duration_s) if duration_s is not None else n * window_s
    similarity = np.sum(unit[1:] * unit[:-1], axis=1)
    starts = [0] + [i for i in range(1, n) if similarity[i - 1] < threshold or silent[i] != silent[i - 1]]
    starts = [i for i in starts if i == 0 or i * window_s < end_s - 1e-9]  # windows past the end
    events = []
    for k, i in enumerate(starts):
        stop = end_s if k + 1 == len(starts) else round(starts[k + 1] * window_s, 6)
        events.append(SoundEvent(round(i * window_s, 6), stop, silent[i]))
    return events


def event_embeddings(embeddings: np.ndarray, events: Sequence[SoundEvent], window_s: float) -> np.ndarray:
    """Per event, the L2-normalised mean of the embeddings of the windows that start inside it."""
    unit = _unit_rows(embeddings, "embeddings")
    if not events:
        return np.zeros((0, unit.shape[1]))
    starts = np.arange(unit.shape[0]) * window_s
    rows = []
    for event in events:
        inside = (starts >= event.start_s - 1e-9) & (starts < event.end_s - 1e-9)
        if not inside.any():  # an event shorter than a window: take the window it starts in
            inside = np.zeros(unit.shape[0], bool)
            inside[min(unit.shape[0] - 1, int(event.start_s // window_s))] = True
        rows.append(unit[inside].mean(axis=0))
    return _unit_rows(np.stack(rows), "event embeddings")


# ----------------------------------------------------------------------------------------------
# what sounds in each event


def sound_prompt(categories: Sequence[str]) -> str:
    """The prompt for a set of categories: "the sound of a dog and an owl" (hyphens read as spaces)."""
    parts = []
    for name in categories:
        words = normalize_category(name)
        parts.append(("an " if words[:1] in set("aeiou") else "a ") + words)
    return "the sound of " + " and ".join(parts)


def assign_categories(
    event_embeddings: np.ndarray,
    categories: list[str],
    text_embed: Callable[[list[str]], np.ndarray],
    max_combination: int = 2,
    silent: Sequence[bool] | None = None,
) -> list[tuple[list[str], dict[str, float]]]:
    """Per event (one row of ``event_embeddings``), the categories sounding in it and the scores.

    The rule: every non-empty set of at most ``max_combination`` categories becomes one prompt
    (:func:`sound_prompt`); ``text_embed`` embeds all prompts in one call; an event's score for a set is
    the cosine similarity of its embedding and the set's prompt. The event gets the best-scoring set
    (ties go to the earlier set, so a single category beats a combination that only equals it). A
    silent event (``silent[i]``) gets no categories; with one category, every non-silent event gets it,
    whatever its score. Scores are keyed by the set's names joined with " + ".
    """
    unit = _unit_rows(event_embeddings, "event_embeddings")
    flags = [bool(s) for s in silent] if silent is not None else [False] * unit.shape[0]
    if len(flags) != unit.shape[0]:
        raise ValueError(f"got {len(flags)} silence flags for {unit.shape[0]} events")
    names = list(dict.fromkeys(c.strip() for c in categories if c and c.strip()))
    if not names or unit.shape[0] == 0:
        return [([], {}) for _ in range(unit.shape[0])]
    if max_combination < 1:
        raise ValueError(f"max_combination must be at least 1, got {max_combination}")
    sets = [s for r in range(1, min(max_combination, len(names)) + 1) for s in combinations(names, r)]
    prompts = [sound_prompt(s) for s in sets]
    texts = _unit_rows(text_embed(prompts), "text embeddings")
    if texts.shape != (len(prompts), unit.shape[1]):
        raise ValueError(
            f"text_embed returned shape {texts.shape} for {len(prompts)} prompts; "
            f"expected ({len(prompts)}, {unit.shape[1]})"
        )
    similarity = unit @ texts.T
    results = []
    for row, quiet in zip(similarity, flags, strict=True):
        scores = {" + ".join(s): float(v) for s, v in zip(sets, row, strict=True)}
        if quiet:
            chosen: list[str] = []
        elif len(names) == 1:
            chosen = [names[0]]
        else:
            chosen = list(sets[int(np.argmax(row))])
        results.append((chosen, scores))
    return results


def label_events(
    events: Sequence[SoundEvent],
    embeddings: np.ndarray,
    window_s: float,
    categories: list[str],
    text_embed: Callable[[list[str]], np.ndarray],
    max_combination: int = 2,
) -> list[SoundEvent]:
    """``events`` with their categories and scores filled in by :func:`assign_categories` (new objects)."""
    pooled = event_embeddings(embeddings, events, window_s)
    found = assign_categories(
        pooled, categories, text_embed, max_combination, silent=[e.silent for e in events]
    )
    return [replace(e, categories=c, scores=s) for e, (c, s) in zip(events, found, strict=True)]


def refine_silence(
    events: Sequence[SoundEvent],
    waveform: np.ndarray,
    sample_rate: int,
    step_s: float = 0.1,
    energy_db: float = -45.0,
    min_silence_s: float = 0.3,
) -> list[SoundEvent]:
    """Split non-silent events where the energy gate finds silence on a finer grid of ``step_s`` windows.

    Events are cut on the embedding grid (1 s by default), so a silence that starts or ends inside a window
    is found only to the window. Here every run of silent ``step_s`` windows lasting at least
    ``min_silence_s`` becomes a silent event of its own (no categories); shorter pauses stay part of the
    sound. Adjacent silent events are merged; the events still cover the audio with no gap.
    """
    samples = as_mono(waveform)
    duration = len(samples) / sample_rate
    grid = window_times(duration, step_s)
    flags = silent_windows(samples, sample_rate, step_s, energy_db)
    runs: list[list[float]] = []
    for (start, end), quiet in zip(grid, flags, strict=True):
        if quiet and runs and abs(runs[-1][1] - start) < 1e-9:
            runs[-1][1] = end
        elif quiet:
            runs.append([start, end])
    if runs and abs(runs[-1][1] - grid[-1][1]) < 1e-9:
        runs[-1][1] = max(runs[-1][1], duration)  # the tail shorter than a step goes with its neighbour
    runs = [r for r in runs if r[1] - r[0] >= min_silence_s - 1e-9]
    pieces: list[SoundEvent] = []
    for event in events:
        position = event.start_s
        if not event.silent:
            for start, end in runs:
                start, end = max(start, event.start_s), min(end, event.end_s)
                if end - start <= 1e-9:
                    continue
                if start - position > 1e-9:
                    pieces.append(replace(event, start_s=position, end_s=start))
                pieces.append(replace(event, start_s=start, end_s=end, silent=True, categories=[]))
                position = end
        if event.end_s - position > 1e-9:
            pieces.append(replace(event, start_s=position))
    merged: list[SoundEvent] = []
    for piece in pieces:
        if merged and merged[-1].silent and piece.silent:
            merged[-1] = replace(merged[-1], end_s=piece.end_s)
        else:
            merged.append(piece)
    return merged


# ----------------------------------------------------------------------------------------------
# gating frames


def frames_to_remove(
    frame_times_s: Sequence[float], events: Sequence[SoundEvent], category: str
) -> list[int]:
    """Indices of the frames whose time lies in an event that is silent or where ``category`` is not sounding.

    Events are half-open ``[start_s, end_s)``; a time before the first event belongs to the first, a time
    after the last (a video a little longer than its audio) to the last. No events remove nothing.
    """
    if not events:
        return []
    ordered = sorted(events, key=lambda e: e.start_s)
    starts = [e.start_s for e in ordered]
    key = normalize_category(category)
    sounding = [not e.silent and key in {normalize_category(c) for c in e.categories} for e in ordered]
    removed = []
    for index, time in enumerate(frame_times_s):
        k = min(max(bisect.bisect_right(starts, float(time) + 1e-9) - 1, 0), len(ordered) - 1)
        if not sounding[k]:
            removed.append(index)
    return removed


# sound events of a whole track, as the pipeline and the chat use them

WINDOW_S = 1.0


def sound_events(waveform: np.ndarray, names: Sequence[str], settings: Any, tags: Any, matcher: Any) -> list:
    """Events cut where adjacent one-second CLAP embeddings differ or the audio turns silent, each
    with the categories (of ``names``) that sound in it; silence edges refined to 0.1 s."""
    duration = len(waveform) / SAMPLE_RATE
    embeddings = matcher.audio_embeddings(waveform, SAMPLE_RATE, window_s=WINDOW_S)
    silent = silent_windows(
        waveform, SAMPLE_RATE, window_s=WINDOW_S, energy_db=settings.energy_db,
        silence_scores=[w.silence for w in tags.windows], silence_threshold=settings.silence_threshold,
    )  # fmt: skip
    n = min(len(embeddings), len(silent))
    events = cut_events(embeddings[:n], WINDOW_S, settings.event_threshold, silent[:n], duration_s=duration)
    if names:
        per_event = event_embeddings(embeddings[:n], events, WINDOW_S)
        assigned = assign_categories(
            per_event, list(names), matcher.text_embeddings, silent=[e.silent for e in events]
        )
        for event, (sounding, scores) in zip(events, assigned, strict=True):
            event.categories = sounding
            event.scores = {k: round(float(v), 4) for k, v in scores.items()}
    return refine_silence(events, waveform, SAMPLE_RATE, energy_db=settings.energy_db)


def silent_frames(events: Sequence[Any], category: str, info: Any) -> set[int]:
    """Frames whose centre falls in an event where ``category`` does not sound."""
    return set(frames_to_remove([(i + 0.5) / info.fps for i in range(info.num_frames)], events, category))
