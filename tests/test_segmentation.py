"""SAM 2 video segmentation on the tiny random-weight model: structure and bookkeeping, not mask quality."""

from __future__ import annotations

import json
from dataclasses import dataclass
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
    _preprocessing,
    build_tiny,
    resize_frame,
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
    # frame 4 is computed by both passes; it is given once, with the reverse pass's output (canonical)
    assert order == [5, 6, 7, 8, 9, 4, 3, 2, 1, 0]
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


# ----------------------------------------------------------------------------------------------
# the frames as Sam2VideoProcessor resizes them


def torchvision_resize_uint8(video: torch.Tensor, size: list[int]) -> torch.Tensor:
    """torchvision's ``resize_image`` (transforms.v2) for a uint8 video, BILINEAR, antialias=True, on its
    float path (GPU, or a CPU whose capability is not exactly AVX2), step by step as torchvision writes it."""
    shape = video.shape
    num_channels, old_height, old_width = shape[-3:]
    if (old_height, old_width) == tuple(size):
        return video
    image = video.reshape(-1, num_channels, old_height, old_width).to(dtype=torch.float32)
    image = torch.nn.functional.interpolate(
        image, size=size, mode="bilinear", align_corners=False, antialias=True
    )
    image = image.round_().to(dtype=torch.uint8)
    return image.reshape(shape[:-3] + (num_channels, size[0], size[1]))


def processor_pixels(frames: np.ndarray, side: int) -> torch.Tensor:
    """What ``Sam2VideoVideoProcessor`` makes of T x H x W x 3 uint8 frames: ``_prepare_input_videos``
    (to T x 3 x H x W), ``resize``, then the fused rescale + normalise (``rescale_and_normalize``)."""
    video = torch.from_numpy(frames).contiguous().permute(0, 3, 1, 2).contiguous()
    video = torchvision_resize_uint8(video, [side, side])
    mean = torch.tensor(IMAGENET_MEAN) * (1.0 / (1 / 255))  # _fuse_mean_std_and_rescale_factor
    std = torch.tensor(IMAGENET_STD) * (1.0 / (1 / 255))
    return video.to(torch.float32).sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))  # tvF.normalize


def aa_bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """Antialiased bilinear resampling as a matrix (out x in), in float64: the triangle filter, its
    support stretched by the scale when downscaling, sampled at pixel centres, normalised per output
    pixel (PIL's and torch's ``antialias=True`` algorithm, align_corners=False)."""
    scale = in_size / out_size
    support = max(scale, 1.0)
    weights = np.zeros((out_size, in_size))
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), in_size)
        taps = np.arange(lo, hi)
        w = np.clip(1.0 - np.abs((taps + 0.5 - center) / support), 0.0, None)
        weights[i, lo:hi] = w / w.sum()
    return weights


def reference_resize(frame: np.ndarray, side: int) -> np.ndarray:
    """The exact (float64, unrounded) antialiased bilinear resize of an H x W x 3 frame."""
    rows, cols = aa_bilinear_weights(frame.shape[0], side), aa_bilinear_weights(frame.shape[1], side)
    columns_done = np.einsum("hwc,jw->hjc", frame.astype(np.float64), cols)
    return np.einsum("ih,hjc->ijc", rows, columns_done)


