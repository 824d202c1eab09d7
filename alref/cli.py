"""The `alref` command line.

Every command prints human output to the terminal and the same facts as JSON with ``--json``.
A problem the user can fix is one line on stderr and a non-zero exit (2 for bad input, 3 for a
missing model); ``--debug`` shows the traceback instead.

The options that are settings are generated from :class:`alref.config.Settings` (see alref/options.py):
a command here declares only its other options and receives the settings given as ``given``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from alref.config import LLM, MODELS, OUTPUTS, SOUND, load_settings
from alref.errors import AlrefError
from alref.eval.cli import eval_app
from alref.options import (
    BATCH_PANEL,
    Given,
    RayAddress,
    RayCpus,
    RayFlag,
    RayWorkers,
    SettingsCommand,
    settings_options,
)
from alref.terminal import AlrefCommand, AlrefGroup
from alref.tools.cli import tools_list
from alref.trace.cli import trace_app

app = typer.Typer(
    help="Segment the object a sentence refers to, across a whole video, with no training.",
    cls=AlrefGroup,
    rich_markup_mode=None,  # click's plain help: it wraps at any width and shows [brackets] as written
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(
    help="List and download the models alref uses.", no_args_is_help=True, cls=AlrefGroup
)
app.add_typer(models_app, name="models")
app.add_typer(eval_app, name="eval")

_state: dict[str, Any] = {"debug": False}
out_console = Console(soft_wrap=True, emoji=False)
err_console = Console(stderr=True, soft_wrap=True, emoji=False)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("alref")
        except PackageNotFoundError:  # a source tree that is not installed
            from alref import __version__ as number
        sys.stdout.write(f"alref {number}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_show_version, help="print the version and exit"),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="show tracebacks instead of one-line errors")
    ] = False,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML settings file (also ALREF_CONFIG)")
    ] = None,
) -> None:
    _state["debug"] = debug
    if config is not None:
        os.environ["ALREF_CONFIG"] = str(config)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


# ---------------------------------------------------------------------------------------------
# segment


@app.command(cls=SettingsCommand)
@settings_options()
def segment(
    video: Annotated[
        str | None,
        typer.Argument(help="video file (mp4, mov, mkv, webm, avi) or folder of JPEG/PNG frames"),
    ] = None,
    reference: Annotated[str | None, typer.Argument(help='what to segment, e.g. "the dog barking"')] = None,
    ref: Annotated[
        list[str] | None,
        typer.Option("--ref", help="another reference (repeat); each gets its own object id"),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="output folder", show_default="alref-out/<video name>"),
    ] = None,
    audio: Annotated[
        str | None,
        typer.Option(
            "--audio",
            help="segment what is making sound: --audio alone uses the video's track, --audio PATH a separate file",
            rich_help_panel=SOUND.panel,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="recompute even if the output folder holds this result; the LLM's cached answers are reused "
            "(add --no-cache to ask it again)",
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="print result.json (with --manifest: the batch's summary) to stdout"),
    ] = False,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest",
            metavar="FILE",
            help="many videos: a CSV or JSONL file with video, reference, audio, out (one folder each under --out)",
            rich_help_panel=BATCH_PANEL,
        ),
    ] = None,
    ray: RayFlag = False,
    ray_address: RayAddress = None,
    ray_cpus_per_worker: RayCpus = 1.0,
    ray_workers: RayWorkers = None,
    *,
    given: Given,
) -> None:
    """Segment the referred object in every frame and write masks, masks.json, overlay.mp4, result.json
    (with --manifest: for every video of the file, one folder each)."""
    from alref.agent.questions import QuestionPending
    from alref.app.ask_terminal import ask_on_terminal
    from alref.errors import InputError
    from alref.pipeline.audio import AudioRequest
    from alref.pipeline.run import segment_video
    from alref.progress import RichReporter

    references = ([reference] if reference else []) + list(ref or [])
    if manifest is not None:
        if video is not None or references or audio is not None:
            raise InputError(
                "--manifest takes the videos, references and audio from the file: drop VIDEO, REFERENCE, --ref and --audio"
            )
        _segment_manifest(
            manifest, out, force, as_json, ray, ray_address, ray_cpus_per_worker, ray_workers, given
        )
        return
    if ray or ray_address or ray_workers:
        raise InputError("--ray, --ray-address and --ray-workers run a batch: give it with --manifest FILE")
    if video is None:
        raise InputError(
            'give a video, e.g. alref segment examples/shapes.mp4 "the red square" (or --manifest FILE)'
        )
    request = None
    if audio is not None:
        if len(references) > 1:
            raise InputError("with --audio give at most one text reference (the sounding object matching it)")
        request = AudioRequest(audio, references[0] if references else None)
        references = []
    elif not references:
        raise InputError(
            'give a reference, e.g. alref segment video.mp4 "the red square" (or --ref TEXT, or --audio)'
        )
    settings = load_settings(**given)
    out_dir = out if out is not None else Path("alref-out") / Path(video).stem
    answers: dict[str, Any] = {}
    while True:  # --ask: a question stops the run; its answer resumes it from the checkpoint
        try:
            result = segment_video(video, references, out_dir, settings, RichReporter(err_console), force=force,
                                   audio=request, answers=answers or None)  # fmt: skip
            break
        except QuestionPending as pending:
            answers |= ask_on_terminal(pending, err_console)
            force = False  # the answers continue this run: never start it over
    if as_json:
        _print_json(result)
        return
    _print_summary(result, out_dir)


def _segment_manifest(manifest, out, force, as_json, ray, ray_address, cpus, workers, given) -> None:
    from alref.pipeline.cluster import batch_executor
    from alref.pipeline.manifest import incomplete_error, run_manifest

    settings = load_settings(**given)
    out_dir = out if out is not None else Path("alref-out") / manifest.stem
    executor = batch_executor(settings, ray=ray, address=ray_address, cpus_per_worker=cpus, workers=workers,
                              force=force)  # fmt: skip
    try:
        summary = run_manifest(manifest, out_dir, settings, executor, force=force, console=err_console)
    except KeyboardInterrupt:
        err_console.print(f"interrupted: the finished videos are in {out_dir}; rerun the same command to continue",
                          highlight=False, markup=False)  # fmt: skip
        raise typer.Exit(130) from None
    finally:
        executor.close()
    if as_json:
        _print_json(summary)
    else:
        _print_batch(summary)
    error = incomplete_error(summary)
    if error is not None:
        raise error


def _print_batch(summary: dict[str, Any]) -> None:
    table = Table(title=escape(f"alref batch · {summary['videos']} videos · {summary['executor']}"))
    for column in ("video", "references", "status", "frames with mask", "seconds", "worker"):
        table.add_column(column, overflow="fold")
    for r in summary["records"]:
        frames = ", ".join(f"{o['frames_with_mask']}/{r['num_frames']}" for o in r["objects"]) or "—"
        status = r["status"] if r["status"] != "failed" else f"failed: {r['error']}"
        refs = "; ".join(r["references"]) or ("(sound)" if r["audio"] else "")
        cells = (r["name"], refs, status, frames, f"{r['seconds']:.1f}", r["worker"])
        table.add_row(*(escape(str(c)) for c in cells))
    out_console.print(table)
    skipped = f", {summary['skipped_done']} already done" if summary["skipped_done"] else ""
    out_console.print(
        escape(
            f"ran {summary['ran']} of {summary['videos']} videos{skipped}; per video: {summary['results']}"
        )
    )
    if any(r.get("smoke") for r in summary["records"]):
        out_console.print("[yellow]smoke models: tiny random weights, the masks are meaningless[/]")


def _print_summary(result: dict[str, Any], out_dir: Path) -> None:
    from alref.pipeline.report import mode_label

    table = Table(title=escape(f"alref · {result['status']} · {mode_label(result)}"), show_lines=False)
    tracks = result.get("strategy") == "tracks"
    decided = "tracks (concept: accepted of candidates)" if tracks else "pivots (clip: frame score)"
    for column in ("id", "reference", "status", decided, "frames with mask"):
        table.add_column(column)
    for ref in result["references"]:
        if tracks:
            pivots = escape(f"'{ref['concept']}': {len(ref['accepted'])} of {len(ref['candidates'])}")
        else:
            pivots = ", ".join(
                f"{c['clip']}: {c['pivot_frame']} {c['pivot_score']:.2f}" if c["valid"] else f"{c['clip']}: —"
                for c in ref["clips"]
            )
        table.add_row(
            str(ref["id"]), escape(ref["text"]), ref["status"], pivots,
            f"{ref['masks']['frames_with_mask']}/{result['input']['num_frames']}",
        )  # fmt: skip
    out_console.print(table)
    if result.get("smoke"):
        out_console.print(f"[yellow]{result['smoke_note']}[/]")
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in result["timings_s"].items())
    out_console.print(
        f"outputs in {escape(str(out_dir))}/ (masks/, masks.json, result.json{', overlay.mp4' if result['outputs']['overlay'] else ''})",
        soft_wrap=False,  # wrapped at words, at the terminal's width
    )
    out_console.print(f"timings: {timings}", soft_wrap=False)


# ---------------------------------------------------------------------------------------------
# refine


@app.command(cls=SettingsCommand)
@settings_options(MODELS)
def refine(
    run: Annotated[Path, typer.Argument(help="a finished run's folder (the --out of alref segment)")],
    object_id: Annotated[
        int, typer.Option("--object", metavar="ID", help="the object to refine (its id in result.json)")
    ] = 1,
    frame: Annotated[
        int | None, typer.Option("--frame", metavar="N", help="the frame the prompt is on (0-based)")
    ] = None,
    point: Annotated[
        list[str] | None,
        typer.Option("--point", metavar="X,Y", help="a positive click in video pixels (repeat)"),
    ] = None,
    negative: Annotated[
        list[str] | None,
        typer.Option("--negative", metavar="X,Y", help="a negative click: not the object (repeat)"),
    ] = None,
    box: Annotated[
        str | None, typer.Option("--box", metavar="X0,Y0,X1,Y1", help="a box around the object")
    ] = None,
    video: Annotated[
        Path | None,
        typer.Option("--video", help="the run's video, if it is no longer where result.json says"),
    ] = None,
    keep_work: Annotated[
        bool, typer.Option("--keep-work", help="keep the decoded frames in RUN/work for the next refine")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the updated result.json to stdout")] = False,
    *,
    given: Given,
) -> None:
    """Correct one object of a finished run with clicks and/or a box on one frame: SAM 2 propagates it
    again with the run's boxes and every refinement so far; masks, masks.json, overlay.mp4 and
    result.json are replaced atomically. Positive clicks go before negative ones. The models default to
    the run's (--models overrides)."""
    from alref.errors import InputError
    from alref.pipeline.refine import make_refinement, parse_box, parse_xy, refine_run
    from alref.progress import RichReporter

    if frame is None:
        raise InputError("give the frame the prompt is on, e.g. --frame 40")
    positives = [parse_xy(p) for p in point or []]
    negatives = [parse_xy(p, "--negative") for p in negative or []]
    if not positives and not negatives and box is None:
        raise InputError("give a prompt: --point X,Y, --negative X,Y and/or --box X0,Y0,X1,Y1")
    refinement = make_refinement(
        frame, [*positives, *negatives], [1] * len(positives) + [0] * len(negatives),
        parse_box(box) if box is not None else None,
    )  # fmt: skip
    reporter = RichReporter(err_console)
    result, changed = refine_run(run, object_id, refinement, given=given, reporter=reporter,
                                 keep_work=keep_work, video=video)  # fmt: skip
    if as_json:
        _print_json(result)
        return
    ref = next(r for r in result["references"] if r["id"] == object_id)
    if not changed:
        out_console.print(
            f"already applied: object {object_id} has this prompt on frame {frame}; nothing changed",
            **_PLAIN,
        )
        return
    frames = f"{ref['masks']['frames_with_mask']}/{result['input']['num_frames']}"
    out_console.print(
        f"refined object {object_id} on frame {frame} ({len(ref['refinements'])} refinement(s) in all): "
        f"{frames} frames with a mask; outputs in {run}/",
        **_WRAPPED,
    )
    if result.get("smoke"):
        out_console.print(f"[yellow]{result['smoke_note']}[/]")


