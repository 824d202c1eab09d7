"""One browser tab's work: the video it opened, its conversation (the same :class:`Chat`, tools and
SQLite threads as `alref chat`) and its one-shot segment runs. Nothing here imports a web framework;
:mod:`alref.app.web` holds one :class:`TabSession` per tab in the page's per-session state.

A conversation started here is continued by ``alref chat --resume THREAD`` and the other way round:
the thread, its SQLite file and the chat's folder (``alref-chat/<thread>`` by default) are the CLI's,
and a resumed conversation runs with its own settings (the flags the app was started with win), in its
own folder, with its stored masks.

When the chat cannot start for a video, the page says which part failed: no LLM configured, or the
models unavailable (:class:`ChatUnavailableError`, naming the model and how to provide it); the video
stays open for the segment form.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage

from alref.agent.chat.agent import Chat, chat_store, list_threads, resumed_settings
from alref.agent.chat.session import ChatSession
from alref.app import render
from alref.app.progress import Show, WebReporter
from alref.config import Settings, load_settings
from alref.core.workspace import MASKS_DIR, MASKS_FILE, OBJECTS_DIR, PALETTE_DIR, Workspace
from alref.errors import AlrefError, InputError, ModelLoadError, ModelUnavailableError
from alref.media.video import Video, open_video
from alref.media.writers import OverlayWriter, atomic_write_json, rle_to_mask
from alref.trace.record import read_events


def _quiet(fraction: float | None, text: str) -> None:
    pass


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

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(**{**self.given, **overrides})


class ShownChatSession(ChatSession):
    """A ChatSession that says on the page what it is doing (decoding, detecting, propagating)."""

    show: Show = staticmethod(_quiet)

    def _segmentation(self):
        if self._session is None:
            self.show(None, "decoding the video for SAM 2")
        return super()._segmentation()

    def ground(self, frame: int, phrase: str) -> dict[str, Any]:
        self.show(None, f"detecting on frame {frame}")
        return super().ground(frame, phrase)

    def _propagate(self) -> None:  # only when the masks of these objects are not stored
        self._segmentation()
        self._propagated = 0
        self.show(None, f"propagating {len(self.objects)} object(s) over {self.info.num_frames} frames")
        super()._propagate()

    def _advance(self, frames: int) -> None:
        self._propagated = getattr(self, "_propagated", 0) + frames
        total = self.info.num_frames
        self.show(min(1.0, self._propagated / total), f"propagating {self._propagated}/{total}")


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
    history: list[tuple[str, str]] = field(default_factory=list)  # (role, text) as shown
    reports: list[dict[str, Any]] = field(default_factory=list)
    turn_events: list[dict[str, Any]] = field(default_factory=list)
    _stack: ExitStack = field(default_factory=ExitStack)
    _saver: Any = None

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

    def close(self) -> None:
        self.chat = None
        self.chat_error = None
        self._saver = None
        self._stack.close()
        self._stack = ExitStack()

    @property
    def session(self) -> ShownChatSession | None:
        return self.chat.session if self.chat else None  # type: ignore[return-value]

    def threads(self) -> list[dict[str, Any]]:
        return list_threads(self.config.db)

    # --- the conversation ------------------------------------------------------------------------

    def ask(self, text: str, show: Show = _quiet) -> dict[str, Any]:
        chat = self._need_chat()
        text = text.strip()
        if not text:
            raise InputError("type a message first")
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
            report = chat.ask(text)
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
        session = self._need_chat().session
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
        conversation's state; the overlay is written again."""
        session = self._need_chat().session
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
        node does), as if the agent had just answered: the next turn starts from them."""
        chat = self._need_chat()
        state = chat.graph.get_state(chat.config)
        messages = state.values.get("messages") or []
        if not messages:
            return
        chat.graph.update_state(chat.config, {"objects": chat.session.snapshot()}, as_node="agent")

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
        """overlay.mp4 of the current objects in the chat's folder (removed when there are none)."""
        session = self.session
        if session is None:
            return None
        target = session.workspace.overlay
        if not session.objects:
            target.unlink(missing_ok=True)
            return None
        info = session.info
        boxes: dict[int, list] = {}
        for obj, data in sorted(session.objects.items()):
            for frame, box in data["prompts"]:
                boxes.setdefault(frame, []).append((box, f"{obj} {data['name']}"))
        sound = session.audio_path or (session.video_path if info.has_audio else None)  # the track it keeps
        with OverlayWriter(target, info.fps, info.width, info.height, audio=sound) as writer:
            for index, frame in session.video.iter_frames():
                masks = {obj: rle_to_mask(m[index]) for obj, m in session.masks.items() if index in m}
                writer.add(frame, masks, boxes=boxes.get(index, ()))
        return target

    def downloads(self) -> list[Path]:
        """masks.zip, overlay.mp4 and result.json of the conversation's current objects."""
        session = self._need_chat().session
        session.export()
        overlay = self.write_overlay()
        result = {
            "kind": "chat",
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
        from alref.pipeline.audio import VIDEO_TRACK, AudioRequest
        from alref.pipeline.run import segment_video

        if self.video is None:
            raise InputError("open a video first")
        reference = reference.strip()
        request = None
        if kind == "sound":
            request = AudioRequest(str(self.audio) if self.audio else VIDEO_TRACK, reference or None)
            references: list[str] = []
        elif not reference:
            raise InputError('type what to segment, e.g. "the red square"')
        else:
            references = [reference]
        settings = self.config.settings(models=profile, strategy=strategy)
        out = self.config.out / "runs" / f"{self.video.stem}-{uuid.uuid4().hex[:6]}"
        reporter = WebReporter(show)
        result = segment_video(self.video, references, out, settings, reporter, audio=request)
        workspace = Workspace(out)
        files = [zip_masks(out)]
        if workspace.overlay.is_file():
            files.append(workspace.overlay)
        files.append(workspace.result)
        self.turn_events = read_events(workspace.trace)
        return {
            "result": result,
            "out": out,
            "trace": workspace.trace,
            "files": files,
            "notes": reporter.notes,
        }


def zip_masks(out: Path) -> Path:
    """masks/ (and objects/, palette/, masks.json when written) of ``out`` as ``out/masks.zip``."""
    target = Path(out) / "masks.zip"
    tmp = target.with_name(".masks.zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in (MASKS_DIR, OBJECTS_DIR, PALETTE_DIR):
            folder = Path(out) / name
            if folder.is_dir():
                for file in sorted(folder.rglob("*.png")):
                    archive.write(file, file.relative_to(out).as_posix())
        if (Path(out) / MASKS_FILE).is_file():
            archive.write(Path(out) / MASKS_FILE, MASKS_FILE)
    tmp.replace(target)
    return target
