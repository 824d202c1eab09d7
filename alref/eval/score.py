"""Score predictions already on disk, per protocol, without running any model (``alref eval score``).

Every result is a dict with the headline numbers in percent, unrounded — ``J``, ``F``, ``J&F``
(``davis``, ``mevis``; ``revos`` adds ``R`` and its ``referring`` / ``reasoning`` splits) or
``M_J``, ``M_F`` (AVSBench) — plus ``protocol`` and the detail under its own key (``sequences``,
``expressions``, ``videos`` or ``classes``); :func:`headline` gives the rows of a result's table.
Sequences, expressions and videos are scored in parallel threads (PNG decoding, NumPy and OpenCV
release the GIL).

Protocols (see :mod:`alref.eval.protocols` for the rules): ``davis``, ``mevis``, ``revos``,
``avsbench-s4``, ``avsbench-ms3``, ``avss``, ``avss-v2-binary``, and AL-Ref-SAM 2's own evaluator for the binary
AVSBench settings: ``avsbench-s4-alref-sam2``, ``avsbench-ms3-alref-sam2``,
``avss-v2-binary-alref-sam2``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from alref.eval.catalog import ALREF_SAM2, PROTOCOLS
from alref.eval.datasets import dataset_class
from alref.eval.datasets.avsbench import AvsDataset
from alref.eval.datasets.base import DatasetLayoutError, read_grey_png, read_index_png, read_level_png
from alref.eval.datasets.mevis import MevisGroundTruth
from alref.eval.datasets.refdavis import DavisGroundTruth
from alref.eval.datasets.revos import RevosGroundTruth
from alref.eval.errors import PredictionLayoutError
from alref.eval.metrics import AVSS_CLASSES, SemanticAccumulator, binary_j_f, f_measure, jaccard
from alref.eval.protocols import (
    DavisGroundTruthSequence,
    ObjectScore,
    avs_summary,
    avs_video_scores,
    davis_summary,
    revos_percent,
    revos_robustness,
    revos_summary,
)
from alref.media.writers import davis_palette

T = TypeVar("T")
R = TypeVar("R")
Progress = Callable[[int, int], None]  # (done, total)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _parallel(
    fn: Callable[[T], R], items: Sequence[T], workers: int | None, progress: Progress | None
) -> list[R]:
    workers = default_workers() if workers is None else max(1, workers)
    total = len(items)
    if workers == 1 or total <= 1:
        out = []
        for i, item in enumerate(items):
            out.append(fn(item))
            if progress:
                progress(i + 1, total)
        return out
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(fn, item) for item in items]
        out = []
        for i, future in enumerate(futures):
            out.append(future.result())
            if progress:
                progress(i + 1, total)
        return out


def score(
    protocol: str,
    pred: str | Path,
    gt: str | Path,
    *,
    videos: Iterable[str] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Score the predictions in ``pred`` against the ground truth in ``gt`` under ``protocol``;
    ``videos`` restricts scoring to those sequences/videos."""
    if protocol not in PROTOCOLS:
        raise PredictionLayoutError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    pred, gt = Path(pred).expanduser(), Path(gt).expanduser()
    if not pred.is_dir():
        raise PredictionLayoutError(f"predictions folder (--pred) is missing: {pred}")
    names = list(videos) if videos is not None else None
    if protocol == "davis":
        return score_davis(pred, gt, sequences=names, workers=workers, progress=progress)
    if protocol == "mevis":
        return score_mevis(pred, gt, videos=names, workers=workers, progress=progress)
    if protocol == "revos":
        return score_revos(pred, gt, videos=names, workers=workers, progress=progress)
    return score_avsbench(protocol, pred, gt, videos=names, workers=workers, progress=progress)


def _percent(values: dict[str, float]) -> dict[str, float]:
    return {k: v * 100 for k, v in values.items()}


def headline(result: dict[str, Any]) -> dict[str, float | None]:
    """The rows of a result's table, in order: ``J``, ``F``, ``J&F`` (AVSBench: ``M_J``, ``M_F``);
    ReVOS adds ``R`` and its splits' ``referring J`` … ``reasoning J&F``."""
    if "M_J" in result:
        return {k: result[k] for k in ("M_J", "M_F")}
    out = {k: result[k] for k in ("J", "F", "J&F")}
    if result.get("protocol") == "revos":
        out["R"] = result["R"]
        for split in ("referring", "reasoning"):
            out |= {f"{split} {k}": result[split][k] for k in ("J", "F", "J&F")}
    return out


# ---------------------------------------------------------------------------------------------
# DAVIS


