"""What `alref doctor` and `alref models` report: versions, devices, model availability."""

from __future__ import annotations

import importlib.metadata
import platform
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alref.config import Settings, load_settings
from alref.errors import AlrefError, InputError
from alref.threads import report as threads_report
from alref.tools.loading import (
    PROFILES,
    SMOKE_PREFIX,
    download,
    ensure_smoke_model,
    hub_cached_path,
    model_name,
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


def device_report(settings: Settings | None = None) -> dict[str, str]:
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        cuda = f"yes ({names}; torch CUDA {torch.version.cuda})"
    else:
        cuda = "no (CPU build of torch or no GPU visible)"
    found = {"auto": resolve_device("auto"), "cuda": cuda}
    if settings is not None and settings.device != "auto":
        try:
            found["configured"] = resolve_device(settings.device)
        except AlrefError as exc:  # a report: the problem is shown, not raised
            found["configured"] = f"{settings.device}: {exc}"
    return found


def availability(name: str, settings: Settings | None = None) -> tuple[bool, str]:
    settings = settings or load_settings()
    if name.startswith(SMOKE_PREFIX):
        folder = smoke_folder(name, settings)
        return True, ("built" if (folder / "config.json").is_file() else "built on first use (no download)")
    local = Path(name).expanduser()
    if local.is_dir():
        return True, f"local folder {local}"
    if name.startswith((".", "/", "~")) or name.count("/") > 1:  # meant as a folder, not a Hub id
        return False, f"no such folder {local}"
    cached = hub_cached_path(name)
    if cached is not None:
        return True, f"cached ({cached.name[:12]})"
    return False, "not cached: alref models pull " + name


def model_rows(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Every profile's models; then, as profile "configured", the models the settings name instead of
    their profile's (``--grounding-model PATH`` and the like)."""
    settings = settings or load_settings()

    def row(profile: str, role: str, name: str) -> dict[str, Any]:
        available, status = availability(name, settings)
        return {"profile": profile, "role": role, "model": name, "available": available, "status": status}

    rows = [row(profile, role, name) for profile, roles in PROFILES.items() for role, name in roles.items()]
    chosen = PROFILES.get(settings.models, {})
    overrides = {role: model_name(settings, role) for role in chosen}
    return rows + [row("configured", role, name) for role, name in overrides.items() if name != chosen[role]]


def llm_report(settings: Settings | None = None) -> dict[str, Any]:
    """Whether an LLM is configured and, if so, whether its server answers and lists the model.

    ``models`` is every id the server lists (None when it could not be asked); ``model_listed`` whether
    the configured model is among them (an Ollama id ``NAME:latest`` counts for ``NAME``). The key is sent
    to the server and reported only as "set" or "not set"."""
    settings = settings or load_settings()
    if not settings.llm_configured:
        why = "--no-llm" if settings.no_llm else "no --llm, --llm-base-url or API key"
        return {
            "configured": False,
            "summary": f"not configured ({why}): segment runs the GroundingDINO + SAM 2 baseline",
        }
    url = (settings.llm_base_url or "https://api.openai.com/v1").rstrip("/")
    key = settings.api_key
    model = settings.llm_model
    reachable, detail, models = _probe(url, key)
    listed = None if models is None else any(m in (model, f"{model}:latest") for m in models)
    if not reachable:
        verdict = f"NOT reachable: {detail}"
    elif listed is None:
        verdict = f"reachable, but {detail}"
    elif listed:
        verdict = f"reachable; the server lists {model}"
    elif models:
        verdict = (
            f"reachable, but the server does not list {model}; it lists {len(models)}: {', '.join(models)}"
        )
    else:
        verdict = f"reachable, but the server lists no models, so not {model}"
    return {
        "configured": True,
        "model": model,
        "base_url": url,
        "api_key": "set" if key else "not set",
        "reachable": reachable,
        "model_listed": listed,
        "models": models,
        "detail": detail,
        "summary": f"{model} at {url} (key {'set' if key else 'not set'}); {verdict}",
    }


def _probe(url: str, key: str | None) -> tuple[bool, str, list[str] | None]:
    """GET <base>/models with a short timeout: (reachable, what happened, the listed ids or None).
    The key is sent but never reported."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.get(f"{url}/models", headers=headers, timeout=5.0)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        reason = re.sub(r"^\[Errno -?\d+\]\s*", "", str(exc).strip()).lower()
        return False, f"{type(exc).__name__} on GET {url}/models" + (f": {reason}" if reason else ""), None
    if response.status_code in (401, 403):
        return True, f"HTTP {response.status_code} from {url}/models: the server refused the API key", None
    if response.status_code != 200:
        return False, f"HTTP {response.status_code} from {url}/models", None
    try:
        data = response.json().get("data")
        models = [str(m["id"]) for m in data if isinstance(m, dict) and m.get("id") is not None]
    except (ValueError, AttributeError, TypeError):
        return True, f"{url}/models did not answer an OpenAI model list", None
    return True, f"{len(models)} model(s) listed", models


def report(settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or load_settings()
    return {
        "versions": versions(),
        "profile": settings.models if settings.models in PROFILES else f"{settings.models} (unknown profile)",
        "device": device_report(settings),
        "threads": threads_report(),  # after device_report: torch is loaded, its own count is read
        "models": model_rows(settings),
        "llm": llm_report(settings),
    }


def pull(names: list[str], on_start: Callable[[str], None] | None = None) -> dict[str, str]:
    """Download (or for smoke, build) each profile's models or each named model; returns name -> folder."""
    settings = load_settings()
    wanted: list[str] = []
    for name in names:
        if name in PROFILES:
            # SAM 3 (gated on the Hub, 3.4 GB) only with the profiles built on it, or by its id
            roles = {
                r: m for r, m in PROFILES[name].items() if r != "concept_tracks" or name in ("sam3", "smoke")
            }
            wanted += [m for m in roles.values() if m not in wanted]
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
