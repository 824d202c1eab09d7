from __future__ import annotations

import pytest

from alref.media.sampling import Clip, make_clips, middle_clip, sample_positions


def test_short_last_clip_absolute_indices() -> None:
    clips = make_clips(123, clip_frames=50, samples=5)
    assert [(c["index"], c["start"], c["end"], c["end"] - c["start"]) for c in clips] == [
        (0, 0, 50, 50),
        (1, 50, 100, 50),
        (2, 100, 123, 23),
    ]
    assert clips[0]["samples"] == [0, 12, 24, 36, 49]
    assert clips[1]["samples"] == [50, 62, 74, 86, 99]
    assert clips[2]["samples"] == [100, 105, 111, 116, 122]


def test_sample_positions() -> None:
    assert sample_positions(50, 5) == [0, 12, 24, 36, 49]
    assert sample_positions(23, 5) == [0, 5, 11, 16, 22]
    assert sample_positions(3, 5) == [0, 1, 2]  # more samples than frames: every frame once
    assert sample_positions(1, 5) == [0]
    assert sample_positions(2, 2) == [0, 1]
    assert sample_positions(50, 1) == [24]
    assert sample_positions(7, 1) == [3]
    assert sample_positions(1, 1) == [0]


def test_samples_more_than_clip_length() -> None:
    clips = make_clips(8, clip_frames=3, samples=5)
    assert [c["samples"] for c in clips] == [[0, 1, 2], [3, 4, 5], [6, 7]]


def test_one_sample_is_the_middle_frame() -> None:
    clips = make_clips(100, clip_frames=50, samples=1)
    assert [c["samples"] for c in clips] == [[24], [74]]


@pytest.mark.parametrize("num_frames", [1, 2, 49, 50, 51, 99, 100, 101, 123, 1000])
@pytest.mark.parametrize(("clip_frames", "samples"), [(50, 5), (10, 3), (7, 10), (1, 5), (50, 1)])
def test_clips_cover_the_video(num_frames: int, clip_frames: int, samples: int) -> None:
    clips = make_clips(num_frames, clip_frames, samples)
    assert clips[0]["start"] == 0 and clips[-1]["end"] == num_frames
    assert all(a["end"] == b["start"] for a, b in zip(clips, clips[1:], strict=False))
    assert [c["index"] for c in clips] == list(range(len(clips)))
    for clip in clips:
        assert 1 <= clip["end"] - clip["start"] <= clip_frames
        assert clip["samples"] == sorted(set(clip["samples"]))
        assert all(clip["start"] <= s < clip["end"] for s in clip["samples"])
        assert len(clip["samples"]) == (1 if samples == 1 else min(samples, clip["end"] - clip["start"]))
        if samples > 1:
            assert clip["samples"][0] == clip["start"] and clip["samples"][-1] == clip["end"] - 1


def test_middle_clip() -> None:
    assert middle_clip(make_clips(123))["index"] == 1
    assert middle_clip(make_clips(200))["index"] == 1  # 4 clips -> the second
    assert middle_clip(make_clips(10))["index"] == 0
    assert middle_clip([Clip(index=i, start=i, end=i + 1, samples=[i]) for i in range(5)])["index"] == 2


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0,), "at least one frame"),
        ((-3,), "at least one frame"),
        ((10, 0), "clip length"),
        ((10, 5, 0), "samples"),
    ],
)
def test_bad_arguments(args: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_clips(*args)
