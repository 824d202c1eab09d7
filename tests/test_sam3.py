"""SAM 3 tools on the tiny random checkpoint (``smoke:sam3``): each equals the canonical transformers usage on
the same weights (pixels, raw logits, session semantics, post-processing), plus JSON, limits and loading.

The canonical side runs transformers' own code: ``Sam3VideoInferenceSession`` over the processor's pixel
values (computed here with the processors' documented algorithm, as their torchvision resize cannot
run), ``Sam3VideoProcessor.add_text_prompt`` / ``postprocess_outputs``, ``Sam3VideoModel.
propagate_in_video_iterator``, ``Sam3TrackerVideoProcessor.add_inputs_to_inference_session`` and the
installed ``Sam3ImageProcessor.post_process_object_detection`` (read from its source: its module imports
torchvision). torchvision's ``masks_to_boxes``, the one torchvision call ``postprocess_outputs`` makes,
is given as torchvision documents it.
"""

from __future__ import annotations

import ast
import copy
import importlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from alref.config import load_settings
from alref.core.records import Detection
from alref.errors import InputError, ModelLoadError, ModelUnavailableError
from alref.media.masks import SpooledRles
from alref.media.writers import atomic_write_json, atomic_write_json_stream
from alref.tools import loading
from alref.tools.loading import SMOKE_VERSION, ModelSource, ensure_smoke_model
from alref.tools.registry import DEFAULTS, default_tool, model_source, registry, resolve_models, select
from alref.tools.sam3 import (
    ConceptTracks,
    Sam3ConceptTracker,
    Sam3Grounder,
    Sam3TrackerSegmenter,
    Sam3TrackerSession,
    build_tiny,
)
from alref.tools.sam3_tracks import _TrackBuilder, postprocess
from alref.tools.segmentation import MemmapFrameStore
from alref.tools.video_tracks import saved_form

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N, H, W = 10, 75, 101  # odd, non-square video size; the tiny model's frames are 112 x 112
CONCEPT = "red square"
MEAN = STD = (0.5, 0.5, 0.5)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def model_dir(cache_dir: Path) -> Path:
    return ensure_smoke_model("sam3", cache_dir / "smoke" / SMOKE_VERSION)


def source(model_dir: Path, role: str = "concept_tracks") -> ModelSource:
    return ModelSource("smoke:sam3", role, model_dir, f"smoke-{SMOKE_VERSION}")


@pytest.fixture(scope="module")
def tracker(model_dir: Path) -> Sam3ConceptTracker:
    return Sam3ConceptTracker.load(source(model_dir), "cpu")


@pytest.fixture(scope="module")
def grounder(model_dir: Path) -> Sam3Grounder:
    return Sam3Grounder.load(source(model_dir, "grounding"), "cpu")


@pytest.fixture(scope="module")
def segmenter(model_dir: Path) -> Sam3TrackerSegmenter:
    return Sam3TrackerSegmenter.load(source(model_dir, "segmentation"), "cpu")


def video(num: int = N) -> list[np.ndarray]:
    """A bright square moving right over a dark, slightly noisy background."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(num):
        frame = rng.integers(0, 40, (H, W, 3), dtype=np.uint8)
        x = 5 + (5 * i) % 60
        frame[20:50, x : x + 30] = (230, 200, 40)
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def store(tracker: Sam3ConceptTracker, tmp_path_factory: pytest.TempPathFactory) -> MemmapFrameStore:
    frames = MemmapFrameStore(tmp_path_factory.mktemp("work") / "frames.u8", N, tracker.image_size)
    for i, frame in enumerate(video()):
        frames[i] = tracker.prepare_frame(frame)
    frames.flush()
    return frames


class CountingStore:
    def __init__(self, inner: Any) -> None:
        self.inner, self.reads = inner, {}

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> np.ndarray:
        self.reads[index] = self.reads.get(index, 0) + 1
        return self.inner[index]


# ----------------------------------------------------------------------------------------------
# the processors' algorithms and transformers' own post-processing


def torchvision_resize_uint8(video: torch.Tensor, size: list[int]) -> torch.Tensor:
    """torchvision's ``resize`` of uint8 frames (BILINEAR, antialias) on its float path, as it is written."""
    if tuple(video.shape[-2:]) == tuple(size):
        return video
    image = video.reshape(-1, *video.shape[-3:]).to(torch.float32)
    image = torch.nn.functional.interpolate(
        image, size=size, mode="bilinear", align_corners=False, antialias=True
    )
    return image.round_().to(torch.uint8).reshape(*video.shape[:-2], *size)


def processor_pixels(frames: np.ndarray, side: int) -> torch.Tensor:
    """What SAM 3's video (and image) processor makes of T x H x W x 3 uint8 frames: to T x 3 x H x W,
    resize, then the fused rescale + normalise ``(x - mean / (1/255)) / (std / (1/255))``."""
    pixels = torchvision_resize_uint8(torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), [side, side])
    mean, std = torch.tensor(MEAN) * 255.0, torch.tensor(STD) * 255.0
    return pixels.to(torch.float32).sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))


def reference_masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """torchvision.ops.masks_to_boxes as torchvision documents it: per mask [min x, min y, max x, max y]."""
    if masks.numel() == 0:
        return torch.zeros((0, 4), dtype=torch.float)
    boxes = torch.zeros((masks.shape[0], 4), dtype=torch.float)
    for index, mask in enumerate(masks):
        y, x = torch.where(mask != 0)
        boxes[index] = torch.stack([x.min(), y.min(), x.max(), y.max()]).float()
    return boxes


def installed_post_process_object_detection() -> Any:
    """``Sam3ImageProcessor.post_process_object_detection`` from the installed source (its module imports
    torchvision at the top, so it is compiled here with only what the method uses)."""
    import transformers.models.sam3 as package

    tree = ast.parse((Path(package.__file__).parent / "image_processing_sam3.py").read_text())
    scale = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_scale_boxes")
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Sam3ImageProcessor")
    method = next(
        n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "post_process_object_detection"
    )
    namespace: dict[str, Any] = {"torch": torch}
    exec(
        compile(ast.Module(body=[scale, method], type_ignores=[]), "image_processing_sam3.py", "exec"),
        namespace,
    )
    return namespace["post_process_object_detection"]


