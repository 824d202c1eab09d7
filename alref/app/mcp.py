"""`alref mcp`: alref's tools for other agents (desktop assistants, IDE agents, other LangGraph apps)
over the Model Context Protocol, with the official MCP Python SDK (``mcp`` 2.x, its ``MCPServer``).

Tools: ``segment_video`` (by sentence), ``segment_by_sound``, ``answer_questions`` (a run that asked),
``refine_object`` (clicks and a box on a finished run), ``list_runs``, ``read_run``, ``show_frame`` (a
frame with the masks drawn, as image content) and ``run_trace``. A segmentation runs on a worker
thread; alref's progress stages reach the client as ``notifications/progress`` (:class:`ProtocolReporter`),
and a cancelled call stops the run at its next step. One run at a time: the models are loaded once per
process (``alref.tools.loading.load_once``) and stay loaded between calls. A problem the caller can fix
(an :class:`~alref.errors.AlrefError`) is a tool error of one sentence and the server goes on. Over stdio
nothing but the protocol reaches stdout: the SDK points file descriptor 1 at stderr while it serves, and
alref's notes go into the results. The API key never appears in a result, an error or the log.

The SDK is imported only here, and only when the server starts: ``pip install -c constraints.txt -e ".[mcp]"``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from alref.agent.questions import QuestionPending
from alref.app.runs import (
    PendingQuestion,
    RunList,
    RunSummary,
    render_frame,
    run_list,
    summarise_run,
    trace_text,
)
from alref.config import Settings, load_settings
from alref.core.workspace import EVENTS_FILE, RESULT_FILE, TRACE_DIR
from alref.errors import AlrefError, InputError
from alref.progress import Reporter

try:  # the `mcp` extra (require_mcp says how to install it); tools name the SDK's Context to receive it
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import CallToolResult, ImageContent, TextContent
except ImportError:  # pragma: no cover - `alref mcp` stops at require_mcp
    Context = CallToolResult = Any  # type: ignore[assignment,misc]
    MCPServer = object  # type: ignore[assignment,misc]

INSTALL = 'alref mcp needs the MCP SDK: pip install -c constraints.txt -e ".[mcp]"'
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
POLL_S = 0.05  # how often a running call looks at its run's progress


def require_mcp() -> None:
    try:
        import mcp.server.mcpserver  # noqa: F401
    except ImportError:
        raise InputError(INSTALL) from None


# ---------------------------------------------------------------------------------------------
# progress and cancellation


class CallCancelled(BaseException):
    """Raised inside a run whose MCP call was cancelled (a BaseException: no fallback swallows it)."""


class ProtocolReporter(Reporter):
    """alref's progress for one call, kept for the call's event loop to send as MCP progress notifications.

    The pipeline reports from its worker thread; the call's task reads :meth:`snapshot` and sends what
    changed. Progress is the count of steps done over every stage (it only grows), the message names
    the stage (``propagation 12/40``) or the last note. Once :meth:`cancel` is called the next step raises
    :class:`CallCancelled` in the run, which ends it as an interruption would."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._done = 0
        self._message = ""
        self._version = 0

    def cancel(self) -> None:
        self._cancelled.set()

    def _check(self) -> None:
        if self._cancelled.is_set():
            raise CallCancelled("the call was cancelled")

    def _update(self, steps: int, message: str) -> None:
        with self._lock:
            self._done += steps
            self._message = message
            self._version += 1

    def snapshot(self) -> tuple[int, float, str]:
        with self._lock:
            return self._version, float(self._done), self._message

    @contextmanager
    def stage(self, name: str, total: int | None) -> Iterator[_ProtocolStage]:
        self._check()
        stage = _ProtocolStage(self, name, total)
        self._update(0, stage.message())
        yield stage

    def note(self, message: str) -> None:
        super().note(message)
        self._update(0, message)

    def warn(self, message: str) -> None:
        super().warn(message)
        self._update(0, f"warning: {message}")


class _ProtocolStage:
    def __init__(self, reporter: ProtocolReporter, name: str, total: int | None) -> None:
        self.reporter, self.name, self.total, self.done = reporter, name, total, 0

    def message(self) -> str:
        return f"{self.name} {self.done}/{self.total}" if self.total else f"{self.name} {self.done}"

    def advance(self, amount: int = 1) -> None:
        self.reporter._check()
        self.done += amount
        self.reporter._update(amount, self.message())