def noisy_frame(height: int, width: int, seed: int) -> np.ndarray:
    """Noise over a gradient: every uint8 level, sharp and smooth parts."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, width)[None, :, None] * np.linspace(0.2, 1, height)[:, None, None]
    noise = rng.normal(0, 40, (height, width, 3))
    return np.clip(ramp + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("height", "width"),
    [(75, 101), (300, 451), (200, 700), (256, 256)],
    ids=["upscale", "downscale", "down-and-up", "same-size"],
)
def test_prepare_frame_resizes_as_the_processor(
    segmenter: Sam2VideoSegmenter, height: int, width: int
) -> None:
    side = segmenter.image_size
    frames = np.stack([noisy_frame(height, width, seed) for seed in (1, 2)])
    prepared = np.stack([segmenter.prepare_frame(frame) for frame in frames])
    assert prepared.shape == (2, side, side, 3) and prepared.dtype == np.uint8
    # the processor's own steps (on the whole video at once) give the very same uint8 frames
    expected = torchvision_resize_uint8(
        torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), [side, side]
    )
    assert torch.equal(torch.from_numpy(prepared).permute(0, 3, 1, 2), expected)
    # and they are the exact antialiased bilinear resize, rounded to the nearest integer (ties aside)
    for frame, ours in zip(frames, prepared, strict=True):
        exact = reference_resize(frame, side)
        assert np.abs(ours - exact).max() <= 0.5 + 1e-3
        clear = np.abs(exact - np.floor(exact) - 0.5) > 1e-3
        assert (ours[clear] == np.rint(exact[clear])).all() and clear.mean() > 0.99
        if (height, width) == (side, side):
            assert (ours == frame).all()
    if height > side or width > side:  # PIL's bilinear (alref's earlier resize) is not that resize
        from PIL import Image

        pil = np.asarray(Image.fromarray(frames[0]).resize((side, side), Image.Resampling.BILINEAR))
        assert np.abs(pil - reference_resize(frames[0], side)).max() > 0.5 + 1e-3


def test_resize_frame_rejects_bad_frames() -> None:
    with pytest.raises(ValueError):
        resize_frame(np.zeros((8, 8), dtype=np.uint8), 4)
    with pytest.raises(ValueError):
        resize_frame(np.zeros((8, 8, 3), dtype=np.float32), 4)
    frame = noisy_frame(8, 8, 0)
    assert resize_frame(frame, 8) is not frame and (resize_frame(frame, 8) == frame).all()


def test_processor_settings_follow_the_video_processor_precedence(tmp_path: Path) -> None:
    def write(name: str, data: dict) -> None:
        (tmp_path / name).write_text(json.dumps(data))

    write("preprocessor_config.json", {"image_mean": [0.1, 0.2, 0.3], "size": {"height": 64, "width": 64}})
    assert _preprocessing(tmp_path, 64) == ((0.1, 0.2, 0.3), IMAGENET_STD, 64, 1 / 255)
    write("video_preprocessor_config.json", {"image_std": [0.5, 0.5, 0.5], "rescale_factor": 0.5})
    assert _preprocessing(tmp_path, 64) == (IMAGENET_MEAN, (0.5, 0.5, 0.5), 64, 0.5)
    write("processor_config.json", {"video_processor": {"size": {"height": 32, "width": 32}}})
    assert _preprocessing(tmp_path, 32) == (IMAGENET_MEAN, IMAGENET_STD, 32, 1 / 255)
    with pytest.raises(ValueError, match="differs"):
        _preprocessing(tmp_path, 64)
    write("processor_config.json", {"video_processor": {"resample": 3}})
    with pytest.raises(ValueError, match="resample"):
        _preprocessing(tmp_path, 64)


# ----------------------------------------------------------------------------------------------
# alref's session against the canonical transformers session, on the same weights and pixels


@dataclass(frozen=True)
class Clicks:
    """Point prompts (label 1 positive, 0 negative), optionally with a box, for one object on one frame."""

    points: tuple[tuple[float, float], ...]
    labels: tuple[int, ...]
    box: tuple[float, float, float, float] | None = None


Prompt = tuple[int, int, "tuple[float, float, float, float] | Clicks"]  # frame, object id, box or clicks
ONE_OBJECT: list[Prompt] = [(4, 1, (25, 20, 55, 50))]
TWO_OBJECTS: list[Prompt] = [  # object 1 is co-tracked on object 2's prompt frames 3 and 8, and 2 on 6
    (1, 1, (10, 20, 40, 50)),
    (3, 2, (40, 20, 70, 50)),
    (6, 1, (35, 20, 65, 50)),
    (8, 2, (45, 20, 75, 50)),
]


def canonical_session(segmenter: Sam2VideoSegmenter, store: MemmapFrameStore) -> object:
    """``Sam2VideoInferenceSession`` over the processor's pixel values of the prepared frames."""
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    frames = np.stack([store[i] for i in range(len(store))])
    pixels = processor_pixels(frames, segmenter.image_size)
    return Sam2VideoInferenceSession(video=pixels, video_height=H, video_width=W, dtype=torch.float32)


