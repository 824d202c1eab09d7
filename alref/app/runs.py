"""A run folder read for another program (the MCP server's tools): its summary (status, each reference's
status, where the files are), one frame with its masks drawn, its trace as text. The summary is a typed
record whose field descriptions a calling model reads."""

from __future__ import annotations

import io
from pathlib import Path

from pydantic import BaseModel, Field

from alref.core.workspace import MASKS_FILE, OBJECTS_DIR, RESULT_FILE, TRACE_DIR, Workspace
from alref.errors import InputError
from alref.trace.runs import read_json_object

MAX_IMAGE_SIDE = 1280  # a frame's image is downscaled to this longest side


class ReferenceStatus(BaseModel):
    id: int = Field(description="object id (1-based, in reference order); the palette index in palette/")
    text: str = Field(description="the reference as segmented")
    status: str = Field(description="ok, not_found (the target is absent: empty masks) or another status")
    reason: str | None = Field(None, description="why, in one line")
    frames_with_mask: int = Field(description="frames where the object has a non-empty mask")
    first_frame: int | None = Field(None, description="first frame (0-based) with a mask")
    last_frame: int | None = Field(None, description="last frame (0-based) with a mask")
    mask_folder: str = Field(description="folder of this object's 0/255 PNG masks, one per frame")


class RunFiles(BaseModel):
    result_json: str = Field(description="the whole result: decisions, settings, timings")
    masks_json: str = Field(description="every object's masks as COCO RLE, per frame")
    masks: str = Field(description="folder of 0/255 PNG masks (the union of the objects), one per frame")
    mask_files: int = Field(description="how many PNG files masks/ holds")
    first_mask: str | None = Field(None, description="the first frame's mask PNG")
    overlay: str | None = Field(None, description="overlay.mp4: the video with the masks drawn")
    trace: str = Field(description="the run's trace folder (events.jsonl, the images the LLM saw)")


class PendingQuestion(BaseModel):
    id: str = Field(description="the question's id: the key of its answer in answer_questions")
    question: str = Field(description="what alref asks, naming the candidates")
    options: list[str] = Field(default_factory=list, description="the numbered candidates")
    image: str | None = Field(
        None, description="the candidates drawn with their numbers (show it with the question)"
    )


class RunSummary(BaseModel):
    run: str = Field(description="the run's folder; pass it to read_run, show_frame and run_trace")
    status: str = Field(description="ok, or why not (unfinished: stopped before its end)")
    mode: str = Field(description="who decided: the LLM agent, or the baseline with no LLM")
    strategy: str | None = Field(None, description="pivot or tracks")
    video: str | None = Field(None, description="the input video")
    num_frames: int | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    references: list[ReferenceStatus] = Field(default_factory=list)
    files: RunFiles | None = Field(None, description="where the outputs are (absent while unfinished)")
    smoke_note: str | None = Field(None, description="set when tiny random models made meaningless masks")
    notes: list[str] = Field(default_factory=list, description="what the run reported on its way")
    seconds: float | None = Field(None, description="how long the run took")
    questions: list[PendingQuestion] = Field(
        default_factory=list,
        description="with status 'question': what the run waits to know; answer with answer_questions",
    )


class RunRow(BaseModel):
    run: str
    started: str | None = None
    status: str
    mode: str
    references: int
    llm_calls: int
    cost_usd: float
    seconds: float | None = None


class RunList(BaseModel):
    root: str = Field(description="the folder searched (3 levels deep)")
    runs: list[RunRow] = Field(description="newest first")


def absolute(path: Path) -> str:
    return str(path.expanduser().resolve())


