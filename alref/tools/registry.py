"""The tool registry: which implementation fills each role, built in or from another package.

A tool is a :class:`ToolSpec`: a name, a role, a description, a loader that returns the implementation
for a device, and optionally the typed arguments and the builder of its LangChain tool. alref registers
its own (``grounding-dino``, ``sam2-video``, ``ast-audioset``, ``clap``, and SAM 3's ``sam3``,
``sam3-tracker``, ``sam3-tracks``); any installed distribution adds more through the ``alref.tools``
entry-point group::

    [project.entry-points."alref.tools"]
    color-boxes = "alref_example_grounding:spec"

The entry point's object is a ToolSpec, a list of them, or a zero-argument callable returning either.
A plugin that does not import, gives something else or reuses a taken name is listed as broken by
``alref tools list`` (:func:`broken`) and otherwise ignored: it never breaks alref.

What a role's implementation (the object the loader returns) must provide:

- ``grounding`` (:class:`Grounder`): ``detect(images, phrase, box_threshold, text_threshold, top_k,
  batch_size) -> list[list[Detection]]``: for each RGB uint8 HxWx3 image, at most ``top_k``
  :class:`~alref.tools.grounding.Detection` best first, boxes ``(x0, y0, x1, y1)`` in pixels of that
  image. Thresholds an implementation has no use for may be ignored.
- ``segmentation`` (:class:`Segmenter`): ``image_size``, ``prepare_frame`` and ``start_session``, whose
  session (:class:`SegmenterSession`) has ``add_box``, ``propagate``, ``remove_object`` and ``reset``.
- ``audio_tagging`` / ``audio_text``: the methods of ``AudioTagger`` / ``AudioTextMatcher``.
- ``concept_tracks`` (:class:`ConceptTracker`): ``image_size``, ``prepare_frame`` (as for segmentation)
  and ``track(frames, height, width, concept, progress=None)``, every instance of the concept over the
  whole video as :class:`~alref.tools.sam3.ConceptTracks` (``tracks``, ``mask(track_id, frame)``,
  ``to_json()``; alref passes ``streamed=True`` to a ``to_json`` that names it, for mappings it may read
  one item at a time while it writes them).
- any other role: nothing in the pipeline calls it; the chat agent offers its ``make_tool`` tool.

The loader is called as ``loader(source, device)``: ``source`` is the resolved
:class:`~alref.tools.loading.ModelSource`, or None for a tool without a model (``default_model=None``);
``device`` is ``cuda``, ``mps`` or ``cpu``. Role options (segmentation and concept_tracks: ``precision``,
``offload_video``, ``offload_state``; segmentation: ``max_cond_frames``, the ``cond_frames`` setting) are passed as keywords to loaders that name them or take
``**options``. A built-in tool's model comes from the model profile (``--models``); a profile may mean
its model for a role for another built-in tool than the role's default (``--models sam3``: grounding
``sam3``, segmentation ``sam3-tracker``), which is then the role's default under that profile.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel

from alref.errors import AlrefError, InputError, ModelLoadError

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.tools import BaseTool

    from alref.config import Settings
    from alref.core.records import Detection
    from alref.tools.loading import ModelSource
    from alref.tools.segmentation import FrameStore

__all__ = ["BUILTIN", "DEFAULTS", "GROUP", "BrokenTool", "ConceptTracker", "Grounder", "Segmenter"]
__all__ += ["SegmenterSession", "default_tool"]
__all__ += [
    "Models",
    "ToolSpec",
    "broken",
    "for_role",
    "model_source",
    "one_line",
    "registry",
    "resolve_models",
]
__all__ += ["select"]

GROUP = "alref.tools"
BUILTIN = "alref"
#: role -> the built-in tool used when no name is given
DEFAULTS = {
    "grounding": "grounding-dino",
    "segmentation": "sam2-video",
    "audio_tagging": "ast-audioset",
    "audio_text": "clap",
    "concept_tracks": "sam3-tracks",
}


# ----------------------------------------------------------------------------------------------
# what an implementation provides


@runtime_checkable
class Grounder(Protocol):
    """A grounding implementation: boxes for the thing a phrase names, per image."""

    def detect(
        self,
        images: Sequence[np.ndarray],
        phrase: str,
        box_threshold: float = 0.15,
        text_threshold: float = 0.2,
        top_k: int = 10,
        batch_size: int = 4,
    ) -> list[list[Detection]]: ...


@runtime_checkable
class SegmenterSession(Protocol):
    """Box prompts and propagation over one video (masks are HxW bool arrays in video pixels)."""

    @property
    def num_frames(self) -> int: ...

    def add_box(self, frame_idx: int, obj_id: int, box: Sequence[float]) -> np.ndarray: ...

    def propagate(
        self, start_frame: int, progress: Callable[[int], None] | None = None
    ) -> Iterator[tuple[int, dict[int, np.ndarray]]]: ...

    def remove_object(self, obj_id: int) -> None: ...

    def reset(self) -> None: ...


@runtime_checkable
class Segmenter(Protocol):
    """A video segmentation implementation; ``prepare_frame`` fills the frame store once per video."""

    @property
    def image_size(self) -> int: ...

    def prepare_frame(self, frame: np.ndarray) -> np.ndarray: ...

    def start_session(self, frames: FrameStore, height: int, width: int) -> SegmenterSession: ...


@runtime_checkable
class ConceptTracker(Protocol):
    """A concept-tracks implementation: every instance of a noun phrase, tracked over a video."""

    @property
    def image_size(self) -> int: ...

    def prepare_frame(self, frame: np.ndarray) -> np.ndarray: ...

    def track(
        self,
        frames: FrameStore,
        height: int,
        width: int,
        concept: str,
        progress: Callable[[int], None] | None = None,
    ) -> Any: ...


# ----------------------------------------------------------------------------------------------
# tool specs


@dataclass(frozen=True)
class ToolSpec:
    """One tool: what fills a role, how to load it, and its LangChain tool."""

    name: str
    role: str
    description: str
    loader: Callable[..., Any]  # (source: ModelSource | None, device: str, **options) -> implementation
    #: the typed arguments of its LangChain tool (or a zero-argument callable returning them, for laziness)
    args_schema: type[BaseModel] | Callable[[], type[BaseModel]] | None = None
    make_tool: Callable[[Callable[[], Any]], BaseTool] | None = None  # from a getter of the implementation
    default_model: str | None = None  # None: the tool has no model
    origin: str = BUILTIN  # "alref" or the distribution that registered it
    version: str = ""  # that distribution's version

    def schema(self) -> type[BaseModel] | None:
        if self.args_schema is None or isinstance(self.args_schema, type):
            return self.args_schema
        return self.args_schema()

    def load(self, source: ModelSource | None, device: str, **options: Any) -> Any:
        """The implementation on ``device``; a plugin's failure becomes a ModelLoadError."""
        try:
            return self.loader(source, device, **_accepted(self.loader, options))
        except AlrefError:
            raise
        except Exception as exc:
            if self.origin == BUILTIN:
                raise
            raise ModelLoadError(
                f"tool {self.name} (from {self.origin}) does not load: {one_line(exc)}"
            ) from exc

    def describe(self) -> dict[str, Any]:
        return {"tool": self.name, "origin": self.origin, "version": self.version}


