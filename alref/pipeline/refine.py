"""`alref refine RUN`: a person's point and box prompts on one object of a finished run.

The object is prompted again in a new SAM 2 session of its own, as verification re-propagates an
object (``propagate_all`` into a ``ReplacingSink``): its valid clips' pivot boxes from result.json
first, in clip order, then every refinement recorded so far and the new one, in order
(``SegmentationSession.add_points``: the canonical transformers session's semantics, so a refinement
replaces the object's earlier prompt on its frame). The propagation starts where the run's started for
that object (the start frame of result.json), or, with no valid clip, at its first refinement. The
other objects keep their masks.

The frames are decoded again into ``OUT/work`` with the pipeline's own ``decode`` (a frame store kept
by ``--keep-work`` is reused) and removed afterwards unless ``keep_work``.

Atomic: the new masks/, objects/, palette/, masks.json, overlay.mp4 and result.json are written into
``OUT/work/refine/`` first; only when all are written do they replace the run's (folders swapped by
renames, then the files, result.json last). A refine that fails or is killed before that leaves the
run as it was. Every problem with the input (not a finished run, a tracks run, an unknown object, a
frame out of range, a prompt outside the frame) is an :class:`InputError` raised before anything is
written. The refinement is recorded in result.json (``references[i]["refinements"]``: ``{frame,
points, labels, box}`` in order) and in the trace (event ``refined``). The same refinement again (the
last one recorded on that frame of that object) is "already applied": nothing is computed or written.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alref.config import Settings
from alref.core.checks import mask_checks
from alref.core.workspace import MASKS_DIR, OBJECTS_DIR, OVERLAY_FILE, PALETTE_DIR, Workspace
from alref.errors import InputError, MediaError
from alref.media.masks import MaskSink, write_overlay
from alref.media.video import Video, open_video
from alref.media.writers import atomic_write_json
from alref.progress import Reporter
from alref.tools.refinement import Refinement, already_applied, check_refinement, make_refinement

__all__ = ["Refinement", "make_refinement", "refine_run"]

#: the settings a refine takes from the run unless given: the models that made its masks
RUN_SETTINGS = ("models", "segmentation_model", "segmentation", "precision")


class RunFolder:
    """A finished pivot-strategy run read back: result.json, masks.json and the video it was made from."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.workspace = Workspace(self.out)
        self.result = self._read_result()
        self.masks = self._read_json(self.workspace.masks_json)
        if not self.workspace.masks_dir.is_dir():
            raise InputError(f"{self.out} is not a finished alref run (no {MASKS_DIR}/ folder)")

    def _read_json(self, path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"{self.out} is not a finished alref run (no {path.name})") from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(
                f"{self.out} is not a finished alref run ({path.name} is unreadable: {exc})"
            ) from None
        if not isinstance(data, dict):
            raise InputError(f"{self.out} is not a finished alref run ({path.name} is not an object)")
        return data

    def _read_result(self) -> dict[str, Any]:
        if not self.out.is_dir():
            raise InputError(f"{self.out} is not a run folder (give the --out folder of `alref segment`)")
        result = self._read_json(self.workspace.result)
        if not all(key in result for key in ("run_key", "references", "input", "settings")):
            raise InputError(f"{self.out} is not a finished alref run (result.json lacks its run fields)")
        if result.get("strategy", "pivot") != "pivot":
            raise InputError(
                f"refining a {result.get('strategy')}-strategy run is not supported yet: "
                "only runs of --strategy pivot (the default) can be refined"
            )
        if result.get("audio"):
            raise InputError("refining a run whose reference is the sound (--audio) is not supported yet")
        return result

    def reference(self, object_id: int) -> dict[str, Any]:
        for ref in self.result["references"]:
            if ref["id"] == object_id:
                return ref
        ids = ", ".join(str(r["id"]) for r in self.result["references"])
        raise InputError(f"the run has no object {object_id}; its objects are {ids}")

    def check_prompt(self, refinement: Refinement) -> None:
        """The frame in the video, the points and the box inside the frame, else an InputError."""
        info = self.result["input"]
        check_refinement(refinement, info["num_frames"], info["width"], info["height"])

    def open_video(self, video: str | Path | None) -> tuple[Video, Path]:
        """The run's video (or ``video`` instead), checked to be the one the masks were made from."""
        info = self.result["input"]
        path = Path(video) if video is not None else Path(info["path"])
        if video is None and not path.exists():
            raise InputError(
                f"the run's video {path} is not there (its frames are decoded again): pass --video PATH"
            )
        opened = open_video(path, fps=info.get("fps") if info.get("kind") == "frames" else None)
        got = opened.info
        same = (got.num_frames, got.width, got.height) == (info["num_frames"], info["width"], info["height"])
        if not same or list(got.frame_names) != list(self.masks.get("frames", [])):
            raise MediaError(
                f"{path} is not the video this run was made from ({got.num_frames} frames of "
                f"{got.width}x{got.height}; the run has {info['num_frames']} of {info['width']}x{info['height']})"
            )
        return opened, path


