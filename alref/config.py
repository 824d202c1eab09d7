"""One settings object for the whole tool.

Precedence, lowest first: built-in defaults < config file < ``ALREF_*`` environment variables <
explicit arguments (CLI flags or keyword arguments of :func:`alref.segment`).

The config file is TOML with the same keys as the fields below (``clip_frames = 50``). It is read
from ``--config PATH`` / ``ALREF_CONFIG``, else ``./alref.toml``, else ``~/.config/alref/config.toml``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from alref.errors import ConfigError

Device = Literal["auto", "cuda", "mps", "cpu"]
PivotRule = Literal["best", "first", "middle"]
Precision = Literal["auto", "float32", "bfloat16"]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "alref"


def _config_file_path() -> Path | None:
    explicit = os.environ.get("ALREF_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} (from ALREF_CONFIG) does not exist")
        return path
    for candidate in (Path("alref.toml"), Path.home() / ".config" / "alref" / "config.toml"):
        if candidate.is_file():
            return candidate
    return None


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the config file; unknown keys are an error so typos do not pass silently."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self.path = _config_file_path()
        self.data: dict[str, Any] = {}
        if self.path is not None:
            try:
                self.data = tomllib.loads(self.path.read_text())
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"config file {self.path} does not parse: {exc}") from None
            unknown = sorted(set(self.data) - set(settings_cls.model_fields))
            if unknown:
                raise ConfigError(f"config file {self.path}: unknown setting(s) {', '.join(unknown)}")

    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ is used instead
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


class Settings(BaseSettings):
    """Every knob of alref. Each field is also the environment variable ``ALREF_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="ALREF_", extra="forbid", validate_assignment=True)

    # models
    models: str = Field(
        "default", description="model profile: 'default' (the paper's models) or 'smoke' (tiny random models)"
    )
    grounding_model: str | None = Field(
        None, description="GroundingDINO: Hugging Face id or local folder (overrides the profile)"
    )
    segmentation_model: str | None = Field(
        None, description="SAM 2 video: Hugging Face id or local folder (overrides the profile)"
    )
    grounding: str | None = Field(
        None, description="grounding tool by name (`alref tools list`); empty = grounding-dino"
    )
    segmentation: str | None = Field(None, description="segmentation tool by name; empty = sam2-video")
    device: Device = "auto"
    precision: Precision = Field(
        "auto", description="SAM 2 compute dtype: auto = bfloat16 on CUDA, float32 elsewhere"
    )
    offload_video: bool = Field(
        False, description="keep preprocessed frames on the CPU (CUDA only; saves GPU memory)"
    )
    offload_state: bool = Field(False, description="keep SAM 2 memory state on the CPU (CUDA only)")
    offline: bool = Field(False, description="never try to download a model (also set by HF_HUB_OFFLINE=1)")
    cache_dir: Path = Field(
        default_factory=default_cache_dir, description="where smoke models and LLM answers are kept"
    )

    audio_tagging_model: str | None = Field(
        None, description="AudioSet tagger: Hugging Face id or local folder"
    )
    audio_text_model: str | None = Field(
        None, description="CLAP audio-text model: Hugging Face id or local folder"
    )

    # the method
    clip_frames: int = Field(50, ge=1, description="frames per clip")
    samples: int = Field(5, ge=1, description="frames sampled per clip")
    box_threshold: float = Field(0.15, ge=0.0, le=1.0)
    text_threshold: float = Field(0.2, ge=0.0, le=1.0)
    top_k: int = Field(10, ge=1, description="candidate boxes kept per frame")
    pivot: PivotRule = Field(
        "best", description="baseline pivot frame: best detection score, first or middle sample"
    )
    detect_batch: int = Field(4, ge=1, description="frames per GroundingDINO call")

    # sound as the reference
    audio_top_k: int = Field(5, ge=1, le=50, description="AudioSet labels offered to LBRU")
    categories: Path | None = Field(None, description="closed vocabulary file, one category per line")
    lbru_frames: int = Field(8, ge=1, le=32, description="frames tiled for LBRU")
    event_threshold: float = Field(
        0.5, ge=-1.0, le=1.0, description="cosine similarity below which a new sound event starts"
    )
    energy_db: float = Field(
        -45.0, le=0.0, description="a one-second window quieter than this (dBFS) is silent"
    )
    silence_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="a window whose Silence score is above this is silent"
    )
    keep_silent: bool = Field(False, description="keep masks where the object is silent")

    # visual prompts
    tile_columns: int = Field(0, ge=0, description="tile grid columns; 0 = as square as possible")
    tile_max_side: int = Field(2048, ge=256, description="longest side of a tiled image, pixels")

    # the LLM (GPT-PS). Configured when a base URL, an API key or --llm is given.
    llm: str | None = Field(
        None, description="vision chat model name, e.g. gpt-4o; setting it turns the agent on"
    )
    no_llm: bool = Field(False, description="run the baseline even when an LLM is configured")
    llm_base_url: str | None = Field(
        None, description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (vLLM, Ollama, LM Studio)"
    )
    llm_api_key: SecretStr | None = Field(None, description="API key (else OPENAI_API_KEY); never logged")
    llm_temperature: float = Field(0.0, ge=0.0, le=2.0)
    llm_seed: int | None = Field(0, description="sampling seed sent to the server (None to omit)")
    llm_max_tokens: int = Field(
        2048, ge=16, description="answer budget per call; generous, a cut JSON answer fails to parse"
    )
    llm_timeout: float = Field(120.0, gt=0, description="seconds per HTTP request")
    llm_image_detail: Literal["auto", "low", "high"] = "high"
    llm_max_image_side: int = Field(
        1536, ge=64, description="images sent to the LLM are downscaled to this longest side"
    )
    llm_retries: int = Field(
        2, ge=0, description="re-asks after an invalid answer before the baseline fallback"
    )
    llm_transport_retries: int = Field(
        4, ge=0, description="retries after a timeout, 429, 5xx or refused connection"
    )
    llm_backoff: float = Field(
        1.0, ge=0.0, description="first backoff in seconds (doubles per retry; Retry-After wins)"
    )
    llm_concurrency: int = Field(4, ge=1, description="clips (and references) reasoned about at once")
    llm_json: Literal["auto", "json_schema", "none"] = Field(
        "auto", description="structured output: auto = JSON schema, dropped if the server rejects it"
    )
    cache: bool = Field(True, description="cache LLM answers on disk (--no-cache to bypass)")
    not_found: Literal["empty", "baseline"] = Field(
        "empty",
        description="when the LLM says no box fits in every clip: empty masks, or the baseline decision",
    )

    # outputs
    overlay: bool = Field(True, description="write overlay.mp4")
    keep_work: bool = Field(False, description="keep the decoded frames in <out>/work after a finished run")

    @field_validator("cache_dir", "categories", mode="before")
    @classmethod
    def _expand(cls, value: Any) -> Any:
        return Path(value).expanduser() if isinstance(value, str | Path) and str(value) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    @property
    def is_offline(self) -> bool:
        return self.offline or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false")

    @property
    def api_key(self) -> str | None:
        if self.llm_api_key is not None:
            return self.llm_api_key.get_secret_value()
        return os.environ.get("OPENAI_API_KEY") or None

    @property
    def llm_configured(self) -> bool:
        """The agent runs when a model, a server or a key is given; otherwise the baseline."""
        return not self.no_llm and bool(self.llm or self.llm_base_url or self.api_key)

    @property
    def llm_model(self) -> str:
        return self.llm or "gpt-4o"

    def public_dict(self) -> dict[str, Any]:
        """Settings as written to result.json: paths as strings, the API key never."""
        data = self.model_dump(mode="json")
        data["llm_api_key"] = "set" if self.api_key else None
        return data


def load_settings(**overrides: Any) -> Settings:
    """Build settings from defaults, the config file, the environment and ``overrides``.

    ``None`` overrides are ignored so a CLI flag that was not given does not mask the environment.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
