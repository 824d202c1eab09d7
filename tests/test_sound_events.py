"""Sound events: windows, the energy gate, cutting, category assignment, frame gating, label tables."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from synth import write_wav

from alref.audio import (
    LABEL_OBJECTS,
    SoundEvent,
    assign_categories,
    audioset_labels,
    avsbench_categories,
    cut_events,
    event_embeddings,
    frames_to_remove,
    label_events,
    label_to_object,
    map_to_vocabulary,
    read_categories,
    refine_silence,
    resample,
    rms_db,
    silent_windows,
    sound_prompt,
    window_times,
)
from alref.errors import InputError, NoAudioError
from alref.media.audio import load_audio
from alref.tools.audio_text import AudioTextMatcher
from alref.tools.loading import ModelSource, ensure_smoke_model

SR = 16000


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _one_hot(index: int, dim: int = 4) -> np.ndarray:
    v = np.zeros(dim)
    v[index] = 1.0
    return v


def _spans(events: list[SoundEvent]) -> list[tuple[float, float, bool]]:
    return [(e.start_s, e.end_s, e.silent) for e in events]


# ---------------------------------------------------------------------------------------------- windows


def test_window_grid() -> None:
    assert window_times(3.0, 1.0) == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    # a 0.3 s tail is kept, a 0.2 s tail is not
    assert window_times(3.3, 1.0) == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 3.3)]
    assert len(window_times(3.2, 1.0)) == 3
    assert window_times(0.1, 1.0) == [(0.0, 0.1)]  # very short audio still gets its window
    assert window_times(0.0, 1.0) == []
    with pytest.raises(ValueError, match="positive"):
        window_times(1.0, 0.0)


def test_resample_and_levels() -> None:
    t = np.arange(SR) / SR
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    up = resample(tone, SR, 48000)
    assert up.shape == (48000,) and up.dtype == np.float32
    ref = 0.5 * np.sin(2 * np.pi * 440 * np.arange(48000) / 48000)
    assert np.abs(up[200:-200] - ref[200:-200]).max() < 1e-3
    assert resample(tone[:1], SR, 48000).shape == (3,)
    assert rms_db(tone) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.01)
    assert rms_db(np.zeros(100, np.float32)) < -150
    with pytest.raises(NoAudioError, match="empty"):
        resample(np.zeros(0, np.float32), SR, 48000)


def test_silent_windows_energy_gate_and_silence_scores() -> None:
    audio = np.concatenate(
        [np.full(SR, 0.3), np.full(SR, 1e-4), np.zeros(SR // 2), np.full(SR // 2, 0.3)]
    ).astype(np.float32)
    assert silent_windows(audio, SR, window_s=1.0) == [False, True, False]  # 0.5 s of sound is enough
    assert silent_windows(audio, SR, window_s=0.5) == [False, False, True, True, True, False]
    # -80 dBFS counts as silent at -45, as sound at -90
    assert silent_windows(audio, SR, window_s=1.0, energy_db=-90.0) == [False, False, False]
    # a high tagger "Silence" score marks a loud window silent too
    flags = silent_windows(audio, SR, 1.0, silence_scores=[0.1, 0.2, 0.9], silence_threshold=0.5)
    assert flags == [False, True, True]
    with pytest.raises(ValueError, match="2 silence scores for 3 windows"):
        silent_windows(audio, SR, 1.0, silence_scores=[0.1, 0.2])


# ---------------------------------------------------------------------------------------------- cutting


def test_cut_at_a_known_change_of_sound() -> None:
    emb = np.stack([_one_hot(0)] * 3 + [_one_hot(1)] * 3)  # two orthogonal sounds, switching at 3 s
    assert _spans(cut_events(emb, 1.0)) == [(0.0, 3.0, False), (3.0, 6.0, False)]
    # the audio ends inside the last window: the last event ends with the audio
    assert _spans(cut_events(emb, 1.0, duration_s=5.6)) == [(0.0, 3.0, False), (3.0, 5.6, False)]
    assert _spans(cut_events(emb, 0.5)) == [(0.0, 1.5, False), (1.5, 3.0, False)]


def test_threshold_decides_what_counts_as_a_change() -> None:
    a, b = _one_hot(0), 0.6 * _one_hot(0) + 0.8 * _one_hot(1)  # cos(a, b) = 0.6
    emb = np.stack([a, a, b, b])
    assert len(cut_events(emb, 1.0, threshold=0.5)) == 1
    assert [e.start_s for e in cut_events(emb, 1.0, threshold=0.7)] == [0.0, 2.0]
    assert len(cut_events(emb * 7.0, 1.0, threshold=0.7)) == 2  # scale does not matter


def test_silence_changes_cut_even_when_embeddings_agree() -> None:
    emb = np.stack([_one_hot(0)] * 10)
    silent = [False] * 4 + [True] * 3 + [False] * 3
    events = cut_events(emb, 0.5, silent_windows=silent, duration_s=5.0)
    assert _spans(events) == [(0.0, 2.0, False), (2.0, 3.5, True), (3.5, 5.0, False)]
    assert all(e.categories == [] and e.scores == {} for e in events)
    with pytest.raises(ValueError, match="3 silence flags for 10"):
        cut_events(emb, 0.5, silent_windows=[True] * 3)


def test_events_always_cover_the_audio_contiguously() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        emb = rng.normal(size=(n, 8))
        silent = list(rng.random(n) < 0.3)
        duration = (n - 1) * 0.5 + float(rng.uniform(0.25, 0.5))
        events = cut_events(emb, 0.5, threshold=float(rng.uniform(-0.5, 0.9)), silent_windows=silent,
                            duration_s=duration)  # fmt: skip
        assert events[0].start_s == 0.0 and events[-1].end_s == duration
        assert all(e.end_s == f.start_s for e, f in zip(events, events[1:], strict=False))
        assert all(e.end_s > e.start_s for e in events)
    assert cut_events(np.zeros((0, 4)), 1.0) == []


def test_event_embeddings_average_their_windows() -> None:
    emb = np.stack([_one_hot(0), _one_hot(0), _one_hot(1), _one_hot(2)])
    events = [SoundEvent(0.0, 2.0, False), SoundEvent(2.0, 4.0, False)]
    pooled = event_embeddings(emb, events, 1.0)
    np.testing.assert_allclose(pooled[0], _one_hot(0))
    np.testing.assert_allclose(pooled[1], (_one_hot(1) + _one_hot(2)) / np.sqrt(2))


# ---------------------------------------------------------------------------------------------- categories


class FakeText:
    """text_embed for prompts about a dog (axis 0), a guitar (axis 1) and an owl (axis 2)."""

    axes = {"dog": 0, "guitar": 1, "owl": 2}

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, prompts: list[str]) -> np.ndarray:
        self.calls.append(list(prompts))
        rows = []
        for prompt in prompts:
            v = np.full(4, 0.05)
            for word, axis in self.axes.items():
                if word in prompt.split():
                    v[axis] = 1.0
            rows.append(v)
        return np.stack(rows)


def test_sound_prompts() -> None:
    assert sound_prompt(["dog"]) == "the sound of a dog"
    assert sound_prompt(["dog", "guitar"]) == "the sound of a dog and a guitar"
    assert sound_prompt(["Emergency-car", "owl"]) == "the sound of an emergency car and an owl"


def test_assign_categories_picks_the_best_set() -> None:
    text = FakeText()
    events = np.stack([_one_hot(0), _one_hot(1), _one_hot(0) + _one_hot(1), _one_hot(2), _one_hot(1)])
    got = assign_categories(events, ["dog", "guitar", "owl"], text, silent=[False] * 4 + [True])
    assert [c for c, _ in got] == [["dog"], ["guitar"], ["dog", "guitar"], ["owl"], []]
    assert text.calls == [[
        "the sound of a dog", "the sound of a guitar", "the sound of an owl",
        "the sound of a dog and a guitar", "the sound of a dog and an owl", "the sound of a guitar and an owl",
    ]]  # fmt: skip
    scores = got[0][1]
    assert set(scores) == {"dog", "guitar", "owl", "dog + guitar", "dog + owl", "guitar + owl"}
    assert scores["dog"] > scores["dog + guitar"] > scores["guitar"]
    assert got[4][1]["guitar"] == pytest.approx(scores["dog"])  # a silent event keeps its scores


def test_assign_categories_edge_rules() -> None:
    events = np.stack([_one_hot(0) + _one_hot(1), _one_hot(3)])
    singles = assign_categories(events, ["dog", "guitar"], FakeText(), max_combination=1)
    assert [c for c, _ in singles] == [["dog"], ["dog"]]  # no combinations; ties go to the first
    # one category: every non-silent event has it, however it scores
    one = assign_categories(events, ["owl"], FakeText(), silent=[False, True])
    assert [c for c, _ in one] == [["owl"], []]
    text = FakeText()
    assert assign_categories(events, [], text) == [([], {}), ([], {})] and text.calls == []
    with pytest.raises(ValueError, match="text_embed returned shape"):
        assign_categories(events, ["dog", "owl"], lambda p: np.ones((len(p), 3)))


def test_label_events_fills_categories() -> None:
    emb = np.stack([_one_hot(0)] * 2 + [_one_hot(3)] * 2 + [_one_hot(1)] * 2)
    events = cut_events(emb, 1.0, silent_windows=[False, False, True, True, False, False])
    labelled = label_events(events, emb, 1.0, ["dog", "guitar"], FakeText())
    assert [(e.start_s, e.categories) for e in labelled] == [(0.0, ["dog"]), (2.0, []), (4.0, ["guitar"])]
    assert events[0].categories == []  # new objects; the input is left as it was
    assert labelled[0].to_dict()["categories"] == ["dog"] and "dog" in labelled[0].to_dict()["scores"]


# ---------------------------------------------------------------------------------------------- gating


def test_frames_on_a_silent_stretch_are_removed() -> None:
    events = [
        SoundEvent(0.0, 2.0, False, ["dog"]),
        SoundEvent(2.0, 3.5, True),
        SoundEvent(3.5, 5.0, False, ["Dog", "guitar"]),
    ]
    times = [i / 10 for i in range(50)]
    assert frames_to_remove(times, events, "dog") == list(range(20, 35))
    assert frames_to_remove(times, events, "guitar") == list(range(0, 35))
    assert frames_to_remove(times, events, "owl") == list(range(50))
    assert frames_to_remove([5.2, 7.0, -0.1], events, "dog") == []  # past the end: the last event
    assert frames_to_remove(times, [], "dog") == []


def test_refine_silence_follows_a_gap_inside_a_window() -> None:
    tone = 0.4 * np.sin(2 * np.pi * 440 * np.arange(5 * SR) / SR)
    audio = np.where((np.arange(5 * SR) >= 2.3 * SR) & (np.arange(5 * SR) < 3.5 * SR), 0.0, tone)
    audio[round(0.5 * SR) : round(0.7 * SR)] = 0.0  # a 0.2 s pause is not a silence
    coarse = cut_events(np.ones((5, 2)), 1.0, silent_windows=silent_windows(audio, SR, 1.0))
    assert _spans(coarse) == [(0.0, 5.0, False)]  # no 1 s window is silent
    coarse = [replace(e, categories=["dog"], scores={"dog": 0.3}) for e in coarse]
    fine = refine_silence(coarse, audio, SR)
    assert _spans(fine) == [(0.0, 2.3, False), (2.3, 3.5, True), (3.5, 5.0, False)]
    assert [e.categories for e in fine] == [["dog"], [], ["dog"]] and fine[1].scores == {"dog": 0.3}
    assert frames_to_remove([i / 10 for i in range(50)], fine, "dog") == list(range(23, 35))
    # silent events stay whole, neighbouring silences merge, a silent tail reaches the end
    audio[round(4.5 * SR) :] = 0.0
    events = [SoundEvent(0.0, 3.0, False, ["dog"]), SoundEvent(3.0, 4.0, True), SoundEvent(4.0, 5.0, False)]
    assert _spans(refine_silence(events, audio, SR)) == [
        (0.0, 2.3, False), (2.3, 4.0, True), (4.0, 4.5, False), (4.5, 5.0, True)
    ]  # fmt: skip


def test_real_audio_cut_at_silence_through_tiny_clap(tmp_path: Path, tmp_path_factory) -> None:
    folder = ensure_smoke_model("clap", tmp_path_factory.mktemp("smoke"))
    matcher = AudioTextMatcher.load(ModelSource("smoke:clap", "audio_text", folder, "smoke-v1"), "cpu")
    segments = [(0.0, 2.0, "tone:440"), (2.0, 3.5, "silence"), (3.5, 5.0, "noise")]
    audio = load_audio(write_wav(tmp_path / "gap.wav", seconds=5.0, segments=segments))
    emb = matcher.audio_embeddings(audio, SR, window_s=0.5)
    silent = silent_windows(audio, SR, window_s=0.5)
    assert emb.shape[0] == len(silent) == 10
    events = cut_events(emb, 0.5, silent_windows=silent, duration_s=len(audio) / SR)
    assert _spans(events) == [(0.0, 2.0, False), (2.0, 3.5, True), (3.5, 5.0, False)]
    labelled = label_events(events, emb, 0.5, ["dog"], matcher.text_embeddings)
    assert frames_to_remove([i / 10 for i in range(50)], labelled, "dog") == list(range(20, 35))


# ---------------------------------------------------------------------------------------------- labels


def test_shipped_label_lists() -> None:
    labels = audioset_labels()
    assert len(labels) == len(set(labels)) == 527
    assert (labels[0], labels[74], labels[137], labels[500], labels[526]) == (
        "Speech", "Dog", "Music", "Silence", "Field recording"
    )  # fmt: skip
    classes = avsbench_categories()
    assert len(classes) == len(set(classes)) == 71 and classes[0] == "background"
    assert {"dog", "emergency-car", "guzheng", "vacuum-cleaner", "woman"} <= set(classes)
    assert set(LABEL_OBJECTS) <= set(labels)  # no typo in the table


def test_label_to_object() -> None:
    for label, noun in {
        "Bark": "dog", "Dog": "dog", "Howl": "dog", "Growling": "dog", "Speech": "person",
        "Male speech, man speaking": "man", "Guitar": "guitar", "Acoustic guitar": "guitar",
        "Electric guitar": "guitar", "Piano": "piano", "Car": "car", "Engine": "car",
        "Vehicle horn, car horn, honking": "car", "Meow": "cat", "Purr": "cat", "Helicopter": "helicopter",
        "Ambulance (siren)": "ambulance", "meow": "cat",
    }.items():  # fmt: skip
        assert label_to_object(label) == noun, label
    for label in ["Music", "Silence", "Noise", "Echo", "Inside, small room", "Rock music", "Wind", "x"]:
        assert label_to_object(label) is None, label


def test_map_to_vocabulary() -> None:
    vocab = list(avsbench_categories())
    cases = {
        "dog": "dog", "Dogs": "dog", "the Dog": "dog", "emergency car": "emergency-car",
        "women": "woman", "vacuum cleaners": "vacuum-cleaner", "rooster": "hen", "chicken": "hen",
        "ambulance": "emergency-car", "zither": "guzheng", "lawn mower": "mower", "acoustic guitar": "guitar",
        "electric shaver": "clipper", "race car": "car", "computer keyboard": "keyboard",
        "aeroplane": "airplane", "person": None, "spaceship": None, "": None,
    }  # fmt: skip
    for name, expected in cases.items():
        assert map_to_vocabulary(name, vocab) == expected, name
    assert map_to_vocabulary("guitar", ["Electric Guitar", "bass guitar"]) == "Electric Guitar"


def test_read_categories(tmp_path: Path) -> None:
    path = tmp_path / "cats.txt"
    path.write_text("background\ndog  # barks\n\nguitar\ndog\n")
    assert read_categories(path) == ["dog", "guitar"]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(InputError, match="lists no category"):
        read_categories(tmp_path / "empty.txt")
    with pytest.raises(InputError, match="cannot read"):
        read_categories(tmp_path / "missing.txt")
