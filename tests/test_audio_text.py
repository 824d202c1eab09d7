"""CLAP audio-text tool: the tiny smoke CLAP, per-window audio embeddings, text embeddings, similarity."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from alref.audio import window_times
from alref.config import load_settings
from alref.errors import ModelLoadError, NoAudioError
from alref.tools import loading
from alref.tools.audio_text import AudioTextMatcher, build_tiny, tiny_words
from alref.tools.loading import ModelSource, ensure_smoke_model

SR = 16000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def clap_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_smoke_model("clap", tmp_path_factory.mktemp("smoke"))


@pytest.fixture(scope="session")
def matcher(clap_folder: Path) -> AudioTextMatcher:
    return AudioTextMatcher.load(ModelSource("smoke:clap", "audio_text", clap_folder, "smoke-v1"), "cpu")


def _tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    return (0.4 * np.sin(2 * np.pi * freq * np.arange(round(seconds * SR)) / SR)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- build and load


def test_tiny_processor_matches_the_unfused_model(clap_folder: Path, matcher: AudioTextMatcher) -> None:
    from transformers import ClapModel, ClapProcessor

    processor = ClapProcessor.from_pretrained(clap_folder)
    extractor = processor.feature_extractor
    assert extractor.truncation == "rand_trunc" and extractor.padding == "repeatpad"
    assert (extractor.sampling_rate, extractor.feature_size, extractor.max_length_s) == (48000, 64, 10)
    config = ClapModel.from_pretrained(clap_folder).config
    assert config.audio_config.spec_size == 256 and not config.audio_config.enable_fusion
    assert matcher.sample_rate == 48000 and matcher.dim == 16


def test_tiny_tokenizer_knows_words_whole(matcher: AudioTextMatcher) -> None:
    tok = matcher.processor.tokenizer
    ids = tok("the sound of a dog and an emergency car")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == [
        "<s>", "the", "Ġsound", "Ġof", "Ġa", "Ġdog", "Ġand", "Ġan", "Ġemergency", "Ġcar", "</s>"
    ]  # fmt: skip
    assert tok.unk_token_id not in tok("Zyxwv quietly, ÉTÉ!")["input_ids"]  # bytes, never <unk>
    assert {"guzheng", "helicopter", "vacuum", "cleaner", "person"} <= set(tiny_words())


def test_build_tiny_is_deterministic(clap_folder: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    build_tiny(tmp_path / "again")
    first, second = (
        load_file(clap_folder / "model.safetensors"),
        load_file(tmp_path / "again" / "model.safetensors"),
    )
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert not (tmp_path / "again" / ".tokenizer-source").exists()


def test_profiles_and_loading(matcher: AudioTextMatcher, clap_folder: Path, tmp_path: Path) -> None:
    settings = load_settings(cache_dir=tmp_path / "cache").model_copy(update={"models": "smoke"})
    assert loading.model_name(settings, "audio_text") == "smoke:clap"
    assert loading.PROFILES["default"]["audio_text"] == "laion/clap-htsat-unfused"
    again = AudioTextMatcher.load(ModelSource("smoke:clap", "audio_text", clap_folder, "smoke-v1"), "cpu")
    assert again is matcher and not matcher.model.training
    broken = tmp_path / "no-weights"
    shutil.copytree(clap_folder, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ModelLoadError, match=r"model my-clap \(audio_text\) at .*no-weights does not load"):
        AudioTextMatcher.load(ModelSource("my-clap", "audio_text", broken, "local"), "cpu")


# ---------------------------------------------------------------------------------------------- audio


@pytest.mark.parametrize(("seconds", "count"), [(2.0, 2), (2.2, 2), (2.3, 3), (0.1, 1)])
def test_one_embedding_per_window(matcher: AudioTextMatcher, seconds: float, count: int) -> None:
    emb = matcher.audio_embeddings(_tone(seconds), SR, window_s=1.0)
    assert emb.shape == (count, matcher.dim) == (len(window_times(seconds, 1.0)), 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_embeddings_follow_the_sound(matcher: AudioTextMatcher) -> None:
    noise = np.random.default_rng(0).uniform(-0.4, 0.4, SR).astype(np.float32)
    audio = np.concatenate([_tone(2.0), np.zeros(SR, np.float32), noise])
    emb = matcher.audio_embeddings(audio, SR, window_s=1.0, batch_size=3)
    assert emb[0] @ emb[1] > 0.99  # the same tone twice
    assert emb[2] @ emb[3] < 0.9  # silence, then noise: a random model still tells them apart
    np.testing.assert_allclose(emb, matcher.audio_embeddings(audio, SR, window_s=1.0), atol=1e-5)


def test_audio_errors(matcher: AudioTextMatcher) -> None:
    with pytest.raises(NoAudioError, match="empty"):
        matcher.audio_embeddings(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="at most 10 s"):
        matcher.audio_embeddings(_tone(12.0), window_s=11.0)


# ---------------------------------------------------------------------------------------------- text


def test_text_embeddings_and_similarity(matcher: AudioTextMatcher) -> None:
    texts = ["the sound of a dog", "the sound of a guitar", "the sound of a dog and a guitar"]
    emb = matcher.text_embeddings(texts)
    assert emb.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(matcher.text_embeddings(texts[:1])[0], emb[0], atol=1e-5)  # padding is masked
    assert matcher.text_embeddings([]).shape == (0, 16)
    audio = matcher.audio_embeddings(_tone(2.0), SR)
    sim = matcher.similarity(audio, emb)
    assert sim.shape == (2, 3)
    np.testing.assert_allclose(sim, audio @ emb.T, atol=1e-5)
    np.testing.assert_allclose(
        AudioTextMatcher.similarity(3 * audio[0], emb), (audio[0] @ emb.T)[None], atol=1e-5
    )
