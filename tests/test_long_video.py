"""What a run holds in memory does not grow with the video: the mask sink keeps each frame's RLE in a
temporary file (masks.json and the overlay read it back one frame at a time, the same bytes as
before), and the frame store is read with file I/O, not mapped (mapped pages count in the process's
resident memory). The SAM 2 session's bounds are in ``tests/test_segmentation.py``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from alref.media.masks import MaskSink, SpooledRles
from alref.media.video import VideoInfo
from alref.media.writers import atomic_write_json_stream, mask_to_rle
from alref.tools.segmentation import MemmapFrameStore

H, W, N = 24, 32, 30


def info(tmp_path: Path, frames: int = N) -> VideoInfo:
    return VideoInfo(path=tmp_path / "v.mp4", kind="file", num_frames=frames, fps=10.0, width=W, height=H,
                     frame_names=tuple(f"{i:05d}" for i in range(frames)), has_audio=False)  # fmt: skip


def mask(i: int, obj: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[2 + obj : 9 + obj + i % 5, 3 + i % 20 : 9 + i % 20] = True
    return m


def expected_masks_json(frames: int, objects: dict[int, str], masks) -> str:
    """masks.json as the sink wrote it when it kept the RLE in memory (``atomic_write_json``)."""
    doc = {
        "format": "coco-rle",
        "size": [H, W],
        "frames": [f"{i:05d}" for i in range(frames)],
        "objects": [
            {"id": obj, "reference": ref, "masks": [mask_to_rle(masks[f][obj]) for f in range(frames)]}
            for obj, ref in sorted(objects.items())
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("objects", [{1: "the red square"}, {1: "a", 2: "b «é»"}])
def test_the_sink_spools_the_rle_and_writes_the_same_masks_json(
    tmp_path: Path, objects: dict[int, str]
) -> None:
    masks = {f: {obj: mask(f, obj) for obj in objects} for f in range(N)}
    sink = MaskSink(tmp_path / "o", info(tmp_path), objects, queue_frames=4)
    order = [*range(11, N), *range(11, -1, -1)]  # as SAM 2 delivers them; frame 11 twice
    for f in order:
        sink.add(f, masks[f])
    assert all(isinstance(rles, SpooledRles) for rles in sink.rles.values())
    assert all(sink.rles[obj][f] == mask_to_rle(masks[f][obj]) for f in range(N) for obj in objects)
    sink.write_json()
    assert (tmp_path / "o" / "masks.json").read_text() == expected_masks_json(N, objects, masks)
    replaced = {1: ~masks[7][1]}  # verification replacing one object's mask on one frame
    sink.replace(7, replaced)
    masks[7] = masks[7] | replaced
    assert all((sink.masks_at(f)[obj] == masks[f][obj]).all() for f in range(N) for obj in objects)
    sink.write_json()
    assert (tmp_path / "o" / "masks.json").read_text() == expected_masks_json(N, objects, masks)
    assert sink.summary(1)["frames_with_mask"] == N
    assert not list((tmp_path / "o").glob(".rle-*"))  # the spool has no name in the output folder


def test_what_the_sink_keeps_in_memory_per_frame_is_small(tmp_path: Path) -> None:
    """Noisy masks (the smoke models' kind: long RLE) over 300 frames: the RLE goes to the spool, the
    sink keeps where it is (two numbers a frame) and the area, not the counts strings."""
    rng = np.random.default_rng(0)
    frames = 300
    sink = MaskSink(tmp_path / "o", info(tmp_path, frames), {1: "x"})
    total = 0
    for f in range(frames):
        noisy = rng.random((H, W)) > 0.5
        total += len(mask_to_rle(noisy)["counts"])
        sink.add(f, {1: noisy})
    kept = sink.rles[1]
    assert total > 50 * frames  # long RLE strings ...
    assert all(isinstance(v, tuple) and len(v) == 2 for v in kept._where.values())  # ... not kept
    assert sum(sys.getsizeof(v) for v in kept._where.values()) < 100 * frames
    with pytest.raises(ValueError):
        kept[0] = {"size": [H + 1, W], "counts": "0"}


def test_a_sink_given_plain_dicts_still_writes(tmp_path: Path) -> None:
    """``alref refine`` gives the sink the finished run's RLE as plain dicts, then adds masks to them."""
    masks = {f: {1: mask(f, 1)} for f in range(N)}
    sink = MaskSink(tmp_path / "o", info(tmp_path), {1: "x"})
    sink.rles = {1: {f: mask_to_rle(masks[f][1]) for f in range(N)}}
    masks[3] = {1: ~masks[3][1]}
    sink.add(3, masks[3])
    sink.write_json()
    assert (tmp_path / "o" / "masks.json").read_text() == expected_masks_json(N, {1: "x"}, masks)


def test_the_streamed_json_is_json_dumps(tmp_path: Path) -> None:
    doc = {"a": [1, 2.5, None, True, "é"], "b": {}, "c": [], "d": {"e": [{"f": [[]]}]}, "g": (1, 2)}
    lazy = dict(doc, a=(v for v in doc["a"]))
    atomic_write_json_stream(tmp_path / "x.json", lazy)
    assert (tmp_path / "x.json").read_text() == json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    with pytest.raises(TypeError):
        atomic_write_json_stream(tmp_path / "y.json", {1: 2})
    assert not (tmp_path / "y.json").exists() and not list(tmp_path.glob(".y.json.*"))


def test_the_frame_store_is_read_with_file_io_not_mapped(tmp_path: Path) -> None:
    path = tmp_path / "frames.u8"
    store = MemmapFrameStore(path, 5, 8)
    frames = [np.full((8, 8, 3), 40 * i, dtype=np.uint8) for i in range(5)]
    for i, frame in enumerate(frames):
        store[i] = frame
    store.flush()
    assert all((store[i] == frames[i]).all() for i in range(5))
    assert (store[-1] == frames[4]).all() and store[0].flags.writeable
    with pytest.raises(IndexError):
        store[5]
    maps = Path("/proc/self/maps")
    if maps.is_file():
        assert str(path) not in maps.read_text()
    assert path.stat().st_size == 5 * 8 * 8 * 3
    store.close()
    with pytest.raises(ValueError):
        store[0]


def test_sampled_frames_wait_for_a_slow_detector_in_a_bounded_queue(
    shapes_mp4: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A detector slower than the decoding (a real one on a CPU) holds the decoding back: at most
    SAMPLE_QUEUE_BATCHES detection batches of full-resolution sampled frames wait, not every one."""
    import queue
    import time

    import alref
    from alref.pipeline import stages
    from alref.tools import grounding

    most: list[int] = []

    class Recording(queue.Queue):
        def put(self, item, block=True, timeout=None):
            super().put(item, block, timeout)
            if self.maxsize:
                most.append(self.qsize())

    detect = grounding.GroundingDetector.detect

    def slow(self, *a, **k):
        time.sleep(0.5)
        return detect(self, *a, **k)

    monkeypatch.setattr(queue, "Queue", Recording)
    monkeypatch.setattr(grounding.GroundingDetector, "detect", slow)
    result = alref.segment(shapes_mp4, "the red square", out=tmp_path / "o", models="smoke", clip_frames=6,
                           samples=3, detect_batch=2, overlay=False)  # fmt: skip
    assert result.status == "ok"
    bound = stages.SAMPLE_QUEUE_BATCHES * 2
    assert max(most) == bound  # 15 sampled frames: the decoding waited at the bound


def test_decoded_sampled_frames_wait_on_disk(tmp_path: Path) -> None:
    """``decode`` (the serial path, the tracks strategy, sound references) keeps the sampled frames at
    full resolution in a temporary file, read back one at a time in the order they came."""
    from alref.pipeline.stages import SampledFrames

    frames = SampledFrames(tmp_path / "work")
    assert len(frames) == 0 and not (tmp_path / "work").exists()  # no file until a frame comes
    rng = np.random.default_rng(1)
    added = {i: rng.integers(0, 256, (H + i % 2, W, 3), dtype=np.uint8) for i in (0, 7, 14, 21)}
    for i, frame in added.items():
        frames[i] = frame
    assert list(frames) == [0, 7, 14, 21] and len(frames) == 4
    assert all((frames[i] == frame).all() for i, frame in added.items())
    assert dict(frames.items()).keys() == added.keys()
    assert not list((tmp_path / "work").iterdir())  # unnamed
    with pytest.raises(KeyError):
        frames[1]