@dataclass(frozen=True)
class BrokenTool:
    """An entry point that could not be registered."""

    name: str
    origin: str
    error: str


def _accepted(func: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return {}
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return options
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in options.items() if k in names}


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


# ----------------------------------------------------------------------------------------------
# the built-in tools (imported lazily: reading the registry must not import torch)


def _attr(module: str, name: str) -> Callable[[], Any]:
    return lambda: getattr(importlib.import_module(f"alref.tools.{module}"), name)


def _model_loader(module: str, cls: str) -> Callable[..., Any]:
    def load(source: ModelSource | None, device: str, **options: Any) -> Any:
        if source is None:
            raise InputError(f"the built-in {cls} needs a model")
        load_cls = _attr(module, cls)().load
        return load_cls(source, device, **_accepted(load_cls, options))

    return load


def _make_grounding_tool(get: Callable[[], Any]) -> BaseTool:
    return _attr("grounding", "make_grounding_tool")()(get)


SAM3 = "facebook/sam3"


def _builtins() -> list[ToolSpec]:
    from alref.tools.loading import PROFILES

    model = PROFILES["default"]
    return [
        ToolSpec("grounding-dino", "grounding", "GroundingDINO: boxes for the objects a phrase names",
                 _model_loader("grounding", "GroundingDetector"), _attr("grounding", "GroundPhraseArgs"),
                 _make_grounding_tool, model["grounding"]),
        ToolSpec("sam2-video", "segmentation", "SAM 2 video: masks from box prompts, propagated",
                 _model_loader("segmentation", "Sam2VideoSegmenter"),
                 _attr("segmentation", "SegmentFromBoxArgs"), None, model["segmentation"]),
        ToolSpec("ast-audioset", "audio_tagging", "AST: AudioSet sound classes over time",
                 _model_loader("audio_tagging", "AudioTagger"), _attr("audio_tagging", "TagAudioArgs"),
                 None, model["audio_tagging"]),
        ToolSpec("clap", "audio_text", "CLAP: audio and text embeddings, for sound events",
                 _model_loader("audio_text", "AudioTextMatcher"), None, None, model["audio_text"]),
        ToolSpec("sam3", "grounding", "SAM 3: boxes for every object a short noun phrase names",
                 _model_loader("sam3", "Sam3Grounder"), _attr("grounding", "GroundPhraseArgs"), None, SAM3),
        ToolSpec("sam3-tracker", "segmentation", "SAM 3 tracker: masks from box prompts, propagated",
                 _model_loader("sam3", "Sam3TrackerSegmenter"), _attr("segmentation", "SegmentFromBoxArgs"),
                 None, SAM3),
        ToolSpec("sam3-tracks", "concept_tracks", "SAM 3 video: every instance of a noun phrase, tracked",
                 _model_loader("sam3", "Sam3ConceptTracker"), None, None, model["concept_tracks"]),
    ]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# the registry

