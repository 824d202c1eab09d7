"""`alref app`: the browser app, a local Gradio page over the same chat agent, tools and SQLite threads as
`alref chat`, beside a one-shot `alref segment` form.

Each browser tab has its own :class:`~alref.app.session.TabSession` (Gradio per-session state, never a
module global), so two tabs are two conversations. Long work runs in Gradio's queue and shows alref's
progress stages on the page. Everything from the LLM, a saved conversation or a result is escaped
(:mod:`alref.app.render`); the settings (which hold the API key) are never rendered, and the page
serves only files from the app's own folders.

Gradio is imported only here, and only when the app starts: ``pip install -c constraints.txt -e ".[app]"``.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

from alref.app import render, viewer
from alref.app.live import LiveTurn, stream_work
from alref.app.session import AppConfig, TabSession
from alref.errors import AlrefError, InputError

INSTALL = 'the browser app needs Gradio: pip install -c constraints.txt -e ".[app]"'
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

CSS = """
.alref-table{border-collapse:collapse;width:100%;font-size:13px}
.alref-table td,.alref-table th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
.alref-text{white-space:pre-wrap;word-break:break-word}
.alref-warn{color:#a04000}.alref-muted{color:#777}
#alref-status .error,#alref-turn .error{color:#b00020;font-weight:600}
.alref-legend{list-style:none;padding:0;margin:4px 0;display:flex;flex-wrap:wrap;gap:4px 14px}
.alref-swatch{display:inline-block;width:14px;height:14px;border-radius:3px;vertical-align:-2px;
  border:1px solid rgba(0,0,0,.35);margin-right:2px}
"""


def require_gradio() -> Any:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool
    try:
        import gradio
    except ImportError:
        raise InputError(INSTALL) from None
    return gradio


def _status(message: str, error: bool = False) -> str:
    cls = ' class="error"' if error else ""
    return f"<p{cls}>{'error: ' if error else ''}{render.e(message)}</p>"


def _thread_html(tab: TabSession | None) -> str:
    if tab is None or tab.chat is None:
        return '<p class="alref-muted">no conversation yet</p>'
    thread = render.e(tab.chat.thread)
    return (f'<p>conversation <code id="alref-thread-id">{thread}</code> · continue it in a terminal with '
            f"<code>alref chat --resume {thread}</code></p>")  # fmt: skip


def _objects_html(tab: TabSession | None) -> str:
    objects = tab.objects() if tab else []
    if not objects:
        return '<p class="alref-muted" id="alref-no-objects">no objects</p>'
    head = "".join(f"<th>{render.e(c)}</th>" for c in render.OBJECT_COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{render.e(c)}</td>" for c in row) + "</tr>"
        for row in render.object_rows(objects)
    )
    return f'<table class="alref-table alref-objects"><tr>{head}</tr>{body}</table>'


def _chat_error(tab: TabSession) -> str:
    """Why the chat could not start although an LLM is configured (its models are unavailable)."""
    if tab.chat_error is None:
        return ""
    return _status(f"the chat cannot start, its models are unavailable: {tab.chat_error}", error=True)


def _video_info(tab: TabSession) -> str:
    info = tab.info
    audio = (
        f" · audio {render.e(tab.audio.name)}" if tab.audio else (" · with sound" if info.has_audio else "")
    )
    return (f"<p><b>{render.e(tab.video.name)}</b>: {info.num_frames} frames, {info.width}×{info.height}, "
            f"{info.fps:.1f} fps{audio}</p>")  # fmt: skip


def _turn_status(tab: TabSession, report: dict[str, Any]) -> str:
    if report["status"] == "llm_error":
        return _status("the LLM gave no answer; the conversation is saved, ask again later", error=True)
    if report["status"] == "question":  # the turn's answer is the question; the next message answers it
        return _status(
            "alref asks which one you mean: answer in the message box (a number, several, none, or words)"
        )
    return _video_info(tab)


def build_app(config: AppConfig) -> Any:
    """The page (a ``gr.Blocks``), not yet launched."""
    gr = require_gradio()
    from alref.tools.loading import PROFILES

    settings = config.settings()  # checked once at start; never shown
    profile = settings.models
    chat_note = ("" if settings.llm_configured else
                 " The chat needs a tool-calling LLM: start `alref app` with `--llm MODEL` (and `--llm-base-url`) "
                 "or set OPENAI_API_KEY. Without one, the segment form runs the baseline and the \"correct "
                 "masks\" tab makes and corrects objects with your clicks.")  # fmt: skip
    example = config.example
    smoke = (
        " · **smoke models: tiny random weights, the masks are meaningless**" if profile == "smoke" else ""
    )

    def progress_of(progress: Any):
        def show(fraction: float | None, text: str) -> None:
            progress(fraction, desc=text)

        return show

    def tab_of(tab: TabSession | None) -> TabSession:
        return tab if tab is not None else TabSession(config)

    def chat_outputs(tab: TabSession, status: str) -> tuple:
        trace = tab.session.workspace.trace if tab.session else None
        images = render.seen_images(tab.turn_events, trace) if trace else []
        report = tab.reports[-1] if tab.reports else None
        overlay = tab.session.workspace.overlay if tab.session else None
        return (
            tab, status, _thread_html(tab), render.chat_messages(tab.history), tab.preview(),
            str(overlay) if overlay is not None and overlay.is_file() else None, _objects_html(tab),
            render.trace_html(tab.turn_events, "the last turn"), images, report, render.legend_html(tab.objects()),
        )  # fmt: skip

    def opened(tab: TabSession, frame: Any) -> tuple:
        """The page once a video is open: its facts (and what the chat lacks), first frame and player."""
        status = _video_info(tab) + (f"<p>{render.e(chat_note)}</p>" if chat_note else "") + _chat_error(tab)
        player = tab.player()
        return (*chat_outputs(tab, status), frame, str(player) if player else None,
                render.threads_html(tab.threads()))  # fmt: skip

    def open_video(tab, upload, path, audio_upload, audio_path, progress=gr.Progress()):  # noqa: B008
        tab = tab_of(tab)
        kept = None
        try:
            progress(None, desc="opening the video")
            if upload:
                video = kept = tab.keep_upload(upload)
            elif path and path.strip():
                video = Path(path.strip()).expanduser()
            else:
                raise InputError("choose a video: upload one, or type its path on this machine")
            audio = tab.keep_upload(audio_upload) if audio_upload else (audio_path or "").strip() or None
            frame = tab.open(video, audio).read_frame(0)
        except AlrefError as exc:
            if kept is not None and kept != tab.video:
                kept.unlink(missing_ok=True)  # not a video: nothing is kept
            return (*chat_outputs(tab, _status(str(exc), error=True)), None, None,
                    render.threads_html(tab.threads()))  # fmt: skip
        return opened(tab, frame)

    def open_example(tab, progress=gr.Progress()):  # noqa: B008
        tab = tab_of(tab)
        try:
            progress(None, desc="opening the sample video")
            if example is None:
                raise InputError("this installation has no sample video")
            frame = tab.open(example).read_frame(0)
        except AlrefError as exc:
            return (*chat_outputs(tab, _status(str(exc), error=True)), None, None,
                    render.threads_html(tab.threads()), gr.skip())  # fmt: skip
        return (*opened(tab, frame), str(example))

    def resume(tab, thread, progress=gr.Progress()):  # noqa: B008
        tab = tab_of(tab)
        try:
            progress(None, desc="opening the conversation")
            frame = tab.resume(thread or "").read_frame(0)
        except AlrefError as exc:
            return (*chat_outputs(tab, _status(str(exc), error=True)), gr.skip(), gr.skip(),
                    render.threads_html(tab.threads()))  # fmt: skip
        player = tab.player()
        return (*chat_outputs(tab, _video_info(tab)), frame, str(player) if player else None,
                render.threads_html(tab.threads()))  # fmt: skip

    def send(tab, text, progress=gr.Progress()):  # noqa: B008
        """A chat turn as it happens: the message at once, then each tool call and stage (the progress
        bar under the chat), the answer as soon as it is known; then the page as after any turn."""
        tab = tab_of(tab)
        try:
            text = tab.check_message(text or "")
        except AlrefError as exc:  # nothing was sent: the message stays in the box
            yield {tab_state: tab, turn: _status(str(exc), error=True)}
            return
        live = LiveTurn(text)
        yield {tab_state: tab, chatbot: live.messages(tab.history), message: "", turn: ""}
        for kind, value in stream_work(lambda show, on_step: tab.ask(text, show, on_step)):
            if kind == "show":
                progress(value[0], desc=value[1])
                if live.show(*value):
                    yield {chatbot: live.messages(tab.history)}
            elif kind == "step":
                live.step(value)
                yield {chatbot: live.messages(tab.history)}
            elif kind == "error":
                failed = value if isinstance(value, AlrefError) else None
                if failed is None:
                    traceback.print_exception(value, file=sys.stderr)  # for whoever runs the app
                said = str(failed) if failed else f"the turn failed: {type(value).__name__}: {value}"
                yield dict(zip(chat_out, chat_outputs(tab, _video_info(tab)), strict=True)) | {
                    turn: _status(" ".join(said.split()), error=True)
                }
                return
            else:
                yield dict(zip(chat_out, chat_outputs(tab, _turn_status(tab, value)), strict=True)) | {
                    turn: ""
                }

    def edit(action):
        def run(tab, object_id, name, progress=gr.Progress()):  # noqa: B008
            tab = tab_of(tab)
            try:
                progress(None, desc=f"{action}: propagating the masks again")
                tab.edit(action, int(object_id) if object_id not in (None, "") else None, name or "")
            except AlrefError as exc:
                return chat_outputs(tab, _status(str(exc), error=True))
            return chat_outputs(tab, _video_info(tab))

        return run

    def downloads(tab, progress=gr.Progress()):  # noqa: B008
        tab = tab_of(tab)
        try:
            progress(None, desc="writing masks, overlay.mp4 and result.json")
            files = tab.downloads()
        except AlrefError as exc:
            return _status(str(exc), error=True), None
        return "", [str(f) for f in files]

    def segment(tab, kind, reference, strategy, models, progress=gr.Progress()):  # noqa: B008
        tab = tab_of(tab)
        try:
            done = tab.segment(reference or "", kind, strategy, models, progress_of(progress))
        except AlrefError as exc:
            return _status(str(exc), error=True), None, None, "", []
        result = done["result"]
        notes = "".join(f"<p class='alref-muted'>{render.e(n)}</p>" for n in done["notes"])
        overlay = [str(f) for f in done["files"] if f.suffix == ".mp4"]
        images = render.seen_images(tab.turn_events, done["trace"])
        return (render.result_html(result) + notes, overlay[0] if overlay else None, [str(f) for f in done["files"]],
                render.trace_html(tab.turn_events, "the run"), images)  # fmt: skip

    def threads(tab):
        return render.threads_html(tab_of(tab).threads())

    with gr.Blocks(title="alref") as page:
        tab_state = gr.State(None, delete_callback=lambda tab: tab.close() if tab is not None else None)
        gr.Markdown("### alref · segment what a sentence or a sound refers to, across a video" + smoke)
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                upload = gr.File(label="upload a video", type="filepath", elem_id="alref-upload")
                path = gr.Textbox(
                    label="or a path on this machine", value=config.video or "", elem_id="alref-path"
                )
                with gr.Accordion("separate audio (optional)", open=False):
                    audio_upload = gr.File(label="upload an audio file", type="filepath")
                    audio_path = gr.Textbox(label="or its path", value=config.audio or "")
                with gr.Row():
                    open_button = gr.Button("open", variant="primary", elem_id="alref-open")
                    example_button = gr.Button("open the example", elem_id="alref-example",
                                               visible=example is not None)  # fmt: skip
                status = gr.HTML(elem_id="alref-status")
                player = gr.Video(label="the video", interactive=False, height=220, elem_id="alref-player")
                with gr.Accordion("first frame", open=False):
                    first_frame = gr.Image(
                        label="first frame", interactive=False, height=180, elem_id="alref-frame"
                    )
                with gr.Accordion("saved conversations", open=False):
                    thread_box = gr.Textbox(label="thread id", elem_id="alref-resume-thread")
                    resume_button = gr.Button("resume", elem_id="alref-resume")
                    thread_list = gr.HTML(render.threads_html([]))
                    refresh = gr.Button("refresh the list", size="sm")
            with gr.Column(scale=3):
                with gr.Tabs():
                    with gr.Tab("chat"):
                        thread_html = gr.HTML(_thread_html(None), elem_id="alref-thread")
                        if chat_note:
                            gr.Markdown(chat_note)
                        with gr.Row():
                            with gr.Column(scale=3):
                                chatbot = gr.Chatbot(label="conversation", elem_id="alref-chat", height=360,
                                                     sanitize_html=True, allow_tags=False, latex_delimiters=[],
                                                     buttons=["copy"], feedback_options=None)  # fmt: skip
                                turn = gr.HTML(elem_id="alref-turn", min_height=44)
                                message = gr.Textbox(label="message", placeholder="segment the red square",
                                                     elem_id="alref-message", submit_btn=True)  # fmt: skip
                            with gr.Column(scale=2):
                                preview = gr.Image(label="pivot frame: masks and boxes", interactive=False,
                                                   elem_id="alref-preview")  # fmt: skip
                                overlay = gr.Video(label="overlay of the current objects", interactive=False,
                                                   elem_id="alref-overlay")  # fmt: skip
                                legend = gr.HTML(elem_id="alref-legend")
                        objects = gr.HTML(_objects_html(None), elem_id="alref-objects")
                        with gr.Row():
                            object_id = gr.Number(
                                1, label="object id", precision=0, elem_id="alref-object-id"
                            )
                            new_name = gr.Textbox(label="new name", elem_id="alref-new-name")
                            rename_button = gr.Button("rename", elem_id="alref-rename")
                            remove_button = gr.Button("remove", elem_id="alref-remove")
                            undo_button = gr.Button("undo", elem_id="alref-undo")
                        with gr.Row():
                            download_button = gr.Button("prepare downloads", elem_id="alref-downloads")
                            download_status = gr.HTML()
                        files = gr.File(label="masks.zip · overlay.mp4 · result.json", file_count="multiple",
                                        interactive=False, elem_id="alref-files")  # fmt: skip
                        with gr.Accordion("trace of the last turn", open=True):
                            trace = gr.HTML(elem_id="alref-trace")
                            seen = gr.Gallery(
                                label="images the model saw", columns=4, height=220, elem_id="alref-seen"
                            )
                            report = gr.JSON(label="the turn's report", open=False)
                    with gr.Tab("correct masks", elem_id="alref-viewer-tab") as viewer_tab:
                        correct = viewer.ViewerTab(gr)
                    with gr.Tab("segment"):
                        with gr.Row():
                            kind = gr.Radio(["sentence", "sound"], value="sentence", label="the reference is")
                            strategy = gr.Radio(
                                ["pivot", "tracks"], value=settings.strategy, label="strategy"
                            )
                            models = gr.Dropdown(list(PROFILES), value=profile, label="model profile")
                        reference = gr.Textbox(label="sentence (with sound: optional, which sounding object)",
                                               placeholder="the red square", elem_id="alref-reference")  # fmt: skip
                        segment_button = gr.Button("segment", variant="primary", elem_id="alref-segment")
                        result = gr.HTML(elem_id="alref-result")
                        run_overlay = gr.Video(label="overlay.mp4", interactive=False, height=320)
                        run_files = gr.File(label="masks.zip · overlay.mp4 · result.json", file_count="multiple",
                                            interactive=False, elem_id="alref-run-files")  # fmt: skip
                        with gr.Accordion("trace of the run", open=False):
                            run_trace = gr.HTML()
                            run_seen = gr.Gallery(label="images the model saw", columns=4, height=220)

        # one progress bar per action (Gradio draws one on every output otherwise)
        chat_out = [
            tab_state,
            status,
            thread_html,
            chatbot,
            preview,
            overlay,
            objects,
            trace,
            seen,
            report,
            legend,
        ]
        opened_out = [*chat_out, first_frame, player, thread_list]
        correct.wire(tab_state, tab_of, chat_out, lambda tab: chat_outputs(tab, _video_info(tab) if tab.video else ""),
                     progress_of, viewer_tab)  # fmt: skip
        open_button.click(open_video, [tab_state, upload, path, audio_upload, audio_path], opened_out,
                          show_progress_on=[status])  # fmt: skip
        example_button.click(open_example, [tab_state], [*opened_out, path], show_progress_on=[status])
        resume_button.click(resume, [tab_state, thread_box], opened_out, show_progress_on=[status])
        refresh.click(threads, [tab_state], [thread_list])
        # the bar goes under the chat, which shows the turn meanwhile
        message.submit(send, [tab_state, message], [*chat_out, message, turn], show_progress_on=[turn])
        for button, action in ((rename_button, "rename"), (remove_button, "remove"), (undo_button, "undo")):
            button.click(edit(action), [tab_state, object_id, new_name], chat_out, show_progress_on=[objects])
        download_button.click(
            downloads, [tab_state], [download_status, files], show_progress_on=[download_status]
        )
        segment_button.click(segment, [tab_state, kind, reference, strategy, models],
                             [result, run_overlay, run_files, run_trace, run_seen], show_progress_on=[result])  # fmt: skip
        if config.video:  # the video given on the command line is opened in every new tab
            page.load(open_video, [tab_state, upload, path, audio_upload, audio_path], opened_out,
                      show_progress_on=[status])  # fmt: skip
        else:
            page.load(threads, [tab_state], [thread_list])
    return page


def serve(config: AppConfig, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Start the page and block until interrupted."""
    gr = require_gradio()
    if host not in LOOPBACK:
        print(f"alref: warning: serving on {host}: anyone who can reach this machine can use the app, its files "
              "and its LLM key; use --host 127.0.0.1 unless that is what you want", file=sys.stderr, flush=True)  # fmt: skip
    page = build_app(config)
    page.queue(default_concurrency_limit=2)
    roots = [config.out, config.chat_out]
    for root in roots:
        root.mkdir(parents=True, exist_ok=True)
    served = [str(r.resolve()) for r in roots] + ([str(config.example)] if config.example else [])
    page.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, show_error=False,
                allowed_paths=served, ssr_mode=False, footer_links=[],
                inbrowser=False, css=CSS, theme=gr.themes.Default())  # fmt: skip
    shown = f"[{host}]" if ":" in host else host
    print(f"alref app: http://{shown}:{page.server_port}/ (Ctrl+C to stop)", file=sys.stderr, flush=True)
    try:
        page.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        page.close()
