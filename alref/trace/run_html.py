"""The HTML page of one run's trace (:class:`RunPage`) and the pieces a chat's page shares with it:
escaping, tables, inlined images (:class:`Images`) and the document around the sections.

The page is read offline and passed around: every image is inlined as a ``data:`` URI (a re-encoded,
downscaled JPEG) and there is no script; ``<details>`` fold the long parts. All text from the trace,
result.json or the LLM is untrusted: it is escaped with ``html.escape(quote=True)`` wherever it is
written, attributes hold only values made here (ids, sizes, colours of the fixed box palette), and a
Content-Security-Policy that allows no script and no fetch protects the reader even if an escape were
missed. Image paths read from the trace or result.json are only followed inside the run folder.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from alref.core.workspace import Workspace
from alref.media.boxes import COLOURS
from alref.trace.cost import Event, as_int, as_key, cost_estimate, cost_text
from alref.trace.runs import run_end_event, run_result, run_summary

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
LLM_IMAGE_SIDE = 960  # the images the LLM saw, as shown (the numbers on the boxes stay readable)
PREVIEW_SIDE = 480  # mask previews
PREVIEWS_PER_CLIP, MAX_PREVIEWS = 3, 60
MAX_TEXT = 20_000  # characters shown of one message or answer
_RGB = dict(COLOURS)
_TINT = np.array((30, 144, 255), np.float32)
_NOTES = ("llm_retry", "llm_structured_disabled", "trace_error", "resume")

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.4em}h2{border-bottom:2px solid #ccc;margin-top:1.6em}h4{margin:1em 0 .3em}
table{border-collapse:collapse;margin:.3em 0}th,td{padding:.2em .6em;text-align:left;vertical-align:top}
.kv th{color:#555;font-weight:600;white-space:nowrap}.grid td,.grid th{border:1px solid #ddd}
.chosen{background:#e6f4ea;font-weight:600}.warn{color:#a04000}.muted{color:#777}
.text,pre{white-space:pre-wrap;word-break:break-word;margin:0}pre{background:#f6f6f6;padding:.4em;font-size:12px}
.answer{background:#eef4ff}details{margin:.4em 0}summary{cursor:pointer}.steps{padding-left:1.6em}
section>details{border:1px solid #ddd;border-radius:6px;padding:.4em .8em}section>details>summary{font-weight:600}
.gallery{display:flex;flex-wrap:wrap;gap:.8em}figure{margin:0}figcaption{font-size:12px;color:#555}
img{max-width:100%;height:auto;min-width:240px;border:1px solid #ccc}.turn{margin:.4em 0}
.sw{display:inline-block;width:.9em;height:.9em;margin-right:.3em;border:1px solid #888;vertical-align:middle}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def text_block(value: Any, tag: str = "div", cls: str = "text") -> str:
    text = "" if value is None else str(value)
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + f"\n… ({len(text) - MAX_TEXT:,} more characters)"
    return f'<{tag} class="{cls}">{esc(text)}</{tag}>'


def rows_table(rows: Iterable[tuple[str, Any]]) -> str:
    """A two-column table; rows without a value (None, "", False, an empty list) are left out."""
    body = "".join(
        f"<tr><th>{esc(k)}</th><td>{text_block(v)}</td></tr>"
        for k, v in rows
        if not (v is None or v is False or (isinstance(v, str | list | dict) and not v))
    )
    return f'<table class="kv">{body}</table>'


def _order(value: Any) -> tuple[int, int, str]:
    return (0, value, "") if isinstance(value, int) else (1, 0, str(value))


def _jpeg_uri(image: Image.Image, max_side: int) -> tuple[str, tuple[int, int]]:
    image = image.convert("RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=82, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), image.size


def _figure(uri: str, size: tuple[int, int], caption: str, ident: str = "") -> str:
    attr = f' id="{ident}"' if ident else ""
    img = f'<img src="{uri}" width="{size[0]}" height="{size[1]}" alt="{esc(caption)}">'
    return f"<figure{attr}>{img}<figcaption>{esc(caption)}</figcaption></figure>"


class Images:
    """Images inlined once each (by content); later uses link to the first."""

    def __init__(self, run: Path) -> None:
        self.run = run.resolve()
        self.ids: dict[str, str] = {}

    def find(self, rel: Any, base: Path) -> Path | None:
        """``base / rel`` when it is a file inside the run folder."""
        if not isinstance(rel, str) or not rel:
            return None
        try:
            path = (base / rel).resolve()  # an absolute ``rel`` replaces ``base``
        except (OSError, ValueError):
            return None
        return path if path.is_relative_to(self.run) and path.is_file() else None

    def figure(self, path: Path | None, caption: str) -> tuple[str, str]:
        """(html, id): a new figure, or ``""`` and the id of the figure already showing this image."""
        if path is None:
            return f'<p class="muted">{esc(caption)}: image not found</p>', ""
        try:
            data = path.read_bytes()
            key = hashlib.sha256(data).hexdigest()
            if key in self.ids:
                return "", self.ids[key]
            with Image.open(io.BytesIO(data)) as img:
                uri, size = _jpeg_uri(img, LLM_IMAGE_SIDE)
        except Exception as exc:  # a broken image must not stop the export (PIL raises many types)
            return f'<p class="muted">{esc(caption)}: unreadable image ({esc(type(exc).__name__)})</p>', ""
        self.ids[key] = ident = f"img{len(self.ids) + 1}"
        return _figure(uri, size, caption, ident), ident


def _mask_preview(frame: Path | None, mask: Path, box: Any, colour: Any) -> Image.Image:
    """The frame (grey when it was not kept) with the mask tinted and outlined, and the pivot box."""
    with Image.open(mask) as m:
        on = np.asarray(m.convert("L")) > 127
    pixels = np.full((*on.shape, 3), 48, np.float32)
    if frame is not None:
        with Image.open(frame) as f:
            pixels = np.asarray(f.convert("RGB").resize(on.shape[::-1]), dtype=np.float32)
    pixels[on] = pixels[on] * 0.45 + _TINT * 0.55
    img = Image.fromarray(on.astype(np.uint8) * 255)
    grown, shrunk = img.filter(ImageFilter.MaxFilter(3)), img.filter(ImageFilter.MinFilter(3))
    pixels[np.asarray(grown) != np.asarray(shrunk)] = 255
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    if isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) for v in box):
        x0, y0, x1, y1 = box
        outline = _RGB.get(colour, (255, 0, 0))
        ImageDraw.Draw(image).rectangle([x0, y0, max(x0, x1), max(y0, y1)], outline=outline, width=2)
    return image


def page(run: Path, title: str, body: list[str]) -> str:
    """The HTML document around ``body``'s sections."""
    title = esc(title)
    head = (
        f'<meta charset="utf-8">\n<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        f'<meta name="referrer" content="no-referrer">\n<title>{title}</title>\n<style>{STYLE}</style>'
    )
    body_html = f"<h1>{title}</h1>\n" + "\n".join(body)
    return f'<!DOCTYPE html>\n<html lang="en"><head>{head}</head>\n<body>{body_html}</body></html>\n'


