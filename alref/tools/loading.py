"""Where models come from and how they are loaded, for every tool.

A model name is one of:
- a local folder holding a ``save_pretrained`` checkpoint;
- a Hugging Face id (``IDEA-Research/grounding-dino-base``), looked up in the Hugging Face cache and
  downloaded when missing unless offline;
- ``smoke:<name>``, a tiny random-weight model that is built locally (no network) into the alref
  cache and then loaded from that folder exactly like any other checkpoint.

Every model is loaded once per process (per folder, device and dtype) and reused.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from alref.config import Settings
from alref.errors import InputError, ModelLoadError, ModelUnavailableError

SMOKE_PREFIX = "smoke:"
#: bump when a tiny config changes so old smoke folders are rebuilt
SMOKE_VERSION = "v1"

#: model profiles: role -> model name. ``--models PROFILE`` picks one; per-role flags override it. A role's
#: model is for the tool the profile names for it (:data:`PROFILE_TOOLS`, else the role's default tool).
PROFILES: dict[str, dict[str, str]] = {
    "default": {
        "grounding": "IDEA-Research/grounding-dino-base",
        "segmentation": "facebook/sam2.1-hiera-large",
        "audio_tagging": "MIT/ast-finetuned-audioset-10-10-0.4593",
        "audio_text": "laion/clap-htsat-unfused",
        "concept_tracks": "facebook/sam3",
    },
    "fast": {
        "grounding": "IDEA-Research/grounding-dino-tiny",
        "segmentation": "facebook/sam2.1-hiera-tiny",
        "audio_tagging": "MIT/ast-finetuned-audioset-10-10-0.4593",
        "audio_text": "laion/clap-htsat-unfused",
        "concept_tracks": "facebook/sam3",
    },
    "sam3": {
        "grounding": "facebook/sam3",
        "segmentation": "facebook/sam3",
        "audio_tagging": "MIT/ast-finetuned-audioset-10-10-0.4593",
        "audio_text": "laion/clap-htsat-unfused",
        "concept_tracks": "facebook/sam3",
    },
    "smoke": {
        "grounding": "smoke:grounding-dino",
        "segmentation": "smoke:sam2-video",
        "audio_tagging": "smoke:ast",
        "audio_text": "smoke:clap",
        "concept_tracks": "smoke:sam3",
    },
}

#: profile -> role -> the built-in tool the profile's model is for, where that is not the role's default
PROFILE_TOOLS: dict[str, dict[str, str]] = {
    "sam3": {"grounding": "sam3", "segmentation": "sam3-tracker"},
}

#: built-in tool -> profile -> its model under a profile whose entry for the tool's role is for another
#: tool (absent: the tool's own default model). The smoke profile gives every SAM 3 tool the tiny SAM 3.
TOOL_PROFILE_MODELS: dict[str, dict[str, str]] = {
    "sam3": {"smoke": "smoke:sam3"},
    "sam3-tracker": {"smoke": "smoke:sam3"},
}

#: smoke model name -> "module:function" that writes a tiny checkpoint into a folder
SMOKE_BUILDERS: dict[str, str] = {
    "grounding-dino": "alref.tools.grounding:build_tiny",
    "sam2-video": "alref.tools.segmentation:build_tiny",
    "ast": "alref.tools.audio_tagging:build_tiny",
    "clap": "alref.tools.audio_text:build_tiny",
    "sam3": "alref.tools.sam3:build_tiny",
}

_HF_IGNORE = [
    "*.msgpack",
    "*.h5",
    "*.onnx",
    "*.onnx_data",
    "*.ot",
    "*.tflite",
    "tf_model*",
    "flax_model*",
    "*.pt",
]


@dataclass(frozen=True)
class ModelSource:
    """A model resolved to a folder on disk."""

    name: str  # what the user asked for
    role: str
    path: Path
    revision: str  # HF commit hash, "local", or "smoke-<version>"

    @property
    def smoke(self) -> bool:
        return self.name.startswith(SMOKE_PREFIX)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "revision": self.revision, "smoke": self.smoke}


def model_name(settings: Settings, role: str) -> str:
    """The model name for ``role`` after applying the profile and the per-role override."""
    override = getattr(settings, f"{role}_model", None)
    if override:
        return override
    profile = PROFILES.get(settings.models)
    if profile is None:
        raise InputError(f"unknown model profile '{settings.models}'; choose one of {', '.join(PROFILES)}")
    return profile[role]


def profile_tool(settings: Settings, role: str, default_tool: str | None) -> str | None:
    """The built-in tool the profile's model for ``role`` is meant for: :data:`PROFILE_TOOLS`, else the
    role's default tool."""
    if settings.models not in PROFILES:
        raise InputError(f"unknown model profile '{settings.models}'; choose one of {', '.join(PROFILES)}")
    return PROFILE_TOOLS.get(settings.models, {}).get(role, default_tool)


def tool_model_name(
    settings: Settings, role: str, tool: str, default_tool: str | None, default: str | None
) -> str | None:
    """The model the built-in ``tool`` of ``role`` loads: ``--<role>-model``; else the profile's model for
    the role when the profile means it for this tool (:func:`profile_tool`); else the tool's model for the
    profile (:data:`TOOL_PROFILE_MODELS`); else ``default``, the tool's own default model."""
    if tool == profile_tool(settings, role, default_tool):
        return model_name(settings, role)
    override = getattr(settings, f"{role}_model", None)
    return override or TOOL_PROFILE_MODELS.get(tool, {}).get(settings.models, default)


