"""The frame viewer of `alref app`: every object's mask on any frame, and a person's clicks to correct one.

A slider goes over the whole video; the frame is shown with each object's mask tinted in the colour the
overlay gives it (``colour_for(id - 1)``). Clicks on the frame add to a pending prompt on that frame: a
positive point, a negative point, or a box from two clicks (its two corners). The pending prompt is
drawn on the frame (green ``+`` positive, red ``x`` negative, a yellow box) until it is applied or
cleared; moving to another frame clears it (a prompt is on one frame). "Apply" gives it to the chosen
object (:meth:`TabSession.refine`, the chat's ``refine_object``: the session takes it as the canonical
SAM 2 video session does and propagates again) or makes a new object of it; "Undo" is the chat's undo.

The objects are the chat's when an LLM is configured (a correction is saved in its thread, even before
its first message), else the tab's own session over the video: clicks work without an LLM.

Each browser tab has its own pending prompt (Gradio per-session state) besides its own TabSession. Click
positions come from ``gr.SelectData.index``: pixels of the shown image (Gradio's image preview never
enlarges an image, so its natural pixels are what was clicked); the shown image is the frame scaled by
:func:`display_scale`, so the click is divided by that scale to give video pixels.

The pure parts (:class:`Clicks`, :func:`frame_image`, :func:`frame_html`) import no web framework;
:class:`ViewerTab` builds the Gradio components (:meth:`ViewerTab.wire` connects them once the page's
chat components exist).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from alref.app import render
from alref.errors import AlrefError, InputError
from alref.media.boxes import colour_for
from alref.media.writers import render_overlay, rle_to_mask

POSITIVE, NEGATIVE, BOX = "positive point", "negative point", "box (two clicks)"
MODES = (POSITIVE, NEGATIVE, BOX)
NEW = "new"  # the object dropdown's value for "a new object"
HELP = (
    "Choose a frame with the slider. Click on the frame to add a **positive point** (on the object), a "
    "**negative point** (not the object), or a **box** (click two opposite corners), as the mode says. "
    "Choose the object to correct (or a new one) and press **apply**: the object is propagated again "
    "over the whole video. **undo** restores the previous masks."
)
_GREEN, _RED, _YELLOW, _WHITE = (0, 200, 0), (230, 30, 30), (255, 220, 0), (255, 255, 255)


@dataclass
class Clicks:
    """One tab's pending prompt: clicks (label 1 positive, 0 negative) and a box on one frame."""

    video: str | None = None  # the video they were made on: another video clears them
    frame: int = 0
    points: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: list[float] | None = None
    corner: list[float] | None = None  # the box's first corner, while its second is awaited

    @property
    def empty(self) -> bool:
        return not self.points and self.box is None

    def add(self, mode: str, x: float, y: float) -> None:
        if mode == BOX:
            if self.corner is None:
                self.corner = [x, y]
                return
            (x0, y0), self.corner = self.corner, None
            self.box = [min(x0, x), min(y0, y), max(x0, x), max(y0, y)]
            return
        self.points.append([x, y])
        self.labels.append(0 if mode == NEGATIVE else 1)

    def describe(self) -> str:
        text = render.prompt_sentence(self.points, self.labels, self.box)
        return text + (" · box: now click its second corner" if self.corner is not None else "")


def display_scale(width: int) -> float:
    """How much a frame is scaled to be shown: small videos are enlarged (by a whole number, so a
    click falls on one video pixel) to be clickable, large ones reduced to keep the page light."""
    if width < 640:
        return float(640 // width)
    return min(1.0, 1280 / width)


def to_video(index: Sequence[float], scale: float, width: int, height: int) -> tuple[float, float]:
    """A click on the shown image (its pixels) in video pixels, inside the frame."""
    x = min(max(float(index[0]) / scale, 0.0), float(width))
    y = min(max(float(index[1]) / scale, 0.0), float(height))
    return round(x, 1), round(y, 1)


def frame_masks(session: Any, frame: int) -> dict[int, np.ndarray]:
    """Every object's mask on ``frame`` (objects without a mask stored there are left out)."""
    return {obj: rle_to_mask(m[frame]) for obj, m in sorted(session.masks.items()) if frame in m}


def frame_image(session: Any, frame: int, clicks: Clicks | None) -> np.ndarray:
    """The frame with every object's mask as the overlay tints it, scaled for the page, with the pending
    prompt drawn on it."""
    image = render_overlay(session.video.read_frame(frame), frame_masks(session, frame))
    scale = display_scale(image.shape[1])
    if scale != 1.0:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA)
    if clicks is not None and clicks.frame == frame:
        _draw_clicks(image, clicks, scale)
    return image