# ---------------------------------------------------------------------------------------------
# errors


def _scrub(text: str, settings: Settings, one_line: bool = True) -> str:
    """``text`` without the API key (an error from a server may quote a request), on one line."""
    text = " ".join(str(text).split()) if one_line else str(text)
    return text.replace(settings.api_key, "***") if settings.api_key else text


def _tool_error(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


class _Server(MCPServer):  # type: ignore[misc,valid-type]
    """The SDK's server, answering arguments that do not fit a tool's schema in one line (the SDK sends
    pydantic's report, several lines long)."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if not isinstance(exc.__cause__, ValidationError):
                raise
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
                                 for e in exc.__cause__.errors())  # fmt: skip
            return _tool_error(f"invalid arguments for {name}: {problems}")


def answering_errors(fn: Callable[..., Any], settings: Settings) -> Callable[..., Any]:
    """``fn`` (a tool) answering an AlrefError as a tool error of its one sentence, the key scrubbed (the
    SDK would prefix it with "Error executing tool …"), and anything else as one line naming the error,
    its traceback on stderr: the server goes on."""
    import inspect

    def error(exc: Exception) -> CallToolResult:
        if isinstance(exc, AlrefError):
            return _tool_error(_scrub(str(exc), settings))
        print(_scrub(traceback.format_exc(), settings, one_line=False), file=sys.stderr, flush=True)
        return _tool_error(_scrub(f"alref failed in {fn.__name__} ({type(exc).__name__}: {exc}); the server "
                                  "goes on, and its log (stderr) has the traceback", settings))  # fmt: skip

    if inspect.iscoroutinefunction(fn):

        @wraps(fn)
        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a tool error, never a crash of the server
                return error(exc)

        return call

    @wraps(fn)
    def call_sync(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a tool error, never a crash of the server
            return error(exc)

    return call_sync


# ---------------------------------------------------------------------------------------------
# the server


VideoPath = Annotated[
    str,
    Field(description="a video file (mp4, mov, mkv, webm, avi) or a folder of JPEG/PNG frames, on the server's "
          "machine (~ is expanded)"),
]  # fmt: skip
References = Annotated[
    list[str] | str,
    Field(description="what to segment, one sentence per object, e.g. ['the dog on the left that jumps']; each "
          "gets its own object id"),
]  # fmt: skip
AudioPath = Annotated[
    str | None,
    Field(description="a separate audio file (wav, mp3, flac, …); default: the video's own sound track"),
]
SoundReference = Annotated[
    str | None,
    Field(description="optional: a sentence naming which sounding object to keep, e.g. 'the barking dog'"),
]
Strategy = Annotated[
    Literal["pivot", "tracks"] | None,
    Field(description="pivot: the LLM picks a frame and a box per clip, SAM 2 propagates (AL-Ref-SAM 2); "
          "tracks: SAM 3 tracks the concept and the LLM accepts or rejects each track (AgentRVOS); "
          "default: the server's setting"),
]  # fmt: skip
Profile = Annotated[
    str | None,
    Field(description="model profile: default (the paper's models), fast, or smoke (tiny random models that "
          "only check the install: meaningless masks); default: the server's setting"),
]  # fmt: skip
Out = Annotated[
    str | None,
    Field(description="output folder; relative to the server's runs folder; default: a folder under it named "
          "after the video and the request (the same request reuses its finished run)"),
]  # fmt: skip
Force = Annotated[bool, Field(description="recompute even when the folder holds this finished result")]
Ask = Annotated[
    bool,
    Field(
        description="when the sentence fits several objects equally, stop and return questions "
        "(answer them with answer_questions) instead of taking the LLM's pick"
    ),
]


class AlrefMCP:
    """The tools, over the settings given on the command line (``given``) and a runs folder."""

    def __init__(self, given: dict[str, Any], runs: Path) -> None:
        import alref

        self.given = dict(given)
        self.runs = runs.expanduser().resolve()
        self.settings = load_settings(**self.given)  # a bad setting fails here, before a client connects
        self._busy: Any = None  # an anyio.Lock, made in the server's event loop
        #: run folder -> (settings, the run as a function of the answers, the answers given so far): the runs
        #: that stopped to ask (``ask``), continued by answer_questions
        self._waiting: dict[str, tuple[Settings, Callable[..., Any], dict[str, Any]]] = {}
        self.server = _Server(
            "alref", version=alref.__version__, log_level="WARNING",
            instructions="Segment the object a sentence (or a sound) refers to in every frame of a video, "
            "without training. Paths are on the server's machine. Start with segment_video, then read_run, "
            "show_frame and run_trace on the run folder it returns; with ask=true, a run that returns status "
            "'question' continues with answer_questions.",
        )  # fmt: skip
        for tool in (self.segment_video, self.segment_by_sound, self.answer_questions, self.refine_object,
                     self.list_runs, self.read_run, self.show_frame, self.run_trace):  # fmt: skip
            self.server.add_tool(answering_errors(tool, self.settings))

    # -- helpers ---------------------------------------------------------------------------------

    def _settings(self, **overrides: Any) -> Settings:
        return load_settings(**(self.given | {k: v for k, v in overrides.items() if v is not None}))

    def _path(self, text: str, what: str) -> Path:
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"give the {what} as a path")
        path = Path(text.strip()).expanduser()
        return path if path.is_absolute() else self.runs / path

    def _run(self, text: str) -> Path:
        run = self._path(text, "run folder")
        if not ((run / TRACE_DIR / EVENTS_FILE).is_file() or (run / RESULT_FILE).is_file()):
            raise InputError(f"no alref run in {run}: list_runs shows the runs under {self.runs}")
        return run

    def _video(self, text: str) -> Path:
        if not isinstance(text, str) or not text.strip():
            raise InputError("give the video as a path: a video file or a folder of JPEG/PNG frames")
        path = Path(text.strip()).expanduser()
        return path.resolve() if path.exists() else path

    def _out(self, out: str | None, video: Path, request: dict[str, Any]) -> Path:
        if out:
            return self._path(out, "output folder").resolve()
        tag = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return self.runs / f"{video.stem or 'video'}-{tag}"

    async def _segment(self, ctx: Any, settings: Settings, work: Callable[[ProtocolReporter], Any],
                       out: Path) -> RunSummary:  # fmt: skip
        """Run ``work`` on a worker thread, one run at a time; its progress to the client; cancellable."""
        import anyio

        if self._busy is None:
            self._busy = anyio.Lock()
        reporter = ProtocolReporter()
        async with self._busy:  # the models are shared: a second call waits for the first
            done, box = threading.Event(), {}

            def target() -> None:
                try:
                    box["result"] = work(reporter)
                except BaseException as error:  # raised again on the call's task
                    box["error"] = error
                finally:
                    done.set()

            threading.Thread(target=target, name="alref-mcp-run", daemon=True).start()
            sent = 0
            try:
                while not done.is_set():
                    await anyio.sleep(POLL_S)
                    version, progress, message = reporter.snapshot()
                    if version != sent:
                        sent = version
                        await ctx.report_progress(progress, None, _scrub(message, settings))
            except BaseException:  # cancelled: stop the run at its next step, and wait for its end
                reporter.cancel()
                with anyio.CancelScope(shield=True):
                    while not done.is_set():
                        await anyio.sleep(POLL_S)
                raise
        if isinstance(box.get("error"), QuestionPending):  # the run waits for answers (ask)
            summary = summarise_run(out, [_scrub(n, settings) for n in reporter.notes])
            return summary.model_copy(update={"status": "question", "questions": [
                PendingQuestion(id=p.id, question=p.question["question"], image=p.question.get("image"),
                                options=[f"{o['number']}: {o['label']}" for o in p.question.get("options") or []])
                for p in box["error"].pending]})  # fmt: skip
        if "error" in box:
            raise box["error"]
        self._waiting.pop(str(out), None)
        return summarise_run(out, [_scrub(n, settings) for n in reporter.notes])

    async def _asking(self, ctx: Any, settings: Settings, run: Callable[..., Any], out: Path) -> RunSummary:
        """``run(reporter, answers)`` through :meth:`_segment`, kept while it waits on questions."""
        self._waiting[str(out)] = (settings, run, {})
        return await self._segment(ctx, settings, lambda reporter: run(reporter, None), out)

    # -- the tools -------------------------------------------------------------------------------

    async def segment_video(
        self,
        video: VideoPath,
        references: References,
        strategy: Strategy = None,
        models: Profile = None,
        out: Out = None,
        force: Force = False,
        ask: Ask = False,
        ctx: Context | None = None,
    ) -> RunSummary:
        """Segment the object each sentence refers to in every frame of a video and write the masks (PNG per
        frame, masks.json), overlay.mp4, result.json and a trace. Long: reports progress; can be cancelled
        (rerun the same call to continue). Returns the run folder, each reference's status (not_found: the
        target is absent) and where the files are. With ask, a sentence that fits several objects equally
        returns status 'question' and the questions; answer_questions continues the run."""
        from alref.pipeline.run import segment_video

        settings = self._settings(strategy=strategy, models=models, ask=ask or None)
        path = self._video(video)
        refs = [references] if isinstance(references, str) else list(references or [])
        folder = self._out(out, path, {"video": str(path), "references": refs, "strategy": settings.strategy,
                                       "models": settings.models})  # fmt: skip

        def run(reporter: ProtocolReporter, answers: dict[str, Any] | None) -> Any:
            return segment_video(
                path, refs, folder, settings, reporter, force=force and not answers, answers=answers
            )

        return await self._asking(ctx, settings, run, folder)

    async def answer_questions(
        self,
        run: Annotated[
            str, Field(description="the run folder a segment call returned with status 'question'")
        ],
        answers: Annotated[
            dict[str, str],
            Field(
                description="question id -> answer: a number, several numbers ('1, 3'), 'none', or words for the LLM "
                "(for a question about masks: yes, no or none)"
            ),
        ],
        ctx: Context | None = None,
    ) -> RunSummary:
        """Answer the questions a segment call stopped with (it was called with ask): the run continues from
        where it stopped, recomputing nothing it had finished, and returns as segment_video does (it may ask
        again)."""
        folder = self._path(run, "run folder").resolve()
        if str(folder) not in self._waiting:
            raise InputError(f"no run waits for answers in {folder}: call segment_video with ask, then answer the "
                             "questions it returns")  # fmt: skip
        settings, work, given = self._waiting[str(folder)]
        given.update({str(k): v for k, v in answers.items()})
        return await self._segment(ctx, settings, lambda reporter: work(reporter, dict(given)), folder)

    async def segment_by_sound(
        self,
        video: VideoPath,
        audio: AudioPath = None,
        reference: SoundReference = None,
        models: Profile = None,
        out: Out = None,
        force: Force = False,
        ctx: Context | None = None,
    ) -> RunSummary:
        """Segment whatever is making sound in a video: an audio tagger names the sounds, the LLM keeps those
        with a visible source, each becomes 'the <object> that is making sound', and masks are removed where
        that object is silent. Long: reports progress; can be cancelled. Returns the run like segment_video."""
        from alref.pipeline.audio import VIDEO_TRACK, AudioRequest
        from alref.pipeline.run import segment_video

        settings = self._settings(models=models)
        path = self._video(video)
        source = str(Path(audio).expanduser().resolve()) if audio and audio.strip() else VIDEO_TRACK
        request = AudioRequest(source, reference.strip() if reference and reference.strip() else None)
        folder = self._out(out, path, {"video": str(path), "audio": source, "reference": request.text,
                                       "models": settings.models})  # fmt: skip
        return await self._segment(
            ctx,
            settings,
            lambda reporter: segment_video(path, [], folder, settings, reporter, force=force, audio=request),
            folder,  # fmt: skip
        )

    async def refine_object(
        self,
        run: Annotated[str, Field(description="a finished run folder of the pivot strategy")],
        object_id: Annotated[
            int, Field(ge=1, description="the object to correct (a reference's id in read_run)")
        ],
        frame: Annotated[int, Field(ge=0, description="the 0-based frame the prompt is on")],
        points: Annotated[
            list[tuple[float, float]] | None,
            Field(description="positive clicks [[x, y], …] in video pixels: 'this is the object'"),
        ] = None,
        negative_points: Annotated[
            list[tuple[float, float]] | None,
            Field(description="negative clicks [[x, y], …]: 'this is not the object'"),
        ] = None,
        box: Annotated[
            tuple[float, float, float, float] | None, Field(description="[x0, y0, x1, y1] around the object")
        ] = None,
        ctx: Context | None = None,
    ) -> RunSummary:
        """Correct one object's masks with clicks and/or a box on a frame (look at it first with show_frame): SAM 2
        prompts the object again with the run's boxes, every earlier correction and this one, and propagates it
        over the whole video; the masks, masks.json, overlay.mp4 and result.json are replaced together and the
        prompt is recorded. The same prompt again changes nothing. Long: reports progress; can be cancelled
        (the run is left as it was)."""
        from alref.pipeline.refine import make_refinement, refine_run

        folder = self._run(run).resolve()
        positive, negative = list(points or []), list(negative_points or [])
        refinement = make_refinement(frame, positive + negative, [1] * len(positive) + [0] * len(negative),
                                     list(box) if box is not None else None)  # fmt: skip
        settings = self._settings()
        changed: dict[str, bool] = {}

        def work(reporter: ProtocolReporter) -> None:
            _, changed["changed"] = refine_run(
                folder, object_id, refinement, given=self.given, reporter=reporter
            )

        summary = await self._segment(ctx, settings, work, folder)
        note = (f"object {object_id} refined on frame {frame}" if changed.get("changed")
                else f"object {object_id} already had this prompt on frame {frame}: nothing changed")  # fmt: skip
        return summary.model_copy(update={"notes": [*summary.notes, note]})

    def list_runs(
        self,
        folder: Annotated[
            str | None, Field(description="where to look (3 levels deep); default: the server's runs folder")
        ] = None,
    ) -> RunList:
        """List the alref runs under a folder, newest first: status, mode, references, LLM calls, cost."""
        root = self._path(folder, "folder") if folder else self.runs
        return run_list(root, missing_ok=root == self.runs)  # before the first run, the folder is not there

    def read_run(self, run: Annotated[str, Field(description="the run folder (from segment_video or list_runs)")]
                 ) -> RunSummary:  # fmt: skip
        """Read a run: its status, each reference's status and frames with a mask, and where the files are."""
        return summarise_run(self._run(run))

    def show_frame(
        self,
        run: Annotated[str, Field(description="the run folder")],
        frame: Annotated[int, Field(description="the frame index, 0-based")] = 0,
        objects: Annotated[list[int] | None, Field(description="object ids to draw; default: all")] = None,
    ) -> CallToolResult:
        """One frame of the run's video with the masks drawn (each object tinted and outlined in its colour),
        as a PNG image."""
        import base64

        data, caption = render_frame(self._run(run), frame, objects)
        return CallToolResult(content=[
            TextContent(type="text", text=caption),
            ImageContent(type="image", data=base64.b64encode(data).decode(), mime_type="image/png"),
        ])  # fmt: skip

    def run_trace(
        self,
        run: Annotated[str, Field(description="the run folder")],
        full: Annotated[
            bool, Field(description="the LLM's raw answers, line breaks kept, nothing shortened")
        ] = False,
    ) -> str:
        """The run's trace as a tree: references, clips, each step, the LLM calls (tokens, latency), the
        decisions with their reasons, fallbacks, and the cost."""
        return trace_text(self._run(run), full=full)


