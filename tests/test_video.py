from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import av
import numpy as np
import pytest
import synth

from alref.errors import MediaError
from alref.media.video import Video, natural_key, open_video


def is_red(pixel: np.ndarray) -> bool:
    r, g, b = (int(v) for v in pixel)
    return r > 180 and g < 70 and b < 70


def square_centre(i: int, n: int = 30, width: int = 160, height: int = 120) -> tuple[int, int]:
    x0, y0, x1, y1 = synth.red_square_box(i, n, width, height)
    return (y0 + y1) // 2, (x0 + x1) // 2


def test_container_info_and_frames(shapes_video: Path) -> None:
    video = open_video(shapes_video)
    info = video.info
    assert (info.kind, info.fps, info.width, info.height, info.num_frames) == ("file", 10.0, 160, 120, 30)
    assert info.has_audio
    assert info.frame_names[:2] == ("00000", "00001") and info.frame_names[-1] == "00029"
    frames = list(video.iter_frames())
    assert [i for i, _ in frames] == list(range(30))
    for i, frame in frames[::7]:
        assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8
        assert is_red(frame[square_centre(i)])
        assert not is_red(frame[square_centre(29 - i)]) or i in (14, 15)


def test_to_dict_is_json_without_frame_names(shapes_mp4: Path) -> None:
    data = open_video(shapes_mp4).info.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert "frame_names" not in data
    assert data["num_frames"] == 30 and data["duration"] == 3.0 and data["path"] == str(shapes_mp4)


def test_iter_frames_subset_sorted_dedup_and_decodes_once(shapes_mp4: Path, monkeypatch) -> None:
    video = open_video(shapes_mp4)
    opened = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    got = list(video.iter_frames([20, 3, 3, 0]))
    assert len(opened) == 1
    assert [i for i, _ in got] == [0, 3, 20]
    for i, frame in got:
        assert is_red(frame[square_centre(i)])
        assert not is_red(frame[square_centre(29)])
    assert set(video.read_frames([5, 1])) == {1, 5}
    assert is_red(video.read_frame(29)[square_centre(29)])


def test_out_of_range_index(shapes_mp4: Path) -> None:
    with pytest.raises(IndexError, match="30 frames"):
        open_video(shapes_mp4).read_frame(30)


def test_max_side_downsizes_keeping_aspect_never_upsizes(shapes_mp4: Path) -> None:
    video = open_video(shapes_mp4)
    ((_, small),) = video.iter_frames([10], max_side=80)
    assert small.shape == (60, 80, 3)
    assert is_red(small[tuple(v // 2 for v in square_centre(10))])
    ((_, same),) = video.iter_frames([10], max_side=1000)
    assert same.shape == (120, 160, 3)


def test_frames_folder_natural_sort(shapes_frames_dir: Path) -> None:
    video = open_video(shapes_frames_dir)
    info = video.info
    assert (info.kind, info.fps, info.num_frames, info.has_audio) == ("frames", 24.0, 12, False)
    assert info.frame_names == tuple(f"frame{i}" for i in range(1, 13))
    for i, frame in video.iter_frames([0, 1, 9, 11]):
        assert is_red(frame[square_centre(i, 12)])
    assert open_video(shapes_frames_dir, fps=5).info.fps == 5.0


def test_natural_key() -> None:
    names = ["frame10", "frame2", "Frame1", "a", "frame2b", "00010", "00009"]
    assert sorted(names, key=natural_key) == ["00009", "00010", "a", "Frame1", "frame2", "frame2b", "frame10"]


def test_png_folder_is_lossless(tmp_path: Path) -> None:
    folder = synth.write_frames_folder(tmp_path / "png", num_frames=3, ext=".png", names=["b", "a", "c"])
    video = open_video(folder)
    assert video.info.frame_names == ("a", "b", "c")
    # names[i] holds shapes frame i: a = frame 1, b = frame 0, c = frame 2
    assert np.array_equal(video.read_frame(0), synth.shapes_frame(1, 3, 160, 120))
    assert np.array_equal(video.read_frame(1), synth.shapes_frame(0, 3, 160, 120))


def test_display_rotation_is_applied(tmp_path: Path) -> None:
    path = synth.write_shapes_video(tmp_path / "rotated.mp4", num_frames=10, audio=False, rotation=90)
    video = open_video(path)
    assert (video.info.width, video.info.height) == (120, 160)
    frame = video.read_frame(0)
    assert frame.shape == (160, 120, 3)
    # stored (x, y) is shown at (row = W - 1 - x, col = y) after a 90 degree counter-clockwise turn
    y, x = square_centre(0, 10)
    assert is_red(frame[159 - x, y])


def test_decoding_fewer_frames_than_counted_is_corrupt(shapes_mp4: Path) -> None:
    video = open_video(shapes_mp4)
    liar = Video(dataclasses.replace(video.info, num_frames=31))
    with pytest.raises(MediaError, match="corrupt video stream .*decoded 30 of 31 frames"):
        list(liar.iter_frames())


def test_corrupt_frame_later_in_folder_fails_when_read(tmp_path: Path) -> None:
    video = open_video(synth.write_corrupt_frames_folder(tmp_path / "late", first=False))
    assert video.info.num_frames == 4
    assert video.read_frame(0).shape == (120, 160, 3)
    with pytest.raises(MediaError, match="unreadable frame .*frame4.jpg"):
        list(video.iter_frames())


BAD_INPUTS = {
    "missing": (lambda d: d / "nope.mp4", "no such file or folder"),
    "text": (lambda d: synth.write_text_as_video(d / "notes.mp4"), "not a video"),
    "truncated": (lambda d: synth.write_truncated_video(d / "cut.mp4"), "not a video"),
    "truncated_faststart": (
        lambda d: synth.write_truncated_video(d / "cut_fast.mp4", faststart=True),
        "corrupt video stream",
    ),
    "zero_frames": (lambda d: synth.write_zero_frame_video(d / "zero.avi"), "no frames"),
    "empty_folder": (lambda d: synth.write_empty_folder(d / "empty"), "no frames"),
    "corrupt_jpg": (lambda d: synth.write_corrupt_frames_folder(d / "bad"), "unreadable frame"),
    "mixed_sizes": (lambda d: synth.write_mixed_size_folder(d / "mixed"), "different sizes"),
    "single_image": (
        lambda d: synth.write_frames_folder(d / "one", num_frames=1) / "frame1.jpg",
        "single image",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_raises_one_line_media_error(case: str, tmp_path: Path) -> None:
    make, expected = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(MediaError) as caught:
        video = open_video(path)
        list(video.iter_frames())
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message and str(path.name) in message


def test_bad_fps_for_folder(shapes_frames_dir: Path) -> None:
    with pytest.raises(MediaError, match="positive"):
        open_video(shapes_frames_dir, fps=0)