def add_box_canonically(segmenter: Sam2VideoSegmenter, session: object, prompt: Prompt) -> torch.Tensor:
    """The processor's own box and point handling (it needs no image processor for that), then
    ``model(...)``: a box as ``input_boxes``; clicks as ``input_points`` + ``input_labels`` (+ their box)."""
    from transformers.models.sam2_video.processing_sam2_video import Sam2VideoProcessor

    processor = object.__new__(Sam2VideoProcessor)  # __init__ would build the torchvision processors
    processor.target_size, processor.point_pad_value = segmenter.image_size, -10
    frame, obj_id, what = prompt
    if isinstance(what, Clicks):
        processor.add_inputs_to_inference_session(
            session,
            frame_idx=frame,
            obj_ids=obj_id,
            input_points=[[[list(point) for point in what.points]]],
            input_labels=[[list(what.labels)]],
            input_boxes=None if what.box is None else [[list(what.box)]],
        )
    else:
        processor.add_inputs_to_inference_session(
            session, frame_idx=frame, obj_ids=obj_id, input_boxes=[[list(what)]]
        )
    with torch.inference_mode():
        return segmenter.model(inference_session=session, frame_idx=frame).pred_masks.clone()


def canonical_run(
    segmenter: Sam2VideoSegmenter, store: MemmapFrameStore, prompts: list[Prompt], start: int
) -> tuple[list[torch.Tensor], dict[int, torch.Tensor], dict[int, torch.Tensor], object]:
    """Logits of each prompt call, of the forward and of the reverse propagation from ``start``."""
    session = canonical_session(segmenter, store)
    added = [add_box_canonically(segmenter, session, prompt) for prompt in prompts]
    model = segmenter.model
    forward = {o.frame_idx: o.pred_masks.clone() for o in model.propagate_in_video_iterator(session, start)}
    reverse = {
        o.frame_idx: o.pred_masks.clone()
        for o in model.propagate_in_video_iterator(session, start_frame_idx=start, reverse=True)
    }
    return added, forward, reverse, session


def assert_logits_equal(got: dict[int, torch.Tensor], expected: torch.Tensor, ids: list[int]) -> None:
    assert list(got) == ids and expected.shape[0] == len(ids)
    for i, obj_id in enumerate(ids):
        torch.testing.assert_close(got[obj_id], expected[i, 0].float(), atol=1e-6, rtol=0)


def assert_matches_canonical(
    segmenter: Sam2VideoSegmenter, store: MemmapFrameStore, prompts: list[Prompt], start: int
) -> tuple[SegmentationSession, object]:
    added, forward, reverse, canonical = canonical_run(segmenter, store, prompts, start)
    session = segmenter.start_session(store, H, W)
    assert all(torch.equal(session.state.get_frame(i), canonical.processed_frames[i]) for i in range(N))
    ids = list(dict.fromkeys(obj_id for _, obj_id, _ in prompts))
    for prompt, expected in zip(prompts, added, strict=True):
        got = add_logits(session, prompt)
        assert_logits_equal(got, expected, [i for i in ids if i in got])
    propagated = list(session.propagate_logits(start))
    order = [*range(start + 1, N), *range(start, -1, -1)] if start > 0 else list(range(N))
    assert [frame for frame, _ in propagated] == order
    for frame, got in propagated:  # frame ``start``: the reverse pass's output (the later one)
        assert_logits_equal(got, reverse[frame] if frame in reverse else forward[frame], ids)
    return session, canonical


