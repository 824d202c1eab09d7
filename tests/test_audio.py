from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import synth

from alref.errors import MediaError, NoAudioError
from alref.media.audio import SAMPLE_RATE, has_audio, load_audio


def peak_hz(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def assert_mono_float(samples: np.ndarray, seconds: float, rate: int = SAMPLE_RATE) -> None:
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - seconds * rate) <= 0.01 * seconds * rate
    assert np.abs(samples).max() <= 1.0


def test_track_of_a_video(shapes_mp4: Path) -> None:
    samples = load_audio(shapes_mp4)
    assert_mono_float(samples, 3.0)
    assert abs(peak_hz(samples) - 440) < 5
    assert 0.3 < rms(samples) < 0.4  # a 0.5 amplitude sine has rms 0.354


def test_track_of_every_container(shapes_video: Path) -> None:
    samples = load_audio(shapes_video)
    assert_mono_float(samples, 3.0)
    assert abs(peak_hz(samples) - 440) < 5


def test_44k_stereo_wav_is_resampled_to_16k_mono(tmp_path: Path) -> None:
    wav = synth.write_wav(tmp_path / "stereo.wav", seconds=2.0, sample_rate=44100, channels=2)
    samples = load_audio(wav)
    assert_mono_float(samples, 2.0)
    assert abs(peak_hz(samples) - 440) < 5
    low = load_audio(wav, sample_rate=8000)
    assert_mono_float(low, 2.0, rate=8000)
    assert abs(peak_hz(low, 8000) - 440) < 5


def test_segments_keep_their_place(speech_wav: Path) -> None:
    samples = load_audio(speech_wav)
    assert_mono_float(samples, 2.0)
    second = SAMPLE_RATE
    assert rms(samples[: second // 2 - 200]) < 1e-3
    tone = samples[second // 2 + 200 : 3 * second // 2 - 200]
    assert 0.3 < rms(tone) < 0.4 and abs(peak_hz(tone) - 440) < 5
    assert rms(samples[3 * second // 2 + 200 :]) > 0.2


def test_silence_inside_a_video_track(tmp_path: Path) -> None:
    path = synth.write_shapes_video(tmp_path / "gap.mp4", silent_from=1.0, silent_to=2.0)
    samples = load_audio(path)
    second = SAMPLE_RATE
    assert rms(samples[int(1.1 * second) : int(1.9 * second)]) < 0.01
    assert rms(samples[int(0.1 * second) : int(0.9 * second)]) > 0.3
    assert rms(samples[int(2.1 * second) : int(2.9 * second)]) > 0.3


def test_has_audio(shapes_mp4: Path, silent_mp4: Path, shapes_frames_dir: Path, speech_wav: Path) -> None:
    assert has_audio(shapes_mp4) and has_audio(speech_wav)
    assert not has_audio(silent_mp4)
    assert not has_audio(shapes_frames_dir)
    assert not has_audio(shapes_frames_dir / "missing.wav")


@pytest.mark.parametrize("which", ["silent_mp4", "shapes_frames_dir"])
def test_no_audio_error(which: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(which)
    with pytest.raises(NoAudioError) as caught:
        load_audio(path)
    message = str(caught.value)
    assert "has no audio track" in message and "--audio PATH" in message and "\n" not in message


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="no such file or folder") as missing:
        load_audio(tmp_path / "nope.wav")
    assert not isinstance(missing.value, NoAudioError)
    garbage = synth.write_text_as_video(tmp_path / "noise.wav")
    with pytest.raises(MediaError, match="unreadable audio") as caught:
        load_audio(garbage)
    assert not isinstance(caught.value, NoAudioError) and "\n" not in str(caught.value)