def canonical_concept_run(
    tracker: Sam3ConceptTracker,
    frames: Any,
    concept: str,
    monkeypatch: pytest.MonkeyPatch,
    both_ways: bool = False,
) -> tuple[list[tuple[Any, dict[str, Any]]], Any]:
    """``init_video_session(video)`` + ``add_text_prompt`` + ``propagate_in_video_iterator`` +
    ``postprocess_outputs`` per frame, as the Sam3Video docs show; ``both_ways``: then, on the same
    session, ``propagate_in_video_iterator(session, start_frame_idx=start, reverse=True)`` (transformers
    issue 46493's forward-then-reverse) from the latest frame on which a still tracked object was first
    detected, its outputs after the forward pass's."""
    from transformers import CLIPTokenizer
    from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoInferenceSession

    # the module itself (the package's lazy attribute is a torchvision placeholder)
    processing_sam3_video = importlib.import_module("transformers.models.sam3_video.processing_sam3_video")

    monkeypatch.setattr(processing_sam3_video, "masks_to_boxes", reference_masks_to_boxes, raising=False)
    processor = object.__new__(processing_sam3_video.Sam3VideoProcessor)  # __init__ builds torchvision parts
    processor.tokenizer = CLIPTokenizer.from_pretrained(tracker.source.path)
    pixels = processor_pixels(np.stack([frames[i] for i in range(len(frames))]), tracker.image_size)
    session = Sam3VideoInferenceSession(video=pixels, video_height=H, video_width=W, dtype=torch.float32)
    processor.add_text_prompt(session, concept)
    outputs = [
        (out, processor.postprocess_outputs(session, out))
        for out in tracker.model.propagate_in_video_iterator(session)
    ]
    if both_ways:
        start = max([session.obj_first_frame_idx[obj_id] for obj_id in session.obj_ids], default=0)
        outputs += [
            (out, processor.postprocess_outputs(session, out))
            for out in tracker.model.propagate_in_video_iterator(session, start_frame_idx=start, reverse=True)
        ]
    return outputs, session


def assert_same_frame(ours: tuple[int, Any, dict], theirs: tuple[Any, dict]) -> None:
    frame, out, processed = ours
    their_out, their_processed = theirs
    assert frame == their_out.frame_idx == out.frame_idx
    assert sorted(out.obj_id_to_mask) == sorted(their_out.obj_id_to_mask)
    for obj_id, logits in out.obj_id_to_mask.items():  # raw low-resolution mask logits
        torch.testing.assert_close(logits, their_out.obj_id_to_mask[obj_id], atol=0, rtol=0)
    # every object's score but those of objects the hot start removed on earlier frames: the canonical
    # session keeps them (at -1e4) for the whole video, alref forgets them
    forgotten = set(their_out.obj_id_to_score) - set(out.obj_id_to_score)
    assert forgotten <= their_out.removed_obj_ids
    assert all(their_out.obj_id_to_score[obj_id] == -1e4 for obj_id in forgotten)
    assert out.obj_id_to_score == {i: v for i, v in their_out.obj_id_to_score.items() if i not in forgotten}
    assert out.obj_id_to_tracker_score == their_out.obj_id_to_tracker_score
    assert (
        out.removed_obj_ids == their_out.removed_obj_ids
        and out.suppressed_obj_ids == their_out.suppressed_obj_ids
    )
    assert processed["object_ids"].tolist() == their_processed["object_ids"].tolist()
    assert torch.equal(processed["scores"], their_processed["scores"])
    assert torch.equal(processed["boxes"], their_processed["boxes"])
    assert processed["masks"].dtype == torch.bool and torch.equal(
        processed["masks"], their_processed["masks"]
    )
    assert processed["prompt_to_obj_ids"] == their_processed["prompt_to_obj_ids"]


# ----------------------------------------------------------------------------------------------
# the tiny checkpoint


def test_build_tiny_is_one_checkpoint_for_all_three_models(model_dir: Path, tmp_path: Path) -> None:
    from transformers import Sam3Model, Sam3TrackerVideoModel, Sam3VideoModel

    video_model = Sam3VideoModel.from_pretrained(model_dir)
    weights = video_model.state_dict()
    detector = Sam3Model.from_pretrained(model_dir).state_dict()
    assert all(torch.equal(v, weights[f"detector_model.{k}"]) for k, v in detector.items())
    box_tracker = Sam3TrackerVideoModel.from_pretrained(model_dir).state_dict()
    for key, value in box_tracker.items():  # the backbone is the detector's, the neck the tracker's
        theirs = key.replace("vision_encoder.backbone.", "detector_model.vision_encoder.backbone.", 1)
        theirs = theirs.replace("vision_encoder.neck.", "tracker_neck.", 1)
        assert torch.equal(value, weights[theirs if theirs != key else f"tracker_model.{key}"]), key
    config = video_model.config
    assert config.image_size == 112 and config.hotstart_delay == 3 and config.low_res_mask_size == 32
    processor = json.loads((model_dir / "processor_config.json").read_text())
    assert processor["video_processor"]["image_mean"] == list(MEAN) and processor["target_size"] == 112
    started = time.perf_counter()
    build_tiny(tmp_path)
    assert time.perf_counter() - started < 20
    again = Sam3VideoModel.from_pretrained(tmp_path).state_dict()
    assert all(torch.equal(value, again[key]) for key, value in weights.items())


def test_tiny_tokenizer_reads_words_whole(tracker: Sam3ConceptTracker) -> None:
    tok = tracker.tokenizer
    ids = tok("The red square, on the LEFT")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == [
        "<|startoftext|>", "the</w>", "red</w>", "square</w>", ",</w>", "on</w>", "the</w>", "left</w>",
        "<|endoftext|>",
    ]  # fmt: skip
    assert tracker.model.config.detector_config.text_config.vocab_size == len(tok)