def add_logits(session: SegmentationSession, prompt: Prompt) -> dict[int, torch.Tensor]:
    """alref's call for a prompt: ``add_box_logits`` for a box, ``add_points_logits`` for clicks."""
    frame, obj_id, what = prompt
    if isinstance(what, Clicks):
        return session.add_points_logits(frame, obj_id, what.points, what.labels, what.box)
    return session.add_box_logits(frame, obj_id, what)


def assert_same_memory(session: SegmentationSession, canonical: object) -> None:
    """Every tracked output alref still holds is the canonical session's, memory features included."""
    for obj_idx, outputs in session.state.output_dict_per_obj.items():
        theirs = canonical.output_dict_per_obj[obj_idx]
        for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):
            assert set(outputs[kind]) <= set(theirs[kind])
            for frame, out in outputs[kind].items():
                for key in ("pred_masks", "object_pointer", "maskmem_features", "maskmem_pos_enc"):
                    torch.testing.assert_close(
                        out[key].float(), theirs[kind][frame][key].float(), atol=1e-6, rtol=0
                    )


def test_one_object_matches_the_canonical_session(
    segmenter: Sam2VideoSegmenter, store: MemmapFrameStore
) -> None:
    session, canonical = assert_matches_canonical(segmenter, store, ONE_OBJECT, start=6)
    assert_same_memory(session, canonical)
    assert_matches_canonical(segmenter, store, ONE_OBJECT, start=4)  # from the prompt frame


@pytest.mark.parametrize("start", [5, 0, N - 1])
def test_two_objects_match_the_canonical_session(
    segmenter: Sam2VideoSegmenter, store: MemmapFrameStore, start: int
) -> None:
    session, canonical = assert_matches_canonical(segmenter, store, TWO_OBJECTS, start)
    assert_same_memory(session, canonical)


def test_co_tracked_outputs_are_kept_and_start_gets_the_reverse_output(
    segmenter: Sam2VideoSegmenter, store: MemmapFrameStore
) -> None:
    session = segmenter.start_session(store, H, W)
    for frame, obj_id, box in TWO_OBJECTS:
        session.add_box(frame, obj_id, box)
    state = session.state
    one, two = state.obj_id_to_idx(1), state.obj_id_to_idx(2)
    # co-tracked on the other object's prompt frames, as memory (canonical), not dropped
    assert sorted(state.output_dict_per_obj[one]["non_cond_frame_outputs"]) == [3, 8]
    assert sorted(state.output_dict_per_obj[two]["non_cond_frame_outputs"]) == [6]
    assert sorted(state.frames_tracked_per_obj[one]) == [3, 8]
    first = dict(session.propagate_logits(5))
    again = dict(session.propagate_logits(5))  # a propagation starts from the prompts' state again
    assert all(torch.equal(first[f][o], again[f][o]) for f in range(N) for o in (1, 2))
    assert sorted(state.output_dict_per_obj[one]["cond_frame_outputs"]) == [1, 6]
    # frame 5 is no prompt frame: the two passes differ there, and the caller gets the reverse one
    _, forward, reverse, _ = canonical_run(segmenter, store, TWO_OBJECTS, 5)
    assert (forward[5] - reverse[5]).abs().max() > 1e-5
    torch.testing.assert_close(first[5][1], reverse[5][0, 0], atol=1e-6, rtol=0)


