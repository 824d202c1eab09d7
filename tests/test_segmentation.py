"""SAM 2 video segmentation on the tiny random-weight model: structure and bookkeeping, not mask quality."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from alref.errors import InputError, ModelLoadError
from alref.tools.loading import ModelSource, ensure_smoke_model
from alref.tools.segmentation import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MemmapFrameStore,
    Sam2VideoSegmenter,
    SegmentationSession,
    build_tiny,
)

N, H, W = 10, 75, 101  # odd, non-square video size


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_smoke_model("sam2-video", tmp_path_factory.mktemp("smoke"))


@pytest.fixture(scope="module")
def segmenter(model_dir: Path) -> Sam2VideoSegmenter:
    return Sam2VideoSegmenter.load(
        ModelSource("smoke:sam2-video", "segmentation", model_dir, "smoke-v1"), "cpu"
    )


def video() -> list[np.ndarray]:
    """A bright square moving right over a dark, slightly noisy background."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(N):
        frame = rng.integers(0, 40, (H, W, 3), dtype=np.uint8)
        frame[20:50, 5 + 5 * i : 35 + 5 * i] = (230, 200, 40)
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def store(segmenter: Sam2VideoSegmenter, tmp_path_factory: pytest.TempPathFactory) -> MemmapFrameStore:
    frames = MemmapFrameStore(tmp_path_factory.mktemp("work") / "frames.u8", N, segmenter.image_size)
    for i, frame in enumerate(video()):
        frames[i] = segmenter.prepare_frame(frame)
    frames.flush()
    return frames


class CountingStore:
    """Wraps a frame store and counts reads per frame."""

    def __init__(self, inner: MemmapFrameStore) -> None:
        self.inner = inner
        self.reads: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> np.ndarray:
        self.reads[index] = self.reads.get(index, 0) + 1
        return self.inner[index]


def run_all(session: SegmentationSession, start: int) -> dict[int, dict[int, np.ndarray]]:
    return dict(session.propagate(start))


def test_build_tiny_reloads_and_is_reproducible(model_dir: Path, tmp_path: Path) -> None:
    from transformers import Sam2VideoModel

    model = Sam2VideoModel.from_pretrained(model_dir)
    assert model.config.image_size == 256
    pre = json.loads((model_dir / "preprocessor_config.json").read_text())
    assert pre["size"] == {"height": 256, "width": 256}
    assert pre["image_mean"] == list(IMAGENET_MEAN) and pre["image_std"] == list(IMAGENET_STD)
    build_tiny(tmp_path)
    again = Sam2VideoModel.from_pretrained(tmp_path).state_dict()
    assert all(torch.equal(value, again[key]) for key, value in model.state_dict().items())


def test_load_is_cached_and_reads_preprocessing(segmenter: Sam2VideoSegmenter, model_dir: Path) -> None:
    source = ModelSource("smoke:sam2-video", "segmentation", model_dir, "smoke-v1")
    assert Sam2VideoSegmenter.load(source, "cpu") is segmenter
    assert segmenter.image_size == 256 and segmenter.dtype == torch.float32
    assert segmenter.mean == IMAGENET_MEAN and segmenter.std == IMAGENET_STD
    assert segmenter.storage_device == segmenter.state_device == "cpu"
    with pytest.raises(InputError, match="precision"):
        Sam2VideoSegmenter.load(source, "cpu", precision="int3")


def test_broken_folder_is_a_model_load_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="broken"):
        Sam2VideoSegmenter.load(ModelSource("broken", "segmentation", tmp_path, "local"), "cpu")


def test_prepare_frame(segmenter: Sam2VideoSegmenter) -> None:
    frame = np.full((H, W, 3), (10, 120, 250), dtype=np.uint8)
    prepared = segmenter.prepare_frame(frame)
    assert prepared.shape == (256, 256, 3) and prepared.dtype == np.uint8
    assert (prepared == (10, 120, 250)).all()
    with pytest.raises(ValueError):
        segmenter.prepare_frame(np.zeros((H, W), dtype=np.uint8))
    with pytest.raises(ValueError):
        segmenter.prepare_frame(np.zeros((H, W, 3), dtype=np.float32))


def test_memmap_store_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "work" / "frames.u8"
    frames = [np.full((8, 8, 3), i * 20, dtype=np.uint8) for i in range(3)]
    first = MemmapFrameStore(path, 3, 8)
    assert not first.reopened and len(first) == 3
    for i, frame in enumerate(frames):
        first[i] = frame
    first.flush()
    del first
    second = MemmapFrameStore(path, 3, 8)
    assert second.reopened
    assert all((second[i] == frames[i]).all() for i in range(3))
    with pytest.raises(ValueError):
        second[0] = np.zeros((8, 8, 3), dtype=np.float32)
    with pytest.raises(ValueError):
        second[0] = np.zeros((9, 8, 3), dtype=np.uint8)
    resized = MemmapFrameStore(path, 4, 8)  # another size: created afresh
    assert not resized.reopened and len(resized) == 4 and not resized[0].any()


