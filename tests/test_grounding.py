"""GroundingDINO tool: the tiny smoke model, detection post-processing, batching and the LangChain tool."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alref.errors import ModelLoadError
from alref.tools.grounding import (
    Detection,
    GroundingDetector,
    GroundPhraseArgs,
    build_tiny,
    make_grounding_tool,
    normalize_phrase,
)
from alref.tools.loading import ModelSource, ensure_smoke_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_smoke_model("grounding-dino", tmp_path_factory.mktemp("smoke"))


@pytest.fixture(scope="session")
def detector(tiny_folder: Path) -> GroundingDetector:
    return GroundingDetector.load(
        ModelSource("smoke:grounding-dino", "grounding", tiny_folder, "smoke-v1"), "cpu"
    )


@pytest.fixture(scope="session")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    sizes = [(120, 160), (90, 200), (120, 160), (90, 200), (120, 160)]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def _flat(dets: list[list[Detection]]) -> list[tuple[int, float, tuple[float, ...], str]]:
    return [(i, d.score, d.box, d.phrase) for i, per in enumerate(dets) for d in per]


# ---------------------------------------------------------------------------------------------- build


def test_build_tiny_reloads_with_from_pretrained(tiny_folder: Path) -> None:
    from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor

    assert {"config.json", "model.safetensors", "vocab.txt"} <= {p.name for p in tiny_folder.iterdir()}
    model = GroundingDinoForObjectDetection.from_pretrained(tiny_folder)
    assert model.config.d_model == 64 and model.config.num_queries == 30 and model.config.decoder_layers >= 2
    processor = GroundingDinoProcessor.from_pretrained(tiny_folder)
    assert processor.image_processor.size.shortest_edge == 256
    assert processor.image_processor.size.longest_edge == 384


def test_tiny_tokenizer_has_a_real_vocabulary(detector: GroundingDetector) -> None:
    tok = detector.processor.tokenizer
    unk = tok.unk_token_id
    ids = tok("the red square.")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["[CLS]", "the", "red", "square", ".", "[SEP]"]
    # an unlisted word falls back to letters and ##letters, never [UNK]
    assert unk not in tok("Zyxwv quietly")["input_ids"]
    assert tok.vocab_size > 300


def test_build_tiny_is_deterministic(tiny_folder: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    build_tiny(tmp_path / "again")
    first, second = (
        load_file(tiny_folder / "model.safetensors"),
        load_file(tmp_path / "again" / "model.safetensors"),
    )
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


# ---------------------------------------------------------------------------------------------- loading


def test_load_is_cached_per_folder_and_device(detector: GroundingDetector, tiny_folder: Path) -> None:
    again = GroundingDetector.load(
        ModelSource("smoke:grounding-dino", "grounding", tiny_folder, "smoke-v1"), "cpu"
    )
    assert again is detector
    assert detector.device == "cpu" and not detector.model.training


def test_folder_without_weights_is_a_model_load_error(tiny_folder: Path, tmp_path: Path) -> None:
    broken = tmp_path / "no-weights"
    shutil.copytree(tiny_folder, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    source = ModelSource("my-dino", "grounding", broken, "local")
    for _ in range(2):  # a failure is not cached as a success
        with pytest.raises(
            ModelLoadError, match=r"model my-dino \(grounding\) at .*no-weights does not load"
        ):
            GroundingDetector.load(source, "cpu")


# ---------------------------------------------------------------------------------------------- detect


def test_detect_batched_over_two_sizes(detector: GroundingDetector, images: list[np.ndarray]) -> None:
    found = detector.detect(images, "the red square", box_threshold=0.0, text_threshold=0.0, top_k=7)
    assert len(found) == 5
    for image, dets in zip(images, found, strict=True):
        h, w = image.shape[:2]
        assert len(dets) == 7  # 30 queries, all above threshold 0: top_k cuts them
        scores = [d.score for d in dets]
        assert scores == sorted(scores, reverse=True)
        for d in dets:
            x0, y0, x1, y1 = d.box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert set(d.phrase.split()) <= {"the", "red", "square"} and d.phrase


def test_batch_size_does_not_change_detections(detector: GroundingDetector, images: list[np.ndarray]) -> None:
    kwargs = {"box_threshold": 0.3, "text_threshold": 0.2, "top_k": 30}
    one = detector.detect(images, "dog", batch_size=1, **kwargs)
    four = detector.detect(images, "dog", batch_size=4, **kwargs)
    assert sum(map(len, one)) > 0  # batch_size=1 runs every image alone
    assert [len(d) for d in four] == [len(d) for d in one]
    for (i, s, b, p), (j, s2, b2, p2) in zip(_flat(one), _flat(four), strict=True):
        assert i == j and p == p2 and s == pytest.approx(s2, abs=1e-4)
        assert np.allclose(b, b2, atol=1e-4)


def test_thresholds(detector: GroundingDetector, images: list[np.ndarray]) -> None:
    assert detector.detect(images, "dog", box_threshold=1.0) == [[] for _ in images]
    counts = []
    for threshold in (0.0, 0.4, 0.55, 0.7):
        found = detector.detect(images[:1], "dog", box_threshold=threshold, top_k=100)
        assert all(d.score > threshold for per in found for d in per)
        counts.append([len(per) for per in found])
    assert counts[0] == [30]
    assert all(
        a >= b for lo, hi in zip(counts, counts[1:], strict=False) for a, b in zip(lo, hi, strict=True)
    )
    assert counts[-1] < counts[0]
    # text_threshold only decides which words a box matched
    none_matched = detector.detect(images[:1], "dog", box_threshold=0.0, text_threshold=1.0)[0]
    assert none_matched and all(d.phrase == "" for d in none_matched)


def test_phrase_normalisation(detector: GroundingDetector, images: list[np.ndarray]) -> None:
    assert normalize_phrase("  The Red\tSquare  ") == "the red square."
    assert normalize_phrase("a dog.") == "a dog."
    assert normalize_phrase("Dog ..") == "dog."
    raw = detector.detect(images[:1], "  THE Red  square ", box_threshold=0.0)
    clean = detector.detect(images[:1], "the red square.", box_threshold=0.0)
    assert _flat(raw) == _flat(clean)
    for empty in ("", "   ", " . "):
        with pytest.raises(ValueError, match="phrase to ground is empty"):
            detector.detect(images[:1], empty)


def test_bad_arguments(detector: GroundingDetector, images: list[np.ndarray]) -> None:
    with pytest.raises(ValueError, match="HxWx3"):
        detector.detect([images[0][..., 0]], "dog")
    with pytest.raises(ValueError, match="uint8"):
        detector.detect([images[0].astype(np.float32)], "dog")
    with pytest.raises(ValueError, match="top_k"):
        detector.detect(images[:1], "dog", top_k=0)
    assert detector.detect([], "dog") == []


def test_boxes_are_clipped_and_degenerate_ones_dropped(detector: GroundingDetector) -> None:
    result = {
        "scores": torch.tensor([0.3, 0.9, 0.5, 0.7]),
        "boxes": torch.tensor([[-5.0, 10, 50, 200], [10, 10, 20, 20], [120, 5, 150, 30], [30, 30, 30, 40]]),
        "text_labels": ["a dog [SEP]", "dog.", "dog", "dog"],
    }
    dets = detector._to_detections(result, h=80, w=100, top_k=10)
    # 0.5 lies wholly right of the image, 0.7 has zero width: both dropped
    assert [d.score for d in dets] == pytest.approx([0.9, 0.3])
    assert dets[1].box == (0.0, 10.0, 50.0, 80.0)
    assert [d.phrase for d in dets] == ["dog", "a dog"]
    assert len(detector._to_detections(result, h=80, w=100, top_k=1)) == 1


def test_detection_to_dict_rounds() -> None:
    d = Detection((1.23456, 2.0, 3.999, 4.5), 0.123456, "dog")
    assert d.to_dict() == {"box": [1.23, 2.0, 4.0, 4.5], "score": 0.1235, "phrase": "dog"}


# ---------------------------------------------------------------------------------------------- tool


def test_grounding_tool(detector: GroundingDetector, images: list[np.ndarray], tmp_path: Path) -> None:
    tool = make_grounding_tool(lambda: detector)
    assert tool.name == "ground_phrase" and tool.args_schema is GroundPhraseArgs
    fields = GroundPhraseArgs.model_fields
    assert list(fields) == ["image_path", "phrase", "box_threshold", "text_threshold", "top_k"]
    assert fields["box_threshold"].default == 0.15 and fields["text_threshold"].default == 0.2
    assert fields["top_k"].default == 10 and all(f.description for f in fields.values())

    path = tmp_path / "frame.png"
    Image.fromarray(images[1]).save(path)
    out = tool.invoke({"image_path": str(path), "phrase": "The dog", "box_threshold": 0.0, "top_k": 4})
    assert [d["number"] for d in out] == [1, 2, 3, 4]
    expected = detector.detect([images[1]], "the dog.", box_threshold=0.0, top_k=4)[0]
    assert [{k: v for k, v in d.items() if k != "number"} for d in out] == [e.to_dict() for e in expected]

    missing = tool.invoke({"image_path": str(tmp_path / "nope.png"), "phrase": "dog"})
    assert isinstance(missing, str) and "no image file" in missing and "nope.png" in missing
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert "not a readable image" in tool.invoke({"image_path": str(tmp_path / "bad.png"), "phrase": "dog"})
    assert "empty" in tool.invoke({"image_path": str(path), "phrase": "  "})
