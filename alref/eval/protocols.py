"""The evaluation protocols on arrays (no file reading): DAVIS unsupervised, MeViS, ReVOS, AVSBench.

**DAVIS 2017 unsupervised** (what Ref-DAVIS17 uses, as ``davis2017-evaluation`` computes it):
every ground-truth frame is scored; value 255 is void and excluded from both masks; the ground-truth
objects are 1…max label of the *first* frame (an object whose id is higher than every id present on
the first frame is not scored — the official rule); the predicted objects are 1…max label over all
frames (at most 20), padded with empty objects up to the number of ground-truth objects. For every
(prediction, ground truth) pair J and F are computed per frame; predictions are matched one-to-one to
ground-truth objects by the Hungarian algorithm on the mean over frames of (J + F)/2; each matched
object's J and F are its means over frames. J-Mean and F-Mean average over all (sequence, object)
pairs and J&F is their mean. Unlike ``vos-benchmark``, an object is scored from the first frame, not
from its first appearance (frames before it appears score 1 when the prediction is empty there).

**MeViS**: per expression, the target is the union of its ``anno_id`` masks on every frame; J and F
are averaged over all frames, then over expressions; J&F is their mean.

**ReVOS** (VISA's ``tools/eval_revos.py``): per expression, the target is the union of its
``anno_id`` masks on every frame (the script adds the uint8 masks; a pixel is foreground where the
sum is not 0) and J and F are averaged over all frames, as for MeViS. It also computes the robustness
R per frame, ``max(1 − neg / (pos + 1e-6), 0)`` with ``pos`` the pixels of the video's foreground
(the union of every annotated object of the video, ``mask_dict_foreground.json``) and ``neg`` the
sum of ``(1 − target) × prediction`` in uint8 arithmetic on the prediction's grey values — so a
0/255 mask counts 255 per false-positive pixel, and a pixel covered by two objects wraps to a small
value; R is averaged over frames. Each expression's J, F and R are then rounded to two decimals in
percent (``round(100 * j, 2)``) and averaged per ``type_id``: 0 referring, 1 reasoning; J&F of a
split is the mean of its J and F; *overall* J, F, J&F and R are the means of the two splits' values
(not the mean over all expressions). Expressions with ``type_id`` 2 (the script's ``is_nan``) are in
no mean. Where one split has no expression (a subset of the videos), the overall is the other
split's (the script would give NaN).

**AVSBench** binary (S4, MS3, AVSS-V2-Binary), two named variants:

- ``avsbench`` (the official test scripts, one video per batch): M_J is the mean over videos of the
  mean per-frame ``mask_iou`` (empty ground truth: the share of pixels both leave as background);
  M_F is the mean over videos of max over 255 thresholds of the F curve (β² = 0.3) averaged over the
  video's frames whose ground truth is not empty; a video with no such frame scores 0.
- ``alref-sam2`` (AL-Ref-SAM 2's ``eval_miou_and_fscore.py``, which calls the same functions on one
  frame at a time): M_J is the same; M_F is the mean over *frames* of each frame's max F, and a frame
  with empty ground truth scores F = 0 instead of being skipped. With binary masks the max over
  thresholds is max(F of the mask, F of the all-foreground mask) either way, but taking it per frame
  rather than per video, and counting empty frames as 0, changes M_F.

Binary masks are compared at the files' own resolution (S4 and MS3 are 224×224; AVSS-V2-Binary keeps
its native size, as AL-Ref-SAM 2 reads it). **AVSS** (semantic) follows the AVSBench-semantic
scorer, which AL-Ref-SAM 2 reuses unchanged: colour masks resized to 224×224 (nearest), each colour
mapped to its class, per-frame IoU and F (β² = 0.3) per class summed over all frames of all videos
and divided by the number of frames where the class is predicted or present; mIoU and F are the
means over all 71 classes (a class never seen counts 0). The official training-time test also
scores the 5 black padding frames it appends to every 5-frame (v1) video; scoring files, we score
the annotated frames only (as AL-Ref-SAM 2 does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from alref.eval.errors import PredictionLayoutError
from alref.eval.metrics import (
    NO_EDGES,
    Edges,
    avs_f_curve,
    avs_f_group,
    avs_iou,
    crop_box,
    disk,
    disk_radius,
    edges_in,
    f_from_edges,
    iou_from_counts,
)

MAX_PROPOSALS = 20
VOID = 255


@dataclass
class ObjectScore:
    """One ground-truth object of a sequence: its matched prediction and per-frame J and F."""

    gt_id: int
    pred_id: int  # 1-based proposal index; above the prediction's max id it is an empty padding object
    j: np.ndarray
    f: np.ndarray

    @property
    def j_mean(self) -> float:
        return float(np.mean(self.j))

    @property
    def f_mean(self) -> float:
        return float(np.mean(self.f))


@dataclass(frozen=True)
class _Object:
    """One object on one frame: its mask (full frame), bounding box, size and edges."""

    mask: np.ndarray | None
    box: tuple[int, int, int, int]  # y0, y1, x0, x1
    size: int
    edges: Edges


EMPTY = _Object(None, (0, 0, 0, 0), 0, NO_EDGES)


def _objects(labels: np.ndarray, count: int, keep: np.ndarray | None, radius: int) -> list[_Object]:
    """The objects 1..count of a label map (void removed where ``keep`` is False)."""
    height, width = labels.shape
    kernel = disk(radius)
    out: list[_Object] = []
    for obj in range(1, count + 1):
        mask = labels == obj
        if keep is not None:
            mask &= keep
        x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
        if w == 0:
            out.append(EMPTY)
            continue
        ys, xs = crop_box(slice(y, y + h), slice(x, x + w), height, width)
        edges = edges_in(mask[ys, xs], ys.start, xs.start, radius, kernel)
        out.append(_Object(mask, (y, y + h, x, x + w), cv2.countNonZero(mask.view(np.uint8)), edges))
    return out


def _overlap(a: _Object, b: _Object) -> int:
    if a.mask is None or b.mask is None:
        return 0
    y0, y1 = max(a.box[0], b.box[0]), min(a.box[1], b.box[1])
    x0, x1 = max(a.box[2], b.box[2]), min(a.box[3], b.box[3])
    if y0 >= y1 or x0 >= x1:
        return 0
    both = a.mask[y0:y1, x0:x1] & b.mask[y0:y1, x0:x1]
    return cv2.countNonZero(both.view(np.uint8))


class DavisGroundTruthSequence:
    """A sequence's ground truth prepared once (void, objects, their edges) for scoring one or more
    prediction runs (the four Ref-DAVIS annotators share it)."""

    def __init__(self, labels: np.ndarray) -> None:
        labels = np.ascontiguousarray(labels, np.uint8)
        if labels.ndim != 3 or len(labels) == 0:
            raise ValueError(f"ground truth must be (T, H, W) with T > 0, got {labels.shape}")
        self.shape = labels.shape
        first = labels[0]
        self.num_objects = int(first[first != VOID].max(initial=0))
        self.radius = disk_radius(*labels.shape[1:])
        self.keep: list[np.ndarray | None] = []
        self.objects: list[list[_Object]] = []
        for frame in labels:
            void = frame == VOID
            self.keep.append(~void if void.any() else None)
            # void pixels (255) never equal an object id, so the objects exclude them already
            self.objects.append(_objects(frame, self.num_objects, None, self.radius))

    def evaluate(self, pred: np.ndarray, max_proposals: int = MAX_PROPOSALS) -> list[ObjectScore]:
        """Score one prediction run (T, H, W) of palette indices; returns one entry per ground-truth
        object, in ground-truth id order."""
        from scipy.optimize import linear_sum_assignment

        pred = np.asarray(pred, np.uint8)
        if pred.shape != self.shape:
            raise PredictionLayoutError(
                f"predicted masks are {pred.shape[1:]} (x{len(pred)}) but the ground truth is "
                f"{self.shape[1:]} (x{self.shape[0]})"
            )
        n_gt = self.num_objects
        n_pred = int(pred.max())
        if n_pred > max_proposals:
            raise PredictionLayoutError(
                f"a predicted mask holds object index {n_pred}: the DAVIS unsupervised protocol "
                f"allows at most {max_proposals} objects (palette indices 1..{max_proposals})"
            )
        if n_gt == 0:
            return []
        rows = max(n_pred, n_gt)
        frames = len(pred)
        j = np.zeros((rows, n_gt, frames))
        f = np.zeros((rows, n_gt, frames))
        for t in range(frames):
            gts = self.objects[t]
            preds = _objects(pred[t], n_pred, self.keep[t], self.radius)
            preds += [EMPTY] * (rows - n_pred)
            for p, po in enumerate(preds):
                for g, go in enumerate(gts):
                    j[p, g, t] = iou_from_counts(_overlap(po, go), po.size, go.size)
                    f[p, g, t] = f_from_edges(po.edges, go.edges)
        cost = (np.mean(j, axis=2) + np.mean(f, axis=2)) / 2
        row_ind, col_ind = linear_sum_assignment(-cost)
        scores = [
            ObjectScore(int(c) + 1, int(r) + 1, j[r, c], f[r, c])
            for r, c in zip(row_ind, col_ind, strict=True)
        ]
        return sorted(scores, key=lambda s: s.gt_id)


def davis_summary(objects: Sequence[ObjectScore]) -> dict[str, float]:
    """J-Mean, F-Mean and J&F over (sequence, object) pairs, as fractions."""
    if not objects:
        return {"J": float("nan"), "F": float("nan"), "J&F": float("nan")}
    j = float(np.mean([o.j_mean for o in objects]))
    f = float(np.mean([o.f_mean for o in objects]))
    return {"J": j, "F": f, "J&F": (j + f) / 2}


# ---------------------------------------------------------------------------------------------
# ReVOS

REVOS_SPLITS = {0: "referring", 1: "reasoning"}  # type_id → split; type_id 2 is in no mean


def revos_robustness(target: np.ndarray, pred: np.ndarray, foreground: np.ndarray) -> float:
    """R of one frame as VISA's ``get_r2vos_robustness``: ``target`` is the uint8 sum of the
    expression's object masks, ``pred`` the prediction's uint8 grey values, ``foreground`` the
    video's 0/1 foreground; ``(1 − target) × pred`` is taken in uint8 arithmetic (it wraps)."""
    target = np.asarray(target, np.uint8)
    pred = np.asarray(pred, np.uint8)
    neg = int(((np.uint8(1) - target) * pred).sum(dtype=np.uint64))
    pos = int(np.asarray(foreground, np.uint8).sum(dtype=np.uint64))
    return max(1 - np.float64(neg) / (pos + 1e-6), 0.0)


