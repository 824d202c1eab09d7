"""``alref eval run``: the pipeline over a whole dataset, resumable, then the benchmark's table.

For each video, :func:`alref.pipeline.run.segment_video` runs once with *all* of the video's
expressions as references (one SAM 2 session per video, one object id per expression; AVSBench:
the video's sound). Its masks are converted into the dataset's prediction layout, and one line per
expression is appended to ``results.jsonl``. A rerun skips the expressions already in that file, so an
interrupted run continues where it stopped (Ref-DAVIS merges a video's objects per annotator, so
there a video is redone as a whole). At the end the predictions are scored with the dataset's
protocol (or zipped for the server when it has no public ground truth).

Output folder::

    OUT/run.json            dataset, split, root and settings of this run (a rerun must match)
    OUT/results.jsonl       one line per expression: video, expression, text, status, J/F, seconds
    OUT/predictions/        the dataset's layout (see alref.eval.writers)
    OUT/runs/<video>/       each video's alref output (masks.json, result.json, …)
    OUT/scores.json         the protocol's full result (per sequence / expression / class detail)
    OUT/summary.json        the final table; OUT/predictions/submission.zip without ground truth
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alref.config import Settings
from alref.errors import InputError
from alref.eval.datasets import EvalDataset, VideoItem, open_dataset
from alref.eval.datasets.avsbench import AvsDataset
from alref.eval.datasets.base import read_level_png
from alref.eval.datasets.mevis import Mevis
from alref.eval.datasets.refdavis import RefDavis
from alref.eval.datasets.revos import Revos
from alref.eval.metrics import binary_j_f
from alref.eval.protocols import avs_summary, avs_video_scores
from alref.eval.score import headline, score_avsbench, score_davis, score_mevis, score_revos
from alref.eval.writers import zip_folder
from alref.media.writers import atomic_write_json, rle_to_mask
from alref.pipeline.audio import VIDEO_TRACK
from alref.pipeline.batch import (
    Executor,
    Job,
    JobFailed,
    LocalExecutor,
    Outcome,
    append_records,
    read_records,
    run_batch,
)

CATEGORIES_FILE = Path(__file__).resolve().parents[1] / "data" / "avsbench_categories.txt"
Segment = Callable[..., dict[str, Any]]


read_results = read_records  # the records of OUT/results.jsonl (a torn last line is ignored)


def read_object_masks(run_dir: Path, frame_names: Sequence[str]) -> list[np.ndarray]:
    """Each object's (T, H, W) masks from ``run_dir/masks.json``, on the dataset's frames."""
    data = json.loads((run_dir / "masks.json").read_text())
    index = {name: i for i, name in enumerate(data["frames"])}
    missing = [n for n in frame_names if n not in index]
    if missing:
        raise InputError(f"frame {missing[0]!r} is not among the frames alref read from {run_dir}")
    return [np.stack([rle_to_mask(obj["masks"][index[n]]) for n in frame_names]) for obj in data["objects"]]


def _sound_labels(ds: AvsDataset, result: dict, masks: list[np.ndarray], shape) -> np.ndarray:
    """(T, H, W) classes: each sounding object painted with its AVSBench class (later ones win)."""
    vocab = [line.strip() for line in CATEGORIES_FILE.read_text().splitlines() if line.strip()]
    labels = np.zeros(shape, np.uint8)
    refs = {r["id"]: r for r in result.get("references", [])}
    for obj_id, mask in enumerate(masks, start=1):
        category = refs.get(obj_id, {}).get("category")
        cls = vocab.index(category) if category in vocab else (1 if ds.binary else 0)
        if cls:
            labels[mask] = cls
    return labels


def _identity(ds: EvalDataset, settings: Settings) -> dict[str, Any]:
    return {
        "dataset": ds.name,
        "split": ds.split,
        "root": str(ds.root.resolve()),
        "settings": settings.identity_dict(),
    }


def run_eval(
    dataset: str,
    root: str | Path,
    out: str | Path,
    settings: Settings,
    *,
    split: str | None = None,
    limit: int | None = None,
    videos: Sequence[str] | None = None,
    force: bool = False,
    console: Any = None,
    segment: Segment | None = None,
    chat_model: Any = None,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Run alref over ``dataset`` at ``root`` into ``out``; returns the summary (also saved)."""
    from rich.console import Console

    console = console or Console(stderr=True, emoji=False)
    ds = open_dataset(dataset, root, split)
    items = ds.select(videos, limit)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    pred_root, results_path = out / "predictions", out / "results.jsonl"
    if ds.sound and getattr(settings, "categories", "absent") is None:
        settings = settings.model_copy(update={"categories": CATEGORIES_FILE})
    identity = _identity(ds, settings)
    previous = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else None
    if previous is not None and previous != identity and not force:
        if read_results(results_path):
            changed = sorted(k for k in identity if previous.get(k) != identity[k])
            raise InputError(
                f"{out} already holds a run with different {', '.join(changed)}; rerun with --force to "
                "start over there, or pick another --out"
            )
    # a run that recorded nothing (it failed before its first video, loading a model) locks nothing
    if force or (previous is not None and previous != identity):
        results_path.unlink(missing_ok=True)
        shutil.rmtree(pred_root, ignore_errors=True)
    atomic_write_json(out / "run.json", identity)
    done = {(r["video"], r["expression"]) for r in read_results(results_path)}
    whole_video = isinstance(ds, RefDavis)
    plan: dict[str, tuple[VideoItem, list]] = {}
    for video in items:
        todo = [e for e in video.expressions if (video.id, e.id) not in done]
        if todo and whole_video:
            todo = list(video.expressions)
        if todo:
            plan[video.id] = (video, todo)
    if len(plan) < len(items):
        console.print(
            f"resuming: {len(items) - len(plan)} of {len(items)} videos already done in {results_path}"
        )
    jobs = [
        Job(name=video.id, video=str(Path(video.frames_dir).resolve()),
            references=() if ds.sound else tuple(e.text for e in todo),
            run_dir=str((out / "runs" / video.id).resolve()),
            audio=(str(Path(video.audio).resolve()) if video.audio else VIDEO_TRACK) if ds.sound else None)
        for video, todo in plan.values()
    ]  # fmt: skip
    started = time.perf_counter()
    smoke = False

    def finished(outcome: Outcome) -> None:
        nonlocal smoke
        if not outcome.ok:  # a benchmark's table needs every video: stop at the first that fails
            raise JobFailed(outcome)
        video, todo = plan[outcome.job.name]
        result = outcome.result or {}
        smoke = smoke or bool(result.get("smoke"))
        records = _write_video(ds, pred_root, video, todo, Path(outcome.job.run_dir), result)
        seconds = round(outcome.seconds / len(todo), 3)
        append_records(results_path, [r | {"seconds": seconds} for r in records])

    if executor is None:
        executor = LocalExecutor(settings, force=force, chat_model=chat_model, segment=segment)
    if jobs:
        run_batch(jobs, executor, finished, console=console, title=f"{ds.name} videos ({executor.name})")
    summary = _finish(ds, items, pred_root, out, time.perf_counter() - started)
    summary["strategy"] = settings.strategy
    summary["smoke"] = smoke or any(r.get("smoke") for r in read_results(results_path))
    summary["verification"] = verification_summary(
        read_results(results_path),
        bool(settings.verify and (settings.llm_configured or chat_model is not None)),
    )
    atomic_write_json(out / "summary.json", summary)
    return summary