def test_box_on_a_co_tracked_frame_conditions_it(
    segmenter: Sam2VideoSegmenter, store: MemmapFrameStore
) -> None:
    prompts: list[Prompt] = [*TWO_OBJECTS[:2], (3, 1, (30, 20, 60, 50))]  # object 1 was co-tracked on 3
    session = segmenter.start_session(store, H, W)
    got = [session.add_box_logits(frame, obj_id, box) for frame, obj_id, box in prompts]
    outputs = session.state.output_dict_per_obj[session.state.obj_id_to_idx(1)]
    assert sorted(outputs["cond_frame_outputs"]) == [1, 3] and outputs["non_cond_frame_outputs"] == {}
    # = the canonical session with that co-tracked output dropped first (transformers would refine it)
    canonical = canonical_session(segmenter, store)
    for prompt, alref_logits in zip(prompts, got, strict=True):
        if prompt == prompts[-1]:
            canonical.output_dict_per_obj[0]["non_cond_frame_outputs"].pop(3)
            canonical.frames_tracked_per_obj[0].pop(3)
        expected = add_box_canonically(segmenter, canonical, prompt)
        assert_logits_equal(alref_logits, expected, [1, 2][: expected.shape[0]])
    expected = {o.frame_idx: o.pred_masks for o in segmenter.model.propagate_in_video_iterator(canonical, 0)}
    for frame, logits in session.propagate_logits(0):
        assert_logits_equal(logits, expected[frame], [1, 2])


def test_remove_object_replays_the_others_in_order(
    segmenter: Sam2VideoSegmenter, store: MemmapFrameStore
) -> None:
    session = segmenter.start_session(store, H, W)
    for frame, obj_id, box in [TWO_OBJECTS[0], (2, 3, (20, 20, 50, 50)), *TWO_OBJECTS[1:]]:
        session.add_box(frame, obj_id, box)
    session.remove_object(3)
    assert session.object_ids == [1, 2]
    _, forward, reverse, _ = canonical_run(segmenter, store, TWO_OBJECTS, 5)
    for frame, logits in session.propagate_logits(5):
        assert_logits_equal(logits, reverse[frame] if frame in reverse else forward[frame], [1, 2])


def test_verifications_repropagation_is_the_canonical_session_of_the_new_prompts(
    segmenter: Sam2VideoSegmenter, store: MemmapFrameStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verification re-propagates a re-decided object alone (pipeline.verify): its session gets the new
    prompts and nothing else, and its masks are the canonical session's for those prompts (logits
    compared by ``assert_matches_canonical``); the other object's masks stay as they were."""
    from alref.core.records import ClipDecision, ReferenceDecision
    from alref.pipeline.stages import propagate_all
    from alref.pipeline.verify import ReplacingSink
    from alref.progress import Reporter

    def clip(index: int, frame: int, box: tuple[float, ...], ref: int) -> ClipDecision:
        return ClipDecision(ref_id=ref, clip=index, start=5 * index, end=5 * index + 5, samples=[5 * index],
                            valid=True, pivot_frame=frame, pivot_box=list(box), pivot_score=0.5,
                            decided_by="verification", reason="next candidate")  # fmt: skip

    redecided = ReferenceDecision(id=2, text="b", clips=[clip(0, 3, (40, 20, 70, 50), 2), clip(1, 8, (45, 20, 75, 50), 2)],
                                  not_found=None)  # fmt: skip
    prompts: list[tuple[int, int, tuple[float, ...]]] = []
    started: list[list[int]] = []
    original = Sam2VideoSegmenter.start_session

    def spy(self, frames, height, width):
        session = original(self, frames, height, width)
        add = session.add_box
        started.append([])

        def add_box(frame, obj_id, box):
            prompts.append((frame, obj_id, tuple(box)))
            started[-1].append(obj_id)
            return add(frame, obj_id, box)

        session.add_box = add_box
        return session

    class Sink:  # what the run's MaskSink holds: object 1 untouched, object 2 replaced
        def __init__(self) -> None:
            self.masks = {f: {1: np.ones((H, W), bool), 2: np.zeros((H, W), bool)} for f in range(N)}

        def replace(self, frame, masks):
            self.masks[frame] |= dict(masks)

    sink = Sink()
    monkeypatch.setattr(Sam2VideoSegmenter, "start_session", spy)
    starts = propagate_all(segmenter, store, _Info(N, H, W), [redecided], ReplacingSink(sink), Reporter())
    assert started == [[2, 2]] and starts[2]["frame"] == 3  # object 2 alone, from the middle clip (0)
    monkeypatch.undo()
    assert_matches_canonical(segmenter, store, prompts, start=3)
    fresh = run_all(_prompted(segmenter, store, prompts), 3)
    for f in range(N):
        assert sink.masks[f][1].all()  # untouched
        assert np.array_equal(sink.masks[f][2], fresh[f][2])