def summarise_run(run: Path, notes: list[str] | None = None) -> RunSummary:
    """What a caller needs of a run folder: its status, each reference's, and where the files are."""
    from alref.trace.record import read_events
    from alref.trace.runs import run_result, run_summary

    events = read_events(run / TRACE_DIR)
    result = run_result(run, events) if events else read_json_object(run / RESULT_FILE)
    row = run_summary(run, events) if events else {}
    if not result:
        start = next((e for e in events if e.get("kind") == "run_start"), {})
        info = start.get("input") or {}
        refs = [ReferenceStatus(id=i, text=str(text), status=row.get("status", "unfinished"), frames_with_mask=0,
                                mask_folder="") for i, text in enumerate(start.get("references") or [], 1)]  # fmt: skip
        return RunSummary(run=absolute(run), status=row.get("status", "unfinished"), mode=row.get("mode", "unknown"),
                          video=info.get("path"), num_frames=info.get("num_frames"), references=refs,
                          notes=notes or [], seconds=row.get("duration_s"))  # fmt: skip
    info, outputs = result.get("input") or {}, result.get("outputs") or {}
    several = bool(outputs.get("objects"))
    references = []
    for ref in result.get("references") or []:
        masks = ref.get("masks") or {}
        folder = run / OBJECTS_DIR / str(ref["id"]) if several else run / str(outputs.get("masks") or "masks")
        references.append(ReferenceStatus(
            id=ref["id"], text=ref.get("text", ""), status=ref.get("status", "?"), reason=ref.get("reason"),
            frames_with_mask=masks.get("frames_with_mask", 0), first_frame=masks.get("first_frame"),
            last_frame=masks.get("last_frame"), mask_folder=absolute(folder),
        ))  # fmt: skip
    workspace = Workspace(run)
    pngs = sorted(workspace.masks_dir.glob("*.png"))
    files = RunFiles(result_json=absolute(workspace.result), masks_json=absolute(workspace.masks_json),
                     masks=absolute(workspace.masks_dir), mask_files=len(pngs),
                     first_mask=absolute(pngs[0]) if pngs else None,
                     overlay=absolute(workspace.overlay) if outputs.get("overlay") else None,
                     trace=absolute(workspace.trace))  # fmt: skip
    return RunSummary(
        run=absolute(run), status=str(result.get("status", "?")), mode=str(result.get("mode", "?")),
        strategy=result.get("strategy"), video=info.get("path"), num_frames=info.get("num_frames"),
        width=info.get("width"), height=info.get("height"), fps=info.get("fps"), references=references,
        files=files, smoke_note=result.get("smoke_note") if result.get("smoke") else None, notes=notes or [],
        seconds=(result.get("timings_s") or {}).get("total"),
    )  # fmt: skip


def render_frame(run: Path, frame: int, ids: list[int] | None = None) -> tuple[bytes, str]:
    """PNG bytes of ``frame`` of the run's video with the objects' masks (``ids``, else all) drawn, and
    a one-line caption."""
    from PIL import Image

    from alref.media.video import open_video, resize_max_side
    from alref.media.writers import render_overlay, rle_to_mask

    result, masks = read_json_object(run / RESULT_FILE), read_json_object(run / MASKS_FILE)
    if not result or not masks:
        raise InputError(
            f"the run in {run} has no masks yet (unfinished or failed): read_run tells its status"
        )
    names = masks.get("frames") or []
    if not 0 <= frame < len(names):
        raise InputError(
            f"frame {frame} is out of range: the run has {len(names)} frames (0..{len(names) - 1})"
        )
    objects = {o["id"]: o for o in masks.get("objects") or []}
    unknown = sorted(set(ids or []) - set(objects))
    if unknown:
        raise InputError(f"no object {unknown[0]} in this run; its objects are {sorted(objects)}")
    video = Path(str((result.get("input") or {}).get("path", ""))).expanduser()
    if not video.is_absolute() and not video.exists():
        video = run.parent / video
    if not video.exists():
        raise InputError(f"the video of this run ({video}) is not there any more; the masks are in {run}")
    image = open_video(video).read_frame(frame)
    drawn = {i: rle_to_mask(objects[i]["masks"][frame]) for i in (ids or sorted(objects))}
    picture = resize_max_side(render_overlay(image, drawn), MAX_IMAGE_SIDE)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    shown = ", ".join(f"{i} “{objects[i].get('reference', '')}” ({'mask' if drawn[i].any() else 'empty'})"
                      for i in drawn)  # fmt: skip
    return buffer.getvalue(), f"frame {frame} ({names[frame]}) of {run}: objects {shown}"


def run_list(root: Path, missing_ok: bool = False) -> RunList:
    """The runs under ``root`` (3 levels deep), newest first; none when ``root`` is missing and ``missing_ok``."""
    from alref.trace.runs import list_runs

    if missing_ok and not root.is_dir():
        return RunList(root=absolute(root), runs=[])
    rows = [RunRow(run=r["path"], started=r["started"], status=r["status"], mode=r["mode"],
                   references=r["references"], llm_calls=r["llm_calls"], cost_usd=r["cost_usd"],
                   seconds=r["duration_s"]) for r in list_runs(root)]  # fmt: skip
    return RunList(root=absolute(root), runs=rows)


def trace_text(run: Path, full: bool = False, width: int = 120) -> str:
    """The run's trace as `alref trace show` prints it, as plain text."""
    from rich.console import Console

    from alref.trace.cost import cost_line
    from alref.trace.record import load_trace
    from alref.trace.view import render_tree

    events = load_trace(run)
    console = Console(file=io.StringIO(), width=width, no_color=True, highlight=False, emoji=False)
    tree = render_tree(events, run, full=full)
    tree.add(cost_line(events))
    console.print(tree)
    return console.file.getvalue()  # type: ignore[attr-defined]
