from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import synth
from PIL import Image
from pycocotools import mask as mask_utils

from alref.media import writers
from alref.media.boxes import colour_for
from alref.media.writers import (
    OverlayWriter,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    davis_palette,
    mask_to_rle,
    rle_to_mask,
    write_mask_png,
    write_palette_png,
)


def random_mask(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w)) > 0.6


def test_atomic_writes_and_no_temp_files(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "sub" / "b.txt", "héllo")
    atomic_write_json(tmp_path / "c.json", {"name": "chien", "boxes": [1.5, 2]})
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "sub" / "b.txt").read_text(encoding="utf-8") == "héllo"
    text = (tmp_path / "c.json").read_text(encoding="utf-8")
    assert json.loads(text) == {"name": "chien", "boxes": [1.5, 2]} and '\n  "name"' in text
    atomic_write_json(tmp_path / "c.json", {"é": 1})
    assert "é" in (tmp_path / "c.json").read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.bin", "b.txt", "c.json", "sub"]


def test_failed_atomic_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.json"
    atomic_write_json(target, {"v": 1})

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


@pytest.mark.parametrize("dtype", [bool, np.uint8])
def test_mask_png_round_trip(tmp_path: Path, dtype: type) -> None:
    mask = random_mask().astype(dtype)
    write_mask_png(tmp_path / "m.png", mask)
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode == "L" and im.size == (64, 48)
        back = np.array(im)
    assert set(np.unique(back)) == {0, 255}
    assert np.array_equal(back == 255, mask.astype(bool))


def test_davis_palette() -> None:
    palette = davis_palette()
    assert len(palette) == 768
    triples = [tuple(palette[i : i + 3]) for i in range(0, 768, 3)]
    assert triples[:5] == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128)]
    assert triples[255] == (224, 224, 192)
    assert len(set(triples)) == 256


def test_palette_png_round_trip(tmp_path: Path) -> None:
    labels = np.zeros((30, 40), np.uint8)
    labels[5:15, 5:15], labels[20:, 30:], labels[0, 0] = 1, 2, 255
    write_palette_png(tmp_path / "p.png", labels)
    with Image.open(tmp_path / "p.png") as im:
        assert im.mode == "P"
        assert np.array_equal(np.array(im), labels)
        assert im.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
        assert np.array(im.convert("RGB"))[10, 10].tolist() == [128, 0, 0]
    custom = [0, 0, 0, 255, 255, 255] + [0] * 762
    write_palette_png(tmp_path / "q.png", labels, palette=custom)
    with Image.open(tmp_path / "q.png") as im:
        assert np.array(im.convert("RGB"))[10, 10].tolist() == [255, 255, 255]
    with pytest.raises(ValueError, match="0..255"):
        write_palette_png(tmp_path / "bad.png", np.full((2, 2), 300))


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_rle_round_trip_matches_pycocotools() -> None:
    mask = random_mask(37, 53, seed=3)
    rle = mask_to_rle(mask)
    assert rle["size"] == [37, 53] and isinstance(rle["counts"], str)
    assert json.loads(json.dumps(rle)) == rle
    back = rle_to_mask(rle)
    assert back.dtype == bool and np.array_equal(back, mask)
    coco = {"size": rle["size"], "counts": rle["counts"].encode()}
    assert np.array_equal(mask_utils.decode(coco).astype(bool), mask)
    assert mask_utils.area(coco) == mask.sum()
    reference = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert rle["counts"].encode() == reference["counts"]
    assert np.array_equal(rle_to_mask(reference), mask)  # bytes counts too
    empty = mask_to_rle(np.zeros((4, 5), bool))
    assert not rle_to_mask(empty).any()