def test_propagate_from_middle_visits_every_frame_once(
    segmenter: Sam2VideoSegmenter, store: MemmapFrameStore
) -> None:
    session = segmenter.start_session(store, H, W)
    assert session.num_frames == N
    mask = session.add_box(4, 1, [25, 20, 55, 50])
    assert mask.shape == (H, W) and mask.dtype == bool
    ticks: list[int] = []
    order = []
    for frame_idx, masks in session.propagate(4, progress=ticks.append):
        order.append(frame_idx)
        assert list(masks) == [1]
        assert masks[1].shape == (H, W) and masks[1].dtype == bool
    assert order == [4, 5, 6, 7, 8, 9, 3, 2, 1, 0]
    assert ticks == [1] * N
    assert [f for f, _ in session.propagate(0)] == list(range(N))
    assert [f for f, _ in session.propagate(N - 1)] == [N - 1, *range(N - 2, -1, -1)]


def test_two_objects_on_different_frames(segmenter: Sam2VideoSegmenter, store: MemmapFrameStore) -> None:
    session = segmenter.start_session(store, H, W)
    first = session.add_box(2, 7, [15, 20, 45, 50])
    second = session.add_box(7, 3, [40, 20, 70, 50])
    assert first.shape == second.shape == (H, W)
    assert session.object_ids == [7, 3]
    results = run_all(session, 5)
    assert sorted(results) == list(range(N))
    assert all(list(masks) == [7, 3] for masks in results.values())
    # each object's own prompt frame is a conditioning frame, and only that one
    state = session.state
    assert list(state.output_dict_per_obj[state.obj_id_to_idx(7)]["cond_frame_outputs"]) == [2]
    assert list(state.output_dict_per_obj[state.obj_id_to_idx(3)]["cond_frame_outputs"]) == [7]