def refine_run(
    out: str | Path,
    object_id: int,
    refinement: Refinement,
    settings: Settings | None = None,
    given: Mapping[str, Any] | None = None,
    reporter: Reporter | None = None,
    keep_work: bool = False,
    video: str | Path | None = None,
) -> tuple[dict[str, Any], bool]:
    """Apply ``refinement`` to object ``object_id`` of the finished run in ``out``; returns (result.json
    content, whether anything changed). ``settings`` default to the run's model settings with
    ``given`` on top (see :func:`run_settings`)."""
    from alref.pipeline.keys import digest, video_key
    from alref.pipeline.run import pivot_boxes
    from alref.pipeline.stages import decode, propagate_all, remove_frame_store
    from alref.pipeline.verify import ReplacingSink
    from alref.tools.registry import resolve_models
    from alref.tools.segmentation import Sam2VideoSegmenter
    from alref.trace.record import Tracer

    reporter = reporter or Reporter()
    run = RunFolder(Path(out))
    ref = run.reference(int(object_id))
    run.check_prompt(refinement)
    if already_applied(ref.get("refinements") or [], refinement):
        return run.result, False
    opened, video_path = run.open_video(video)
    settings = settings if settings is not None else run_settings(run.result, given or {})
    models = resolve_models(settings)
    segmenter = models.load_segmentation(settings)
    if not isinstance(segmenter, Sam2VideoSegmenter):
        raise InputError(f"the segmentation tool {models.segmentation_tool.name} takes no point prompts yet")

    workspace, info = run.workspace, opened.info
    had_work = workspace.work.is_dir()
    staging = workspace.refine_staging
    shutil.rmtree(staging, ignore_errors=True)  # what a killed refine left
    refinements = [*(ref.get("refinements") or []), refinement]
    objects = {o["id"]: o["reference"] for o in run.masks["objects"]}
    store = None
    try:
        store, _ = decode(opened, segmenter, [], workspace, reporter, digest(video_key(video_path)))
        sink = MaskSink(staging, info, objects)
        sink.rles = {o["id"]: dict(enumerate(o["masks"])) for o in run.masks["objects"]}
        decisions = [{"id": ref["id"], "text": ref["text"], "clips": ref["clips"], "not_found": None}]
        starts = propagate_all(segmenter, store, info, decisions, ReplacingSink(sink), reporter,  # type: ignore[arg-type]
                               refinements={ref["id"]: refinements})  # fmt: skip
        sink.write_json()
        overlay = run.result.get("outputs", {}).get("overlay")
        if overlay:
            with reporter.stage("overlay", info.num_frames) as stage:
                write_overlay(
                    staging / OVERLAY_FILE, opened, sink, pivot_boxes(run.result["references"]), stage
                )
        result = _updated_result(run.result, ref["id"], refinements, starts[ref["id"]], sink)
        atomic_write_json(staging / workspace.result.name, result)
        _swap_in(staging, run.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if store is not None and not keep_work:
            remove_frame_store(store)
        if not had_work and not keep_work and workspace.work.is_dir() and not any(workspace.work.iterdir()):
            workspace.work.rmdir()
    Tracer(workspace.trace, secrets=[settings.api_key] if settings.api_key else []).event(
        "refined", object=ref["id"], **refinement, start_frame=starts[ref["id"]]["frame"],
        refinements=len(refinements), masks=sink.summary(ref["id"]),
    )  # fmt: skip
    return result, True


def run_settings(result: Mapping[str, Any], given: Mapping[str, Any]) -> Settings:
    """The run's model settings (``RUN_SETTINGS`` from its result.json), ``given`` on top."""
    from alref.config import load_settings

    saved = result.get("settings") or {}
    return load_settings(**({k: saved[k] for k in RUN_SETTINGS if saved.get(k) is not None} | dict(given)))


def _updated_result(
    result: dict[str, Any], obj: int, refinements: list[Refinement], start: dict[str, Any], sink: MaskSink
) -> dict[str, Any]:
    """result.json with the refinement recorded and every object's mask summary and check again."""
    result = json.loads(json.dumps(result))  # a deep copy: the caller's stays as it was
    for ref in result["references"]:
        ref["masks"] = sink.summary(ref["id"])
        if ref["id"] != obj:
            continue
        ref["refinements"] = [dict(r) for r in refinements]
        if ref["masks"]["frames_with_mask"] and ref["status"] != "ok":
            ref["status"], ref["reason"] = "ok", "a person's prompts (alref refine)"
        if ref.get("start_frame") is None:
            ref["start_frame"] = start["frame"]
        ref["propagated_from"] = start.get("propagated_from", ref.get("propagated_from"))
    found = sum(r["status"] == "ok" for r in result["references"])
    result["status"] = (
        "ok" if found == len(result["references"]) else ("not_found" if not found else "partial")
    )
    if isinstance(result.get("verification"), dict):
        info = sink.info
        result["verification"]["checks"] = mask_checks(
            sink.area, sink.intersections, info.num_frames, info.height * info.width
        )
    return result


def _swap_in(staging: Path, out: Path) -> None:
    """The staged outputs replace the run's: each folder by two renames (the old one into the staging
    folder, removed with it), then masks.json and overlay.mp4, result.json last."""
    for name in (MASKS_DIR, OBJECTS_DIR, PALETTE_DIR):
        new = staging / name
        if not new.is_dir():
            continue
        old = out / name
        if old.exists():
            os.replace(old, staging / f"{name}.old")
        os.replace(new, old)
    for name in ("masks.json", OVERLAY_FILE, "result.json"):
        if (staging / name).is_file():
            os.replace(staging / name, out / name)


def parse_xy(text: str, what: str = "--point") -> tuple[float, float]:
    """``"120,80"`` -> (120.0, 80.0), else an InputError."""
    values = _numbers(text, 2, what, "X,Y, e.g. 120,80")
    return values[0], values[1]


def parse_box(text: str) -> tuple[float, float, float, float]:
    values = _numbers(text, 4, "--box", "X0,Y0,X1,Y1, e.g. 10,20,200,180")
    return values[0], values[1], values[2], values[3]


def _numbers(text: str, count: int, what: str, form: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise InputError(f"{what} {text!r} is not {form}")
    return values
