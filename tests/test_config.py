"""Settings precedence: defaults < config file < ALREF_* environment < explicit arguments."""

import pytest

from alref.config import load_settings
from alref.errors import ConfigError


def test_defaults_are_the_papers(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert (s.clip_frames, s.samples, s.box_threshold, s.text_threshold, s.pivot) == (
        50,
        5,
        0.15,
        0.2,
        "best",
    )


def test_precedence(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alref.toml").write_text("clip_frames = 30\nsamples = 3\ntop_k = 4\n")
    monkeypatch.setenv("ALREF_SAMPLES", "7")
    monkeypatch.setenv("ALREF_TOP_K", "6")
    s = load_settings(top_k=9, clip_frames=None)  # None means "flag not given"
    assert s.clip_frames == 30  # file
    assert s.samples == 7  # env beats file
    assert s.top_k == 9  # argument beats env


def test_config_file_from_env_and_errors(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text("pivot = 'first'\n")
    monkeypatch.setenv("ALREF_CONFIG", str(cfg))
    assert load_settings().pivot == "first"
    cfg.write_text("clip_frame = 3\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings()
    cfg.write_text("clip_frames = [\n")
    with pytest.raises(ConfigError, match="does not parse"):
        load_settings()
    monkeypatch.setenv("ALREF_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()


def test_invalid_values_are_one_line_errors(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_settings(pivot="random")
    assert "pivot" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="clip_frames"):
        load_settings(clip_frames=0)