def video_text(video: Any) -> str | None:
    """The video's facts as one line (``num_frames 20 · width 160 · …``), None when unknown."""
    if not isinstance(video, dict) or not video:
        return None
    return " · ".join(f"{k} {v}" for k, v in video.items())


class RunPage:
    def __init__(self, run: Path, events: list[Event], images: Images | None = None,
                 result: dict[str, Any] | None = None, chat: bool = False) -> None:  # fmt: skip
        """``chat``: one selection of a chat (its images from the trace only: the work folder holds the
        last selection's; no mask previews: the chat's objects are not its references)."""
        self.run, self.events = run, events
        self.result = run_result(run, events) if result is None else result
        self.images = images or Images(run)
        self.chat = chat
        self.previews = 0
        self.frame_names: list[str] | None = None
        self.groups: dict[tuple[Any, Any], list[Event]] = defaultdict(list)
        for e in events:
            context = e.get("context") if isinstance(e.get("context"), dict) else {}
            where = as_key(e.get("ref", context.get("ref"))), as_key(e.get("clip", context.get("clip")))
            self.groups[where].append(e)

    def render(self) -> str:
        start = next((e for e in self.events if e.get("kind") == "run_start"), {})
        refs = self.result.get("references") or [
            {"id": i, "text": t} for i, t in enumerate(start.get("references") or [], start=1)
        ]
        refs = [r for r in refs if isinstance(r, dict)]
        known = {as_key(r.get("id")) for r in refs}
        refs += [{"id": r, "text": "?"} for r in {r for r, _ in self.groups} - known - {None}]
        body = [self.summary(start)] + [self.reference(r) for r in refs]
        if rounds := [e for e in self.events if e.get("kind") == "verification_round"]:
            body.append(self.verification(rounds))
        if other := self.groups.get((None, None)):
            body.append(f"<section><h2>Run-level events</h2>{self.timeline(other)}</section>")
        return page(self.run, f"alref trace · {self.run.name}", body)

    def summary(self, start: Event) -> str:
        s, r, cost = run_summary(self.run, self.events), self.result, cost_estimate(self.events)
        video = r.get("input") or start.get("input")
        timings = (run_end_event(self.events) or {}).get("timings_s") or r.get("timings_s")
        rows = [
            ("status", s["status"]),
            ("mode", f"{s['mode']} {r.get('mode_reason') or ''}"),
            ("LLM model", ", ".join(s["models"])),
            ("started", s["started"]),
            ("duration", s["duration_s"] and f"{s['duration_s']} s"),
            ("video", video_text(video)),
            ("LLM calls", f"{cost['calls']} ({cost['cached_calls']} cached, {cost['failed_calls']} failed)"),
            ("cost", cost_text(cost)),
            ("note", r.get("smoke_note")),
            (
                "timings",
                " · ".join(f"{k} {v} s" for k, v in timings.items()) if isinstance(timings, dict) else None,
            ),
        ]
        for model, m in cost["models"].items():
            price = f"${m['price'][0]} / ${m['price'][1]} per 1M tokens in / out" if m["price"] else None
            rows.append(
                (f"model {model}", f"{m['calls']} calls · {price or 'unknown price'} · ${m['usd']:.4f}")
            )
        return f'<section><h2>Run</h2><p class="muted">{esc(self.run)}</p>{rows_table(rows)}</section>\n'

    def verification(self, rounds: list[Event]) -> str:
        """Each verification round: the image the LLM saw (masks outlined, object numbers), the checks
        it was told, the verdicts and what they changed."""
        parts = ["<section><h2>Verification</h2>"]
        for e in rounds:
            frames = ", ".join(str(f) for f in e.get("frames") or [])
            figure, ident = self.images.figure(self.images.find(e.get("image"), Workspace(self.run).trace),
                                               f"verification round {e.get('round')}: frames {frames}")  # fmt: skip
            parts.append(
                f"<h3>Round {esc(e.get('round'))}</h3>" + (figure or f'<p><a href="#{ident}">[image]</a></p>')
            )
            checks = [c for c in e.get("checks") or [] if isinstance(c, dict)]
            parts.append(rows_table((f"check: {c.get('check')}", c.get("detail")) for c in checks))
            rows = "".join(f"<tr><td>{esc(v.get('object'))}</td><td>{esc(v.get('verdict'))}</td>"
                           f"<td>{esc(v.get('decided_by'))}</td><td>{esc(v.get('reason'))}</td></tr>"
                           for v in e.get("verdicts") or [] if isinstance(v, dict))  # fmt: skip
            parts.append("<table class=grid><tr><th>object</th><th>verdict</th><th>by</th><th>reason</th></tr>"
                         f"{rows}</table>")  # fmt: skip
            changed = [c for c in e.get("changes") or [] if isinstance(c, dict) and c.get("action") != "none"]
            parts.append(rows_table((f"changed object {c.get('object')}", c.get("detail")) for c in changed))
        return "".join(parts) + "</section>\n"

    def reference(self, ref: dict[str, Any], heading: str | None = None) -> str:
        """One reference with its clips (``heading``: the chat's selection names itself, one level down)."""
        ref_id = as_key(ref.get("id"))
        title = (
            f"<h2>Reference {esc(ref_id)}: “{esc(ref.get('text'))}”</h2>"
            if heading is None
            else f"<h3>{esc(heading)}</h3>"
        )
        parts = [f"<section>{title}"]
        keys = ("status", "reason", "start_frame", "concept", "concepts_tried", "accepted", "decided_by")
        parts.append(rows_table((k, ref.get(k)) for k in keys if k in ref))
        if isinstance(ref.get("verification"), dict):
            v = ref["verification"]
            parts.append(
                rows_table([("verified", f"{v.get('verdict')} ({v.get('decided_by')}): {v.get('reason')}")])
            )
        if isinstance(ref.get("ambiguity"), dict):
            parts.append(rows_table([("ambiguous", ref["ambiguity"].get("decided"))]))
        if own := self.groups.get((ref_id, None)):
            parts.append("<h3>Reference-level steps</h3>" + self.timeline(own))
        clips = {as_key(c.get("clip")): c for c in ref.get("clips") or [] if isinstance(c, dict)}
        traced = {c for r, c in self.groups if r == ref_id and c is not None}
        parts += [self.clip(ref_id, c, clips.get(c, {})) for c in sorted(set(clips) | traced, key=_order)]
        return "\n".join(parts) + "</section>\n"

    def clip(self, ref_id: Any, clip: Any, rec: dict[str, Any]) -> str:
        """A clip's record (from result.json, else from its clip_decided event) with its steps."""
        events = self.groups.get((ref_id, clip), [])
        decided = next((e for e in events if e.get("kind") == "clip_decided"), {})
        rec = {**decided, **rec}
        if not rec.get("candidates"):  # an unfinished run: the grounding node's output
            ground = [
                e for e in events if e.get("kind") == "node_end" and e.get("node") == "ground_candidates"
            ]
            rec["candidates"] = ((ground or [{}])[0].get("output") or {}).get("candidates") or []
        head = f"clip {clip}"
        if isinstance(rec.get("start"), int) and isinstance(rec.get("end"), int):
            head += f" (frames {rec['start']}–{rec['end'] - 1})"
        if rec.get("valid"):
            head += f" → frame {rec.get('pivot_frame')}" + (
                f", box {rec['box_number']}" if rec.get("box_number") else ""
            )
        head += (" → no pivot" if "valid" in rec and not rec["valid"] else "") + (
            f" · decided by {rec['decided_by']}" if rec.get("decided_by") else " · undecided"
        )
        out = [f"<details open><summary>{esc(head)}</summary>", "<h4>Decision</h4>" + self.decision(rec)]
        agent, n = Workspace(self.run).agent, as_int(clip)
        images = rec.get("images") if isinstance(rec.get("images"), dict) else {}
        tile = self.images.find(images.get("tile") or f"tiles/clip{n:03d}.jpg", agent)
        boxes = self.images.find(images.get("boxes"), agent) or self.images.find(
            f"boxes/ref{ref_id}_clip{n:03d}_frame{rec.get('pivot_frame')}.jpg", agent
        )
        shown = self.new_images(events)  # then the work images, when the trace did not have them
        if not self.chat:
            shown += [self.images.figure(tile, "tile of the sampled frames")[0] if tile else ""]
            shown += [self.images.figure(boxes, "candidate boxes")[0] if boxes else ""]
        if "".join(shown):
            out.append(f'<h4>Images the LLM saw</h4><div class="gallery">{"".join(shown)}</div>')
        out += [self.candidates(rec), "" if self.chat else self.mask_previews(ref_id, rec)]
        if any(e.get("kind") != "clip_decided" for e in events):
            out.append("<h4>Steps</h4>" + self.timeline(events))
        return "\n".join(out) + "</details>"

    @staticmethod
    def decision(rec: dict[str, Any]) -> str:
        attempts = rec.get("attempts") if isinstance(rec.get("attempts"), dict) else {}
        fallbacks = rec.get("fallbacks") if isinstance(rec.get("fallbacks"), list) else []
        colour = rec.get("box_colour") or next(
            (c.get("colour") for c in rec.get("candidates") or []
             if isinstance(c, dict) and c.get("number") == rec.get("box_number")), None,
        )  # fmt: skip
        box = rec.get("box_number") and f"{rec['box_number']}" + (f" ({colour})" if colour else "")
        fields = [("pivot frame", "pivot_frame"), ("pivot box", "pivot_box"), ("score", "pivot_score"),
                  ("decided by", "decided_by"), ("reason", "reason"), ("event", "event"),
                  ("frame reasoning", "frame_reasoning"), ("boxes description", "boxes_description"),
                  ("subject", "subject"), ("syntax reasoning", "syntax_reasoning"),
                  ("box reasoning", "box_reasoning")]  # fmt: skip
        rows = [("box", box), *((label, rec.get(key)) for label, key in fields)]
        rows.append(("attempts", ", ".join(f"{k} {v}" for k, v in attempts.items())))
        rows.append(("LLM said none of the boxes", "yes" if rec.get("llm_none") else None))
        rows.append(("frame numbers", rec.get("frame_numbers")))
        if isinstance(rec.get("ambiguity"), dict):
            amb = rec["ambiguity"]
            rows.append(("ambiguous", f"boxes {amb.get('numbers')} fitted equally; {amb.get('decided')}"))
        if isinstance(rec.get("revised"), dict):
            rev = rec["revised"]
            rows.append(("revised by verification", f"round {rev.get('round')}: was frame {rev.get('previous_frame')} "
                         f"box {rev.get('previous_box')} ({rev.get('previous_decided_by')})"))  # fmt: skip
        return rows_table(rows + [("fallback", f) for f in fallbacks])

    @staticmethod
    def candidates(rec: dict[str, Any]) -> str:
        rows = []
        for c in rec.get("candidates") or []:
            if not isinstance(c, dict):
                continue
            rgb = _RGB.get(c.get("colour"))  # a colour of the fixed palette, never text from the trace
            swatch = f'<span class="sw" style="background:rgb{rgb}"></span>' if rgb else ""
            chosen = " class=chosen" if rec.get("valid") and c.get("number") == rec.get("box_number") else ""
            cells = "".join(f"<td>{esc(c.get(k))}</td>" for k in ("score", "phrase", "box"))
            rows.append(
                f"<tr{chosen}><td>{esc(c.get('number'))}</td><td>{swatch}{esc(c.get('colour'))}</td>{cells}</tr>"
            )
        if not rows:
            return ""
        head = "".join(
            f"<th>{h}</th>" for h in ("#", "colour", "score", "detector phrase", "box (x0, y0, x1, y1)")
        )
        return f'<h4>Candidate boxes</h4><table class="grid"><tr>{head}</tr>{"".join(rows)}</table>'

    def new_images(self, events: list[Event]) -> list[str]:
        """Figures of the images sent in these LLM calls that the page does not show yet."""
        figures = []
        for e in events:
            messages = e.get("messages") if e.get("kind") == "llm_call" else None
            for m in messages if isinstance(messages, list) else []:
                for rel in (m.get("images") if isinstance(m, dict) else None) or []:
                    path = self.images.find(rel, Workspace(self.run).trace)
                    figures.append(self.images.figure(path, f"sent with {e.get('step')}")[0])
        return figures

    def _mask_file(self, ref_id: Any, frame: int) -> Path | None:
        names = [f"{frame:05d}"]
        if not (self.run / "masks" / f"{names[0]}.png").is_file():
            if self.frame_names is None:  # another naming (a folder of frames): masks.json lists it
                try:
                    frames = json.loads((self.run / "masks.json").read_text(encoding="utf-8")).get("frames")
                except (OSError, ValueError, AttributeError):
                    frames = None
                self.frame_names = [str(f) for f in frames] if isinstance(frames, list) else []
            names = self.frame_names[frame : frame + 1]
        folders = (f"objects/{ref_id}", "masks")  # one referent's masks, else the union
        return next(
            (p for n in names for d in folders if (p := self.images.find(f"{d}/{n}.png", self.run))), None
        )

    def mask_previews(self, ref_id: Any, rec: dict[str, Any]) -> str:
        """The pivot frame (with its box) and the clip's first and last sampled frames, with the mask."""
        samples = [f for f in rec.get("samples") or [] if isinstance(f, int) and f >= 0]
        pivot = rec.get("pivot_frame") if isinstance(rec.get("pivot_frame"), int) else None
        frames = sorted({f for f in (pivot, *samples[:1], *samples[-1:]) if f is not None})
        figures = []
        for frame in frames[:PREVIEWS_PER_CLIP]:
            mask = self._mask_file(ref_id, frame) if self.previews < MAX_PREVIEWS else None
            if mask is None:
                continue
            sample = self.images.find(f"work/samples/{frame}.jpg", self.run)
            box = rec.get("pivot_box") if frame == pivot else None
            try:
                uri, size = _jpeg_uri(_mask_preview(sample, mask, box, rec.get("box_colour")), PREVIEW_SIDE)
            except Exception:  # a broken mask or frame: no preview
                continue
            self.previews += 1
            label = f"frame {frame}{' (pivot, with its box)' if box else ''}{'' if sample else ', mask only'}"
            figures.append(_figure(uri, size, label))
        return f'<h4>Masks</h4><div class="gallery">{"".join(figures)}</div>' if figures else ""

    def timeline(self, events: list[Event]) -> str:
        """LLM calls (folded), validation errors, fallbacks and retries in order; node timings last."""
        items, shown, nodes = [], set[tuple[str, str, str]](), []
        if new := "".join(self.new_images(events)):  # images not shown yet, before the links to them
            items.append(f'<li><div class="gallery">{new}</div></li>')
        for e in events:
            kind, step = e.get("kind"), e.get("step")
            context = e.get("context") if isinstance(e.get("context"), dict) else {}
            attempt = context.get("attempt", e.get("attempt"))
            where = f"{step}" + (f" attempt {attempt}" if attempt else "")
            if kind == "llm_call":
                items.append(self.llm_call(e, where, shown))
            elif kind == "validation_error":
                items.append(
                    f'<li class="warn">invalid answer ({esc(where)}): {text_block(e.get("error"), "span")}</li>'
                )
            elif kind == "fallback":
                items.append(
                    f'<li class="warn">fallback in {esc(step)}: {text_block(e.get("reason"), "span")}</li>'
                )
            elif kind == "candidates_judged":  # the tracks strategy: one judging round
                verdicts = e.get("verdicts") if isinstance(e.get("verdicts"), list) else []
                rows = "".join(
                    f"<tr><td>{esc(v.get('number'))}</td><td>{esc(v.get('verdict'))}</td><td>{esc(v.get('reason'))}</td></tr>"
                    for v in verdicts
                    if isinstance(v, dict)
                )
                items.append(f"<li>round {esc(e.get('round'))} ({esc(e.get('decided_by'))}): "
                             f"<table class=grid><tr><th>candidate</th><th>verdict</th><th>reason</th></tr>{rows}</table></li>")  # fmt: skip
            elif kind == "tracks_decided":
                items.append(f"<li class=chosen>accepted tracks {esc(e.get('accepted'))} "
                             f"({esc(e.get('decided_by'))}): {text_block(e.get('reason'), 'span')}</li>")  # fmt: skip
            elif kind in _NOTES:
                detail = json.dumps({k: v for k, v in e.items() if k not in ("ts", "t", "kind")}, default=str)
                items.append(f'<li class="warn">{esc(kind)}: {text_block(detail, "span")}</li>')
            elif kind == "node_end":
                seconds = e.get("seconds")
                nodes.append(
                    f"{e.get('node')}" + (f" {seconds} s" if isinstance(seconds, int | float) else "")
                )
        if nodes:
            items.append(f'<li class="muted">nodes: {esc(" · ".join(nodes))}</li>')
        return f"<ol class=steps>{''.join(items)}</ol>"

    def llm_call(self, e: Event, where: str, shown: set[tuple[str, str, str]]) -> str:
        """One call, folded; only the turns that no earlier call of the same clip showed."""
        if e.get("cache_hit"):
            usage = "cache hit"
        else:
            tokens = f"{as_int(e.get('prompt_tokens')):,}+{as_int(e.get('completion_tokens')):,}"
            usage = f"{tokens} tokens, {e.get('latency_s')} s"
        failed = e.get("ok") is False
        head = f"LLM {where} · {usage}" + (f" · FAILED ({e.get('error_kind')})" if failed else "")
        turns = []
        messages = e.get("messages") if isinstance(e.get("messages"), list) else []
        for m in (m for m in messages if isinstance(m, dict)):
            key = (str(m.get("role")), str(m.get("text")), str(m.get("images")))
            if key in shown:
                continue
            shown.add(key)
            links = []
            for rel in m.get("images") if isinstance(m.get("images"), list) else []:
                ident = self.images.figure(self.images.find(rel, Workspace(self.run).trace), "image")[1]
                links.append(f'<a href="#{ident}">[image]</a>' if ident else "[image missing]")
            role = f"<b>{esc(m.get('role'))}</b> {' '.join(links)}"
            turns.append(f'<div class="turn">{role}{text_block(m.get("text"), "pre")}</div>')
        body = "".join(turns) or '<p class="muted">(the same turns as above)</p>'
        if e.get("answer") is not None:
            shown.add(("assistant", str(e.get("answer")), "[]"))
            body += f'<div class="turn"><b>answer</b>{text_block(e.get("answer"), "pre", "answer")}</div>'
        if e.get("error"):
            body += f'<div class="turn warn"><b>error</b>{text_block(e.get("error"), "pre")}</div>'
        return f"<li{' class=warn' if failed else ''}><details><summary>{esc(head)}</summary>{body}</details></li>"