# ---------------------------------------------------------------------------------------------
# chat


#: a chat always needs its LLM; of the outputs only --keep-work (the decoded frames) applies to it
CHAT_EXCLUDE = ("no_llm", "overlay", "overlap")


@app.command(cls=SettingsCommand)
@settings_options(MODELS, LLM, SOUND, OUTPUTS, exclude=CHAT_EXCLUDE)
def chat(
    video: Annotated[
        str | None, typer.Argument(help="the video to talk about (not needed with --resume)")
    ] = None,
    audio: Annotated[Path | None, typer.Option(help="a separate audio file for the sound tools")] = None,
    message: Annotated[
        list[str] | None,
        typer.Option(
            "--message",
            "-m",
            help="a turn to run without prompting (repeat); else stdin lines, else interactive",
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            help="continue a saved conversation by its thread id, with its own settings (model profile, LLM "
            "model and base URL; flags given here win) and in its own folder"
        ),
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="list the saved conversations")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="where previews, exports and the trace go",
            show_default="alref-chat/<thread>; with --resume the conversation's own folder",
        ),
    ] = None,
    max_steps: Annotated[int, typer.Option(help="tool steps per turn at most")] = 8,
    db: Annotated[
        Path | None,
        typer.Option(help="SQLite file of the conversations", show_default="<cache-dir>/chats.sqlite"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print each turn as a JSON line")] = False,
    *,
    given: Given,
) -> None:
    """Talk about a video: segment, refine ("the other one"), undo, keep masks only while a sound is
    heard, export. Conversations persist in SQLite; --resume continues one with its own settings, objects
    and folder. The decoded frames are removed when the chat ends (unless --keep-work)."""
    from alref.agent.chat.agent import Chat, chat_store, list_threads, resumed_settings
    from alref.app.session import ShownChatSession  # says its stages (decoding, propagating k/N)
    from alref.config import load_settings
    from alref.errors import InputError

    settings = load_settings(**given)
    store = db or settings.cache_dir / "chats.sqlite"
    if list_:
        rows = list_threads(store)
        if as_json:
            _print_json(rows)
            return
        table = Table(title=escape(f"conversations in {store}"))
        for column in ("thread", "video", "turns", "objects", "last message", "folder"):
            table.add_column(column, overflow="fold")
        for row in rows:
            cells = (row["thread"], row["video"], row["turns"], row["objects"], row["last"] or "", row["folder"] or "")  # fmt: skip
            table.add_row(*(escape(str(c)) for c in cells))
        out_console.print(table)
        return
    no_llm = "alref chat needs a tool-calling LLM: pass --llm MODEL (and --llm-base-url for a local server) or set OPENAI_API_KEY"
    if not resume and not settings.llm_configured:
        raise InputError(no_llm)
    with chat_store(store) as saver:
        saved = Chat.saved_state(saver, resume) if resume else {}
        if resume:  # the conversation's own settings, the flags given now on top
            settings = load_settings(**resumed_settings(saved, given))
            if not settings.llm_configured:
                raise InputError(no_llm)
        video_path = video or saved.get("video")
        if video_path is None:
            raise InputError("give the video to talk about: alref chat VIDEO (or --resume THREAD)")
        audio_path = audio or saved.get("audio")
        thread = resume or uuid.uuid4().hex[:8]
        folder = out or (Path(saved["out"]) if saved.get("out") else Path("alref-chat") / thread)
        session = ShownChatSession(video_path, folder, settings, audio_path)
        conversation = None
        try:
            conversation = Chat(session, None, saver, thread=thread, max_steps=max_steps)
            session.restore(saved.get("objects"))  # the stored masks; only missing ones are recomputed
            if not as_json:
                err_console.print(
                    f"conversation {conversation.thread} about {video_path} in {folder} (resume with: alref chat --resume {conversation.thread})",
                    highlight=False, markup=False,
                )  # fmt: skip
                _print_objects(session.describe_objects())
            failed = 0
            for text in _turns(message):
                with _turn_progress(
                    session
                ) as on_step:  # the turn's steps and stages as they happen, on stderr
                    report = conversation.ask(text, on_step=on_step)
                _print_turn(report, as_json)
                failed += report["status"] == "llm_error"  # a question waits for the next message
        finally:
            if conversation is not None:
                conversation.close()  # the MCP servers it started stop
            session.close()  # the decoded frames go, unless --keep-work
        if failed:  # the answers said why; the conversation is saved and can go on later
            err_console.print(
                f"alref: {failed} turn(s) got no answer from the LLM; continue with: alref chat --resume {conversation.thread}",
                highlight=False, markup=False,
            )  # fmt: skip
            raise typer.Exit(4)


@contextlib.contextmanager
def _turn_progress(session: Any):
    """A chat turn's steps (tool calls, their ends) and the session's stages inside a tool (decoding,
    detecting, propagating k/N) as they happen: a spinner line on a terminal; plain lines when piped,
    one per step and one per stage (not per frame)."""

    def say(event: dict[str, Any]) -> str:
        if event["step"] == "tool_call":
            args = ", ".join(f"{k}={v!r}" for k, v in event["args"].items())
            return f"calling {event['tool']}({args[:120]})"
        if event["step"] == "tool_result":
            return f"{event['tool']} {'failed' if event['error'] else 'done'}; asking the model what next"
        return "answered"

    shown = session.show
    if err_console.is_terminal:
        with err_console.status("asking the model…") as spinner:
            tool = ["asking the model…"]

            def step(event: dict[str, Any]) -> None:
                tool[0] = say(event)
                spinner.update(escape(tool[0]))

            session.show = lambda fraction, text: spinner.update(escape(f"{tool[0]} · {text}"))
            try:
                yield step
            finally:
                session.show = shown
        return
    last = [""]

    def stage(fraction: float | None, text: str) -> None:
        kind = text.split()[0] if text.split() else text  # "propagating 3/30" -> one line per stage
        if kind != last[0]:
            last[0] = kind
            err_console.print(f"    {text}", highlight=False, markup=False)

    session.show = stage
    try:
        yield lambda event: err_console.print(f"  … {say(event)}", highlight=False, markup=False)
    finally:
        session.show = shown


def _print_objects(objects: list[dict[str, Any]]) -> None:
    """A resumed conversation's objects, shown before its first turn."""
    for o in objects:
        where = f"frames {o['first_frame']}-{o['last_frame']}" if o["frames_with_mask"] else "no mask"
        err_console.print(f"  object {o['object_id']} {o['name']}: {where} ({o['frames_with_mask']} frames with a mask)",
                          highlight=False, markup=False)  # fmt: skip


def _turns(messages: list[str] | None):
    """--message turns, else stdin lines when piped, else an interactive prompt until 'exit'."""
    if messages:
        yield from messages
        return
    if not sys.stdin.isatty():
        for line in sys.stdin:
            if line.strip():
                yield line.strip()
        return
    from rich.prompt import Prompt

    while True:
        try:
            text = Prompt.ask("[bold]you[/]", console=err_console)
        except (EOFError, KeyboardInterrupt):
            return
        if text.strip().lower() in ("exit", "quit"):
            return
        if text.strip():
            yield text


def _print_turn(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(report, ensure_ascii=False, default=str) + "\n")
        sys.stdout.flush()
        return
    for call in report["calls"]:
        mark = "[red]✗[/]" if call["error"] else "[green]✓[/]"
        args = escape(", ".join(f"{k}={v!r}" for k, v in call["args"].items()))
        result = escape(str(call["result"] or "")[:200])
        out_console.print(f"  {mark} {call['tool']}({args}) → {result}", highlight=False)
    out_console.print(f"[bold]alref[/]: {escape(str(report['answer']))}", highlight=False)
    if report["preview"]:
        out_console.print(f"  preview: {escape(str(report['preview']))}", highlight=False)


# ---------------------------------------------------------------------------------------------
# app


@app.command("app", cls=SettingsCommand)
@settings_options(MODELS, LLM, SOUND, OUTPUTS, exclude=CHAT_EXCLUDE)
def app_command(
    video: Annotated[
        str | None, typer.Argument(help="a video to open at start (or choose one in the page)")
    ] = None,
    audio: Annotated[Path | None, typer.Option(help="a separate audio file for the sound tools")] = None,
    host: Annotated[
        str, typer.Option(help="address to serve on; anything but loopback lets other machines in")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to serve on")] = 7860,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="where uploads and the segment form's runs go")
    ] = Path("alref-app"),
    max_steps: Annotated[int, typer.Option(help="tool steps per chat turn at most")] = 8,
    db: Annotated[
        Path | None,
        typer.Option(
            help="SQLite file of the conversations (alref chat's)", show_default="<cache-dir>/chats.sqlite"
        ),
    ] = None,
    *,
    given: Given,
) -> None:
    """A local web page: open a video, talk about it (the same agent and saved conversations as `alref
    chat`), see previews, overlays and the trace of each turn, run one-shot segmentations, download masks."""
    from alref.app.web import require_gradio

    require_gradio()  # one line naming the extra when it is not installed
    from alref.app.session import AppConfig
    from alref.app.web import serve

    settings = load_settings(**given)
    config = AppConfig(given=given, db=db or settings.cache_dir / "chats.sqlite", out=out, max_steps=max_steps,
                       video=video, audio=str(audio) if audio else None)  # fmt: skip
    serve(config, host=host, port=port)


# ---------------------------------------------------------------------------------------------
# mcp


@app.command("mcp", cls=SettingsCommand)
@settings_options()
def mcp_command(
    http: Annotated[
        bool, typer.Option("--http", help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio")
    ] = False,
    host: Annotated[
        str,
        typer.Option(metavar="HOST", help="with --http: the address (anything but loopback lets others in)"),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="N", help="with --http: the port")] = 8765,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", metavar="DIR", help="the runs folder: where runs go and list_runs looks"),
    ] = Path("~/alref-out"),
    *,
    given: Given,
) -> None:
    """Serve alref's tools to other agents (desktop assistants, IDE agents) over the Model Context Protocol:
    segment by sentence or by sound, list and read runs, a frame with its masks, a run's trace. Stdio by
    default; the flags set the defaults of every call."""
    from alref.app.mcp import serve

    serve(given, out, http=http, host=host, port=port)


