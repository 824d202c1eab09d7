"""AudioSet tagging: which of the 527 AudioSet classes sound in a clip, and in each window of it.

The tagger wraps ``transformers``' ``ASTForAudioClassification`` and ``ASTFeatureExtractor`` loaded from
a ``save_pretrained`` folder (``MIT/ast-finetuned-audioset-10-10-0.4593`` by default, or the tiny random
``smoke`` model of :func:`build_tiny`). AudioSet is multi-label, so scores are sigmoids of the logits,
each in [0, 1] on its own.

Any length works. AST reads a fixed input (``max_length`` frames of 10 ms: 10.24 s for the default model;
shorter audio is zero-padded by the feature extractor). A longer span is cut into chunks of that length,
the last one aligned to the end of the span so no chunk is mostly padding, and the chunk scores are
**max-pooled**: a class scores as high over the span as in the chunk where it is clearest (a dog barking
for 3 s of a minute still ranks). The "Silence" score of a span is the **minimum** over its chunks
instead: a span is as silent as its loudest chunk. "Silence" is never offered as a tag.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from alref.audio.labels import audioset_labels
from alref.audio.signal import as_mono, resample, window_times
from alref.errors import AlrefError
from alref.media.audio import SAMPLE_RATE
from alref.tools.loading import ModelSource, load_once, load_pretrained, resolve_device

if TYPE_CHECKING:
    from langchain_core.tools import StructuredTool

__all__ = [
    "AudioTagger",
    "Tag",
    "TagAudioArgs",
    "TagResult",
    "WindowTags",
    "build_tiny",
    "make_audio_tagging_tool",
]

SILENCE_LABEL = "Silence"

# ----------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class Tag:
    """One AudioSet class and its sigmoid score."""

    label: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": round(self.score, 4)}


@dataclass(frozen=True)
class WindowTags:
    """The top tags of one window ``[start_s, end_s)`` and its "Silence" score."""

    start_s: float
    end_s: float
    tags: list[Tag]
    silence: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "tags": [t.to_dict() for t in self.tags],
            "silence": round(self.silence, 4),
        }


@dataclass(frozen=True)
class TagResult:
    """Top-k tags over the whole clip, per window (the grid of ``window_times``), and the clip's silence."""

    labels: list[Tag]
    windows: list[WindowTags]
    silence: float
    duration_s: float

    @property
    def silence_scores(self) -> list[float]:
        """The "Silence" score of each window, as ``silent_windows(silence_scores=...)`` takes it."""
        return [w.silence for w in self.windows]

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration_s": round(self.duration_s, 3),
            "labels": [t.to_dict() for t in self.labels],
            "silence": round(self.silence, 4),
            "windows": [w.to_dict() for w in self.windows],
        }


# ----------------------------------------------------------------------------------------------
# the tagger


