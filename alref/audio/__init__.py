"""Sound without models: windows and levels (:mod:`.signal`), sound events and frame gating
(:mod:`.events`), AudioSet labels to object names (:mod:`.labels`) and closed vocabularies
(:mod:`.vocabulary`)."""

from alref.audio.events import (
    SoundEvent,
    assign_categories,
    cut_events,
    event_embeddings,
    frames_to_remove,
    label_events,
    normalize_category,
    refine_silence,
    silent_windows,
    sound_prompt,
)
from alref.audio.labels import LABEL_OBJECTS, audioset_labels, label_to_object
from alref.audio.signal import MIN_LAST_WINDOW_S, as_mono, resample, rms_db, window_times
from alref.audio.vocabulary import SYNONYMS, avsbench_categories, map_to_vocabulary, read_categories

__all__ = [
    "LABEL_OBJECTS",
    "MIN_LAST_WINDOW_S",
    "SYNONYMS",
    "SoundEvent",
    "as_mono",
    "assign_categories",
    "audioset_labels",
    "avsbench_categories",
    "cut_events",
    "event_embeddings",
    "frames_to_remove",
    "label_events",
    "label_to_object",
    "map_to_vocabulary",
    "normalize_category",
    "read_categories",
    "refine_silence",
    "resample",
    "rms_db",
    "silent_windows",
    "sound_prompt",
    "window_times",
]