def _write_video(
    ds: EvalDataset, pred_root: Path, video: VideoItem, todo: list, run_dir: Path, result: dict
) -> list[dict[str, Any]]:
    """Convert one video's alref output into the dataset's layout; one record per expression."""
    masks = read_object_masks(run_dir, video.frame_names)
    refs = result.get("references", [])
    base = {"video": video.id, "mode": result.get("mode"), "smoke": bool(result.get("smoke"))}
    if isinstance(ds, AvsDataset):
        shape = (len(video.frame_names), *_frame_shape(masks, video))
        labels = _sound_labels(ds, result, masks, shape)
        ds.write_video(pred_root, video, labels)
        record = base | {"expression": "sound", "text": None, "status": result.get("status"),
                         "objects": [r.get("category") or r.get("text") for r in refs]}  # fmt: skip
        if ds.binary:
            gts = [read_level_png(p, "ground-truth mask") >= 128 for p in ds.gt_paths(video)]
            levels = [np.where(f > 0, 255, 0).astype(np.uint8) for f in labels]
            if all(g.shape == lv.shape for g, lv in zip(gts, levels, strict=True)):
                record |= {k: v * 100 for k, v in avs_summary([avs_video_scores(levels, gts)]).items()}
        return [record]
    by_expression = {e.id: masks[i] for i, e in enumerate(todo)}
    ds.write_video(pred_root, video, by_expression)  # type: ignore[attr-defined]
    records = []
    for i, e in enumerate(todo):
        ref = refs[i] if i < len(refs) else {}
        record = base | {"expression": e.id, "text": e.text, "status": ref.get("status"),
                         "frames_with_mask": int(np.count_nonzero(masks[i].any(axis=(1, 2))))}  # fmt: skip
        record |= _verification_fields(result, ref)
        if e.annotator is not None:
            record["annotator"] = e.annotator
        if isinstance(ds, (Mevis, Revos)) and ds.gt is not None:
            j, f = binary_j_f(masks[i], ds.gt.masks(video.id, e.id, masks[i].shape[1:]))
            record |= {"J": float(np.mean(j)) * 100, "F": float(np.mean(f)) * 100}
        records.append(record)
    return records


