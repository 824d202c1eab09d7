"""One browser tab's work: the video it opened, its conversation (the same :class:`Chat`, tools and
SQLite threads as `alref chat`) and its one-shot segment runs. Nothing here imports a web framework;
:mod:`alref.app.web` holds one :class:`TabSession` per tab in the page's per-session state.

A conversation started here is continued by ``alref chat --resume THREAD`` and the other way round:
the thread, its SQLite file and the chat's folder (``alref-chat/<thread>`` by default) are the CLI's,
and a resumed conversation runs with its own settings (the flags the app was started with win), in its
own folder, with its stored masks.

When the chat cannot start for a video, the page says which part failed: no LLM configured, or the
models unavailable (:class:`ChatUnavailableError`, naming the model and how to provide it); the video
stays open for the segment form. Without an LLM the tab still has a session of its own over the video
(:attr:`TabSession.own`, in ``OUT/sessions/``, removed with the tab), so a person can make and correct
objects with clicks and boxes, undo, and see the overlay; with an LLM the clicks change the chat's
objects and are saved in its thread, even before its first message.

One action at a time per tab: a second one while a chat turn, a correction or an edit is running is
refused with one line (the two would change the same objects).
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage

from alref.agent.chat.agent import Chat, chat_store, kept_settings, list_threads, resumed_settings
from alref.app import render
from alref.app.files import example_video, served_video, write_overlay, zip_masks
from alref.app.oneshot import segment_run
from alref.app.progress import Show
from alref.app.shown import ShownChatSession, _quiet
from alref.config import Settings, load_settings
from alref.core.workspace import Workspace
from alref.errors import AlrefError, InputError, ModelLoadError, ModelUnavailableError
from alref.media.video import Video, open_video
from alref.media.writers import atomic_write_json
from alref.trace.record import read_events

__all__ = ["AppConfig", "ChatUnavailableError", "ShownChatSession", "TabSession", "zip_masks"]


NO_LLM = ("the chat needs a tool-calling LLM: start alref app with --llm MODEL (and --llm-base-url for a local "
          "server) or set OPENAI_API_KEY")  # fmt: skip


class ChatUnavailableError(AlrefError):
    """An LLM is configured but the chat's models are not available (the message names the model and how
    to provide it)."""

    exit_code = 3


@dataclass
class AppConfig:
    """What every tab of one `alref app` shares: the settings given on the command line and the folders."""

    given: dict[str, Any]
    db: Path
    out: Path  # uploads/ and runs/ of the segment form
    chat_out: Path = Path("alref-chat")  # <thread>/ as `alref chat` lays it out
    max_steps: int = 8
    video: str | None = None  # the video given on the command line
    audio: str | None = None
    example: Path | None = field(default_factory=example_video)  # the sample the example button opens

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(**{**self.given, **overrides})


def _text_of(message: Any) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content if isinstance(p, dict))


@dataclass
class TabSession:
    config: AppConfig
    video: Path | None = None
    audio: Path | None = None
    info: Any = None
    chat: Chat | None = None
    chat_error: AlrefError | None = None  # why the chat could not start for this video (models unavailable)
    own: ShownChatSession | None = None  # without a chat: the tab's own session (clicks, no LLM)
    history: list[tuple[str, str]] = field(default_factory=list)  # (role, text) as shown
    reports: list[dict[str, Any]] = field(default_factory=list)
    turn_events: list[dict[str, Any]] = field(default_factory=list)
    _stack: ExitStack = field(default_factory=ExitStack)
    _saver: Any = None
    _lock: Any = field(default_factory=threading.Lock)

    # --- opening ---------------------------------------------------------------------------------

    def keep_upload(self, path: str | Path) -> Path:
        """Copy an uploaded file out of the web server's temporary folder, so that a conversation about it
        can be resumed later: ``OUT/uploads/<sha256[:16]>/<name>``."""
        source = Path(path)
        digest = hashlib.sha256()
        with open(source, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        target = self.config.out / "uploads" / digest.hexdigest()[:16] / source.name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        return target.resolve()

    def open(self, video: str | Path, audio: str | Path | None = None, thread: str | None = None,
             settings: Settings | None = None, folder: Path | None = None) -> Video:  # fmt: skip
        """Open ``video`` (MediaError with a one-line message if it is not one) and, when an LLM is
        configured, start a conversation about it (or continue ``thread``, in ``folder``). When the chat's
        models are unavailable the video stays open and :attr:`chat_error` says why."""
        opened = open_video(Path(video).expanduser())
        if audio is not None and not Path(audio).expanduser().is_file():
            raise InputError(f"audio file {audio} does not exist")
        self.close()
        self.video = Path(video).expanduser().resolve()
        self.audio = Path(audio).expanduser().resolve() if audio else None
        self.info = opened.info
        self.history, self.reports, self.turn_events = [], [], []
        settings = settings or self.config.settings()
        if settings.llm_configured:
            try:
                self._start_chat(settings, thread, folder)
            except (ModelUnavailableError, ModelLoadError) as exc:
                self.close()
                self.chat_error = exc
        if self.chat is None and thread is None:
            self._start_own(settings)
        return opened

    def resume(self, thread: str) -> Video:
        """Continue a saved conversation (one from `alref chat` or another tab) with its video."""
        thread = thread.strip()
        if not thread:
            raise InputError(
                "give the thread id of the conversation to continue (`alref chat --list` shows them)"
            )
        with chat_store(self.config.db) as saver:
            saved = Chat.saved_state(saver, thread)
        if not saved.get("video"):
            raise InputError(f"conversation '{thread}' names no video")
        settings = load_settings(**resumed_settings(saved, self.config.given))  # its own, the app's flags win
        if not settings.llm_configured:
            raise InputError(NO_LLM.replace("the chat needs", "continuing a conversation needs"))
        folder = Path(saved["out"]) if saved.get("out") else None
        opened = self.open(
            saved["video"], saved.get("audio"), thread=thread, settings=settings, folder=folder
        )
        if self.chat_error is not None:
            self._need_chat()  # says which model is missing
        for message in saved.get("messages", []):
            if isinstance(message, HumanMessage):
                self.history.append(("user", _text_of(message)))
            elif isinstance(message, AIMessage) and _text_of(message):
                self.history.append(("assistant", _text_of(message)))
        return opened

    def _start_chat(self, settings: Settings, thread: str | None, folder: Path | None = None) -> None:
        self._saver = self._stack.enter_context(chat_store(self.config.db))
        saved = Chat.saved_state(self._saver, thread) if thread else {}
        thread = thread or uuid.uuid4().hex[:8]
        session = ShownChatSession(self.video, folder or self.config.chat_out / thread, settings, self.audio)
        self._stack.callback(session.close)  # the decoded frames go with the conversation (unless kept)
        self.chat = Chat(session, None, self._saver, thread=thread, max_steps=self.config.max_steps)
        self._stack.callback(self.chat.close)  # its MCP servers stop first, then the frames go
        session.restore(saved.get("objects"))  # the stored masks; only missing ones are propagated

    def _start_own(self, settings: Settings) -> None:
        """The tab's own session over the video (no LLM, no thread): clicks and boxes make and correct
        objects; its folder goes with the tab. Models that are unavailable leave it out (the page says why
        when it is used)."""
        assert self.video is not None
        folder = self.config.out / "sessions" / f"{self.video.stem}-{uuid.uuid4().hex[:6]}"
        try:
            session = ShownChatSession(self.video, folder, settings, self.audio)
        except (ModelUnavailableError, ModelLoadError) as exc:
            self.chat_error = self.chat_error or exc
            return
        self._stack.callback(shutil.rmtree, folder, True)  # after the frames (callbacks run last first)
        self._stack.callback(session.close)
        self.own = session

    def close(self) -> None:
        self.chat = None
        self.own = None
        self.chat_error = None
        self._saver = None
        self._stack.close()
        self._stack = ExitStack()

    @property
    def session(self) -> ShownChatSession | None:
        """The objects' session: the chat's, else the tab's own (no LLM)."""
        return self.chat.session if self.chat else self.own  # type: ignore[return-value]

    def player(self) -> Path | None:
        """The opened video as the page's player serves it (see :func:`served_video`)."""
        if self.video is None:
            return None
        allowed = [
            self.config.out,
            self.config.chat_out,
            *([self.config.example] if self.config.example else []),
        ]
        return served_video(self.video, self.config.out, allowed)

    @contextmanager
    def busy(self, what: str) -> Iterator[None]:
        """Hold the tab for one action; a second one meanwhile is refused with one line."""
        if not self._lock.acquire(blocking=False):
            raise InputError(f"wait: this tab is still working on {self._doing}")
        self._doing = what
        try:
            yield
        finally:
            self._lock.release()

    _doing = "an earlier action"

    def threads(self) -> list[dict[str, Any]]:
        return list_threads(self.config.db)

    # --- the conversation ------------------------------------------------------------------------

    def check_message(self, text: str) -> str:
        """The message to send (stripped), else an InputError in one line: no video, no chat (and why),
        an empty message, or the tab busy with another action."""
        self._need_chat()
        text = text.strip()
        if not text:
            raise InputError("type a message first")
        if self._lock.locked():
            raise InputError(f"wait: this tab is still working on {self._doing}")
        return text

    def ask(
        self, text: str, show: Show = _quiet, on_step: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """One chat turn; ``show`` is told its stages (asking the LLM, decoding, detecting, propagating
        k/N) and ``on_step`` its steps (:meth:`Chat.ask`) as they happen."""
        text = self.check_message(text)
        with self.busy("the last message"):
            return self._ask(self._need_chat(), text, show, on_step)

    def _ask(self, chat: Chat, text: str, show: Show, on_step: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:  # fmt: skip
        trace = chat.session.workspace.trace
        before = len(read_events(trace))
        chat.session.show = show  # type: ignore[attr-defined]
        original = chat.llm.chat

        def asking(*args: Any, **kwargs: Any) -> Any:
            step = (kwargs.get("context") or {}).get("step")
            show(None, f"asking the LLM (step {step})" if step else "asking the LLM")
            return original(*args, **kwargs)

        chat.llm.chat = asking  # type: ignore[method-assign]
        try:
            show(None, "asking the LLM")
            report = chat.ask(text, on_step=on_step)
        finally:
            del chat.llm.chat
            chat.session.show = _quiet  # type: ignore[attr-defined]
        self.turn_events = read_events(trace)[before:]
        self.reports.append(report)
        self.history.append(("user", text))
        tools = ", ".join(f"{c['tool']} {'✗' if c['error'] else '✓'}" for c in report["calls"])
        answer = str(report["answer"] or "") + (f"\n\n(tools: {tools})" if tools else "")
        self.history.append(("assistant", answer))
        if chat.session.changed:
            self.write_overlay()
        return report

    def _need_session(self) -> ShownChatSession:
        """The objects' session (the chat's or the tab's own), else why there is none, in one line."""
        if self.session is None:
            if self.video is None:
                raise InputError("open a video first")
            self._need_chat()  # says which models are missing
            raise ChatUnavailableError("the segmentation models are unavailable")
        return self.session

    def _need_chat(self) -> Chat:
        if self.chat is None:
            if self.video is None:
                raise InputError("open a video first")
            if self.chat_error is not None:  # an LLM is configured: the models are what is missing
                raise ChatUnavailableError(f"the chat's models are unavailable: {self.chat_error}")
            raise InputError(NO_LLM)
        return self.chat

    def edit(self, action: str, object_id: int | None = None, name: str = "") -> dict[str, Any]:
        """rename / remove / undo, done by the session as the chat's tools do it, then saved in the
        conversation's state so a resumed conversation sees it."""
        session = self._need_session()
        with self.busy(action):
            return self._edit(session, action, object_id, name)

    def _edit(self, session: ShownChatSession, action: str, object_id: int | None, name: str) -> dict[str, Any]:  # fmt: skip
        if action == "undo":
            result = session.undo()
        elif object_id is None:
            raise InputError("choose the object's id")
        elif action == "remove":
            result = session.remove(int(object_id))
        elif action == "rename":
            if not name.strip():
                raise InputError("type the object's new name")
            result = session.rename(int(object_id), name.strip())
        else:
            raise InputError(f"unknown action {action}")
        self._save_objects()
        self.write_overlay()
        self.history.append(("assistant", render.edit_text(action, result, session.describe_objects())))
        return result

    def refine(self, object_id: int | None, frame: int, points: list[list[float]], labels: list[int],
               box: list[float] | None = None, name: str = "", show: Show = _quiet) -> dict[str, Any]:  # fmt: skip
        """A person's clicks and/or box on ``frame`` for object ``object_id`` (None: a new object named
        ``name``), done by the session as the chat's refine_object tool does it, then saved in the
        conversation's state (without a chat: the tab's own session); the overlay is written again."""
        session = self._need_session()
        with self.busy("a correction"):
            return self._refine(session, object_id, frame, points, labels, box, name, show)

    def _refine(self, session: ShownChatSession, object_id: int | None, frame: int, points: list[list[float]],
                labels: list[int], box: list[float] | None, name: str, show: Show) -> dict[str, Any]:  # fmt: skip
        session.show = show  # type: ignore[attr-defined]
        try:
            if object_id is None:
                result = session.add_object(name.strip() or "object", frame, points, labels, box)
            else:
                result = session.refine(int(object_id), frame, points, labels, box)
        finally:
            session.show = _quiet  # type: ignore[attr-defined]
        if result.get("already_applied"):
            return result
        self._save_objects()
        show(None, "writing overlay.mp4")
        self.write_overlay()
        self.history.append(
            ("assistant", render.refine_text(object_id is None, result, session.describe_objects()))
        )
        return result

    def _save_objects(self) -> None:
        """Write the session's objects into the thread's last checkpoint (as the chat's ``remember``
        node does), as if the agent had just answered: the next turn starts from them. Before the first
        message the thread is started with them and what ``--resume`` needs (the video, audio, settings and
        folder, as a turn keeps them). Without a chat there is no thread: nothing is saved."""
        chat = self.chat
        if chat is None:
            return
        values: dict[str, Any] = {"objects": chat.session.snapshot()}
        if not chat.graph.get_state(chat.config).values.get("messages"):
            session = chat.session
            values |= {"video": str(session.video_path), "settings": kept_settings(session.settings),
                       "audio": str(session.audio_path) if session.audio_path else None,
                       "out": str(session.out.resolve())}  # fmt: skip
        chat.graph.update_state(chat.config, values, as_node="agent")

    def preview(self) -> str | None:
        session = self.session
        last = self.reports[-1] if self.reports else {}
        if last.get("status") == "question" and last.get("preview"):  # the candidates the question names
            return str(last["preview"])
        if session is None or not session.objects:
            return None
        turn = sum(role == "user" for role, _ in self.history)
        return session.preview(turn)

    def objects(self) -> list[dict[str, Any]]:
        return self.session.describe_objects() if self.session else []

    def write_overlay(self) -> Path | None:
        """overlay.mp4 of the current objects in the session's folder (removed when there are none)."""
        return write_overlay(self.session) if self.session is not None else None

    def downloads(self) -> list[Path]:
        """masks.zip, overlay.mp4 and result.json of the conversation's current objects (or the tab's own)."""
        session = self._need_session()
        with self.busy("the downloads"):
            return self._downloads(session)

    def _downloads(self, session: ShownChatSession) -> list[Path]:
        session.export()
        overlay = self.write_overlay()
        result = {
            "kind": "chat" if self.chat else "clicks",
            "thread": self.chat.thread if self.chat else None,
            "video": str(session.video_path),
            "audio": str(session.audio_path) if session.audio_path else None,
            "input": session.info.to_dict(),
            "smoke": session.settings.models == "smoke",
            "objects": session.describe_objects(),
            "turns": [{k: r[k] for k in ("status", "answer", "calls", "llm")} for r in self.reports],
        }
        workspace = Workspace(session.out)
        atomic_write_json(workspace.result, result)
        files = [zip_masks(session.out), workspace.result]
        return files[:1] + ([overlay] if overlay else []) + files[1:]

    # --- one-shot runs ---------------------------------------------------------------------------

    def segment(
        self, reference: str, kind: str, strategy: str, profile: str, show: Show = _quiet
    ) -> dict[str, Any]:
        """`alref segment` on the open video (``kind``: "sentence" or "sound"), into OUT/runs/<name>-<id>."""
        if self.video is None:
            raise InputError("open a video first")
        done = segment_run(self.config.settings(models=profile, strategy=strategy), self.config.out, self.video,
                           self.audio, reference, kind, show)  # fmt: skip
        self.turn_events = read_events(done["trace"])
        return done