def test_load_once_per_folder_device_and_options(model_dir: Path, tracker: Sam3ConceptTracker) -> None:
    assert Sam3ConceptTracker.load(source(model_dir), "cpu") is tracker
    assert Sam3ConceptTracker.load(source(model_dir), "cpu", precision="bfloat16") is not tracker
    grounder = Sam3Grounder.load(source(model_dir, "grounding"), "cpu")
    assert Sam3Grounder.load(source(model_dir, "grounding"), "cpu") is grounder
    segmenter = Sam3TrackerSegmenter.load(source(model_dir, "segmentation"), "cpu")
    assert Sam3TrackerSegmenter.load(source(model_dir, "segmentation"), "cpu") is segmenter
    assert type(segmenter.model).__name__ == "Sam3TrackerVideoModel" and segmenter.image_size == 112
    assert (tracker.image_size, tracker.mean, tracker.std, tracker.dtype) == (112, MEAN, STD, torch.float32)
    assert (grounder.image_size, grounder.mean, grounder.std) == (112, MEAN, STD)
    assert tracker.memory_window == 4  # max(num_maskmem 3, max_object_pointers_in_encoder 4)
    with pytest.raises(InputError, match="precision"):
        Sam3ConceptTracker.load(source(model_dir), "cpu", precision="int3")


@pytest.mark.parametrize("cls", [Sam3ConceptTracker, Sam3Grounder, Sam3TrackerSegmenter])
def test_a_broken_folder_is_a_load_error_naming_the_model(cls: Any, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match=r"model my-sam3 \(grounding\) at .* does not load"):
        cls.load(ModelSource("my-sam3", "grounding", tmp_path, "local"), "cpu")


def test_offline_the_error_names_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    settings = load_settings(cache_dir=tmp_path / "cache")
    with pytest.raises(ModelUnavailableError) as err:
        model_source(select("concept_tracks"), settings)
    assert (
        "facebook/sam3" in str(err.value) and "concept_tracks" in str(err.value) and err.value.exit_code == 3
    )
    with pytest.raises(ModelUnavailableError, match="'facebook/sam3' \\(grounding\\)"):
        resolve_models(settings.model_copy(update={"models": "sam3"}))


# ----------------------------------------------------------------------------------------------
# phrases


def test_a_phrase_over_32_tokens_is_refused(
    tracker: Sam3ConceptTracker, grounder: Sam3Grounder, store: MemmapFrameStore
) -> None:
    fits, too_long = " ".join(["red"] * 30), " ".join(["red"] * 31)  # + start and end tokens
    assert tracker.check_phrase(fits) == fits
    grounder.check_phrase(fits)
    for check in (tracker.check_phrase, grounder.check_phrase):
        with pytest.raises(InputError, match="33 tokens .* at most 32 tokens") as err:
            check(too_long)
        assert "\n" not in str(err.value) and err.value.exit_code == 2
    ticks: list[int] = []
    with pytest.raises(InputError, match="at most 32"):
        tracker.track(store, H, W, too_long, progress=ticks.append)
    assert ticks == []  # refused before any frame ran
    with pytest.raises(InputError, match="at most 32"):
        grounder.detect([video(1)[0]], too_long)
    with pytest.raises(InputError, match="empty"):
        tracker.check_phrase("  ")


# ----------------------------------------------------------------------------------------------
# frames


@pytest.mark.parametrize(("height", "width"), [(75, 101), (300, 451), (112, 112)], ids=["up", "down", "same"])
def test_prepared_frames_and_pixels_are_the_processors(
    tracker: Sam3ConceptTracker, height: int, width: int
) -> None:
    rng = np.random.default_rng(height)
    frames = rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8)
    prepared = np.stack([tracker.prepare_frame(f) for f in frames])
    expected = torchvision_resize_uint8(torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), [112, 112])
    assert torch.equal(torch.from_numpy(prepared).permute(0, 3, 1, 2), expected)
    session = tracker.start_session(list(prepared), height, width, CONCEPT)
    pixels = processor_pixels(frames, 112)
    assert all(torch.equal(session.processed_frames[i], pixels[i]) for i in range(2))


def test_grounder_pixels_equal_the_image_processors(grounder: Sam3Grounder) -> None:
    rng = np.random.default_rng(1)
    images = [
        rng.integers(0, 256, (90, 200, 3), dtype=np.uint8),
        rng.integers(0, 256, (120, 160, 3), dtype=np.uint8),
    ]
    ours = grounder.pixel_values(images)
    assert torch.equal(ours, torch.cat([processor_pixels(image[None], 112) for image in images]))


# ----------------------------------------------------------------------------------------------
# concept tracks against the canonical video session


