"""Command-line options generated from :class:`alref.config.Settings`, so each setting is declared once.

A setting is a field of ``Settings``: its name, type, default, constraints and description live there,
with a :class:`alref.config.Cli` marker that names its help panel (or why it is not a flag).
:func:`settings_options` gives a command one typer option per field, with the field's description as
help and its default shown as ``[default: …]``; a ``Literal`` type becomes choices. The command gets
the settings given on the command line as one mapping, its ``given`` parameter, and calls
``load_settings(**given)``: a flag that was not given is absent from it, so it masks neither the config
file nor an ``ALREF_*`` variable.

    @app.command(cls=SettingsCommand)
    @settings_options(MODELS, LLM)  # only these panels; no panel: every setting
    def chat(video: ..., *, given: Given) -> None:
        settings = load_settings(**given)
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Collection
from typing import Annotated, Any, Union, get_args, get_origin

import typer
from pydantic.fields import FieldInfo
from typer.models import ParameterInfo

from alref.config import PANELS, Cli, Settings
from alref.errors import ConfigError
from alref.terminal import AlrefCommand

Given = dict[str, Any]
"""The settings given on the command line, by field name (what ``load_settings(**given)`` takes)."""

_KW = inspect.Parameter.KEYWORD_ONLY
_PLAIN = Cli()


def cli_of(field: FieldInfo) -> Cli:
    """The field's :class:`Cli` marker (from ``Annotated[type, MARKER]``); a plain option without one."""
    return next((meta for meta in field.metadata if isinstance(meta, Cli)), _PLAIN)


def not_flags(settings_cls: type[Settings] = Settings) -> dict[str, str]:
    """The settings that are no command-line option, with the reason."""
    return {
        name: cli_of(field).not_a_flag
        for name, field in settings_cls.model_fields.items()
        if cli_of(field).not_a_flag
    }


def option_fields(
    settings_cls: type[Settings] = Settings, panels: Collection[Cli] = (), exclude: Collection[str] = ()
) -> dict[str, FieldInfo]:
    """The fields that become options: all but :func:`not_flags` and ``exclude``, only ``panels`` if given."""
    skip = set(not_flags(settings_cls)) | set(exclude)
    return {
        name: field
        for name, field in settings_cls.model_fields.items()
        if name not in skip and (not panels or cli_of(field) in panels)
    }


def value_type(field: FieldInfo) -> Any:
    """The option's type: the field's annotation without ``| None``."""
    annotation = field.annotation
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def flag(name: str, field: FieldInfo) -> str:
    """``--clip-frames``; a bool whose default is on is ``--overlay/--no-overlay``, one that is off a switch."""
    dashed = name.replace("_", "-")
    if value_type(field) is bool and field.get_default(call_default_factory=True):
        return f"--{dashed}/--no-{dashed}"
    return f"--{dashed}"


def option(name: str, field: FieldInfo) -> inspect.Parameter:
    """The typer option of one setting: help = the description, default = the field's (shown)."""
    panel = cli_of(field).panel or None
    info = typer.Option(flag(name, field), help=field.description, rich_help_panel=panel, show_default=True)
    default = field.get_default(call_default_factory=True)
    return inspect.Parameter(name, _KW, default=default, annotation=Annotated[value_type(field), info])


def _panel_rank(param: inspect.Parameter) -> int:
    """Options first, then the panels in :data:`alref.config.PANELS` order, then any other panel."""
    infos = [
        meta for meta in getattr(param.annotation, "__metadata__", ()) if isinstance(meta, ParameterInfo)
    ]
    panel = infos[0].rich_help_panel if infos else None
    titles = [p.panel for p in PANELS]
    if panel is None:
        return 0
    return titles.index(panel) + 1 if panel in titles else len(titles) + 1


def _given_on_command_line(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def settings_options(
    *panels: Cli, exclude: Collection[str] = (), settings_cls: type[Settings] = Settings
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Replace the command's keyword parameter ``given: Given`` with one option per setting (of ``panels``,
    else all; none of ``exclude``). The command is called with ``given`` = the settings given as flags."""
    fields = option_fields(settings_cls, panels, exclude)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        if "given" not in signature.parameters:
            raise TypeError(f"{command.__name__} needs a keyword parameter `given: Given`")
        own = [p.replace(kind=_KW) for p in signature.parameters.values() if p.name != "given"]
        if clash := sorted(fields.keys() & {p.name for p in own}):
            raise TypeError(f"{command.__name__}: parameters {clash} are settings; exclude them")
        params = sorted([*own, *(option(name, field) for name, field in fields.items())], key=_panel_rank)
        context = inspect.Parameter("_settings_ctx", _KW, annotation=typer.Context)

        @functools.wraps(command)
        def run(_settings_ctx: typer.Context, **values: Any) -> Any:
            given = {name: values[name] for name in fields if _given_on_command_line(_settings_ctx, name)}
            return command(**{k: v for k, v in values.items() if k not in fields}, given=given)

        run.__signature__ = signature.replace(parameters=[context, *params])  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in [context, *params]}
        run.settings_fields = frozenset(fields)  # type: ignore[attr-defined]
        return run

    return decorate


class SettingsCommand(AlrefCommand):
    """A command built with :func:`settings_options`: a setting's value the parser refuses (``--pivot
    sideways``, ``--clip-frames ten``) is one line and exit 2, as one the settings refuse (``--clip-frames 0``)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except typer.BadParameter as exc:
            name = exc.param.name if exc.param is not None else None
            if name not in getattr(self.callback, "settings_fields", ()):
                raise
            message = exc.message.removeprefix("Value error, ")  # as load_settings words a refused value
            raise ConfigError(f"invalid settings: {name}: {message}") from None


# ---------------------------------------------------------------------------------------------
# how a batch runs (not settings: where a video runs does not change its result, so these stay out
# of the run's identity); shared by `alref segment --manifest` and `alref eval run`

BATCH_PANEL = "Batch and Ray"
RayFlag = Annotated[
    bool,
    typer.Option("--ray", help="run the videos on a Ray cluster started on this machine (needs alref[ray])",
                 rich_help_panel=BATCH_PANEL),
]  # fmt: skip
RayAddress = Annotated[
    str | None,
    typer.Option("--ray-address", metavar="ADDRESS",
                 help="run the videos on the Ray cluster at ADDRESS (HOST:PORT, ray://HOST:PORT or auto)",
                 rich_help_panel=BATCH_PANEL),
]  # fmt: skip
RayCpus = Annotated[
    float,
    typer.Option("--ray-cpus-per-worker", min=0.01,
                 help="CPUs per Ray worker where the cluster has no GPU (one worker per GPU otherwise)",
                 rich_help_panel=BATCH_PANEL),
]  # fmt: skip
RayWorkers = Annotated[
    int | None,
    typer.Option("--ray-workers", min=1, help="at most this many Ray workers", show_default="one per GPU or CPU slot",
                 rich_help_panel=BATCH_PANEL),
]  # fmt: skip
