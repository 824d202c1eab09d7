"""CLAP: audio and text in one embedding space, for cutting sound events and naming what sounds in them.

The matcher wraps ``transformers``' ``ClapModel`` and ``ClapProcessor`` loaded from a ``save_pretrained``
folder (``laion/clap-htsat-unfused`` by default, or the tiny random ``smoke`` model of :func:`build_tiny`).
Audio is embedded per window on the grid of :func:`alref.audio.signal.window_times` (consecutive windows,
a last partial window kept when it lasts at least 0.25 s), the grid the energy gate and the tagger use.
CLAP reads 48 kHz audio: the 16 kHz input is resampled first, and the feature extractor repeats a short
window until it fills CLAP's 10 s input ("repeatpad"). Embeddings are L2-normalised, so the similarity
of an audio and a text embedding is their dot product (cosine similarity).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from alref.audio.signal import as_mono, resample, window_times
from alref.audio.vocabulary import avsbench_categories
from alref.media.audio import SAMPLE_RATE
from alref.tools.loading import ModelSource, load_once, load_pretrained, resolve_device

__all__ = ["AudioTextMatcher", "build_tiny", "tiny_words"]


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


class AudioTextMatcher:
    """A loaded CLAP model and processor on one device (load with :meth:`load`)."""

    def __init__(self, source: ModelSource, device: str, model: Any, processor: Any) -> None:
        self.source = source
        self.device = device
        self.model = model
        self.processor = processor
        extractor = processor.feature_extractor
        self.sample_rate: int = int(extractor.sampling_rate)
        self.max_window_s: float = float(extractor.max_length_s)
        self.dim: int = int(model.config.projection_dim)

    @classmethod
    def load(cls, source: ModelSource, device: str) -> AudioTextMatcher:
        """Load once per process (per folder and device); a folder that does not load is a ModelLoadError."""
        device = resolve_device(device)
        return load_once(("audio_text", str(source.path), device), lambda: cls._load(source, device))

    @classmethod
    def _load(cls, source: ModelSource, device: str) -> AudioTextMatcher:
        from transformers import ClapModel, ClapProcessor

        return cls(source, device, *load_pretrained(source, device, ClapModel, ClapProcessor))

    def audio_embeddings(
        self, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE, window_s: float = 1.0, batch_size: int = 8
    ) -> np.ndarray:
        """One L2-normalised embedding per window of ``window_s`` seconds: an array n_windows x dim.

        Empty audio raises NoAudioError; audio shorter than a window gets one embedding.
        """
        import torch

        if not 0 < window_s <= self.max_window_s:
            raise ValueError(
                f"window_s must be above 0 and at most {self.max_window_s:g} s (CLAP's input), got {window_s}"
            )
        samples = resample(as_mono(waveform), sample_rate, self.sample_rate)
        windows = window_times(len(samples) / self.sample_rate, window_s)
        pieces = [samples[round(a * self.sample_rate) : round(b * self.sample_rate)] for a, b in windows]
        out = []
        with torch.inference_mode():
            for start in range(0, len(pieces), batch_size):
                batch = [p if len(p) else np.zeros(1, np.float32) for p in pieces[start : start + batch_size]]
                features = self.processor.feature_extractor(
                    batch, sampling_rate=self.sample_rate, return_tensors="pt"
                )["input_features"]
                pooled = self.model.get_audio_features(input_features=features.to(self.device)).pooler_output
                out.append(pooled.float().cpu().numpy())
        return _unit(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)

    def text_embeddings(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """One L2-normalised embedding per text: an array len(texts) x dim."""
        import torch

        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        tokenizer = self.processor.tokenizer
        positions = int(self.model.config.text_config.max_position_embeddings) - 2  # RoBERTa offsets by 2
        max_length = min(int(tokenizer.model_max_length), positions)
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = tokenizer(
                    texts[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                ).to(self.device)
                pooled = self.model.get_text_features(
                    input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
                ).pooler_output
                out.append(pooled.float().cpu().numpy())
        return _unit(np.concatenate(out))

    @staticmethod
    def similarity(audio_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
        """Cosine similarities, n_audio x n_text (rows are re-normalised, so any embeddings work)."""
        return _unit(np.atleast_2d(audio_emb)) @ _unit(np.atleast_2d(text_emb)).T


# ----------------------------------------------------------------------------------------------
# the tiny random model (tests and the smoke profile)

_TINY_WORDS = """
the a an of and or with sound sounds making makes made is are that this it its in on at to from by
one two some many no not loud quiet soft silence silent noise music voice song singing talking speaking
barking meowing playing ringing crying laughing shouting humming whistling roaring chirping engine horn
person people man woman boy girl child baby crowd dog cat horse cow pig sheep goat chicken hen duck goose
bird owl crow pigeon parrot lion tiger wolf mouse frog snake bee insect guitar piano violin drum flute
trumpet cello harp organ bell clock phone car truck bus train boat ship plane airplane helicopter
motorcycle bicycle siren alarm water rain wind fire door
""".split()


def tiny_words() -> list[str]:
    """The words the tiny tokenizer knows whole: common words, every AVSBench class and the label nouns."""
    from alref.audio.labels import LABEL_OBJECTS

    words = list(_TINY_WORDS)
    for name in list(avsbench_categories()) + list(LABEL_OBJECTS.values()):
        words += name.replace("-", " ").lower().split()
    return list(dict.fromkeys(w for w in words if w.isalpha()))


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: every byte as a printable character."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return dict(sorted(mapping.items()))


def _write_bpe(folder: Path, words: list[str]) -> tuple[Path, Path]:
    """vocab.json and merges.txt of a byte-level BPE where each word (after a space, "Ġword") is one token.

    Merges build every word left to right; the space-prefixed merges rank first, so "Ġdog" forms before any
    merge inside the word can split it. Any other text falls back to single bytes, never to <unk>.
    """
    vocab = ["<s>", "<pad>", "</s>", "<unk>", *_bytes_to_unicode().values()]
    merges: list[tuple[str, str]] = []
    for prefix in ("Ġ", ""):
        for word in words:
            current = prefix + word[0] if prefix else word[0]
            if prefix:
                merges.append((prefix, word[0]))
                vocab.append(current)
            for char in word[1:]:
                merges.append((current, char))
                current += char
                vocab.append(current)
    vocab = [*dict.fromkeys(vocab), "<mask>"]
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}), encoding="utf-8")
    lines = [f"{a} {b}" for a, b in dict.fromkeys(merges)]
    merges_path.write_text("#version: 0.2\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return vocab_path, merges_path


def build_tiny(folder: Path) -> None:
    """Write a tiny random-weight CLAP and its processor into ``folder`` (no network, ~1 s).

    Same input format as ``laion/clap-htsat-unfused``: 48 kHz, 10 s, 64 mel bins, "rand_trunc" truncation
    and "repeatpad" padding; the audio tower keeps ``spec_size`` 256 (patch 4, window 8), the smallest
    that fits 1001 frames of 64 mel bins. The tokenizer is a RoBERTa byte-level BPE over :func:`tiny_words`.
    """
    import torch
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapProcessor,
        ClapTextConfig,
        RobertaTokenizer,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    build = folder / ".tokenizer-source"
    build.mkdir(exist_ok=True)
    vocab_path, merges_path = _write_bpe(build, tiny_words())
    # positional paths: keyword arguments are not reliably honoured by transformers 5 tokenizers
    tokenizer = RobertaTokenizer(str(vocab_path), str(merges_path), model_max_length=77)
    extractor = ClapFeatureExtractor(
        feature_size=64, sampling_rate=48000, hop_length=480, max_length_s=10, fft_window_size=1024,
        frequency_min=50, frequency_max=14000, truncation="rand_trunc", padding="repeatpad",
    )  # fmt: skip

    torch.manual_seed(0)
    audio = ClapAudioConfig(
        spec_size=256, num_mel_bins=64, patch_size=4, patch_stride=[4, 4], window_size=8, depths=[1, 1],
        num_attention_heads=[1, 2], patch_embeds_hidden_size=16, hidden_size=32, projection_dim=16,
    )  # fmt: skip
    text = ClapTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=80, projection_dim=16,
    )  # fmt: skip
    config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16)
    ClapModel(config).eval().save_pretrained(folder)
    ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    for path in build.iterdir():
        path.unlink()
    build.rmdir()
    (folder / "alref-smoke.json").write_text(
        json.dumps({"note": "random weights: embeddings are meaningless"})
    )