_lock = threading.Lock()
_scanned: tuple[dict[str, ToolSpec], list[BrokenTool]] | None = None


def _specs_of(obj: Any) -> list[ToolSpec]:
    if callable(obj) and not isinstance(obj, ToolSpec):
        obj = obj()
    items = list(obj) if isinstance(obj, list | tuple) else [obj]
    for item in items:
        if not isinstance(item, ToolSpec):
            raise TypeError(f"expected an alref ToolSpec (or a list of them), got {type(item).__name__}")
        if not (item.name and item.role and isinstance(item.name, str) and isinstance(item.role, str)):
            raise TypeError("a ToolSpec needs a non-empty name and role")
        if not callable(item.loader):
            raise TypeError(f"tool {item.name}: loader is not callable")
    return items


def _scan() -> tuple[dict[str, ToolSpec], list[BrokenTool]]:
    tools = {spec.name: spec for spec in _builtins()}
    problems: list[BrokenTool] = []
    points = sorted(entry_points(group=GROUP), key=lambda ep: (ep.dist.name if ep.dist else "", ep.name))
    for ep in points:
        origin = ep.dist.name if ep.dist else "?"
        try:
            specs = _specs_of(ep.load())
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a broken plugin is reported, never raised
            problems.append(BrokenTool(ep.name, origin, one_line(exc)))
            continue
        for spec in specs:
            if spec.name in tools:
                taken = tools[spec.name].origin
                problems.append(BrokenTool(spec.name, origin, f"the name is already used by {taken}"))
                continue
            tools[spec.name] = replace(spec, origin=origin, version=ep.dist.version if ep.dist else "")
    return tools, problems


def _state(refresh: bool) -> tuple[dict[str, ToolSpec], list[BrokenTool]]:
    global _scanned
    with _lock:
        if _scanned is None or refresh:
            _scanned = _scan()
        return _scanned


def registry(refresh: bool = False) -> dict[str, ToolSpec]:
    """Every usable tool by name: the built-ins, then the plugins (read once; ``refresh`` rereads)."""
    return dict(_state(refresh)[0])


