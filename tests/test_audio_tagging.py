"""AudioSet tagging tool: the tiny smoke AST, any length, pooling over chunks, Silence, the LangChain tool."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from alref.audio import audioset_labels, window_times
from alref.config import load_settings
from alref.errors import ModelLoadError, NoAudioError
from alref.tools import loading
from alref.tools.audio_tagging import AudioTagger, TagAudioArgs, build_tiny, make_audio_tagging_tool
from alref.tools.loading import ModelSource, ensure_smoke_model

SR = 16000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def ast_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_smoke_model("ast", tmp_path_factory.mktemp("smoke"))


@pytest.fixture(scope="session")
def tagger(ast_folder: Path) -> AudioTagger:
    return AudioTagger.load(ModelSource("smoke:ast", "audio_tagging", ast_folder, "smoke-v1"), "cpu")


def _sound(seconds: float, seed: int = 0) -> np.ndarray:
    """A 440 Hz tone with a noise burst in its second half."""
    n = round(seconds * SR)
    audio = 0.4 * np.sin(2 * np.pi * 440 * np.arange(n) / SR)
    audio[n // 2 :] += np.random.default_rng(seed).uniform(-0.3, 0.3, n - n // 2)
    return audio.astype(np.float32)


def _all_scores(tagger: AudioTagger, audio: np.ndarray) -> dict[str, float]:
    result = tagger.tag(audio, SR, top_k=len(tagger.labels), window_s=None)
    return {t.label: t.score for t in result.labels}


# ---------------------------------------------------------------------------------------------- build and load


def test_tiny_model_has_the_audioset_labels(ast_folder: Path, tagger: AudioTagger) -> None:
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    model = ASTForAudioClassification.from_pretrained(ast_folder)
    assert [model.config.id2label[i] for i in range(527)] == list(audioset_labels())
    extractor = ASTFeatureExtractor.from_pretrained(ast_folder)
    assert extractor.sampling_rate == SR and extractor.max_length == 256
    assert tagger.labels[tagger.silence_index] == "Silence"
    assert tagger.chunk_s == pytest.approx(2.575)


def test_build_tiny_is_deterministic(ast_folder: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    build_tiny(tmp_path / "again")
    first, second = (
        load_file(ast_folder / "model.safetensors"),
        load_file(tmp_path / "again" / "model.safetensors"),
    )
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_profiles_resolve_the_smoke_tagger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(cache_dir=tmp_path / "cache").model_copy(update={"models": "smoke"})
    assert loading.model_name(settings, "audio_tagging") == "smoke:ast"
    assert loading.PROFILES["default"]["audio_tagging"] == "MIT/ast-finetuned-audioset-10-10-0.4593"
    source = loading.resolve("smoke:ast", "audio_tagging", settings)
    assert source.smoke and (source.path / "config.json").is_file()


def test_load_is_cached_and_broken_folders_fail_clearly(
    tagger: AudioTagger, ast_folder: Path, tmp_path: Path
) -> None:
    again = AudioTagger.load(ModelSource("smoke:ast", "audio_tagging", ast_folder, "smoke-v1"), "cpu")
    assert again is tagger and not tagger.model.training
    broken = tmp_path / "no-weights"
    shutil.copytree(ast_folder, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ModelLoadError, match=r"model my-ast \(audio_tagging\) at .*no-weights does not load"):
        AudioTagger.load(ModelSource("my-ast", "audio_tagging", broken, "local"), "cpu")


# ---------------------------------------------------------------------------------------------- tagging


@pytest.mark.parametrize("seconds", [0.0001, 0.3, 2.0, 6.5])
def test_any_length_is_tagged(tagger: AudioTagger, seconds: float) -> None:
    audio = _sound(seconds)
    result = tagger.tag(audio, SR, top_k=5, window_s=1.0)
    assert len(result.labels) == 5 and result.duration_s == pytest.approx(len(audio) / SR)
    scores = [t.score for t in result.labels]
    assert scores == sorted(scores, reverse=True) and all(0.0 < s < 1.0 for s in scores)
    assert len(set(scores)) == 5  # the scaled classifier spreads scores
    assert [(w.start_s, w.end_s) for w in result.windows] == window_times(len(audio) / SR, 1.0)
    assert all(len(w.tags) == 5 for w in result.windows)
    assert all(t.label != "Silence" for t in result.labels)
    assert 0.0 <= result.silence <= 1.0 and len(result.silence_scores) == len(result.windows)


def test_tags_depend_on_the_sound_and_are_repeatable(tagger: AudioTagger) -> None:
    tone = (0.4 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)).astype(np.float32)
    noise = np.random.default_rng(1).uniform(-0.4, 0.4, SR).astype(np.float32)
    assert tagger.tag(tone, top_k=5).labels == tagger.tag(tone, top_k=5).labels
    assert tagger.tag(tone, top_k=5).labels != tagger.tag(noise, top_k=5).labels
    assert tagger.tag(tone, window_s=None).windows == []


def test_long_audio_is_max_pooled_over_chunks(tagger: AudioTagger) -> None:
    audio = _sound(6.5)  # three chunks of 2.575 s: [0, 2.575), [2.575, 5.15) and the last 2.575 s
    size = tagger.chunk_samples
    chunks = [audio[:size], audio[size : 2 * size], audio[-size:]]
    per_chunk = [_all_scores(tagger, c) for c in chunks]
    clip = _all_scores(tagger, audio)
    for label in ["Speech", "Dog", "Music", "Noise", "Field recording"]:
        assert clip[label] == pytest.approx(max(c[label] for c in per_chunk), abs=1e-5)


def test_input_forms(tagger: AudioTagger) -> None:
    audio = _sound(1.0)
    stereo = np.stack([audio, audio])
    assert tagger.tag(stereo, top_k=3).labels == tagger.tag(audio, top_k=3).labels
    upsampled = tagger.tag(np.repeat(audio, 3), sample_rate=48000, top_k=3, window_s=0.5)
    assert len(upsampled.windows) == 2 and upsampled.duration_s == pytest.approx(1.0)
    with pytest.raises(NoAudioError, match="empty"):
        tagger.tag(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="top_k"):
        tagger.tag(audio, top_k=0)


def test_silence_is_never_offered_but_reported(ast_folder: Path) -> None:
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    model = ASTForAudioClassification.from_pretrained(ast_folder).eval()
    with torch.no_grad():  # a model sure that everything is silent
        model.classifier.dense.bias[audioset_labels().index("Silence")] = 20.0
    loud = AudioTagger(
        ModelSource("x", "audio_tagging", ast_folder, "local"), "cpu", model,
        ASTFeatureExtractor.from_pretrained(ast_folder),
    )  # fmt: skip
    result = loud.tag(_sound(3.0), top_k=527, window_s=1.0)
    assert result.silence > 0.99 and all(w.silence > 0.99 for w in result.windows)
    assert len(result.labels) == 526 and "Silence" not in {t.label for t in result.labels}
    assert all("Silence" not in {t.label for t in w.tags} for w in result.windows)


def test_result_to_dict(tagger: AudioTagger) -> None:
    out = tagger.tag(_sound(1.5), top_k=2, window_s=1.0).to_dict()
    assert set(out) == {"duration_s", "labels", "silence", "windows"}
    assert [w["start_s"] for w in out["windows"]] == [0.0, 1.0]
    assert set(out["labels"][0]) == {"label", "score"}


# ---------------------------------------------------------------------------------------------- tool


def test_tag_audio_tool(tagger: AudioTagger) -> None:
    audio = _sound(4.0)
    tool = make_audio_tagging_tool(lambda: tagger, lambda: audio)
    assert tool.name == "tag_audio" and tool.args_schema is TagAudioArgs
    assert {"start_s", "end_s", "top_k", "window_s"} <= set(tool.args)
    out = tool.invoke({"start_s": 1.0, "end_s": 3.0, "top_k": 3, "window_s": 1.0})
    assert (out["start_s"], out["end_s"], out["duration_s"]) == (1.0, 3.0, 2.0)
    assert [(w["start_s"], w["end_s"]) for w in out["windows"]] == [(1.0, 2.0), (2.0, 3.0)]
    expected = tagger.tag(audio[SR : 3 * SR], top_k=3, window_s=None).to_dict()["labels"]
    assert out["labels"] == expected
    whole = tool.invoke({})
    assert whole["end_s"] == 4.0 and len(whole["labels"]) == 5 and whole["windows"] == []
    assert "audio lasts 4.000 s" in tool.invoke({"start_s": 9.0})
    with pytest.raises(ValidationError, match="top_k"):
        tool.invoke({"top_k": 0})
