"""One settings object for the whole tool.

Precedence, lowest first: built-in defaults < config file < ``ALREF_*`` environment variables <
explicit arguments (CLI flags or keyword arguments of :func:`alref.segment`).

The config file is TOML with the same keys as the fields below (``clip_frames = 50``). It is read
from ``--config PATH`` / ``ALREF_CONFIG``, else ``./alref.toml``, else ``~/.config/alref/config.toml``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from alref.config_mcp import McpSettings
from alref.errors import ConfigError
from alref.threads import use_threads

Device = Literal["auto", "cuda", "mps", "cpu"]
PivotRule = Literal["best", "first", "middle"]
Precision = Literal["auto", "float32", "bfloat16"]


@dataclass(frozen=True)
class Cli:
    """How a setting shows on the command line; :mod:`alref.options` reads it from the field's
    ``Annotated`` metadata. The flag's name, type, help and default come from the field itself: a field
    ``clip_frames: int = Field(50, description="frames per clip")`` is ``--clip-frames`` (an integer)
    with that help and ``[default: 50]``; a bool is a switch, ``--name`` when its default is off and
    ``--name/--no-name`` when it is on. A field without ``Cli`` is still a flag, in the Options panel."""

    panel: str = ""  # the help panel the flag is listed in ("" = Options)
    not_a_flag: str = ""  # why the setting is only a config-file key and environment variable


MODELS = Cli("Models")
METHOD = Cli("Method")
LLM = Cli("LLM (GPT-PS agent; the key comes from ALREF_LLM_API_KEY or OPENAI_API_KEY)")
SOUND = Cli("Sound as the reference")
OUTPUTS = Cli("Outputs")
PANELS = (MODELS, METHOD, LLM, SOUND, OUTPUTS)  # the order of the help panels
SECRET = Cli(not_a_flag="a key on the command line lands in the shell history and `ps`")
TABLE = Cli(not_a_flag="a table of servers, each with its command or url: set it in alref.toml")


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


# settings that change how a run goes, not what it writes
NOT_IDENTITY = ("overlap", "threads", "mcp")


class Settings(BaseSettings):
    """Every knob of alref. Each field is also the environment variable ``ALREF_<FIELD>`` and, unless its
    :class:`Cli` says otherwise, the flag ``--<field-name>`` of ``alref segment`` (see alref/options.py)."""

    model_config = SettingsConfigDict(env_prefix="ALREF_", extra="forbid", validate_assignment=True)

    # models
    models: Annotated[str, MODELS] = Field(
        "default",
        description="model profile: default (the paper's models), fast or smoke (tiny random models)",
    )
    grounding_model: Annotated[str | None, MODELS] = Field(
        None, description="GroundingDINO: Hugging Face id or local folder (overrides the profile)"
    )
    segmentation_model: Annotated[str | None, MODELS] = Field(
        None, description="SAM 2 video: Hugging Face id or local folder (overrides the profile)"
    )
    concept_tracks_model: Annotated[str | None, MODELS] = Field(
        None, description="SAM 3 concept tracks (--strategy tracks): Hugging Face id or local folder"
    )
    grounding: Annotated[str | None, MODELS] = Field(
        None, description="grounding tool by name (see `alref tools list`); empty = grounding-dino"
    )
    segmentation: Annotated[str | None, MODELS] = Field(
        None, description="segmentation tool by name; empty = sam2-video"
    )
    device: Annotated[Device, MODELS] = Field(
        "auto", description="where the models run: auto = cuda, then mps, then cpu"
    )
    precision: Annotated[Precision, MODELS] = Field(
        "auto", description="SAM 2 compute dtype: auto = bfloat16 on CUDA, float32 elsewhere"
    )
    offload_video: Annotated[bool, MODELS] = Field(
        False, description="keep preprocessed frames on the CPU (CUDA only; saves GPU memory)"
    )
    offload_state: Annotated[bool, MODELS] = Field(
        False, description="keep SAM 2 memory state on the CPU (CUDA only)"
    )
    cond_frames: Annotated[int, MODELS] = Field(
        4,
        ge=0,
        description="prompted frames SAM 2's memory attention reads per frame at most, the nearest first "
        "(as SAM 3's tracker); 0 = all of them, as SAM 2's configs say (the cost per frame then grows "
        "with the prompts: one per clip)",
    )
    threads: Annotated[int | None, MODELS] = Field(
        None,
        ge=1,
        description="torch CPU threads; empty = OMP_NUM_THREADS, else every usable CPU (idle ones sleep: "
        "OMP_WAIT_POLICY=PASSIVE unless the environment names a policy; see alref/threads.py)",
    )
    offline: Annotated[bool, MODELS] = Field(
        False, description="never try to download a model (also set by HF_HUB_OFFLINE=1)"
    )
    cache_dir: Annotated[Path, MODELS] = Field(
        default_factory=default_cache_dir, description="where smoke models and LLM answers are kept"
    )

    audio_tagging_model: Annotated[str | None, SOUND] = Field(
        None, description="AudioSet tagger: Hugging Face id or local folder"
    )
    audio_text_model: Annotated[str | None, SOUND] = Field(
        None, description="CLAP audio-text model: Hugging Face id or local folder"
    )

    # the method
    clip_frames: Annotated[int, METHOD] = Field(50, ge=1, description="frames per clip")
    samples: Annotated[int, METHOD] = Field(
        5, ge=1, description="frames sampled per clip (evenly spaced, first and last included)"
    )
    box_threshold: Annotated[float, METHOD] = Field(
        0.15, ge=0.0, le=1.0, description="GroundingDINO box threshold (low: candidates, not answers)"
    )
    text_threshold: Annotated[float, METHOD] = Field(
        0.2, ge=0.0, le=1.0, description="GroundingDINO text threshold"
    )
    top_k: Annotated[int, METHOD] = Field(10, ge=1, description="candidate boxes kept per frame")
    pivot: Annotated[PivotRule, METHOD] = Field(
        "best", description="baseline pivot frame: best detection score, first or middle sample"
    )
    detect_batch: Annotated[int, METHOD] = Field(4, ge=1, description="frames per GroundingDINO call")

    # the strategy
    strategy: Annotated[Literal["pivot", "tracks"], METHOD] = Field(
        "pivot",
        description="pivot: the LLM picks a frame and a box per clip, SAM 2 propagates (AL-Ref-SAM 2); tracks: SAM 3 "
        "tracks the referent's concept and the LLM accepts or rejects each track (AgentRVOS)",
    )
    track_concepts: Annotated[int, METHOD] = Field(
        3, ge=1, le=8, description="tracks: concepts tried at most (the LLM's first, then its alternatives)"
    )
    track_candidates: Annotated[int, METHOD] = Field(
        10, ge=1, le=14, description="tracks: candidate tracks judged at most (the best-scoring ones)"
    )
    track_rounds: Annotated[int, METHOD] = Field(
        3,
        ge=1,
        le=10,
        description="tracks: judging rounds at most (each shows only the uncertain candidates)",
    )
    track_frames: Annotated[int, METHOD] = Field(
        6, ge=1, le=16, description="tracks: frames shown per judging round"
    )
    describe_candidates: Annotated[bool, METHOD] = Field(
        False, description="tracks: ask for a short description of each candidate before judging"
    )

    # sound as the reference
    audio_top_k: Annotated[int, SOUND] = Field(5, ge=1, le=50, description="AudioSet labels offered to LBRU")
    categories: Annotated[Path | None, SOUND] = Field(
        None,
        description="closed vocabulary: a file, one category per line, or 'avsbench' for the AVSBench classes",
    )
    lbru_frames: Annotated[int, SOUND] = Field(8, ge=1, le=32, description="frames tiled for LBRU")
    event_threshold: Annotated[float, SOUND] = Field(
        0.5, ge=-1.0, le=1.0, description="cosine similarity below which a new sound event starts"
    )
    energy_db: Annotated[float, SOUND] = Field(
        -45.0, le=0.0, description="a one-second window quieter than this (dBFS) is silent"
    )
    silence_threshold: Annotated[float, SOUND] = Field(
        0.5, ge=0.0, le=1.0, description="a window whose Silence score is above this is silent"
    )
    keep_silent: Annotated[bool, SOUND] = Field(False, description="keep masks where the object is silent")

    # visual prompts
    tile_columns: Annotated[int, METHOD] = Field(
        0, ge=0, description="tile grid columns; 0 = as square as possible"
    )
    tile_max_side: Annotated[int, METHOD] = Field(
        2048, ge=256, description="longest side of a tiled image, pixels"
    )

    # the LLM (GPT-PS). Configured when a base URL, an API key or --llm is given.
    llm: Annotated[str | None, LLM] = Field(
        None, description="vision chat model name, e.g. gpt-4o; setting it turns the agent on"
    )
    no_llm: Annotated[bool, LLM] = Field(False, description="run the baseline even when an LLM is configured")
    llm_base_url: Annotated[str | None, LLM] = Field(
        None, description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (vLLM, Ollama, LM Studio)"
    )
    llm_api_key: Annotated[SecretStr | None, SECRET] = Field(
        None, description="API key (else OPENAI_API_KEY); never logged"
    )
    llm_temperature: Annotated[float, LLM] = Field(0.0, ge=0.0, le=2.0, description="sampling temperature")
    llm_seed: Annotated[int | None, LLM] = Field(
        0, description="sampling seed sent to the server (None to omit)"
    )
    llm_max_tokens: Annotated[int, LLM] = Field(
        2048, ge=16, description="answer budget of a free-text step (event and box descriptions, the chat)"
    )
    llm_json_max_tokens: Annotated[int, LLM] = Field(
        512, ge=16, description="answer budget of a JSON answer (frame, box, subject), so a model that repeats "
        "itself stops early; an answer cut at it is asked again with twice the budget, up to 4 times it",
    )  # fmt: skip
    llm_timeout: Annotated[float, LLM] = Field(120.0, gt=0, description="seconds per HTTP request")
    llm_image_detail: Annotated[Literal["auto", "low", "high"], LLM] = Field(
        "high", description="the detail the server is asked to see the images at"
    )
    llm_max_image_side: Annotated[int, LLM] = Field(
        1536, ge=64, description="images sent to the LLM are downscaled to this longest side"
    )
    llm_retries: Annotated[int, LLM] = Field(
        2, ge=0, description="re-asks after an invalid answer before the baseline fallback"
    )
    llm_transport_retries: Annotated[int, LLM] = Field(
        4, ge=0, description="retries after a timeout, 429, 5xx or refused connection"
    )
    llm_backoff: Annotated[float, LLM] = Field(
        1.0, ge=0.0, description="first backoff in seconds (doubles per retry; Retry-After wins)"
    )
    llm_concurrency: Annotated[int, LLM] = Field(
        4,
        ge=1,
        description="clips (and references) reasoned about at once; with Ray, LLM calls at once across the cluster",
    )
    llm_json: Annotated[Literal["auto", "json_schema", "none"], LLM] = Field(
        "auto", description="structured output: auto = JSON schema, dropped if the server rejects it"
    )
    cache: Annotated[bool, LLM] = Field(
        True, description="keep LLM answers on disk and reuse them; --no-cache neither reads nor writes them"
    )
    not_found: Annotated[Literal["empty", "baseline"], LLM] = Field(
        "empty",
        description="when the LLM says no box fits in every clip: empty masks, or the baseline decision",
    )
    strict_llm: Annotated[bool, LLM] = Field(
        False,
        description="exit 5 (after writing every output) when any LLM decision fell back to the baseline",
    )
    ask: Annotated[bool, LLM] = Field(
        False,
        description="when the sentence fits several candidates equally, ask (on the terminal) instead of "
        "deciding by --ambiguous; the chat, the app and the LangGraph server always ask",
    )
    ambiguous: Annotated[Literal["best", "all", "not-found"], LLM] = Field(
        "best",
        description="when several candidates fit equally and nobody is asked: the LLM's pick (best), every "
        "one of them (all), or none (not-found); the run records that it was ambiguous",
    )
    verify: Annotated[bool, LLM] = Field(
        True,
        description="after propagation, show the LLM frames with the masks outlined and act on its verdict "
        "(wrong object: the next candidate; target absent: empty masks); on when an LLM is configured",
    )
    verify_rounds: Annotated[int, LLM] = Field(
        1, ge=1, le=5, description="verifications at most (each may change the masks and look again)"
    )
    verify_frames: Annotated[int, LLM] = Field(
        6, ge=1, le=16, description="frames shown per verification (evenly spaced; flagged frames added)"
    )

    # outputs
    overlay: Annotated[bool, OUTPUTS] = Field(True, description="write overlay.mp4")
    keep_work: Annotated[bool, OUTPUTS] = Field(
        False, description="keep the decoded frames in <out>/work after a finished run (or chat)"
    )
    overlap: Annotated[bool, OUTPUTS] = Field(
        True,
        description="detect while decoding, let the LLM agent reason while both go on, and write mask PNGs on a "
        "thread while SAM 2 propagates (same outputs); --no-overlap runs one stage after another",
    )

    # tools from MCP servers, for the chat agent (alref/config_mcp.py shows the tables)
    mcp: Annotated[McpSettings, TABLE] = Field(
        default_factory=McpSettings,
        description="MCP servers whose tools the chat offers: mcp.servers.NAME tables with command, args, env, "
        "cwd (stdio) or url, headers (streamable HTTP); optional tools, timeout, startup_timeout",
    )

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
        data["mcp"] = self.mcp.public()
        return data

    def identity_dict(self) -> dict[str, Any]:
        """The settings that decide what a run writes (a finished run with the same ones is not redone):
        :meth:`public_dict` without where caches live and how the stages are scheduled."""
        return {k: v for k, v in self.public_dict().items() if k not in NOT_IDENTITY} | {"cache_dir": None}


def load_settings(**overrides: Any) -> Settings:
    """Build settings from defaults, the config file, the environment and ``overrides``.

    ``None`` overrides are ignored so a CLI flag that was not given does not mask the environment.
    A ``threads`` setting is applied to torch here (:func:`alref.threads.use_threads`): every entry
    point loads its settings before it runs a model.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
    use_threads(settings.threads)
    return settings
