"""What `alref doctor` and `alref models` report: versions, devices, model availability."""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alref.config import load_settings
from alref.errors import InputError
from alref.tools.loading import (
    PROFILES,
    SMOKE_PREFIX,
    download,
    ensure_smoke_model,
    hub_cached_path,
    resolve_device,
    smoke_folder,
)

_PACKAGES = ("alref", "torch", "transformers", "langgraph", "langchain-openai", "av", "numpy", "pycocotools")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def device_report() -> dict[str, str]:
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        cuda = f"yes ({names}; torch CUDA {torch.version.cuda})"
    else:
        cuda = "no (CPU build of torch or no GPU visible)"
    return {"auto": resolve_device("auto"), "cuda": cuda}


def availability(name: str) -> tuple[bool, str]:
    settings = load_settings()
    if name.startswith(SMOKE_PREFIX):
        folder = smoke_folder(name, settings)
        return True, ("built" if (folder / "config.json").is_file() else "built on first use (no download)")
    local = Path(name).expanduser()
    if local.is_dir():
        return True, f"local folder {local}"
    cached = hub_cached_path(name)
    if cached is not None:
        return True, f"cached ({cached.name[:12]})"
    return False, "not cached: alref models pull " + name


def model_rows() -> list[dict[str, Any]]:
    rows = []
    for profile, roles in PROFILES.items():
        for role, name in roles.items():
            available, status = availability(name)
            rows.append(
                {"profile": profile, "role": role, "model": name, "available": available, "status": status}
            )
    return rows


def llm_report() -> dict[str, Any]:
    settings = load_settings()
    if not settings.llm_configured:
        return {
            "configured": False,
            "summary": "not configured: segment runs the GroundingDINO + SAM 2 baseline",
        }
    url = (settings.llm_base_url or "https://api.openai.com/v1").rstrip("/")
    key = settings.api_key
    reachable, detail = _probe(url, key)
    return {
        "configured": True,
        "model": settings.llm_model,
        "base_url": url,
        "api_key": "set" if key else "not set",
        "reachable": reachable,
        "detail": detail,
        "summary": f"{settings.llm_model} at {url} (key {'set' if key else 'not set'}); "
        + ("reachable" if reachable else "NOT reachable")
        + f": {detail}",
    }


def _probe(url: str, key: str | None) -> tuple[bool, str]:
    """GET <base>/models with a short timeout; the key is sent but never reported."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.get(f"{url}/models", headers=headers, timeout=5.0)
    except httpx.HTTPError as exc:
        return False, type(exc).__name__
    if response.status_code == 200:
        try:
            models = [m.get("id") for m in response.json().get("data", [])][:5]
        except ValueError:
            models = []
        return True, "models: " + (", ".join(map(str, models)) or "none listed")
    return False, f"HTTP {response.status_code} from {url}/models"


def report() -> dict[str, Any]:
    return {"versions": versions(), "device": device_report(), "models": model_rows(), "llm": llm_report()}


def pull(names: list[str], on_start: Callable[[str], None] | None = None) -> dict[str, str]:
    """Download (or for smoke, build) each profile's models or each named model; returns name -> folder."""
    settings = load_settings()
    wanted: list[str] = []
    for name in names:
        if name in PROFILES:
            wanted += [m for m in PROFILES[name].values() if m not in wanted]
        elif "/" in name or name.startswith(SMOKE_PREFIX):
            wanted.append(name)
        else:
            raise InputError(
                f"'{name}' is neither a profile ({', '.join(PROFILES)}) nor a Hugging Face id (org/name)"
            )
    done: dict[str, str] = {}
    for name in wanted:
        if on_start:
            on_start(name)
        if name.startswith(SMOKE_PREFIX):
            folder = smoke_folder(name, settings)
            done[name] = str(ensure_smoke_model(name.removeprefix(SMOKE_PREFIX), folder.parent))
        else:
            done[name] = str(download(name, explicit=True))
    return done