def davis_runs(pred: Path) -> dict[str, Path]:
    """One annotator's folder, or the parent of anno_0..anno_3 (all four are needed)."""
    runs = {f"anno_{k}": pred / f"anno_{k}" for k in range(4)}
    present = [name for name, path in runs.items() if path.is_dir()]
    if not present:
        return {pred.name or "pred": pred}
    if len(present) < 4:
        missing = [str(runs[n]) for n in runs if n not in present]
        raise PredictionLayoutError(
            f"{', '.join(present)} found but {missing[0]} is missing: Ref-DAVIS averages the four "
            "annotator runs (or pass one anno_<k> folder to score it alone)"
        )
    return runs


def _read_run(run: Path, sequence: str, frames: list[str], shape: tuple[int, ...]) -> np.ndarray:
    folder = run / sequence
    if not folder.is_dir():
        raise PredictionLayoutError(f"no predictions for sequence {sequence!r}: {folder} is missing")
    out = np.empty(shape, np.uint8)
    for t, name in enumerate(frames):
        frame = read_index_png(folder / f"{name}.png", "predicted mask", PredictionLayoutError)
        if frame.shape != shape[1:]:
            raise PredictionLayoutError(
                f"predicted mask {folder / name}.png is {frame.shape[1]}x{frame.shape[0]}, "
                f"the ground truth is {shape[2]}x{shape[1]}"
            )
        out[t] = frame
    return out