class AudioTagger:
    """A loaded AST AudioSet classifier and feature extractor on one device (load with :meth:`load`)."""

    def __init__(self, source: ModelSource, device: str, model: Any, feature_extractor: Any) -> None:
        self.source = source
        self.device = device
        self.model = model
        self.feature_extractor = feature_extractor
        id2label = model.config.id2label
        self.labels: list[str] = [str(id2label[i]) for i in range(len(id2label))]
        lowered = [name.lower() for name in self.labels]
        self.silence_index: int | None = lowered.index("silence") if "silence" in lowered else None
        self.sample_rate: int = int(feature_extractor.sampling_rate)
        frames = int(feature_extractor.max_length)  # 10 ms hop, 25 ms window (Kaldi fbank)
        self.chunk_samples: int = round(((frames - 1) * 0.010 + 0.025) * self.sample_rate)

    @classmethod
    def load(cls, source: ModelSource, device: str) -> AudioTagger:
        """Load once per process (per folder and device); a folder that does not load is a ModelLoadError."""
        device = resolve_device(device)
        return load_once(("audio_tagging", str(source.path), device), lambda: cls._load(source, device))

    @classmethod
    def _load(cls, source: ModelSource, device: str) -> AudioTagger:
        from transformers import ASTFeatureExtractor, ASTForAudioClassification

        # without torchaudio, 128 mel bins leave one mel filter empty: harmless, and not the user's to fix
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
            return cls(
                source,
                device,
                *load_pretrained(source, device, ASTForAudioClassification, ASTFeatureExtractor),
            )

    @property
    def chunk_s(self) -> float:
        """Seconds of audio the model reads at once (10.24 s for the AudioSet AST)."""
        return self.chunk_samples / self.sample_rate

    def tag(
        self,
        waveform: np.ndarray,
        sample_rate: int = SAMPLE_RATE,
        top_k: int = 5,
        window_s: float | None = 1.0,
        batch_size: int = 8,
    ) -> TagResult:
        """Tag mono audio: top ``top_k`` classes over the clip and per window (no windows if ``window_s`` is None).

        Empty audio raises NoAudioError; a clip of any other length works.
        """
        if top_k < 1 or batch_size < 1:
            raise ValueError(f"top_k and batch_size must be at least 1 (got {top_k}, {batch_size})")
        samples = resample(as_mono(waveform), sample_rate, self.sample_rate)
        duration = len(samples) / self.sample_rate
        spans = [(0.0, duration)]
        if window_s is not None:
            spans += window_times(duration, window_s)
        bounds = [(round(a * self.sample_rate), round(b * self.sample_rate)) for a, b in spans]
        position = {b: i for i, b in enumerate(dict.fromkeys(bounds))}  # a clip of one window is tagged once
        scores, silences = self._span_scores([samples[lo:hi] for lo, hi in position], batch_size)
        at = [position[b] for b in bounds]
        windows = [
            WindowTags(a, b, self._top(scores[at[i]], top_k), silences[at[i]])
            for i, (a, b) in enumerate(spans[1:], start=1)
        ]
        return TagResult(self._top(scores[at[0]], top_k), windows, silences[at[0]], duration)

    def _top(self, probs: np.ndarray, top_k: int) -> list[Tag]:
        order = [int(i) for i in np.argsort(-probs, kind="stable") if int(i) != self.silence_index]
        return [Tag(self.labels[i], float(probs[i])) for i in order[:top_k]]

    def _chunks(self, span: np.ndarray) -> list[np.ndarray]:
        size = self.chunk_samples
        if len(span) <= size:  # at least one 25 ms fbank frame: the feature extractor needs it
            return [np.pad(span, (0, max(0, round(0.025 * self.sample_rate) - len(span))))]
        starts = list(range(0, len(span) - size, size)) + [len(span) - size]
        return [span[s : s + size] for s in starts]

    def _span_scores(self, spans: list[np.ndarray], batch_size: int) -> tuple[np.ndarray, list[float]]:
        """Per span: max-pooled class scores over its chunks, and the minimum "Silence" score."""
        pieces = [(k, chunk) for k, span in enumerate(spans) for chunk in self._chunks(span)]
        probs = self._probabilities([chunk for _, chunk in pieces], batch_size)
        owner = np.array([k for k, _ in pieces])
        pooled = np.stack([probs[owner == k].max(axis=0) for k in range(len(spans))])
        if self.silence_index is None:
            return pooled, [0.0] * len(spans)
        silence = [float(probs[owner == k, self.silence_index].min()) for k in range(len(spans))]
        return pooled, silence

    def _probabilities(self, chunks: list[np.ndarray], batch_size: int) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(chunks), batch_size):
                batch = chunks[start : start + batch_size]
                inputs = self.feature_extractor(batch, sampling_rate=self.sample_rate, return_tensors="pt")
                logits = self.model(input_values=inputs["input_values"].to(self.device)).logits
                out.append(torch.sigmoid(logits.float()).cpu().numpy())
        return np.concatenate(out)


# ----------------------------------------------------------------------------------------------
# the LangChain tool