class _Info:
    def __init__(self, num_frames: int, height: int, width: int) -> None:
        self.num_frames, self.height, self.width = num_frames, height, width


def _prompted(segmenter: Sam2VideoSegmenter, store: MemmapFrameStore, prompts) -> SegmentationSession:
    session = segmenter.start_session(store, H, W)
    for prompt in prompts:
        add_logits(session, prompt)
    return session


# ----------------------------------------------------------------------------------------------
# point prompts (clicks), against the canonical session too

POINT_CASES: dict[str, list[Prompt]] = {
    "a point alone": [(5, 1, Clicks(((45, 35),), (1,)))],
    "a point after a box": [*ONE_OBJECT, (7, 1, Clicks(((60, 35),), (1,)))],
    "negative points": [*ONE_OBJECT, (7, 1, Clicks(((60, 35), (20, 30), (90, 70)), (1, 0, 0)))],
    "points and a box": [*ONE_OBJECT, (7, 1, Clicks(((60, 35), (50, 60)), (1, 0), (45, 20, 75, 50)))],
    "clicks replace the box on its frame": [*ONE_OBJECT, (4, 1, Clicks(((40, 35), (5, 5)), (1, 0)))],
    "two objects, a click on a frame of the other": [*TWO_OBJECTS, (2, 2, Clicks(((30, 35),), (1,)))],
}


@pytest.mark.parametrize("case", list(POINT_CASES))
def test_points_match_the_canonical_session(
    segmenter: Sam2VideoSegmenter, store: MemmapFrameStore, case: str
) -> None:
    prompts = POINT_CASES[case]
    session, canonical = assert_matches_canonical(segmenter, store, prompts, start=prompts[-1][0])
    assert_same_memory(session, canonical)
    if case == "points and a box":
        assert_matches_canonical(segmenter, store, prompts, start=0)


def test_a_click_on_a_co_tracked_frame_refines_it_as_transformers_does(
    segmenter: Sam2VideoSegmenter, store: MemmapFrameStore
) -> None:
    """Clicks alone (no box) on a frame where their object was co-tracked: transformers refines the tracked
    output (no conditioning frame), and so does alref (unlike a box, see the box test above)."""
    prompts: list[Prompt] = [*TWO_OBJECTS[:2], (3, 1, Clicks(((40, 35),), (1,)))]  # 1 co-tracked on 3
    session, canonical = assert_matches_canonical(segmenter, store, prompts, start=3)
    assert_same_memory(session, canonical)
    session = _prompted(segmenter, store, prompts)
    outputs = session.state.output_dict_per_obj[session.state.obj_id_to_idx(1)]
    assert sorted(outputs["cond_frame_outputs"]) == [1] and sorted(outputs["non_cond_frame_outputs"]) == [3]


def test_points_reach_the_model_scaled_after_the_box(
    segmenter: Sam2VideoSegmenter, store: MemmapFrameStore
) -> None:
    session = segmenter.start_session(store, H, W)
    box, points = (10.0, 5.0, 60.5, 70.0), ((30.0, 40.0), (3.5, 70.0))
    session.add_points(3, 1, points, [1, 0], box=box)
    session.add_points(6, 1, points[:1], [1])
    inputs = session.state.point_inputs_per_obj[session.state.obj_id_to_idx(1)]
    scale = np.array([256 / W, 256 / H])
    expected = np.concatenate([np.array(box).reshape(2, 2), np.array(points)]) * scale
    np.testing.assert_allclose(inputs[3]["point_coords"].numpy(), expected[None, None], rtol=1e-6)
    assert inputs[3]["point_labels"].tolist() == [[[2, 3, 1, 0]]]
    assert inputs[3]["point_labels"].dtype == torch.int64  # the processor's int32 box labels, promoted
    np.testing.assert_allclose(inputs[6]["point_coords"].numpy(), expected[None, None, 2:3], rtol=1e-6)
    assert inputs[6]["point_labels"].tolist() == [[[1]]] and inputs[6]["point_labels"].dtype == torch.int64
    session.add_box(6, 1, box)  # a later box replaces the clicks on that frame
    assert inputs[6]["point_labels"].tolist() == [[[2, 3]]]


