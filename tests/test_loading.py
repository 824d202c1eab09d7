"""Model names resolve to folders: local folders, the Hugging Face cache, smoke builds; missing
models are a clear ModelUnavailableError."""

import pytest

from alref.config import load_settings
from alref.errors import InputError, ModelLoadError, ModelUnavailableError
from alref.tools import loading


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return load_settings(cache_dir=tmp_path / "cache")


def test_hub_id_not_cached_offline_names_model_and_fix(settings):
    with pytest.raises(ModelUnavailableError) as err:
        loading.resolve("IDEA-Research/grounding-dino-base", "grounding", settings)
    text = str(err.value)
    assert "IDEA-Research/grounding-dino-base" in text
    assert "alref models pull" in text and "--models smoke" in text and "--grounding-model" in text
    assert err.value.exit_code == 3


def test_missing_local_path_and_folder_without_config(settings, tmp_path):
    with pytest.raises(ModelUnavailableError, match="no folder"):
        loading.resolve("./nowhere/model", "segmentation", settings)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="config.json"):
        loading.resolve(str(empty), "segmentation", settings)


def test_local_folder_resolves_as_local(settings, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    src = loading.resolve(str(folder), "grounding", settings)
    assert src.path == folder.resolve() and src.revision == "local" and not src.smoke


def test_profiles_and_overrides(settings):
    assert loading.model_name(settings, "grounding") == "IDEA-Research/grounding-dino-base"
    assert loading.model_name(settings, "segmentation") == "facebook/sam2.1-hiera-large"
    smoke = settings.model_copy(update={"models": "smoke", "segmentation_model": "/x/y"})
    assert loading.model_name(smoke, "grounding") == "smoke:grounding-dino"
    assert loading.model_name(smoke, "segmentation") == "/x/y"
    with pytest.raises(InputError, match="unknown model profile"):
        loading.model_name(settings.model_copy(update={"models": "huge"}), "grounding")


BUILT: list = []


def fake_builder(folder):
    BUILT.append(folder)
    (folder / "config.json").write_text("{}")


def broken_builder(folder):
    (folder / "partial").write_text("x")
    raise RuntimeError("boom")


def test_smoke_model_is_built_once_then_reused(settings, monkeypatch):
    BUILT.clear()
    monkeypatch.setitem(loading.SMOKE_BUILDERS, "fake", f"{__name__}:fake_builder")
    first = loading.resolve("smoke:fake", "grounding", settings)
    second = loading.resolve("smoke:fake", "grounding", settings)
    assert first.path == second.path and (first.path / "config.json").is_file()
    assert len(BUILT) == 1 and first.smoke and first.revision.startswith("smoke-")
    assert not any(p.name.startswith(".") for p in first.path.parent.iterdir())  # no temp folders left


def test_failed_smoke_build_leaves_nothing(settings, monkeypatch):
    monkeypatch.setitem(loading.SMOKE_BUILDERS, "broken", f"{__name__}:broken_builder")
    with pytest.raises(RuntimeError):
        loading.resolve("smoke:broken", "grounding", settings)
    root = settings.cache_dir / "smoke" / loading.SMOKE_VERSION
    assert list(root.iterdir()) == []


def test_load_once_calls_loader_once():
    calls = []
    key = ("test", object())
    a = loading.load_once(key, lambda: calls.append(1) or "model")
    b = loading.load_once(key, lambda: calls.append(1) or "other")
    assert a == b == "model" and calls == [1]


def test_resolve_device():
    assert loading.resolve_device("cpu") == "cpu"
    assert loading.resolve_device("auto") in ("cpu", "cuda", "mps")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA"):
            loading.resolve_device("cuda")
