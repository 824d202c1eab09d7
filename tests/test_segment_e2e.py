"""`alref segment` end to end in the smoke profile: every output file, its shapes and fields."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import alref
from alref.media.writers import rle_to_mask

pytestmark = pytest.mark.slow


def _check_outputs(out: Path, num_frames: int, height: int, width: int, names: list[str]) -> dict:
    result = json.loads((out / "result.json").read_text())
    masks = sorted(p.stem for p in (out / "masks").glob("*.png"))
    assert masks == sorted(names)  # one mask per frame, named after the frame
    for name in names[:3] + names[-2:]:
        img = Image.open(out / "masks" / f"{name}.png")
        assert img.mode == "L" and img.size == (width, height)
        assert set(np.unique(np.asarray(img))) <= {0, 255}
    data = json.loads((out / "masks.json").read_text())
    assert data["size"] == [height, width] and data["frames"] == names
    for obj in data["objects"]:
        assert len(obj["masks"]) == num_frames
    # the RLE of object 1 is the PNG (single reference)
    if len(data["objects"]) == 1:
        for f in (0, num_frames // 2, num_frames - 1):
            png = np.asarray(Image.open(out / "masks" / f"{names[f]}.png")) > 0
            assert np.array_equal(rle_to_mask(data["objects"][0]["masks"][f]), png)
    with av.open(str(out / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert frames == num_frames
        assert (stream.codec_context.width, stream.codec_context.height) == (
            width + width % 2,
            height + height % 2,
        )
    return result


def test_segment_mp4_every_output(run_cli, shapes_mp4, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        "segment", shapes_mp4, "the red square", "--models", "smoke", "--out", out, "--clip-frames", "10"
    )
    assert code == 0, stderr
    assert "baseline" in stderr and "smoke" in stderr and "meaningless" in stdout
    names = [f"{i:05d}" for i in range(30)]
    result = _check_outputs(out, 30, 120, 160, names)
    with av.open(str(out / "overlay.mp4")) as container:  # the video's sound is kept
        assert [s.codec_context.name for s in container.streams.audio] == ["aac"]
    assert result["smoke"] is True and "meaningless" in result["smoke_note"]
    assert result["mode"] == "baseline" and result["status"] == "ok"
    assert result["input"]["num_frames"] == 30 and result["input"]["fps"] == 10
    assert result["models"]["grounding"]["revision"].startswith("smoke-")
    assert result["models"]["segmentation"]["name"] == "smoke:sam2-video"
    assert set(result["timings_s"]) >= {"decode", "detection", "propagation", "writing", "total"}
    ref = result["references"][0]
    assert ref["text"] == "the red square" and len(ref["clips"]) == 3
    for clip in ref["clips"]:
        assert clip["samples"] == [clip["start"] + o for o in (0, 2, 4, 6, 9)]
        assert clip["valid"] and clip["pivot_frame"] in clip["samples"] and len(clip["pivot_box"]) == 4
        assert "highest detection score" in clip["reason"]
        best = max(clip["sample_scores"].items(), key=lambda kv: (kv[1] or -1, -int(kv[0])))
        assert clip["pivot_frame"] == int(best[0]) and clip["pivot_score"] == best[1]
    assert ref["start_frame"] == ref["clips"][1]["pivot_frame"]  # middle clip
    assert not (out / "work" / "frames_256.u8").exists()  # decoded frames are removed once finished


def test_segment_frame_folder_keeps_names_and_json_flag(run_cli, shapes_frames_dir, tmp_path):
    out = tmp_path / "out"
    code, stdout, _ = run_cli(
        "segment", shapes_frames_dir, "the red square", "--models", "smoke", "-o", out, "--json"
    )
    assert code == 0
    printed = json.loads(stdout)  # --json prints result.json and nothing else on stdout
    assert printed == json.loads((out / "result.json").read_text())
    names = [f"frame{i}" for i in range(1, 13)]
    _check_outputs(out, 12, 120, 160, names)
    assert printed["input"]["kind"] == "frames"


def test_several_references_share_one_session(run_cli, shapes_mp4, tmp_path, monkeypatch):
    from alref.tools import segmentation

    sessions = []
    original = segmentation.Sam2VideoSegmenter.start_session

    def spy(self, *args, **kwargs):
        sessions.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(segmentation.Sam2VideoSegmenter, "start_session", spy)
    out = tmp_path / "out"
    code, _, err = run_cli("segment", shapes_mp4, "--ref", "the red square", "--ref", "the blue circle",
                           "--models", "smoke", "--out", out, "--no-overlay")  # fmt: skip
    assert code == 0, err
    assert sessions == [1]
    result = json.loads((out / "result.json").read_text())
    assert [r["id"] for r in result["references"]] == [1, 2]
    assert result["outputs"]["overlay"] is None and not (out / "overlay.mp4").exists()
    data = json.loads((out / "masks.json").read_text())
    assert [o["id"] for o in data["objects"]] == [1, 2]
    for f in (0, 15, 29):
        m1, m2 = (rle_to_mask(o["masks"][f]) for o in data["objects"])
        union = np.asarray(Image.open(out / "masks" / f"{f:05d}.png")) > 0
        assert np.array_equal(union, m1 | m2)
        assert np.array_equal(np.asarray(Image.open(out / "objects" / "1" / f"{f:05d}.png")) > 0, m1)
        pal = Image.open(out / "palette" / f"{f:05d}.png")
        assert pal.mode == "P"
        idx = np.asarray(pal)
        assert np.array_equal(idx == 2, m2) and np.array_equal(idx == 1, m1 & ~m2)


def test_boxes_given_to_sam2_are_the_clip_pivots(shapes_mp4, tmp_path, monkeypatch):
    from alref.tools import segmentation

    prompts, starts = [], []
    add_box, propagate = segmentation.SegmentationSession.add_box, segmentation.SegmentationSession.propagate

    def spy_add(self, frame_idx, obj_id, box):
        prompts.append((frame_idx, obj_id, tuple(box)))
        return add_box(self, frame_idx, obj_id, box)

    def spy_propagate(self, start_frame, progress=None):
        starts.append(start_frame)
        return propagate(self, start_frame, progress)

    monkeypatch.setattr(segmentation.SegmentationSession, "add_box", spy_add)
    monkeypatch.setattr(segmentation.SegmentationSession, "propagate", spy_propagate)
    result = alref.segment(
        shapes_mp4,
        "the red square",
        out=tmp_path / "o",
        models="smoke",
        clip_frames=8,
        samples=3,
        overlay=False,
    )
    clips = result.references[0]["clips"]
    assert len(clips) == 4  # 30 frames in clips of 8: the last has 6
    assert [c["samples"] for c in clips] == [[0, 3, 7], [8, 11, 15], [16, 19, 23], [24, 26, 29]]
    expected = [(c["pivot_frame"], 1, tuple(c["pivot_box"])) for c in clips]
    assert [(f, o) for f, o, _ in prompts] == [(f, o) for f, o, _ in expected]
    for (_, _, given), (_, _, reported) in zip(prompts, expected, strict=True):
        assert np.allclose(given, reported, atol=0.01)
    assert starts == [clips[1]["pivot_frame"]]  # (4 - 1) // 2 = clip 1
    assert result.masks().shape == (30, 120, 160)


def test_not_found_gives_empty_masks(shapes_mp4, tmp_path):
    result = alref.segment(
        shapes_mp4, "the red square", out=tmp_path / "o", models="smoke", box_threshold=1.0, overlay=False
    )
    assert result.status == "not_found"
    ref = result.references[0]
    assert ref["status"] == "not_found" and all(not c["valid"] for c in ref["clips"])
    assert not result.masks().any()


def test_rerun_is_skipped_and_interrupted_run_resumes(shapes_mp4, tmp_path, monkeypatch):
    from alref.tools import grounding, segmentation

    out = tmp_path / "o"
    calls = {"detect": 0}
    detect = grounding.GroundingDetector.detect

    def counting_detect(self, *a, **k):
        calls["detect"] += 1
        return detect(self, *a, **k)

    monkeypatch.setattr(grounding.GroundingDetector, "detect", counting_detect)
    propagate = segmentation.SegmentationSession.propagate

    def dying_propagate(self, start_frame, progress=None):
        for i, item in enumerate(propagate(self, start_frame, progress)):
            if i == 5:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(segmentation.SegmentationSession, "propagate", dying_propagate)
    with pytest.raises(KeyboardInterrupt):
        alref.segment(shapes_mp4, "the red square", out=out, models="smoke", overlay=False)
    assert not (out / "result.json").exists() and (out / "work" / "detections.json").is_file()
    first_calls = calls["detect"]
    assert first_calls > 0

    monkeypatch.setattr(segmentation.SegmentationSession, "propagate", propagate)
    decoded = []
    from alref.media import video as video_mod

    iter_frames = video_mod.Video.iter_frames

    def spy_iter(self, indices=None, max_side=None):
        for index, frame in iter_frames(self, indices, max_side):
            decoded.append(index)
            yield index, frame

    monkeypatch.setattr(video_mod.Video, "iter_frames", spy_iter)
    result = alref.segment(shapes_mp4, "the red square", out=out, models="smoke", overlay=False)
    assert result.status == "ok"
    assert calls["detect"] == first_calls  # detections came from work/
    assert decoded == [
        0,
        7,
        14,
        21,
        29,
    ]  # the SAM 2 frames were on disk: only the sampled frames were decoded
    decoded.clear()
    again = alref.segment(shapes_mp4, "the red square", out=out, models="smoke", overlay=False)
    assert again.data == result.data and decoded == [] and calls["detect"] == first_calls