def _draw_clicks(image: np.ndarray, clicks: Clicks, scale: float) -> None:
    def at(x: float, y: float) -> tuple[int, int]:
        return round(x * scale), round(y * scale)

    radius = max(6, round(min(image.shape[:2]) / 40))
    if clicks.box is not None:
        x0, y0, x1, y1 = clicks.box
        cv2.rectangle(image, at(x0, y0), at(x1, y1), _YELLOW, 2)
    if clicks.corner is not None:
        cx, cy = at(*clicks.corner)
        cv2.drawMarker(image, (cx, cy), _YELLOW, cv2.MARKER_CROSS, 3 * radius, 2)
    for (x, y), label in zip(clicks.points, clicks.labels, strict=True):
        centre = at(x, y)
        cv2.circle(image, centre, radius, _GREEN if label == 1 else _RED, -1, cv2.LINE_AA)
        cv2.circle(image, centre, radius, _WHITE, 1, cv2.LINE_AA)
        marker = cv2.MARKER_CROSS if label == 1 else cv2.MARKER_TILTED_CROSS
        cv2.drawMarker(image, centre, _WHITE, marker, radius, 2)


def frame_html(session: Any, frame: int, clicks: Clicks | None) -> str:
    """What the frame shows, as escaped HTML: each object's colour and mask size there, its prompts on
    the frame, and the pending prompt."""
    total = session.info.num_frames
    rows = []
    masks = frame_masks(session, frame)
    for obj, data in sorted(session.objects.items()):
        pixels = int(masks[obj].sum()) if obj in masks else 0
        here = [f"{pixels} px" if pixels else "no mask on this frame"]
        boxes = sum(1 for f, _ in data["prompts"] if f == frame)
        refined = sum(1 for r in data.get("refinements", []) if r["frame"] == frame)
        if boxes:
            here.append(f"{boxes} box prompt{'s' if boxes != 1 else ''} here")
        if refined:
            here.append(f"{refined} correction{'s' if refined != 1 else ''} here")
        colour = colour_for(obj - 1)[0]
        rows.append(
            f'<li class="alref-viewer-object" data-object="{obj}">{render.swatch(obj)} object {obj} '
            f"“{render.e(data['name'])}” ({render.e(colour)}): {render.e(', '.join(here))}</li>"
        )
    listed = f"<ul>{''.join(rows)}</ul>" if rows else '<p class="alref-muted">no objects yet</p>'
    pending = clicks.describe() if clicks is not None and clicks.frame == frame else "nothing yet"
    return (
        f'<p id="alref-viewer-frame-no">frame {frame} of 0–{total - 1}</p>{listed}'
        f'<p id="alref-viewer-pending">pending prompt: {render.e(pending)}</p>'
    )


def object_choices(session: Any) -> list[tuple[str, str]]:
    """The dropdown's choices: every object by id and name, then "a new object"."""
    objects = sorted(session.objects.items()) if session is not None else []
    return [(f"{obj} {data['name']}", str(obj)) for obj, data in objects] + [("a new object", NEW)]