def test_box_reaches_the_model_scaled(segmenter: Sam2VideoSegmenter, store: MemmapFrameStore) -> None:
    session = segmenter.start_session(store, H, W)
    box = [10.0, 5.0, 60.5, 70.0]
    session.add_box(3, 1, box)
    session.add_box(3, 1, [1, 2, 3, 4])  # replaces the earlier prompt on that frame
    session.add_box(6, 1, box)  # a second prompt frame for the same object
    inputs = session.state.point_inputs_per_obj[session.state.obj_id_to_idx(1)]
    assert sorted(inputs) == [3, 6]
    scale = np.array([256 / W, 256 / H])
    expected = (np.array(box).reshape(2, 2) * scale).reshape(1, 1, 2, 2)
    np.testing.assert_allclose(inputs[6]["point_coords"].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(
        inputs[3]["point_coords"].numpy().ravel(), np.array([1, 2, 3, 4]) * np.tile(scale, 2), rtol=1e-6
    )
    assert inputs[6]["point_labels"].tolist() == [[[2, 3]]] and inputs[6]["point_labels"].dtype == torch.int32


def test_frames_are_read_lazily(segmenter: Sam2VideoSegmenter, store: MemmapFrameStore) -> None:
    counting = CountingStore(store)
    session = segmenter.start_session(counting, H, W)
    assert session.state.num_frames == N and counting.reads == {}
    pixels = session.state.get_frame(2)
    assert pixels.shape == (3, 256, 256) and pixels.dtype == torch.float32
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    expected = (torch.from_numpy(store[2]).permute(2, 0, 1).float() / 255 - mean) / std
    torch.testing.assert_close(pixels, expected)
    counting.reads.clear()
    session.add_box(3, 1, [25, 20, 55, 50])
    assert counting.reads == {3: 1}
    counting.reads.clear()
    run_all(session, 3)
    assert set(counting.reads) <= set(range(N)) and max(counting.reads.values()) == 1
    assert set(range(N)) - set(counting.reads) <= {3}  # the prompt frame's features may still be cached


def test_remove_object_and_missing_prompts(segmenter: Sam2VideoSegmenter, store: MemmapFrameStore) -> None:
    session = segmenter.start_session(store, H, W)
    with pytest.raises(ValueError, match="add_box"):
        session.propagate(0)
    session.add_box(2, 1, [15, 20, 45, 50])
    session.add_box(6, 2, [35, 20, 65, 50])
    session.add_box(8, 2, [45, 20, 75, 50])
    session.remove_object(1)
    assert session.object_ids == [2]
    results = run_all(session, 4)
    assert all(list(masks) == [2] for masks in results.values())
    assert all(masks[2].any() for masks in results.values())
    alone = segmenter.start_session(store, H, W)  # as if object 1 had never been there
    alone.add_box(6, 2, [35, 20, 65, 50])
    alone.add_box(8, 2, [45, 20, 75, 50])
    expected = run_all(alone, 4)
    assert all((results[f][2] == expected[f][2]).all() for f in range(N))
    with pytest.raises(KeyError):
        session.remove_object(1)
    session.reset()
    assert session.object_ids == []
    with pytest.raises(ValueError):
        session.propagate(0)


def test_same_prompts_give_identical_masks(segmenter: Sam2VideoSegmenter, store: MemmapFrameStore) -> None:
    def once() -> tuple[SegmentationSession, dict[int, dict[int, np.ndarray]]]:
        session = segmenter.start_session(store, H, W)
        session.add_box(1, 1, [10, 20, 40, 50])
        session.add_box(8, 2, [45, 20, 75, 50])
        return session, run_all(session, 5)

    session, first = once()
    _, second = once()
    assert all(first[f][obj_id].any() for f in range(N) for obj_id in (1, 2))  # not a vacuous comparison
    repeat = run_all(session, 5)  # propagating again in the same session starts from the prompts only
    for f in range(N):
        for obj_id in (1, 2):
            assert (first[f][obj_id] == second[f][obj_id]).all()
            assert (first[f][obj_id] == repeat[f][obj_id]).all()


def test_box_on_a_tracked_frame_is_a_new_prompt(
    segmenter: Sam2VideoSegmenter, store: MemmapFrameStore
) -> None:
    session = segmenter.start_session(store, H, W)
    session.add_box(2, 1, [15, 20, 45, 50])
    run_all(session, 2)
    session.add_box(5, 1, [30, 20, 60, 50])  # frame 5 was tracked; the box must still condition
    outputs = session.state.output_dict_per_obj[session.state.obj_id_to_idx(1)]
    assert sorted(outputs["cond_frame_outputs"]) == [2, 5]
    assert outputs["non_cond_frame_outputs"] == {}


def test_bad_prompts_are_rejected(segmenter: Sam2VideoSegmenter, store: MemmapFrameStore) -> None:
    session = segmenter.start_session(store, H, W)
    with pytest.raises(ValueError):
        session.add_box(0, 1, [1, 2, 3])
    with pytest.raises(ValueError):
        session.add_box(0, 1, [50, 2, 10, 30])
    with pytest.raises(ValueError):
        session.add_box(0, 1, [1, 2, float("nan"), 30])
    with pytest.raises(IndexError):
        session.add_box(N, 1, [1, 2, 3, 4])
    with pytest.raises(IndexError):
        session.propagate(-1)
    assert session.object_ids == []


def test_bfloat16_autocast_on_cpu(model_dir: Path, store: MemmapFrameStore) -> None:
    source = ModelSource("smoke:sam2-video", "segmentation", model_dir, "smoke-v1")
    segmenter = Sam2VideoSegmenter.load(source, "cpu", precision="bfloat16")
    assert segmenter.dtype == torch.bfloat16
    assert next(segmenter.model.parameters()).dtype == torch.float32
    session = segmenter.start_session(store, H, W)
    session.add_box(3, 1, [25, 20, 55, 50])
    results = run_all(session, 3)
    assert sorted(results) == list(range(N))
    assert all(m[1].shape == (H, W) and m[1].dtype == bool for m in results.values())


def test_long_video_keeps_bounded_state_with_the_same_masks(
    segmenter: Sam2VideoSegmenter, store: MemmapFrameStore
) -> None:
    frames = [store[i % N] for i in range(45)]  # a plain list is a FrameStore too

    def run(window: int | None) -> tuple[dict[int, np.ndarray], int]:
        session = segmenter.start_session(frames, 32, 48)
        if window is not None:
            session.memory_window = window
        session.add_box(5, 1, [4, 4, 20, 20])
        stored = session.state.output_dict_per_obj[0]["non_cond_frame_outputs"]
        masks, most = {}, 0
        for frame_idx, by_object in session.propagate(5):
            masks[frame_idx] = by_object[1]
            most = max(most, len(stored))
            assert all("high_res_masks" not in out for out in stored.values())
        return masks, most

    window = segmenter.start_session(frames, 32, 48).memory_window
    assert window == 16
    pruned, most = run(None)
    kept_all, most_unpruned = run(10**9)
    assert all(mask.any() for mask in pruned.values())
    assert most_unpruned == 44 and most <= 2 * window + 1
    assert all((pruned[f] == kept_all[f]).all() for f in range(45))


def test_langchain_tool_prompts_propagates_and_reports(segmenter, store):
    from alref.tools.segmentation import SegmentFromBoxArgs, make_segmentation_tool

    session = segmenter.start_session(store, 75, 101)
    received = {}
    tool = make_segmentation_tool(lambda: session, on_masks=lambda f, m: received.__setitem__(f, m))
    assert tool.name == "segment_from_box"
    assert (
        set(tool.args_schema.model_fields)
        == set(SegmentFromBoxArgs.model_fields)
        == {"frame", "box", "object_id", "propagate"}
    )
    answer = tool.invoke({"frame": 2, "box": [10, 10, 40, 50], "object_id": 3})
    assert answer["object_id"] == 3 and answer["frame"] == 2
    assert sorted(received) == list(range(len(store))) and all(set(m) == {3} for m in received.values())
    assert answer["frames_with_mask"] == sum(bool(m[3].any()) for m in received.values())
    error = tool.invoke({"frame": 999, "box": [0, 0, 5, 5]})
    assert isinstance(error, str) and "frames" in error