def read_video(path: Path) -> tuple[av.video.stream.VideoStream, list[np.ndarray], list[int]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, pts = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            pts.append(frame.pts)
        return stream, frames, pts


@pytest.mark.parametrize(("width", "height"), [(160, 120), (161, 121)])
def test_overlay_video(tmp_path: Path, width: int, height: int) -> None:
    n = 12
    mask = np.zeros((height, width), bool)
    mask[60:110, 10:60] = True
    path = tmp_path / "overlay.mp4"
    with OverlayWriter(path, fps=10, width=width, height=height, alpha=0.5) as writer:
        for i in range(n):
            frame = synth.shapes_frame(i, n, width, height)
            writer.add(frame, masks={2: mask}, boxes=[((100, 10, 150, 50), "1 dog")])
    stream, frames, pts = read_video(path)
    assert len(frames) == n
    assert (stream.width, stream.height) == (width + width % 2, height + height % 2)
    assert stream.average_rate == 10
    assert pts == sorted(pts) and len(set(pts)) == n
    tinted = frames[0][70:100, 20:50].reshape(-1, 3).mean(axis=0)  # black * 0.5 + green * 0.5
    expected = np.array(colour_for(1)[1]) * 0.5
    assert np.abs(tinted - expected).max() < 12
    red = np.array(colour_for(0)[1])
    assert np.abs(frames[0][30, 100].astype(int) - red).max() < 40  # the box's left edge
    assert [p.name for p in tmp_path.iterdir()] == ["overlay.mp4"]


def _overlay_of(path: Path, source: Path, audio: Path | None) -> Path:
    """The overlay of ``source``'s frames (one mask), keeping ``audio``'s track when given."""
    with av.open(str(source)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    h, w = frames[0].shape[:2]
    mask = np.zeros((h, w), bool)
    mask[10:40, 20:60] = True
    with OverlayWriter(path, fps=10, width=w, height=h, threads=1, audio=audio) as writer:
        for frame in frames:
            writer.add(frame, masks={1: mask})
    return path


@pytest.mark.parametrize(("suffix", "codec"), [(".mp4", "aac"), (".mkv", "flac"), (".avi", "aac")])
def test_the_overlay_keeps_the_audio_track(tmp_path: Path, suffix: str, codec: str) -> None:
    """overlay.mp4 has the source's sound (the silence gating of --audio is heard against it): copied
    when mp4 takes the codec (AAC, FLAC), else encoded as AAC (PCM from an AVI); the video is the same."""
    source = synth.write_shapes_video(tmp_path / f"in{suffix}", num_frames=20, fps=10)
    silent = _overlay_of(tmp_path / "silent.mp4", source, None)
    sound = _overlay_of(tmp_path / "overlay.mp4", source, source)
    with av.open(str(sound)) as container:
        assert len(container.streams.video) == 1 and len(container.streams.audio) == 1
        audio = container.streams.audio[0]
        assert audio.codec_context.name == codec
        rate = audio.codec_context.sample_rate
        seconds = sum(f.samples for f in container.decode(audio=0)) / rate
    assert (
        1.8 <= seconds <= 2.0 + 2 * 1024 / rate
    )  # the 2 s of the 20 frames (an encoder's frames of padding)
    assert np.array_equal(read_video(sound)[1], read_video(silent)[1])  # the video packets copied as they are
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["overlay.mp4", "silent.mp4", f"in{suffix}"])


def test_an_overlay_of_a_silent_source_has_no_audio(tmp_path: Path) -> None:
    source = synth.write_shapes_video(tmp_path / "mute.mp4", num_frames=10, fps=10, audio=False)
    assert writers.add_audio_track(_overlay_of(tmp_path / "o.mp4", source, None), source) is False
    with av.open(str(tmp_path / "o.mp4")) as container:
        assert not container.streams.audio and len(container.streams.video) == 1


def test_a_separate_audio_file_is_the_overlay_track(tmp_path: Path) -> None:
    """--audio PATH: the overlay keeps that file's sound (a WAV: encoded as AAC)."""
    from alref.media.masks import overlay_audio
    from alref.media.video import open_video

    wav = tmp_path / "sound.wav"
    with av.open(str(wav), "w") as container:
        stream = synth._add_audio_stream(container, "pcm_s16le", 16000)
        synth._encode_audio(container, stream, synth.tone(1.0, 16000))
    mute = synth.write_shapes_video(tmp_path / "mute.mp4", num_frames=20, fps=10, audio=False)
    video = open_video(mute)
    assert overlay_audio(video) is None and overlay_audio(video, wav) == wav
    _overlay_of(tmp_path / "o.mp4", mute, overlay_audio(video, wav))
    with av.open(str(tmp_path / "o.mp4")) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        seconds = sum(f.samples for f in container.decode(audio=0)) / audio.codec_context.sample_rate
    assert 0.9 <= seconds <= 1.1  # the whole 1 s (shorter than the video)


def test_overlay_fractional_fps(tmp_path: Path) -> None:
    path = tmp_path / "ntsc.mp4"
    with OverlayWriter(path, fps=30000 / 1001, width=32, height=32) as writer:
        for _ in range(3):
            writer.add(np.zeros((32, 32, 3), np.uint8))
    stream, frames, _ = read_video(path)
    assert len(frames) == 3 and stream.average_rate == Fraction(30000, 1001)


def test_overlay_error_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "overlay.mp4"
    with (
        pytest.raises(RuntimeError, match="boom"),
        OverlayWriter(path, fps=10, width=32, height=32) as writer,
    ):
        writer.add(np.zeros((32, 32, 3), np.uint8))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with (
        pytest.raises(ValueError, match="expects"),
        OverlayWriter(path, fps=10, width=32, height=32) as writer,
    ):
        writer.add(np.zeros((30, 32, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no frames"), OverlayWriter(path, fps=10, width=32, height=32):
        pass
    assert list(tmp_path.iterdir()) == []


def test_overlay_needs_with_block(tmp_path: Path) -> None:
    writer = OverlayWriter(tmp_path / "o.mp4", fps=10, width=8, height=8)
    with pytest.raises(RuntimeError, match="with"):
        writer.add(np.zeros((8, 8, 3), np.uint8))
    assert writers.OverlayWriter is OverlayWriter


def _dense_tint(frame, masks, alpha=0.5):
    """The tint over the whole frame in float32 (what render_overlay computed before it tinted only
    the masks' bounding rectangle), without the outlines."""
    image = frame.astype(np.float32)
    for obj_id, mask in masks.items():
        m = mask > 0
        image[m] = image[m] * (1 - alpha) + np.array(colour_for(obj_id - 1)[1], np.float32) * alpha
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["none", "noise", "rectangles", "whole"])
def test_the_overlay_tint_is_the_whole_frame_tint(kind):
    """Tinting only the masks' bounding rectangle gives the pixels of tinting the whole frame
    (overlapping masks included); the outlines are drawn the same way on both."""
    import cv2

    rng = np.random.default_rng(len(kind))
    frame = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    masks = {}
    for obj in (1, 2, 3):
        m = np.zeros((60, 80), np.uint8)
        if kind == "noise":
            m = (rng.random((60, 80)) > 0.7).astype(np.uint8)
        elif kind == "rectangles":
            m[5 * obj : 30 + 5 * obj, 10 * obj : 40 + 5 * obj] = 1
        elif kind == "whole":
            m[:] = 1
        masks[obj] = m
    expected = _dense_tint(frame, masks)
    for obj, m in masks.items():
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(expected, contours, -1, colour_for(obj - 1)[1], writers.default_thickness(80, 60))
    assert np.array_equal(writers.render_overlay(frame, masks), expected)