def serve(
    given: dict[str, Any], runs: Path, http: bool = False, host: str = "127.0.0.1", port: int = 8765
) -> None:
    """Serve the tools over stdio (the default) or streamable HTTP at http://HOST:PORT/mcp until stopped."""
    require_mcp()
    server = AlrefMCP(given, runs)  # torch's threads: alref/threads.py, when the alref package was imported
    if not http:
        server.server.run("stdio")
        return
    if host not in LOOPBACK:
        print(f"alref: warning: serving MCP on {host}: anyone who can reach this machine can run alref's tools "
              "and read the files they can; use --host 127.0.0.1 unless that is what you want",
              file=sys.stderr, flush=True)  # fmt: skip
    shown = f"[{host}]" if ":" in host else host
    print(f"alref mcp: http://{shown}:{port}/mcp (runs in {server.runs}; Ctrl+C to stop)", file=sys.stderr,
          flush=True)  # fmt: skip
    started = time.monotonic()
    try:
        server.server.run("streamable-http", host=host, port=port)
    except KeyboardInterrupt:
        pass
    except SystemExit as exit_:  # uvicorn exits 1 when the port is taken
        if time.monotonic() - started < 10 and exit_.code:
            raise InputError(f"cannot serve on {host}:{port} (in use?): pick another with --port N") from None
        raise