# ---------------------------------------------------------------------------------------------
# traces

app.add_typer(trace_app, name="trace")


# ---------------------------------------------------------------------------------------------
# tools

tools_app = typer.Typer(
    help="The tools alref can use: built in and from plugins.", no_args_is_help=True, cls=AlrefGroup
)
app.add_typer(tools_app, name="tools")


tools_app.command("list", cls=AlrefCommand)(tools_list)


# ---------------------------------------------------------------------------------------------
# doctor and models


_PLAIN: dict[str, Any] = {"highlight": False, "markup": False, "emoji": False}  # `smoke:clap: …`, ids, URLs
_WRAPPED = _PLAIN | {"soft_wrap": False}  # a sentence wrapped at words at the terminal's width


@app.command(cls=SettingsCommand)
@settings_options(MODELS, LLM)
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    *,
    given: Given,
) -> None:
    """Versions, device, torch CPU threads and wait policy, which models are available, and whether the
    LLM is configured, reachable and lists the model (the same model and LLM flags as `alref segment`)."""
    from rich.text import Text

    from alref.doctor import report

    data = report(load_settings(**given))
    if as_json:
        _print_json(data)
        return
    table = Table(show_header=False, title="alref doctor")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    for name, version in data["versions"].items():
        table.add_row(name, Text(version))
    table.add_row("device (auto)", Text(data["device"]["auto"]))
    if "configured" in data["device"]:
        table.add_row("device (configured)", Text(data["device"]["configured"]))
    table.add_row("cuda", Text(data["device"]["cuda"]))
    threads = data["threads"]
    table.add_row("torch CPU threads", Text(f"{threads['torch_threads']} of {threads['usable_cpus']} usable CPUs "
                                            f"({threads['torch_threads_source']})"))  # fmt: skip
    table.add_row("OpenMP wait policy", Text(f"{threads['wait_policy']} ({threads['wait_policy_source']})"))
    table.add_row("models (profile)", Text(data["profile"]))
    out_console.print(table)
    _models_table(data["models"])
    llm = data["llm"]
    if not llm["configured"]:
        out_console.print(f"LLM: {llm['summary']}", **_WRAPPED)
        return
    out_console.print(f"LLM: {llm['model']} at {llm['base_url']} (API key {llm['api_key']})", **_WRAPPED)
    if not llm["reachable"]:
        out_console.print(f"  NOT reachable: {llm['detail']}", style="red", **_WRAPPED)
    elif llm["model_listed"]:
        out_console.print(f"  reachable; the server lists {llm['model']}", style="green", **_WRAPPED)
    elif llm["model_listed"] is None:
        out_console.print(f"  reachable, but {llm['detail']}", style="yellow", **_WRAPPED)
    else:
        models = llm["models"]
        out_console.print(
            f"  reachable, but the server does not list the model {llm['model']}"
            + (f"; it lists {len(models)}:" if models else "; it lists no models"),
            style="yellow", **_WRAPPED,
        )  # fmt: skip
        for model in models:  # each id whole on its own line, however long
            out_console.print(f"    {model}", **_PLAIN)