class TagAudioArgs(BaseModel):
    start_s: float = Field(0.0, ge=0.0, description="Start of the stretch of audio to tag, in seconds.")
    end_s: float | None = Field(
        None, gt=0.0, description="End of the stretch in seconds; empty = to the end."
    )
    top_k: int = Field(5, ge=1, le=50, description="How many AudioSet labels to return, best first.")
    window_s: float | None = Field(
        None,
        gt=0.0,
        le=60.0,
        description="Also tag consecutive windows of this many seconds; empty = no windows.",
    )


def make_audio_tagging_tool(
    get_tagger: Callable[[], AudioTagger], get_audio: Callable[[], np.ndarray]
) -> StructuredTool:
    """A StructuredTool ``tag_audio``: AudioSet labels of the run's audio (``get_audio``: 16 kHz mono)."""
    from langchain_core.tools import StructuredTool, ToolException

    def tag_audio(
        start_s: float = 0.0, end_s: float | None = None, top_k: int = 5, window_s: float | None = None
    ) -> dict[str, Any]:
        samples = as_mono(get_audio())
        total = len(samples) / SAMPLE_RATE
        stop = total if end_s is None else min(end_s, total)
        if start_s >= stop:
            raise ToolException(
                f"nothing to tag between {start_s} s and {stop:.3f} s: the audio lasts {total:.3f} s"
            )
        piece = samples[round(start_s * SAMPLE_RATE) : round(stop * SAMPLE_RATE)]
        try:
            result = get_tagger().tag(piece, SAMPLE_RATE, top_k=top_k, window_s=window_s)
        except (ValueError, AlrefError) as exc:
            raise ToolException(str(exc)) from None
        answer = result.to_dict()
        answer["start_s"], answer["end_s"] = round(start_s, 3), round(stop, 3)
        for window in answer["windows"]:  # times of the whole audio, not of the stretch
            window["start_s"] = round(window["start_s"] + start_s, 3)
            window["end_s"] = round(window["end_s"] + start_s, 3)
        return answer

    return StructuredTool.from_function(
        func=tag_audio,
        name="tag_audio",
        description=(
            "Tag the audio with AudioSet sound classes (AST). Returns {start_s, end_s, duration_s, labels: "
            "[{label, score 0-1}] best first, silence (0-1, how silent the whole stretch is), windows: [{start_s, "
            "end_s, tags, silence}]}. 'Silence' is never among the labels."
        ),
        args_schema=TagAudioArgs,
        handle_tool_error=True,
    )


# ----------------------------------------------------------------------------------------------
# the tiny random model (tests and the smoke profile)


def build_tiny(folder: Path) -> None:
    """Write a tiny random-weight AST with the 527 AudioSet labels into ``folder`` (no network, < 1 s).

    It reads 2.56 s at a time (256 frames of 64 mel bins), so tests exercise chunking on short clips. The
    classifier is scaled and shifted so scores spread over (0, 1); its "Silence" class is pinned near 0 (zero weights,
    bias -4), so the smoke pipeline's silence decisions come from the energy gate alone.
    """
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels = audioset_labels()
    torch.manual_seed(0)
    config = ASTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, patch_size=16,
        frequency_stride=16, time_stride=16, max_length=256, num_mel_bins=64,
        id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)},
    )  # fmt: skip
    model = ASTForAudioClassification(config).eval()
    with torch.no_grad():  # random logits hug 0 (every score ~0.5); spread them to about N(-2, 1)
        model.classifier.dense.weight.mul_(10.0)
        model.classifier.dense.bias.fill_(-2.0)
        silence = labels.index(SILENCE_LABEL)
        model.classifier.dense.weight[silence].zero_()
        model.classifier.dense.bias[silence] = -4.0
    model.save_pretrained(folder)
    ASTFeatureExtractor(num_mel_bins=64, max_length=256, sampling_rate=SAMPLE_RATE).save_pretrained(folder)
    (folder / "alref-smoke.json").write_text(json.dumps({"note": "random weights: tags are meaningless"}))