def broken(refresh: bool = False) -> list[BrokenTool]:
    """The plugins that could not be registered, with why."""
    return list(_state(refresh)[1])


def for_role(role: str) -> list[ToolSpec]:
    """The tools of ``role``, built-ins first."""
    found = [spec for spec in registry().values() if spec.role == role]
    return sorted(found, key=lambda s: (s.origin != BUILTIN, s.name))


def select(role: str, name: str | None = None) -> ToolSpec:
    """The tool ``name`` for ``role``; None is the built-in default (or the role's only tool)."""
    tools = for_role(role)
    names = ", ".join(s.name for s in tools) or "none"
    if name is None:
        default = DEFAULTS.get(role)
        if default is None and len(tools) == 1:
            return tools[0]
        if default is None:
            raise InputError(f"no default tool for the role '{role}'; choose one of: {names}")
        name = default
    for spec in tools:
        if spec.name == name:
            return spec
    other = registry().get(name)
    if other is not None:
        raise InputError(f"tool '{name}' is a {other.role} tool, not {role}; {role} tools: {names}")
    for bad in broken():
        if bad.name == name:
            raise InputError(f"tool '{name}' (from {bad.origin}) is installed but broken: {bad.error}")
    raise InputError(
        f"unknown {role} tool '{name}'; installed {role} tools: {names} (see `alref tools list`)"
    )


def default_tool(role: str, settings: Settings) -> str | None:
    """The built-in tool a role uses when none is named: the one the model profile's model is for (the
    ``sam3`` profile: ``sam3`` for grounding, ``sam3-tracker`` for segmentation), else DEFAULTS'."""
    from alref.tools.loading import profile_tool

    return profile_tool(settings, role, DEFAULTS.get(role))


def model_source(spec: ToolSpec, settings: Settings) -> ModelSource | None:
    """The model ``spec`` loads: the profile's (built-ins), ``--<role>-model``, or its default."""
    from alref.tools.loading import resolve, tool_model_name

    if spec.origin == BUILTIN and spec.role in DEFAULTS:
        name = tool_model_name(settings, spec.role, spec.name, DEFAULTS[spec.role], spec.default_model)
        if name is None:
            raise InputError(
                f"the built-in tool {spec.name} has no model for the profile '{settings.models}'"
            )
        return resolve(name, spec.role, settings)
    if spec.default_model is None:
        return None
    name = getattr(settings, f"{spec.role}_model", None) or spec.default_model
    return resolve(name, spec.role, settings)


@dataclass
class Models:
    """The tools a run uses for grounding and segmentation, and where their models come from."""

    grounding: ModelSource | None  # None: the tool has no model
    segmentation: ModelSource | None
    device: str
    grounding_tool: ToolSpec
    segmentation_tool: ToolSpec

    @property
    def smoke(self) -> bool:
        return any(s is not None and s.smoke for s in (self.grounding, self.segmentation))

    def describe(self) -> dict[str, Any]:
        def one(tool: ToolSpec, source: ModelSource | None) -> dict[str, Any]:
            return tool.describe() | (source.describe() if source else {})

        return {
            "grounding": one(self.grounding_tool, self.grounding),
            "segmentation": one(self.segmentation_tool, self.segmentation),
        }

    def load_grounding(self) -> Any:
        return self.grounding_tool.load(self.grounding, self.device)

    def load_segmentation(self, settings: Settings) -> Any:
        return self.segmentation_tool.load(
            self.segmentation, self.device, precision=settings.precision,
            offload_video=settings.offload_video, offload_state=settings.offload_state,
            max_cond_frames=settings.cond_frames or None,
        )  # fmt: skip


def resolve_models(settings: Settings) -> Models:
    """Pick the tools (built-in or plugins) and find their models before any decoding, so a missing
    model fails fast."""
    from alref.tools.loading import resolve_device

    grounding, segmentation = (
        select("grounding", settings.grounding or default_tool("grounding", settings)),
        select("segmentation", settings.segmentation or default_tool("segmentation", settings)),
    )
    return Models(
        model_source(grounding, settings), model_source(segmentation, settings),
        resolve_device(settings.device), grounding, segmentation,
    )  # fmt: skip