def _models_table(rows: list[dict[str, Any]]) -> None:
    from rich import box
    from rich.text import Text

    from alref.tools.loading import PROFILES

    # 80 columns hold the longest id whole: no borders, each profile named once, the status wraps at words;
    # a local folder too long for the line folds (it is never cut)
    sizes = [max((len(row[key]) for row in rows), default=4) for key in ("profile", "role", "model")]
    room = out_console.width - sizes[0] - sizes[1] - 7 - 10  # the columns' gaps; 10 for the status
    table = Table(title="models", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    table.add_column("profile", no_wrap=True)
    table.add_column("role", no_wrap=True)
    table.add_column("model", overflow="fold", width=max(12, min(sizes[2], room)))
    table.add_column("available", overflow="fold", ratio=1)
    pulls: list[str] = []  # what to pull for the models that are missing: the profile, else the id
    for i, row in enumerate(rows):
        status = row["status"]
        if not row["available"] and status.startswith("not cached"):
            status = "not cached"
            wanted = row["profile"] if row["profile"] in PROFILES else row["model"]
            pulls += [wanted] if wanted not in pulls else []
        first = i == 0 or rows[i - 1]["profile"] != row["profile"]
        table.add_row(
            row["profile"] if first else "", row["role"], Text(row["model"]),
            Text(status, style="green" if row["available"] else "red"), end_section=i + 1 < len(rows)
            and rows[i + 1]["profile"] != row["profile"],
        )  # fmt: skip
    out_console.print(table)
    for wanted in pulls:
        out_console.print(f"to download: alref models pull {wanted}", **_PLAIN)


@models_app.command("list", cls=AlrefCommand)
def models_list(as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False) -> None:
    """Every model of every profile, and whether it is available here."""
    from alref.doctor import model_rows

    rows = model_rows()
    if as_json:
        _print_json(rows)
    else:
        _models_table(rows)


@models_app.command("pull", cls=AlrefCommand)
def models_pull(
    names: Annotated[
        list[str] | None, typer.Argument(help="profiles (default, fast, smoke) or Hugging Face ids")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the downloaded folders as JSON")] = False,
) -> None:
    """Download models into the Hugging Face cache (smoke models are built locally)."""
    from alref.doctor import pull

    done = pull(names or ["default"], on_start=lambda n: err_console.print(f"pulling {n} …", **_PLAIN))
    if as_json:
        _print_json(done)
        return
    for name, path in done.items():
        out_console.print(f"{name}: {path}", **_PLAIN)


# ---------------------------------------------------------------------------------------------


MEDIA_SUFFIXES = set(".wav .mp3 .flac .m4a .ogg .aac .opus .mp4 .mov .mkv .webm .avi".split())


def _audio_flag(args: list[str]) -> list[str]:
    """``--audio`` takes an optional path: a bare ``--audio`` (last, before another option, or before
    a word that is neither an existing file nor a media file name) means the video's own track."""
    from alref.pipeline.audio import VIDEO_TRACK

    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--audio":
            nxt = out[i + 1] if i + 1 < len(out) else None
            looks_like_media = nxt is not None and Path(nxt).suffix.lower() in MEDIA_SUFFIXES
            if (
                nxt is None
                or nxt.startswith("-")
                or not (looks_like_media or Path(nxt).expanduser().is_file())
            ):
                out.insert(i + 1, VIDEO_TRACK)
            break
    return out


def main(argv: list[str] | None = None) -> None:
    """Console entry point: a usage error (unknown option or command, exit 2) and an AlrefError are one line,
    ``alref: error: …``; ``--debug`` shows an AlrefError's traceback."""
    from alref.terminal import click, usage_error

    args = _audio_flag(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=args, prog_name="alref", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:  # `alref`, `alref trace`: the help, as click shows it
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.ClickException as exc:
        _fail(usage_error(exc), exc.exit_code)
    except typer.Abort:  # EOF at a prompt
        _fail("aborted", 1)
    except AlrefError as exc:
        if _state["debug"] or "--debug" in args:
            raise
        _fail(str(exc), exc.exit_code)
    if isinstance(code, int) and code:  # typer.Exit(N) and Ctrl-C (130) come back as the exit code
        sys.exit(code)


def _fail(message: str, code: int) -> None:
    line = "alref: error: " + " ".join(message.split())
    err_console.print(line, highlight=False, markup=False, soft_wrap=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