def score_davis(
    pred: Path,
    gt: Path,
    sequences: list[str] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The Ref-DAVIS17 number: the DAVIS 2017 unsupervised evaluation of each annotator run."""
    truth = DavisGroundTruth(gt, sequences=sequences)
    runs = davis_runs(pred)

    def one(sequence: str) -> dict[str, list[ObjectScore]]:
        labels = truth.read(sequence)
        prepared = DavisGroundTruthSequence(labels)
        frames = truth.frames(sequence)
        return {
            name: prepared.evaluate(_read_run(run, sequence, frames, labels.shape))
            for name, run in runs.items()
        }

    per_sequence = dict(zip(truth.sequences, _parallel(one, truth.sequences, workers, progress), strict=True))
    run_scores = {
        name: davis_summary([o for seq in truth.sequences for o in per_sequence[seq][name]]) for name in runs
    }
    headline = {key: float(np.mean([r[key] for r in run_scores.values()])) for key in ("J", "F", "J&F")}
    detail = {}
    for seq, by_run in per_sequence.items():
        objs = [o for objects in by_run.values() for o in objects]
        j = float(np.mean([o.j_mean for o in objs])) * 100 if objs else None
        f = float(np.mean([o.f_mean for o in objs])) * 100 if objs else None
        detail[seq] = {
            "J": j,
            "F": f,
            "J&F": (j + f) / 2 if objs else None,
            "objects": {
                name: [
                    {"gt_id": o.gt_id, "pred_id": o.pred_id, "J": o.j_mean * 100, "F": o.f_mean * 100}
                    for o in objects
                ]
                for name, objects in by_run.items()
            },
        }
    out: dict[str, Any] = {"protocol": "davis", **_percent(headline)}
    out["runs"] = {name: _percent(s) for name, s in run_scores.items()}
    out["num_sequences"] = len(truth.sequences)
    out["num_objects"] = sum(len(per_sequence[s][next(iter(runs))]) for s in truth.sequences)
    out["sequences"] = detail
    return out


# ---------------------------------------------------------------------------------------------
# MeViS


def score_mevis(
    pred: Path,
    gt: Path | MevisGroundTruth,
    videos: list[str] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """MeViS: a missing video folder scores J = F = 0 (as the official script); any other missing
    file is an error. The detail holds each ``<video>/<exp_id>``'s J and F."""
    truth = gt if isinstance(gt, MevisGroundTruth) else MevisGroundTruth(gt)
    root = pred / "Annotations" if (pred / "Annotations").is_dir() else pred
    items = truth.expressions()
    if videos is not None:
        wanted = set(videos)
        items = [i for i in items if i[0] in wanted]
    present = {v for v, _, _ in items if (root / v).is_dir()}
    if items and not present:
        v, e, frames = items[0]
        raise PredictionLayoutError(
            f"no predictions for any video in {root}: expected e.g. {root / v / e / frames[0]}.png"
        )

    def one(item: tuple[str, str, list[str]]) -> tuple[float, float]:
        video, exp, frames = item
        if video not in present:
            return 0.0, 0.0
        folder = root / video / exp
        if not folder.is_dir():
            raise PredictionLayoutError(
                f"no predictions for expression {exp} of {video}: {folder} is missing"
            )
        masks = np.stack(  # OpenCV's grey values, as the official script reads them: not 0 = foreground
            [read_grey_png(folder / f"{n}.png", "predicted mask", PredictionLayoutError) != 0 for n in frames]
        )
        j, f = binary_j_f(masks, truth.masks(video, exp, masks.shape[1:]))
        return float(np.mean(j)), float(np.mean(f))

    results = _parallel(one, items, workers, progress)
    j = float(np.mean([r[0] for r in results])) if results else float("nan")
    f = float(np.mean([r[1] for r in results])) if results else float("nan")
    return {
        "protocol": "mevis",
        "J": j * 100,
        "F": f * 100,
        "J&F": (j + f) / 2 * 100,
        "num_expressions": len(items),
        "missing_videos": sorted({v for v, _, _ in items} - present),
        "expressions": {
            f"{v}/{e}": {"J": r[0] * 100, "F": r[1] * 100}
            for (v, e, _), r in zip(items, results, strict=True)
        },
    }


# ---------------------------------------------------------------------------------------------
# ReVOS


def score_revos(
    pred: Path,
    gt: Path | RevosGroundTruth,
    videos: list[str] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """ReVOS as VISA's ``eval_revos.py`` (rules in :mod:`alref.eval.protocols`): per expression J, F
    and R over every frame, rounded to 0.01 %, then the referring / reasoning / overall means. A
    missing video folder scores J = F = R = 0 (as the script); any other missing or unreadable file,
    or a size that differs from the ground truth, is an error (the script would score it 0 silently).
    The detail holds each ``<video>/<exp_id>``'s J, F, R and ``type_id``."""
    truth = gt if isinstance(gt, RevosGroundTruth) else RevosGroundTruth(gt)
    root = pred / "Annotations" if (pred / "Annotations").is_dir() else pred
    items = truth.expressions()
    if videos is not None:
        wanted = set(videos)
        items = [i for i in items if i[0] in wanted]
    untyped = next((i for i in items if i[3] is None), None)
    if untyped is not None:
        raise DatasetLayoutError(
            f"expression {untyped[1]} of video {untyped[0]!r} in {truth.meta_path} has no type_id "
            "(0 referring, 1 reasoning), which the ReVOS means need"
        )
    present = {v for v, _, _, _ in items if (root / v).is_dir()}
    if items and not present:
        v, e, frames, _ = items[0]
        raise PredictionLayoutError(
            f"no predictions for any video in {root}: expected e.g. {root / v / e / frames[0]}.png"
        )

    def one(item: tuple[str, str, list[str], int | None]) -> tuple[float, float, float]:
        video, exp, frames, _ = item
        if video not in present:
            return 0.0, 0.0, 0.0
        folder = root / video / exp
        if not folder.is_dir():
            raise PredictionLayoutError(
                f"no predictions for expression {exp} of {video}: {folder} is missing"
            )
        j, f, r = [], [], []
        shape: tuple[int, int] | None = None
        for t, name in enumerate(frames):
            grey = read_grey_png(folder / f"{name}.png", "predicted mask", PredictionLayoutError)
            if shape is None:
                shape = grey.shape
            elif grey.shape != shape:
                raise PredictionLayoutError(
                    f"predicted mask {folder / name}.png is {grey.shape[1]}x{grey.shape[0]}, the first "
                    f"frame's is {shape[1]}x{shape[0]}"
                )
            target = truth.target(video, exp, t, shape)
            j.append(jaccard(grey != 0, target != 0))
            f.append(f_measure(grey != 0, target != 0))
            r.append(revos_robustness(target, grey, truth.foreground(video, t, shape)))
        return float(np.mean(j)), float(np.mean(f)), float(np.mean(r))

    results = _parallel(one, items, workers, progress)
    rows = [
        {"J": revos_percent(j), "F": revos_percent(f), "R": revos_percent(r), "type_id": type_id}
        for (_, _, _, type_id), (j, f, r) in zip(items, results, strict=True)
    ]
    summary = revos_summary(rows)
    return {
        "protocol": "revos",
        **{k: summary[k] for k in ("J", "F", "J&F", "R")},
        "referring": summary["referring"],
        "reasoning": summary["reasoning"],
        "num_expressions": len(items),
        "num_other_expressions": summary["other"]["num_expressions"],
        "foreground": str(truth.foreground_path or "derived from mask_dict.json"),
        "missing_videos": sorted({v for v, _, _, _ in items} - present),
        "expressions": {f"{v}/{e}": row for (v, e, _, _), row in zip(items, rows, strict=True)},
    }


# ---------------------------------------------------------------------------------------------
# AVSBench

AVSS_SIZE = (224, 224)
_CODES = (lambda p: (p[:, 0] << 16) | (p[:, 1] << 8) | p[:, 2])(
    np.array(davis_palette(), np.int64).reshape(256, 3)[:AVSS_CLASSES]
)
_ORDER = np.argsort(_CODES)


def colour_classes(path: Path, what: str, error: type = PredictionLayoutError) -> np.ndarray:
    """An AVSBench-semantic colour mask as (224, 224) class indices: RGB, nearest-neighbour resize
    to 224×224 (as the official loader), exact palette colours → class, any other colour → 0."""
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB").resize(AVSS_SIZE, Image.NEAREST)).astype(np.int64)
    except FileNotFoundError:
        raise error(f"{what} is missing: {path}") from None
    except (OSError, ValueError) as exc:
        raise error(f"{what} {path} cannot be read ({exc})") from None
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    pos = np.clip(np.searchsorted(_CODES[_ORDER], codes), 0, AVSS_CLASSES - 1)
    cls = _ORDER[pos]
    return np.where(_CODES[cls] == codes, cls, 0).astype(np.uint8)


def _prediction_path(dataset: AvsDataset, pred: Path, video, index: int) -> Path:
    candidates = dataset.pred_candidates(pred, video, index)
    for path in candidates:
        if path.is_file():
            return path
    raise PredictionLayoutError(f"predicted mask of {video.id} frame {index} is missing: {candidates[0]}")


def score_avsbench(
    protocol: str,
    pred: Path,
    gt: Path,
    videos: list[str] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    split: str | None = None,
) -> dict[str, Any]:
    """AVSBench binary (M_J, M_F per :mod:`alref.eval.protocols`) or semantic (AVSS) scoring of the
    ``split`` (default test) videos listed in the ground truth's metadata."""
    variant = "alref-sam2" if protocol.endswith(ALREF_SAM2) else "avsbench"
    base = protocol.removesuffix(ALREF_SAM2)
    dataset = dataset_class(base)(gt, split, media=False)  # type: ignore[call-arg]
    assert isinstance(dataset, AvsDataset)
    items = dataset.select(videos)
    if not items:
        raise PredictionLayoutError(f"no {dataset.split} videos in {gt} for {protocol}")

    if not dataset.binary:

        def semantic(video) -> list[tuple[np.ndarray, np.ndarray]]:
            return [
                (
                    colour_classes(_prediction_path(dataset, pred, video, i), "predicted mask"),
                    colour_classes(path, "ground-truth mask", PredictionLayoutError),
                )
                for i, path in enumerate(dataset.gt_paths(video))
            ]

        acc = SemanticAccumulator()
        for frames in _parallel(semantic, items, workers, progress):
            for p, g in frames:
                acc.add(p, g)
        miou, f, per_iou, per_f = acc.result()
        names = getattr(dataset, "classes", [str(i) for i in range(AVSS_CLASSES)])
        return {
            "protocol": protocol,
            "M_J": miou * 100,
            "M_F": f * 100,
            "num_videos": len(items),
            "classes": {
                names[k]: {"J": per_iou[k] * 100, "F": per_f[k] * 100, "frames": int(acc.count[k])}
                for k in range(AVSS_CLASSES)
            },
        }

    def binary(video) -> dict:
        preds, gts = [], []
        for i, path in enumerate(dataset.gt_paths(video)):
            g = read_level_png(path, "ground-truth mask", PredictionLayoutError) >= 128
            p = read_level_png(
                _prediction_path(dataset, pred, video, i), "predicted mask", PredictionLayoutError
            )
            if variant == "alref-sam2":
                p = np.where(p >= 128, 255, 0).astype(np.uint8)
            if p.shape != g.shape:
                raise PredictionLayoutError(
                    f"predicted mask of {video.id} frame {i} is {p.shape[1]}x{p.shape[0]}, "
                    f"the ground truth {path} is {g.shape[1]}x{g.shape[0]}"
                )
            preds.append(p)
            gts.append(g)
        return avs_video_scores(preds, gts, variant)

    scored = _parallel(binary, items, workers, progress)
    summary = avs_summary(scored, variant)
    return {
        "protocol": protocol,
        **_percent(summary),
        "num_videos": len(items),
        "videos": {
            v.id: {
                "M_J": float(np.mean(s["iou"])) * 100,
                "M_F": (s["video_f"] if variant == "avsbench" else float(np.mean(s["f"]))) * 100,
            }
            for v, s in zip(items, scored, strict=True)
        },
    }