def test_concept_outputs_equal_the_canonical_session(
    tracker: Sam3ConceptTracker, store: MemmapFrameStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    canonical, _ = canonical_concept_run(tracker, store, CONCEPT, monkeypatch)
    ticks: list[int] = []
    ours = list(tracker.outputs(store, H, W, CONCEPT, progress=ticks.append))
    assert [f for f, _, _ in ours] == list(range(N)) and ticks == [1] * N
    for mine, theirs in zip(ours, canonical, strict=True):
        assert_same_frame(mine, theirs)
    # not vacuous: hot start hid objects the model output, frames hold several objects and masks
    raw = sum(len(out.obj_id_to_mask) for _, out, _ in ours)
    shown = sum(len(p["object_ids"]) for _, _, p in ours)
    assert raw > shown > N
    assert any(len(p["object_ids"]) >= 2 for _, _, p in ours)
    assert all(p["masks"].any() for _, _, p in ours)
    assert tracker.start_session(store, H, W, CONCEPT).cache.max_vision_features_cache_size == 1


def test_track_records_equal_the_canonical_outputs(
    tracker: Sam3ConceptTracker, store: MemmapFrameStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    canonical, _ = canonical_concept_run(tracker, store, CONCEPT, monkeypatch)
    found = tracker.track(store, H, W, f"  {CONCEPT} ", both_ways=False)
    assert found.concept == CONCEPT and (found.height, found.width, found.num_frames) == (H, W, N)
    expected: dict[int, dict[str, Any]] = {}
    for out, processed in canonical:
        for k, obj_id in enumerate(processed["object_ids"].tolist()):
            mask = processed["masks"][k].numpy()
            if not mask.any():  # emptied by the non-overlap constraint: no frame of the track
                continue
            entry = expected.setdefault(obj_id, {"frames": [], "scores": [], "boxes": {}, "masks": {}})
            entry["frames"].append(out.frame_idx)
            entry["scores"].append(float(processed["scores"][k]))
            entry["boxes"][str(out.frame_idx)] = processed["boxes"][k].tolist()
            entry["masks"][out.frame_idx] = mask
    assert found.ids == sorted(expected) and len(found.ids) >= 2
    for track in found.tracks:
        entry = expected[track["id"]]
        assert track["concept"] == CONCEPT and track["frames"] == entry["frames"]
        assert track["score"] == max(entry["scores"]) and track["boxes"] == entry["boxes"]
        assert track["area"] == {str(f): int(m.sum()) for f, m in entry["masks"].items()}
        for frame in range(N):
            mask = found.mask(track["id"], frame)
            assert mask.shape == (H, W) and mask.dtype == bool
            assert (mask == entry["masks"].get(frame, np.zeros((H, W), bool))).all()


def test_a_long_video_keeps_bounded_state_and_reads_each_frame_once(
    tracker: Sam3ConceptTracker, store: MemmapFrameStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = CountingStore([store[i % N] for i in range(3 * N)])
    canonical, their_session = canonical_concept_run(tracker, frames.inner, CONCEPT, monkeypatch)
    session = tracker.start_session(
        frames, H, W, CONCEPT
    )  # what tracker.outputs runs, watched frame by frame
    most_tracked = most_scores = most_kept = most_live = 0
    ours = []
    for out in tracker._propagate(session, None):
        ours.append((out.frame_idx, out, postprocess(session, out)))
        most_live = max(most_live, len(session.obj_ids))
        most_kept = max(most_kept, len(session.obj_id_to_score), len(session.obj_first_frame_idx),
                        len(session.trk_keep_alive), len(session.unmatched_frame_inds))  # fmt: skip
        for kept in session.output_dict_per_obj.values():
            most_tracked = max(most_tracked, len(kept["non_cond_frame_outputs"]))
            assert all("high_res_masks" not in o for kind in kept.values() for o in kind.values())
        most_scores = max(
            most_scores, len(session.obj_id_to_tracker_score_frame_wise), len(session.suppressed_obj_ids)
        )
        assert len(session.cache._vision_features) <= 1
    assert frames.reads == dict.fromkeys(range(3 * N), 1)  # each frame read (and normalised) once
    assert most_tracked <= tracker.memory_window + 1 and most_scores <= 2
    # the canonical session keeps every tracked frame and every frame's scores; the outputs are the same
    assert max(len(o["non_cond_frame_outputs"]) for o in their_session.output_dict_per_obj.values()) > 10
    assert len(their_session.obj_id_to_tracker_score_frame_wise) == 3 * N
    # objects the hot start removed: the canonical session keeps their bookkeeping (and scans it every frame)
    # and scans it every frame, so each frame costs more the more objects the video has seen; alref's only
    # holds the live objects'
    assert most_kept <= most_live < len(their_session.removed_obj_ids) - 10
    assert len(their_session.obj_id_to_score) > most_kept + 10
    assert len(session.overlap_pair_to_frame_inds) < len(their_session.overlap_pair_to_frame_inds)
    assert len(ours) == 3 * N
    for mine, theirs in zip(ours, canonical, strict=True):
        assert_same_frame(mine, theirs)


# ----------------------------------------------------------------------------------------------
# both ways: the forward pass, then the reverse pass (transformers issue 46493)


def expected_both_ways(
    outputs: list[tuple[Any, dict[str, Any]]], num_frames: int
) -> dict[int, dict[str, Any]]:
    """alref's merge of the canonical forward and reverse outputs, written out: an object's mask on a frame
    is the forward pass's (where not empty), else the reverse pass's less every forward mask's pixels on
    that frame, its box that mask's (a forward box is post-processing's, of the mask before the non-overlap
    constraint); objects the reverse pass created are left out. id -> {"masks", "boxes", "scores"}."""
    forward, reverse = outputs[:num_frames], outputs[num_frames:]
    created = {obj_id for out, _ in forward for obj_id in out.obj_id_to_mask}
    tracks: dict[int, dict[str, Any]] = {}

    def put(obj_id: int, frame: int, mask: np.ndarray, box: list[float], score: float) -> None:
        if mask.any():
            entry = tracks.setdefault(obj_id, {"masks": {}, "boxes": {}, "scores": []})
            entry["masks"][frame], entry["boxes"][str(frame)] = mask, box
            entry["scores"].append(score)

    for out, processed in forward:
        for k, obj_id in enumerate(processed["object_ids"].tolist()):
            mask, box = processed["masks"][k].numpy(), processed["boxes"][k].tolist()
            put(obj_id, out.frame_idx, mask, box, float(processed["scores"][k]))
    for out, processed in reverse:
        frame = out.frame_idx
        forward_pixels = np.zeros((H, W), dtype=bool)
        for entry in tracks.values():
            forward_pixels |= entry["masks"].get(frame, False)
        for k, obj_id in enumerate(processed["object_ids"].tolist()):
            if obj_id in created and frame not in tracks.get(obj_id, {"masks": {}})["masks"]:
                mask = processed["masks"][k].numpy() & ~forward_pixels
                if mask.any():
                    box = reference_masks_to_boxes(torch.from_numpy(mask)[None])[0].tolist()
                    put(obj_id, frame, mask, box, float(processed["scores"][k]))
    return tracks


def assert_tracks_are(found: ConceptTracks, expected: dict[int, dict[str, Any]]) -> None:
    assert found.ids == sorted(expected)
    for track in found.tracks:
        entry = expected[track["id"]]
        frames = sorted(entry["masks"])
        assert track["frames"] == frames and track["score"] == max(entry["scores"])
        assert track["boxes"] == entry["boxes"]
        assert track["area"] == {str(f): int(entry["masks"][f].sum()) for f in frames}
        for frame in range(found.num_frames):
            expected_mask = entry["masks"].get(frame, np.zeros((H, W), dtype=bool))
            assert (found.mask(track["id"], frame) == expected_mask).all()


def same_frame(ours: tuple[int, Any, dict], theirs: tuple[Any, dict]) -> bool:
    try:
        assert_same_frame(ours, theirs)
    except AssertionError:
        return False
    return True


def test_both_ways_equals_the_canonical_forward_then_reverse_pass(
    tracker: Sam3ConceptTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every output of both passes equals the canonical session's (logits, scores, removed and suppressed
    objects, post-processing), with bounded state; the tracks are the merge of those outputs.

    On the same model for both runs, the detector finds objects on frames 0 and 8 only (a detection
    threshold above 1 elsewhere) and the hot start never removes an unmatched object: the reverse pass
    then starts at frame 8 of 24 and first reads tracked outputs that the forward pass made 15 frames
    before it ended. alref keeps those for it (without them the reverse pass's outputs differ)."""
    num, found_on = 24, (0, 8)
    model = tracker.model
    detect, threshold = model._det_track_one_frame, model.score_threshold_detection

    def det_track_one_frame(
        inference_session: Any, frame_idx: int, reverse: bool, streaming: bool = False
    ) -> Any:
        model.score_threshold_detection = threshold if frame_idx in found_on else 1.1
        try:
            return detect(inference_session=inference_session, frame_idx=frame_idx, reverse=reverse,
                          streaming=streaming)  # fmt: skip
        finally:
            model.score_threshold_detection = threshold

    monkeypatch.setattr(model, "_det_track_one_frame", det_track_one_frame)
    monkeypatch.setattr(model, "hotstart_unmatch_thresh", 1000)
    frames = [tracker.prepare_frame(frame) for frame in video(num)]
    canonical, their_session = canonical_concept_run(tracker, frames, CONCEPT, monkeypatch, both_ways=True)
    start = found_on[1]
    assert tracker.reverse_start(their_session) == start and len(canonical) == num + start

    sessions: list[Any] = []
    start_session = tracker.start_session
    monkeypatch.setattr(
        tracker, "start_session", lambda *args: sessions.append(start_session(*args)) or sessions[-1]
    )
    ticks: list[int] = []
    ours, most_tracked, most_scores = [], 0, 0
    for reverse, frame, out, processed in tracker.passes(frames, H, W, CONCEPT, progress=ticks.append):
        ours.append((reverse, frame, out, processed))
        for kept in sessions[0].output_dict_per_obj.values():  # watched frame by frame
            most_tracked = max(most_tracked, len(kept["non_cond_frame_outputs"]))
            assert all("high_res_masks" not in o for kind in kept.values() for o in kind.values())
        scores, suppressed = sessions[0].obj_id_to_tracker_score_frame_wise, sessions[0].suppressed_obj_ids
        most_scores = max(most_scores, len(scores), len(suppressed))
    assert [(r, f) for r, f, _, _ in ours] == [(False, f) for f in range(num)] + [
        (True, f) for f in range(start - 1, -1, -1)
    ]
    assert ticks == [1] * num  # the forward pass's model calls
    for (_, frame, out, processed), theirs in zip(ours, canonical, strict=True):
        assert_same_frame((frame, out, processed), theirs)
    # bounded: the last memory_window + 1 frames, those from the reverse start, those from first frames the
    # hot start may still drop; the canonical session keeps every frame
    assert most_tracked <= 2 * tracker.memory_window + int(model.hotstart_delay) + 1 and most_scores <= 3
    assert (
        max(len(o["non_cond_frame_outputs"]) for o in their_session.output_dict_per_obj.values()) >= num - 1
    )

    merged = tracker.track(frames, H, W, CONCEPT)
    expected = expected_both_ways(canonical, num)
    assert_tracks_are(merged, expected)
    forward = tracker.track(frames, H, W, CONCEPT, both_ways=False)
    assert any(set(merged.track(t["id"])["frames"]) - set(t["frames"]) for t in forward.tracks)  # not vacuous

    monkeypatch.setattr(
        tracker, "_reverse_starts", lambda session, frame: set()
    )  # forget as forward-only does
    forgetful = list(tracker.passes(frames, H, W, CONCEPT))
    assert all(
        same_frame((f, o, p), theirs)
        for (_, f, o, p), theirs in zip(forgetful[:num], canonical[:num], strict=True)
    )
    assert not all(
        same_frame((f, o, p), theirs)
        for (_, f, o, p), theirs in zip(forgetful[num:], canonical[num:], strict=True)
    )


def test_an_object_first_detected_later_gets_the_frames_before_it(
    tracker: Sam3ConceptTracker, store: MemmapFrameStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The module's video as it is: forward tracks keep their frames and masks, an object the forward
    pass first detected after frame 0 gains earlier frames from the reverse pass, tracks never share a
    pixel, and objects the reverse pass created (shown by it) are not tracks."""
    canonical, _ = canonical_concept_run(tracker, store, CONCEPT, monkeypatch, both_ways=True)
    forward = tracker.track(store, H, W, CONCEPT, both_ways=False)
    both = tracker.track(store, H, W, CONCEPT)
    assert_tracks_are(both, expected_both_ways(canonical, N))
    assert both.ids == forward.ids
    for track in forward.tracks:
        assert set(track["frames"]) <= set(both.track(track["id"])["frames"])
        for frame in track["frames"]:
            assert (both.mask(track["id"], frame) == forward.mask(track["id"], frame)).all()
    late = [t for t in forward.tracks if t["frames"][0] > 0]
    assert late and any(min(both.track(t["id"])["frames"]) < t["frames"][0] for t in late)
    for frame in range(N):
        assert sum(both.mask(i, frame).astype(int) for i in both.ids).max() <= 1
    created = {obj_id for out, _ in canonical[:N] for obj_id in out.obj_id_to_mask}
    shown_in_reverse = {
        obj_id for _, processed in canonical[N:] for obj_id in processed["object_ids"].tolist()
    }
    assert shown_in_reverse - created and not (shown_in_reverse - created) & set(both.ids)


def test_bfloat16_autocast_runs_on_cpu(model_dir: Path, store: MemmapFrameStore) -> None:
    tracker = Sam3ConceptTracker.load(source(model_dir), "cpu", precision="bfloat16")
    assert tracker.dtype == torch.bfloat16 and next(tracker.model.parameters()).dtype == torch.float32
    found = tracker.track(store, H, W, CONCEPT)
    assert found.tracks and all(found.mask(t["id"], t["frames"][0]).any() for t in found.tracks)


# ----------------------------------------------------------------------------------------------
# ConceptTracks


def test_concept_tracks_json_round_trip(
    tracker: Sam3ConceptTracker, store: MemmapFrameStore, tmp_path: Path
) -> None:
    found = tracker.track(store, H, W, CONCEPT)
    data = json.loads(json.dumps(found.to_json()))
    again = ConceptTracks.from_json(data)
    assert again.tracks == found.tracks and again.to_json() == data
    # the masks lie in a temporary file (memory holds where each is), read one at a time when written
    assert all(isinstance(m, SpooledRles) for t in (found, again) for m in t._masks.values())
    atomic_write_json_stream(tmp_path / "streamed.json", saved_form(found))
    atomic_write_json(tmp_path / "whole.json", found.to_json())
    assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "whole.json").read_bytes()
    for track in found.tracks:
        for frame in range(N):
            assert (again.mask(track["id"], frame) == found.mask(track["id"], frame)).all()
    with pytest.raises(KeyError, match="no track 999"):
        found.mask(999, 0)
    with pytest.raises(IndexError):
        found.mask(found.ids[0], N)
    with pytest.raises(ValueError, match="format"):
        ConceptTracks.from_json({"tracks": []})
    with pytest.raises(ValueError, match="incomplete"):
        ConceptTracks.from_json({**data, "masks": None})
    broken = copy.deepcopy(data)
    broken["tracks"][0]["frames"].append(N + 5)
    with pytest.raises(ValueError, match="not on its frames"):
        ConceptTracks.from_json(broken)


def test_track_builder_keeps_nonempty_frames_and_the_best_score() -> None:
    builder = _TrackBuilder("dog", 4, 5, 3)
    masks = torch.zeros(2, 4, 5, dtype=torch.bool)
    masks[0, 1:3, 1:4] = True  # object 7; object 9 is empty (lost every pixel to the constraint)
    frame = {"object_ids": torch.tensor([7, 9]), "scores": torch.tensor([0.6, 0.9]),
             "boxes": torch.tensor([[1.0, 1, 3, 2], [0, 0, 4, 3]]), "masks": masks}  # fmt: skip
    builder.add(0, frame)
    builder.add(2, {**frame, "scores": torch.tensor([0.8, 0.9])})
    (track,) = builder.build().tracks
    assert track == {"id": 7, "concept": "dog", "score": pytest.approx(0.8), "frames": [0, 2],
                     "boxes": {"0": [1.0, 1.0, 3.0, 2.0], "2": [1.0, 1.0, 3.0, 2.0]}, "area": {"0": 6, "2": 6}}  # fmt: skip


# ----------------------------------------------------------------------------------------------
# concept detection on images


def test_grounder_equals_the_canonical_image_usage(grounder: Sam3Grounder) -> None:
    rng = np.random.default_rng(3)
    images = [
        rng.integers(0, 256, (90, 200, 3), dtype=np.uint8),
        rng.integers(0, 256, (120, 160, 3), dtype=np.uint8),
    ]
    post = installed_post_process_object_detection()
    inputs = grounder.tokenizer([CONCEPT] * 2, return_tensors="pt", padding="max_length", max_length=32)
    with torch.inference_mode():
        theirs = grounder.model(
            pixel_values=torch.cat([processor_pixels(i[None], 112) for i in images]), **inputs
        )
    ours = grounder.raw_outputs(images, CONCEPT)
    for name in ("pred_logits", "pred_boxes", "presence_logits", "pred_masks"):
        torch.testing.assert_close(getattr(ours, name), getattr(theirs, name), atol=0, rtol=0)
    threshold = 0.5
    results = post(None, theirs, threshold=threshold, target_sizes=[i.shape[:2] for i in images])
    found = grounder.detect(images, CONCEPT, box_threshold=threshold, top_k=5, batch_size=2)
    for image, result, dets in zip(images, results, found, strict=True):
        h, w = image.shape[:2]
        order = torch.argsort(-result["scores"], stable=True)[:5]
        expected = [
            Detection(tuple(float(v) for v in np.clip(result["boxes"][k].numpy(), 0, [w, h, w, h])),
                      float(result["scores"][k]), CONCEPT)
            for k in order.tolist()
        ]  # fmt: skip
        assert len(result["scores"]) > 5 and dets == expected  # boxes here all lie inside the image
    assert grounder.detect(images, CONCEPT, box_threshold=1.0) == [[], []]
    one = grounder.detect(images, CONCEPT, box_threshold=threshold, top_k=5, batch_size=1)
    for a, b in zip(one, found, strict=True):
        assert [d.score for d in a] == pytest.approx([d.score for d in b], abs=1e-5)


def test_grounder_clips_and_drops_boxes_on_purpose() -> None:
    from alref.tools.sam3 import _to_detections

    found = {"scores": torch.tensor([0.4, 0.9, 0.7, 0.8, float("nan")]),
             "boxes": torch.tensor([[-5.0, 2, 30, 50], [10, 10, 250, 120], [40, 40, 40, 60], [5, 5, 6, 6],
                                    [1, 1, 2, 2]])}  # fmt: skip
    dets = _to_detections(found, 100, 200, 2, "dog")  # 100 high, 200 wide
    # best first; clipped to 200 x 100; the empty box (x0 == x1) and the NaN score dropped; top_k 2
    assert dets == [Detection((10.0, 10.0, 200.0, 100.0), pytest.approx(0.9), "dog"),
                    Detection((5.0, 5.0, 6.0, 6.0), pytest.approx(0.8), "dog")]  # fmt: skip
    assert [d.box for d in _to_detections(found, 100, 200, 10, "dog")][-1] == (0.0, 2.0, 30.0, 50.0)


# ----------------------------------------------------------------------------------------------
# box prompts: the SAM 3 tracker against the canonical session


PROMPTS = [(1, 1, (10, 20, 40, 50)), (3, 2, (40, 20, 70, 50)), (6, 1, (35, 20, 65, 50))]


def canonical_tracker_session(segmenter: Sam3TrackerSegmenter, store: MemmapFrameStore):
    """(the canonical Sam3TrackerVideoInferenceSession over the processor's pixels of ``store``, the
    processor that adds prompts to it, alref's session over the same frames)."""
    from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import (
        Sam3TrackerVideoInferenceSession,
    )
    from transformers.models.sam3_tracker_video.processing_sam3_tracker_video import Sam3TrackerVideoProcessor

    pixels = processor_pixels(np.stack([store[i] for i in range(N)]), 112)
    canonical = Sam3TrackerVideoInferenceSession(
        video=pixels, video_height=H, video_width=W, dtype=torch.float32
    )
    processor = object.__new__(Sam3TrackerVideoProcessor)  # its prompt handling needs no image processor
    processor.target_size, processor.point_pad_value = 112, -10
    return canonical, processor, segmenter.start_session(store, H, W)


def assert_propagation_is_canonical(session: Any, canonical: Any, model: Any, start: int) -> None:
    """alref's propagation from ``start`` (forward, then backward from ``start``) gives the canonical
    iterator's logits on every frame; frame ``start`` is the reverse pass's output, as SAM 2's session gives."""
    forward = {o.frame_idx: o.pred_masks.clone() for o in model.propagate_in_video_iterator(canonical, start)}
    reverse = {o.frame_idx: o.pred_masks.clone()
               for o in model.propagate_in_video_iterator(canonical, start_frame_idx=start, reverse=True)}  # fmt: skip
    propagated = list(session.propagate_logits(start))
    assert [f for f, _ in propagated] == [*range(start + 1, N), *range(start, -1, -1)]
    for frame, logits in propagated:
        expected = reverse[frame] if frame in reverse else forward[frame]
        assert sorted(logits) == sorted(canonical.obj_ids)
        for i, oid in enumerate(logits):
            torch.testing.assert_close(logits[oid], expected[i, 0], atol=1e-6, rtol=0)


def test_tracker_segmenter_equals_the_canonical_session(
    segmenter: Sam3TrackerSegmenter, store: MemmapFrameStore
) -> None:
    from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import (
        Sam3TrackerVideoInferenceSession,
    )

    canonical, processor, session = canonical_tracker_session(segmenter, store)
    assert isinstance(session, Sam3TrackerSession) and isinstance(
        session.state, Sam3TrackerVideoInferenceSession
    )
    assert all(torch.equal(session.state.get_frame(i), canonical.get_frame(i)) for i in range(N))
    model = segmenter.model
    for frame, obj_id, box in PROMPTS:
        processor.add_inputs_to_inference_session(
            canonical, frame_idx=frame, obj_ids=obj_id, input_boxes=[[list(box)]]
        )
        with torch.inference_mode():
            expected = model(inference_session=canonical, frame_idx=frame).pred_masks
        got = session.add_box_logits(frame, obj_id, box)
        idx = canonical.obj_id_to_idx(obj_id)  # the box's two points: the processor's float32 values exactly
        assert torch.equal(session.state.point_inputs_per_obj[idx][frame]["point_coords"],
                           canonical.point_inputs_per_obj[idx][frame]["point_coords"])  # fmt: skip
        for i, oid in enumerate(got):
            torch.testing.assert_close(got[oid], expected[i, 0], atol=1e-6, rtol=0)
    assert_propagation_is_canonical(session, canonical, model, start=4)
    masks = dict(session.propagate(4))
    assert sorted(masks) == list(range(N)) and all(
        m[1].shape == (H, W) and m[1].any() for m in masks.values()
    )


def test_tracker_segmenter_clicks_equal_the_canonical_session(
    segmenter: Sam3TrackerSegmenter, store: MemmapFrameStore
) -> None:
    """Points (positive and negative), points with a box, and a later click replacing a frame's prompt reach
    Sam3TrackerVideoModel as Sam3TrackerVideoProcessor puts them (the same coordinates, exactly), and the
    outputs equal the canonical session's on every frame: alref refine and the page's clicks with --models sam3."""
    canonical, processor, session = canonical_tracker_session(segmenter, store)
    model = segmenter.model
    clicks = [  # (frame, object, points, labels, box)
        (1, 1, [(20.0, 30.0), (60.5, 10.0)], [1, 0], None),
        (3, 2, [(50.0, 40.0)], [1], (40.0, 20.0, 70.0, 50.0)),
        (6, 1, [(45.0, 33.0)], [1], None),
        (1, 1, [(22.0, 31.0)], [1], None),  # again on frame 1: replaces the object's prompt there
    ]
    for frame, obj_id, points, labels, box in clicks:
        processor.add_inputs_to_inference_session(
            canonical, frame_idx=frame, obj_ids=obj_id, input_points=[[[list(p) for p in points]]],
            input_labels=[[labels]], input_boxes=[[list(box)]] if box else None,
        )  # fmt: skip
        with torch.inference_mode():
            expected = model(inference_session=canonical, frame_idx=frame).pred_masks
        got = session.add_points_logits(frame, obj_id, points, labels, box)
        idx = canonical.obj_id_to_idx(obj_id)
        ours, theirs = (
            session.state.point_inputs_per_obj[idx][frame],
            canonical.point_inputs_per_obj[idx][frame],
        )
        assert torch.equal(ours["point_coords"], theirs["point_coords"])
        assert torch.equal(ours["point_labels"], theirs["point_labels"])
        for i, oid in enumerate(got):
            torch.testing.assert_close(got[oid], expected[i, 0], atol=1e-6, rtol=0)
    assert_propagation_is_canonical(session, canonical, model, start=3)


@pytest.mark.parametrize("side", [1008, 112, 1024])
def test_box_points_equal_the_processors_scaling_on_odd_sizes(side: int) -> None:
    """The processors divide by the int64 original size (torch: float32(1 / size) * side); a float32
    ratio side / size is a float32 step off for about a quarter of the sizes at 1008."""
    from transformers import BatchEncoding
    from transformers.models.sam3_tracker_video.processing_sam3_tracker_video import Sam3TrackerVideoProcessor

    from alref.tools.segmentation import box_points

    processor = object.__new__(Sam3TrackerVideoProcessor)
    processor.target_size, processor.point_pad_value = side, -10
    rng = np.random.default_rng(side)
    for height in (75, 359, 481, 719, 1079, 1997):
        for width in (101, 639, 853, 1279, 1919, 3841):
            box = [float(v) for v in rng.uniform(0, 1, 4) * (width, height, width, height)]
            sizes = BatchEncoding({"original_sizes": [[height, width]]}, tensor_type="pt")["original_sizes"]
            expected = torch.tensor([[box]], dtype=torch.float32)  # as the processor's __call__ makes it
            processor._normalize_tensor_coordinates(expected, sizes, is_bounding_box=True)
            got = box_points(box, side, width, height)
            assert torch.equal(got, expected.view(1, 1, 2, 2)), (width, height)


def test_a_smoke_tracks_run_says_in_one_alref_line_what_the_missing_kernel_skips(
    model_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """transformers warns on every run that its cv-utils kernel (mask NMS, hole filling, speck removal for
    Sam3VideoModel) did not load; alref tries it quietly when it loads the model and says instead, once
    per run, what is skipped (masks can differ from a setup with the kernel: an emulated kernel changed
    the smoke run's tracks). A fresh process: transformers tries the kernel once per process."""
    import subprocess
    import sys

    import synth

    clip = synth.write_shapes_video(tmp_path / "clip.mp4", num_frames=8, width=160, height=120)
    env = os.environ | {"ALREF_CACHE_DIR": str(cache_dir), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-c", "from alref.cli import main; main()", "segment", str(clip), "the red square",
           "--strategy", "tracks", "--models", "smoke", "--no-overlay", "--no-llm", "--out", str(tmp_path / "out")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cv_utils" not in proc.stderr and "[transformers]" not in proc.stderr
    assert "publisher trust" not in proc.stderr  # the kernels library's line of the same attempt
    from transformers.models.sam3_video import modeling_sam3_video

    if hasattr(modeling_sam3_video, "_load_cv_utils_kernel_once"):  # offline here: the kernel cannot load
        notes = [line for line in proc.stderr.splitlines() if "cv-utils kernel is not loaded" in line]
        assert len(notes) == 1 and "hole filling" in notes[0], proc.stderr[-3000:]


# ----------------------------------------------------------------------------------------------
# registry, profiles and the CLI


def test_registry_roles_and_defaults() -> None:
    tools = registry()
    assert {n: (tools[n].role, tools[n].default_model) for n in ("sam3", "sam3-tracker", "sam3-tracks")} == {
        "sam3": ("grounding", "facebook/sam3"),
        "sam3-tracker": ("segmentation", "facebook/sam3"),
        "sam3-tracks": ("concept_tracks", "facebook/sam3"),
    }
    assert DEFAULTS["concept_tracks"] == "sam3-tracks" and select("concept_tracks").name == "sam3-tracks"
    assert all(tools[n].origin == "alref" for n in ("sam3", "sam3-tracker", "sam3-tracks"))


def test_profiles_give_every_sam3_tool_its_model(cache_dir: Path, model_dir: Path) -> None:
    profiles = loading.PROFILES
    assert all(profile["concept_tracks"] for profile in profiles.values())
    assert {k: profiles["sam3"][k] for k in ("grounding", "segmentation", "concept_tracks")} == dict.fromkeys(
        ("grounding", "segmentation", "concept_tracks"), "facebook/sam3"
    )
    assert profiles["sam3"]["audio_tagging"] == profiles["default"]["audio_tagging"]
    smoke = load_settings(cache_dir=cache_dir, models="smoke")
    for name in ("sam3", "sam3-tracker", "sam3-tracks"):
        found = model_source(registry()[name], smoke)
        assert found is not None and found.path == model_dir and found.smoke
    assert (
        loading.tool_model_name(smoke, "grounding", "grounding-dino", "grounding-dino", None)
        == "smoke:grounding-dino"
    )

    def name(models: str, role: str, tool: str, **overrides: str) -> str | None:
        settings = load_settings(cache_dir=cache_dir, models=models, **overrides)
        return loading.tool_model_name(settings, role, tool, DEFAULTS[role], registry()[tool].default_model)

    assert (
        name("default", "grounding", "sam3") == "facebook/sam3"
    )  # --grounding sam3 with the default profile
    assert name("sam3", "grounding", "sam3") == "facebook/sam3"
    assert name("sam3", "grounding", "grounding-dino") == "IDEA-Research/grounding-dino-base"
    assert name("sam3", "segmentation", "sam2-video") == "facebook/sam2.1-hiera-large"
    assert name("fast", "segmentation", "sam2-video") == "facebook/sam2.1-hiera-tiny"
    assert name("smoke", "grounding", "sam3", grounding_model="/my/sam3") == "/my/sam3"
    settings = load_settings(cache_dir=cache_dir, models="sam3")
    assert (default_tool("grounding", settings), default_tool("segmentation", settings)) == (
        "sam3",
        "sam3-tracker",
    )
    assert default_tool("grounding", load_settings(cache_dir=cache_dir)) == "grounding-dino"


@pytest.mark.parametrize(("name", "cls"), [("sam3", Sam3Grounder), ("sam3-tracker", Sam3TrackerSegmenter),
                                           ("sam3-tracks", Sam3ConceptTracker)])  # fmt: skip
def test_tool_specs_load_their_classes(name: str, cls: type, model_dir: Path) -> None:
    spec = registry()[name]
    loaded = spec.load(source(model_dir, spec.role), "cpu", precision="float32", offload_video=False)
    assert isinstance(loaded, cls)


def test_tools_list_shows_the_sam3_tools(run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run_cli("tools", "list", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert (rows["sam3"]["role"], rows["sam3-tracker"]["role"], rows["sam3-tracks"]["role"]) == (
        "grounding", "segmentation", "concept_tracks",
    )  # fmt: skip
    assert rows["sam3-tracks"]["default"] and not rows["sam3"]["default"]
    assert rows["sam3"]["model"] == "facebook/sam3" and rows["sam3-tracker"]["args"][:2] == ["frame", "box"]
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli("tools", "list")
    assert code == 0 and all(name in out for name in ("sam3-tracks", "sam3-tracker", "concept_tracks"))