def test_bad_point_prompts_are_rejected(segmenter: Sam2VideoSegmenter, store: MemmapFrameStore) -> None:
    session = segmenter.start_session(store, H, W)
    for points, labels, box in [
        ([(1, 2)], [1, 0], None),  # a label too many
        ([(1, 2)], [2], None),  # not 0 or 1
        ([], [], None),  # nothing
        ([(1, float("nan"))], [1], None),
        ([(1, 2, 3)], [1], None),
        ([(1, 2)], [1], (5, 5, 1, 1)),
    ]:
        with pytest.raises(ValueError):
            session.add_points(0, 1, points, labels, box)
    with pytest.raises(IndexError):
        session.add_points(N, 1, [(1, 2)], [1])
    assert session.object_ids == []
    session.add_points(0, 1, [], [], box=(1, 2, 30, 40))  # a box alone is a prompt too
    assert session.object_ids == [1]


# ----------------------------------------------------------------------------------------------
# long videos: the session keeps only what the model reads, with the canonical session's outputs

LONG = 72  # > 2 * memory_window (16) + the start frame: both passes drop outputs
LONG_PROMPTS: list[Prompt] = [  # object 1 on two frames, object 2 between them (co-tracked both ways)
    (20, 1, (25, 20, 55, 50)),
    (30, 2, (40, 20, 70, 50)),
    (45, 1, (35, 20, 65, 50)),
]


def long_video(store: MemmapFrameStore, frames: int) -> list[np.ndarray]:
    return [store[i % N] for i in range(frames)]  # a plain list is a FrameStore too


def held(session: SegmentationSession) -> int:
    """Frames whose per-frame state the session holds, the most over its objects."""
    state = session.state
    return max(
        len(outputs["non_cond_frame_outputs"].keys() | state.frames_tracked_per_obj[obj_idx].keys())
        for obj_idx, outputs in state.output_dict_per_obj.items()
    )


def test_a_pruned_long_propagation_equals_the_unpruned_canonical_session(
    segmenter: Sam2VideoSegmenter, store: MemmapFrameStore
) -> None:
    """Prompts on two frames of one object and one of another, forward from frame 20 then backward:
    every output equals the canonical session's, which keeps every frame, while alref holds at most
    the window the model reads (the canonical session ends holding all 72)."""
    frames = long_video(store, LONG)
    added, forward, reverse, canonical = canonical_run(segmenter, frames, LONG_PROMPTS, 20)
    assert all(len(o["non_cond_frame_outputs"]) >= LONG - 3 for o in canonical.output_dict_per_obj.values())
    session = segmenter.start_session(frames, H, W)
    for prompt, expected in zip(LONG_PROMPTS, added, strict=True):
        got = add_logits(session, prompt)
        assert_logits_equal(got, expected, sorted(got))
    window, most = session.memory_window, 0
    order = []
    for frame, got in session.propagate_logits(20):
        order.append(frame)
        assert_logits_equal(got, reverse[frame] if frame in reverse else forward[frame], [1, 2])
        most = max(most, held(session))
    assert order == [*range(21, LONG), *range(20, -1, -1)]
    assert most <= 2 * window + 1  # against 72 unpruned
    assert_same_memory(session, canonical)  # what it still holds is the canonical session's
    cond = {idx: sorted(o["cond_frame_outputs"]) for idx, o in session.state.output_dict_per_obj.items()}
    assert cond == {0: [20, 45], 1: [30]}  # prompt frames are never dropped