def _verification_fields(result: dict, ref: dict) -> dict[str, Any]:
    """What verification said about one expression's referent, and whether it changed its masks."""
    record = result.get("verification") or {}
    checks = [
        c["check"] for c in record.get("checks", []) if ref.get("id") in (c.get("object"), c.get("other"))
    ]
    return {"verdict": (ref.get("verification") or {}).get("verdict"), "checks": checks,
            "changed_by_verification": ref.get("id") in record.get("changed_objects", [])}  # fmt: skip


def verification_summary(records: list[dict[str, Any]], on: bool) -> dict[str, Any]:
    """summary.json's ``verification``: whether the LLM verified, the verdicts, the checks flagged and
    how many expressions it changed (``alref eval compare`` shows a run with and without side by side)."""
    verdicts: dict[str, int] = {}
    checks: dict[str, int] = {}
    for r in records:
        if r.get("verdict"):
            verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
        for c in r.get("checks") or []:
            checks[c] = checks.get(c, 0) + 1
    return {"on": on, "verdicts": verdicts, "checks": checks,
            "changed": sum(bool(r.get("changed_by_verification")) for r in records)}  # fmt: skip


def _frame_shape(masks: list[np.ndarray], video: VideoItem) -> tuple[int, int]:
    if masks:
        return masks[0].shape[1:]
    from alref.media.video import open_video

    info = open_video(video.frames_dir).info
    return info.height, info.width


def _finish(ds: EvalDataset, items: list[VideoItem], pred_root: Path, out: Path, elapsed: float) -> dict:
    ids = [v.id for v in items]
    summary: dict[str, Any] = {
        "dataset": ds.name,
        "split": ds.split,
        "protocol": ds.protocol,
        "videos": len(items),
        "expressions": sum(len(v.expressions) for v in items),
        "predictions": str(pred_root),
        "results": str(out / "results.jsonl"),
        "elapsed_s": round(elapsed, 3),
        "scores": None,
        "submission": None,
    }
    if ds.protocol is None:
        annotations = pred_root / "Annotations"
        if annotations.is_dir():
            summary["submission"] = str(zip_folder(annotations, pred_root / "submission.zip"))
        return summary
    if isinstance(ds, RefDavis):
        scores = score_davis(pred_root, ds.gt_dir, sequences=ids)
    elif isinstance(ds, Mevis):
        scores = score_mevis(pred_root, ds.gt, videos=ids)  # type: ignore[arg-type]
    elif isinstance(ds, Revos):
        scores = score_revos(pred_root, ds.gt, videos=ids)
    else:
        scores = score_avsbench(str(ds.protocol), pred_root, ds.root, videos=ids, split=ds.split)
    atomic_write_json(out / "scores.json", scores)
    summary["scores"] = headline(scores)  # ReVOS: also R and the referring / reasoning splits
    summary["scores_file"] = str(out / "scores.json")
    return summary


def compare_runs(folders: Sequence[Path]) -> dict[str, Any]:
    """The tables of several ``alref eval run`` folders side by side (e.g. the same dataset with
    ``--strategy pivot`` and ``--strategy tracks``): {"runs": [{folder, dataset, strategy}], "metrics":
    {metric: [value per run]}}."""
    runs, tables = [], []
    for folder in folders:
        path = Path(folder) / "summary.json"
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise InputError(
                f"{folder} has no readable summary.json: is it a finished `alref eval run --out` folder?"
            ) from None
        verification = summary.get("verification") or {}
        runs.append(
            {
                "folder": str(folder),
                "dataset": summary.get("dataset"),
                "strategy": summary.get("strategy", "pivot"),
                "verify": bool(verification.get("on")),
            }
        )
        table = dict(summary.get("scores") or {})
        if verification:  # the verification's counts under the scores
            table["verification: expressions changed"] = verification.get("changed", 0)
            for verdict, count in sorted((verification.get("verdicts") or {}).items()):
                table[f"verification: {verdict}"] = count
            for check, count in sorted((verification.get("checks") or {}).items()):
                table[f"check flagged: {check}"] = count
        tables.append(table)
    metrics: dict[str, list[Any]] = {}
    for table in tables:
        for key in table:
            metrics.setdefault(key, [])
    for key in metrics:
        metrics[key] = [table.get(key) for table in tables]
    return {"runs": runs, "metrics": metrics}