def revos_percent(value: float) -> float:
    """An expression's J, F or R as the ReVOS script stores it: ``round(100 * value, 2)`` on a NumPy
    float (NumPy's rounding)."""
    return float(np.round(np.float64(100) * np.float64(value), 2))


def revos_summary(expressions: Sequence[dict]) -> dict:
    """The ReVOS table from per-expression ``{"J", "F", "R", "type_id"}`` (already in rounded percent,
    see :func:`revos_percent`): per split (``referring``, ``reasoning``) the means of J, F and R, J&F
    = (J + F) / 2 and the number of expressions; overall J, F, J&F and R are the means of the two
    splits' values (a split without expressions is left out: None there). Expressions of
    ``type_id`` 2 are only counted (``other``)."""
    out: dict = {}
    for type_id, split in REVOS_SPLITS.items():
        rows = [e for e in expressions if e["type_id"] == type_id]
        if not rows:
            out[split] = {"J": None, "F": None, "J&F": None, "R": None, "num_expressions": 0}
            continue
        j = float(np.array([e["J"] for e in rows]).mean())
        f = float(np.array([e["F"] for e in rows]).mean())
        r = float(np.array([e["R"] for e in rows]).mean())
        out[split] = {"J": j, "F": f, "J&F": (j + f) / 2, "R": r, "num_expressions": len(rows)}
    present = [out[s] for s in REVOS_SPLITS.values() if out[s]["num_expressions"]]
    for key in ("J", "F", "J&F", "R"):
        out[key] = float(np.mean([s[key] for s in present])) if present else None
    known = set(REVOS_SPLITS)
    out["other"] = {"num_expressions": sum(1 for e in expressions if e["type_id"] not in known)}
    return out