def test_the_held_state_does_not_grow_with_the_video(
    segmenter: Sam2VideoSegmenter, store: MemmapFrameStore
) -> None:
    """The same prompt in the middle of an 80- and a 240-frame video: the most frames held per object
    while propagating is the same (tracked outputs and marks; one cached frame of vision features)."""
    most: dict[int, int] = {}
    for frames in (80, 240):
        session = segmenter.start_session(long_video(store, frames), H, W)
        session.add_box(frames // 2, 1, (25, 20, 55, 50))
        most[frames] = 0
        for _ in session.propagate_logits(frames // 2):
            most[frames] = max(most[frames], held(session))
            assert len(session.state.cache._vision_features) <= 1
            assert all(
                "high_res_masks" not in out
                for outputs in session.state.output_dict_per_obj.values()
                for kind in ("cond_frame_outputs", "non_cond_frame_outputs")
                for out in outputs[kind].values()
            )
        window = session.memory_window
    assert most[240] == most[80] <= 2 * window + 1


def test_the_memory_attention_reads_a_bounded_number_of_prompt_frames(
    segmenter: Sam2VideoSegmenter, store: MemmapFrameStore, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prompt every 5 frames (alref prompts one frame per clip): each frame's memory attention reads
    at most MAX_COND_FRAMES of them (the loaded config's max_cond_frame_num, lowered from SAM 2's -1 = all)
    plus num_maskmem - 1 tracked frames, and the outputs are the canonical session's on that model."""
    from alref.tools.segmentation import MAX_COND_FRAMES, bound_cond_frames

    config = segmenter.model.config
    assert config.max_cond_frame_num == MAX_COND_FRAMES == 4
    unbounded = Sam2VideoSegmenter.load(
        ModelSource("smoke:sam2-video", "segmentation", model_dir, "smoke-v1"), "cpu", max_cond_frames=None
    )
    assert unbounded.model.config.max_cond_frame_num == -1  # the checkpoint's, kept on request
    frames = long_video(store, 40)
    prompts: list[Prompt] = [(f, 1, (25, 20, 55, 50)) for f in range(0, 40, 5)]
    added, forward, reverse, _ = canonical_run(segmenter, frames, prompts, 20)
    memories: list[int] = []
    build = segmenter.model._build_memory_attention_inputs

    def counting(outputs, device):
        memories.append(sum(out is not None for _, out in outputs))
        return build(outputs, device)

    monkeypatch.setattr(segmenter.model, "_build_memory_attention_inputs", counting)
    session = segmenter.start_session(frames, H, W)
    for prompt in prompts:
        session.add_box_logits(*prompt)
    for frame, got in session.propagate_logits(20):
        assert_logits_equal(got, reverse[frame] if frame in reverse else forward[frame], [1])
    assert memories and max(memories) <= MAX_COND_FRAMES + config.num_maskmem - 1
    bounded = type("Config", (), {"max_cond_frame_num": 2})()
    bound_cond_frames(bounded, 4)  # a lower bound of the checkpoint's stays
    assert bounded.max_cond_frame_num == 2
    with pytest.raises(ValueError):
        bound_cond_frames(bounded, 0)


@pytest.mark.parametrize(("cond_frames", "expected"), [(4, 4), (2, 2), (0, -1)])
def test_the_cond_frames_setting_reaches_the_loaded_model(cond_frames: int, expected: int) -> None:
    """--cond-frames N bounds the prompt frames attended per frame (0: SAM 2's -1, all of them), through
    the registry's loader, and it is part of a run's identity (a rerun with another value recomputes)."""
    from alref.config import Settings
    from alref.tools.registry import resolve_models

    settings = Settings(models="smoke", cond_frames=cond_frames)
    segmenter = resolve_models(settings).load_segmentation(settings)
    assert segmenter.model.config.max_cond_frame_num == expected
    assert settings.identity_dict()["cond_frames"] == cond_frames