class ViewerTab:
    """The viewer's components; create it inside a ``gr.Tab`` and call :meth:`wire` after the page's chat
    components exist."""

    def __init__(self, gr: Any) -> None:
        self.gr = gr
        gr.Markdown(HELP)
        with gr.Row():
            with gr.Column(scale=3):
                self.frame = gr.Slider(0, 1, value=0, step=1, label="frame", elem_id="alref-viewer-frame")
                self.image = gr.Image(label="masks on this frame (click to add a prompt)", interactive=False,
                                      format="png", elem_id="alref-viewer-image")  # fmt: skip
            with gr.Column(scale=2, min_width=260):
                self.mode = gr.Radio(
                    list(MODES), value=POSITIVE, label="a click adds", elem_id="alref-viewer-mode"
                )
                self.target = gr.Dropdown([("a new object", NEW)], value=None, label="object to correct",
                                          elem_id="alref-viewer-object")  # fmt: skip
                self.name = gr.Textbox(label="name of a new object", placeholder="e.g. the ball",
                                       elem_id="alref-viewer-name")  # fmt: skip
                with gr.Row():
                    self.apply = gr.Button("apply", variant="primary", elem_id="alref-viewer-apply")
                    self.clear = gr.Button("clear clicks", elem_id="alref-viewer-clear")
                    self.undo = gr.Button("undo", elem_id="alref-viewer-undo")
                self.status = gr.HTML(elem_id="alref-viewer-status")
                self.info = gr.HTML(elem_id="alref-viewer-info")
        self.clicks = gr.State(None)

    def wire(
        self,
        tab_state: Any,
        tab_of: Callable[[Any], Any],
        chat_out: list[Any],
        chat_outputs: Callable[[Any], tuple],
        progress_of: Callable[[Any], Callable[[float | None, str], None]],
        selected: Any,
    ) -> None:
        """Connect the events: ``selected`` is the viewer's ``gr.Tab`` (choosing it shows the current
        objects); ``chat_out`` / ``chat_outputs(tab)`` are the chat's components and their values, shown
        again after an apply or an undo."""
        gr = self.gr
        view = [self.frame, self.image, self.info, self.target, self.clicks]

        def shown(tab: Any, frame: Any, clicks: Clicks | None, target: Any = None) -> tuple:
            session = tab.session if tab is not None else None
            if session is None:
                note = "open a video first"
                if tab is not None and tab.video is not None and tab.chat_error is not None:
                    note = f"the segmentation models are unavailable: {tab.chat_error}"
                return (gr.update(), None, f'<p class="alref-muted">{render.e(note)}</p>',
                        gr.update(choices=object_choices(None), value=NEW), None)  # fmt: skip
            last = session.info.num_frames - 1
            index = min(max(int(frame or 0), 0), last)
            if clicks is None or clicks.video != str(session.video_path) or clicks.frame != index:
                clicks = Clicks(video=str(session.video_path), frame=index)
            choices = object_choices(session)
            value = str(target) if str(target) in {v for _, v in choices} else (choices[0][1])
            return (gr.update(maximum=max(last, 1), value=index), frame_image(session, index, clicks),
                    frame_html(session, index, clicks), gr.update(choices=choices, value=value), clicks)  # fmt: skip

        def refresh(tab, frame, clicks, target):
            return (*shown(tab, frame, clicks, target), "")

        def select(tab, frame, clicks, target, mode, evt):
            first = shown(tab, frame, clicks, target)
            clicks = first[-1]
            if clicks is None or evt.index is None:  # no video, or a click beside the image
                return (*first, gr.skip())
            info = tab.session.info
            clicks.add(mode, *to_video(evt.index, display_scale(info.width), info.width, info.height))
            return (*shown(tab, frame, clicks, target), "")

        select.__annotations__["evt"] = gr.SelectData  # Gradio reads it (this module imports no gradio)

        def clear(tab, frame, target):
            return (*shown(tab, frame, None, target), "")

        def apply(tab, frame, clicks, target, name, progress=gr.Progress()):  # noqa: B008
            tab = tab_of(tab)
            try:
                if tab.session is not None and (clicks is None or clicks.empty):
                    raise InputError(
                        "click on the frame first: a positive or negative point, or a box's two corners"
                    )
                clicks = clicks or Clicks()  # without a conversation, refine says what is missing
                progress(None, desc="correcting the mask")
                object_id = None if target in (None, "", NEW) else int(target)
                result = tab.refine(object_id, clicks.frame, clicks.points, clicks.labels, clicks.box, name or "",
                                    show=progress_of(progress))  # fmt: skip
            except AlrefError as exc:
                return (*chat_outputs(tab), *shown(tab, frame, clicks, target), _error(exc))
            if result.get("already_applied"):
                note = f"object {result['object_id']} already has this prompt on frame {result['frame']}"
            else:
                note = f"object {result['object_id']}: {result['mask_pixels_on_frame']} px on frame {result['frame']}"
            return (*chat_outputs(tab), *shown(tab, frame, None, str(result["object_id"])),
                    f"<p>{render.e(note)}</p>")  # fmt: skip

        def undo(tab, frame, target, progress=gr.Progress()):  # noqa: B008
            tab = tab_of(tab)
            try:
                progress(None, desc="undo: restoring the previous masks")
                tab.edit("undo")
            except AlrefError as exc:
                return (*chat_outputs(tab), *shown(tab, frame, None, target), _error(exc))
            return (*chat_outputs(tab), *shown(tab, frame, None, target), "<p>undone</p>")

        inputs = [tab_state, self.frame, self.clicks, self.target]
        # one small progress bar, on the status (Gradio draws one on every output otherwise)
        quick = {"show_progress": "minimal", "show_progress_on": [self.status]}
        selected.select(refresh, inputs, [*view, self.status], **quick)
        self.frame.input(refresh, inputs, [*view, self.status], trigger_mode="always_last", **quick)
        self.image.select(select, [*inputs, self.mode], [*view, self.status], **quick)
        self.clear.click(clear, [tab_state, self.frame, self.target], [*view, self.status], **quick)
        self.apply.click(apply, [*inputs, self.name], [*chat_out, *view, self.status],
                         show_progress_on=[self.status])  # fmt: skip
        self.undo.click(undo, [tab_state, self.frame, self.target], [*chat_out, *view, self.status],
                        show_progress_on=[self.status])  # fmt: skip


def _error(exc: AlrefError) -> str:
    return f'<p class="error">error: {render.e(" ".join(str(exc).split()))}</p>'