def _looks_like_path(name: str) -> bool:
    """Hugging Face ids are ``org/name``; anything else with a separator is meant as a folder."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def resolve(name: str, role: str, settings: Settings) -> ModelSource:
    """Turn a model name into a folder on disk, building or downloading it when needed."""
    if name.startswith(SMOKE_PREFIX):
        return _resolve_smoke(name, role, settings)
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelLoadError(
                f"model folder {local} ({role}) has no config.json; is it a save_pretrained checkpoint?"
            )
        return ModelSource(name, role, local.resolve(), "local")
    if _looks_like_path(name):
        raise ModelUnavailableError(name, role, f"no folder {local}")
    return _resolve_hub(name, role, settings)


def hub_cached_path(name: str) -> Path | None:
    """The cached snapshot folder of a Hugging Face id, or None if it is not cached."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(name, local_files_only=True, ignore_patterns=_HF_IGNORE))
    except HFValidationError:
        return None
    except Exception:  # noqa: BLE001 - any miss means "not cached"
        return None


def download(name: str, role: str = "model", explicit: bool = False) -> Path:
    """Download a Hugging Face id into the cache (``explicit``: asked for by ``alref models pull``)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, ignore_patterns=_HF_IGNORE))
    except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: all are "unavailable"
        detail = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        raise ModelUnavailableError(name, role, detail, download_failed=explicit) from None


def _resolve_hub(name: str, role: str, settings: Settings) -> ModelSource:
    path = hub_cached_path(name)
    if path is None:
        if settings.is_offline:
            raise ModelUnavailableError(name, role, "offline mode")
        path = download(name, role)
    return ModelSource(name, role, path, path.name)


def smoke_folder(name: str, settings: Settings) -> Path:
    return settings.cache_dir / "smoke" / SMOKE_VERSION / name.removeprefix(SMOKE_PREFIX)


_build_lock = threading.Lock()


def _resolve_smoke(name: str, role: str, settings: Settings) -> ModelSource:
    short = name.removeprefix(SMOKE_PREFIX)
    target = ensure_smoke_model(short, settings.cache_dir / "smoke" / SMOKE_VERSION)
    return ModelSource(name, role, target, f"smoke-{SMOKE_VERSION}")


def ensure_smoke_model(short: str, root: Path) -> Path:
    """Build the tiny model ``short`` into ``root/short`` unless it is already there."""
    spec = SMOKE_BUILDERS.get(short)
    if spec is None:
        raise InputError(f"unknown smoke model '{short}'; known: {', '.join(sorted(SMOKE_BUILDERS))}")
    target = root / short
    with _build_lock:
        if (target / "config.json").is_file():
            return target
        module_name, func_name = spec.split(":")
        builder: Callable[[Path], None] = getattr(importlib.import_module(module_name), func_name)
        _quiet_transformers()
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{short}-", dir=root))
        try:
            builder(tmp)
            if target.exists():  # built by another process meanwhile
                shutil.rmtree(tmp)
            else:
                tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


# --------------------------------------------------------------------------------------------
# devices and the per-process model cache


def resolve_device(device: str) -> str:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is absent is an error."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "--device cuda was asked for but no CUDA GPU is visible to torch; use --device cpu or auto"
        )
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("--device mps was asked for but MPS is not available; use --device cpu or auto")
    return device


T = TypeVar("T")
_loaded: dict[tuple, Any] = {}
_loaded_lock = threading.Lock()


def load_once(key: tuple, loader: Callable[[], T]) -> T:
    """Return the object cached under ``key``, calling ``loader`` the first time only."""
    with _loaded_lock:
        if key not in _loaded:
            _quiet_transformers()
            _loaded[key] = loader()
        return _loaded[key]


def _quiet_transformers() -> None:
    """alref draws its own progress bars; transformers' per-load bars would interleave with them."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def loaded_keys() -> list[tuple]:
    return list(_loaded)


def load_pretrained(source: ModelSource, device: str, model_cls: Any, processor_cls: Any) -> tuple[Any, Any]:
    """``model_cls`` and ``processor_cls`` ``from_pretrained`` from the source's folder, the model in
    eval mode on ``device``; anything that goes wrong is a ModelLoadError naming the model."""
    try:
        processor = processor_cls.from_pretrained(source.path)
        model = model_cls.from_pretrained(source.path)
    except Exception as exc:  # noqa: BLE001 - missing weights, wrong class, broken files
        raise wrap_load_error(source, exc) from exc
    return model.to(device).eval(), processor


def wrap_load_error(source: ModelSource, exc: Exception) -> ModelLoadError:
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return ModelLoadError(f"model {source.name} ({source.role}) at {source.path} does not load: {first}")


def audio_models(settings: Settings) -> tuple[ModelSource, ModelSource]:
    """The audio tagger's and the audio-text model's sources (profile, or the settings' overrides)."""
    return (
        resolve(model_name(settings, "audio_tagging"), "audio_tagging", settings),
        resolve(model_name(settings, "audio_text"), "audio_text", settings),
    )