# ---------------------------------------------------------------------------------------------
# AVSBench binary groupings

AVS_VARIANTS = ("avsbench", "alref-sam2")


def avs_video_scores(
    preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], variant: str = "avsbench"
) -> dict[str, list[float] | float]:
    """One video's frames: ``pred`` as uint8 levels (0/255 for a binary mask), ``gt`` as bool.

    Returns the per-frame IoU and F (F per frame is that frame's own max, with empty ground truth
    as 0: the AL-Ref-SAM 2 rule) and the video's grouped F (the AVSBench rule)."""
    if variant not in AVS_VARIANTS:
        raise ValueError(f"unknown AVSBench variant {variant!r}; choose {', '.join(AVS_VARIANTS)}")
    ious = [avs_iou(p >= 128, g) for p, g in zip(preds, gts, strict=True)]
    frame_f = [
        float(np.max(avs_f_curve(p, g))) if np.any(g) else 0.0 for p, g in zip(preds, gts, strict=True)
    ]
    return {"iou": ious, "f": frame_f, "video_f": avs_f_group(list(preds), list(gts))}


def avs_summary(videos: Sequence[dict], variant: str = "avsbench") -> dict[str, float]:
    """M_J and M_F (fractions) over videos scored by :func:`avs_video_scores`."""
    if not videos:
        return {"M_J": float("nan"), "M_F": float("nan")}
    if variant == "avsbench":
        m_j = float(np.mean([np.mean(v["iou"]) for v in videos]))
        m_f = float(np.mean([v["video_f"] for v in videos]))
    else:
        m_j = float(np.mean([x for v in videos for x in v["iou"]]))
        m_f = float(np.mean([x for v in videos for x in v["f"]]))
    return {"M_J": m_j, "M_F": m_f}
