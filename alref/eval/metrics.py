"""Region (J) and boundary (F) measures exact to the official scorers, vectorised with numpy/OpenCV.

**J** is the IoU of a predicted and a ground-truth mask; both empty gives 1, one empty gives 0.
Pixels marked void (DAVIS: value 255 in the ground truth) count for neither mask.

**F** is the DAVIS boundary F-measure. The boundary map marks a pixel that differs from its east,
south or south-east neighbour; on the last row only the east neighbour counts, on the last column
only the south one, and the bottom-right pixel is never a boundary (so a mask that fills the frame
has no boundary). Each boundary is dilated by a disk of radius ``ceil(0.008 × image diagonal)``
(480×854 → 8, 720×1280 → 12, 224×224 → 3); precision is the share of predicted boundary pixels
inside the dilated ground-truth boundary, recall the converse, ``F = 2PR / (P + R)``. No boundary on
either side gives 1, a boundary on one side only gives 0.

Speed without changing a single value: a boundary is computed and dilated once per object and frame,
inside the object's bounding box plus a margin (the DAVIS script recomputes both for every
(prediction, ground truth) pair over the full frame), and a pair's matches are counted by looking
up one object's boundary pixels in the other's dilated crop.

The AVSBench measures are here too: ``mask_iou`` (M_J, with its empty-ground-truth rule), the F
curve over 255 thresholds with β² = 0.3 (M_F), and the AVSBench-semantic per-class accumulator. The
protocols that aggregate all of these (matching, grouping, means) are in :mod:`alref.eval.protocols`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

BOUND_TH = 0.008


def disk_radius(height: int, width: int, bound_th: float = BOUND_TH) -> int:
    """The DAVIS dilation radius: ``ceil(bound_th × sqrt(h² + w²))`` (480×854 → 8)."""
    return int(np.ceil(bound_th * np.linalg.norm((height, width))))


@lru_cache(maxsize=16)
def disk(radius: int) -> np.ndarray:
    """A (2r+1)² uint8 disk: the offsets with x² + y² ≤ r² (scikit-image's ``disk``)."""
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """The DAVIS boundary map (``_seg2bmap`` at full size) of a binary HxW mask, as bool."""
    seg = np.asarray(mask).astype(bool, copy=False)
    b = np.empty(seg.shape, dtype=bool)
    c = seg[:-1, :-1]
    b[:-1, :-1] = (c ^ seg[:-1, 1:]) | (c ^ seg[1:, :-1]) | (c ^ seg[1:, 1:])
    b[-1, :-1] = seg[-1, :-1] ^ seg[-1, 1:]  # last row: the east neighbour only
    b[:-1, -1] = seg[:-1, -1] ^ seg[1:, -1]  # last column: the south neighbour only
    b[-1, -1] = False
    return b


def jaccard(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """J of one frame: IoU over non-void pixels; both empty → 1."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if void is not None:
        keep = ~np.asarray(void, bool)
        pred, gt = pred & keep, gt & keep
    union = int(np.count_nonzero(pred | gt))
    return 1.0 if union == 0 else int(np.count_nonzero(pred & gt)) / union


def iou_from_counts(inter: int, size_pred: int, size_gt: int) -> float:
    union = size_pred + size_gt - inter
    return 1.0 if union == 0 else inter / union


@dataclass(frozen=True)
class Edges:
    """One object's boundary on one frame: its pixels (global coordinates) and its dilation, kept
    only inside a crop at offset (oy, ox)."""

    count: int
    ys: np.ndarray
    xs: np.ndarray
    dilated: np.ndarray | None = None
    oy: int = 0
    ox: int = 0

    def hits(self, other: Edges) -> int:
        """How many of ``other``'s boundary pixels fall inside this object's dilated boundary."""
        if self.dilated is None or other.count == 0:
            return 0
        yy = other.ys - self.oy
        xx = other.xs - self.ox
        h, w = self.dilated.shape
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        return int(np.count_nonzero(self.dilated[yy[ok], xx[ok]]))


NO_EDGES = Edges(0, np.empty(0, np.intp), np.empty(0, np.intp))


def edges_in(crop: np.ndarray, y0: int, x0: int, radius: int, kernel: np.ndarray | None = None) -> Edges:
    """Edges of a mask given as a crop at (y0, x0). The crop must hold the mask's bounding box plus a
    one-pixel margin on every side that is not an image border (then the boundary inside the crop
    equals the full-frame boundary and is empty outside it)."""
    b = boundary_map(crop)
    ys, xs = np.nonzero(b)
    if ys.size == 0:
        return NO_EDGES
    by0, by1, bx0, bx1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    padded = np.zeros((by1 - by0 + 2 * radius, bx1 - bx0 + 2 * radius), np.uint8)
    padded[radius : radius + by1 - by0, radius : radius + bx1 - bx0] = b[by0:by1, bx0:bx1]
    dilated = cv2.dilate(padded, disk(radius) if kernel is None else kernel)
    return Edges(int(ys.size), ys + y0, xs + x0, dilated.view(bool), y0 + by0 - radius, x0 + bx0 - radius)


def crop_box(rows: slice, cols: slice, height: int, width: int) -> tuple[slice, slice]:
    """A bounding box grown by the one-pixel margin :func:`edges_in` needs, clipped to the frame."""
    return (
        slice(max(rows.start - 1, 0), min(rows.stop + 1, height)),
        slice(max(cols.start - 1, 0), min(cols.stop + 1, width)),
    )


def mask_edges(mask: np.ndarray, radius: int | None = None) -> Edges:
    """Edges of a full-frame binary mask (the bounding box is found here)."""
    mask = np.asarray(mask).astype(bool, copy=False)
    height, width = mask.shape
    radius = disk_radius(height, width) if radius is None else radius
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return NO_EDGES
    cols = np.flatnonzero(mask.any(axis=0))
    ys, xs = crop_box(slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1), height, width)
    return edges_in(mask[ys, xs], ys.start, xs.start, radius)


def f_from_edges(pred: Edges, gt: Edges) -> float:
    """The boundary F-measure from both objects' edges, with the DAVIS rules for empty boundaries."""
    n_fg, n_gt = pred.count, gt.count
    if n_fg == 0 and n_gt == 0:
        return 1.0
    if n_fg == 0 or n_gt == 0:
        return 0.0
    precision = gt.hits(pred) / float(n_fg)
    recall = pred.hits(gt) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def f_measure(
    pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None, bound_th: float = BOUND_TH
) -> float:
    """F of one frame (DAVIS ``f_measure``): void pixels are removed from both masks first."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if void is not None:
        keep = ~np.asarray(void, bool)
        pred, gt = pred & keep, gt & keep
    radius = disk_radius(*pred.shape, bound_th=bound_th)
    return f_from_edges(mask_edges(pred, radius), mask_edges(gt, radius))


def binary_j_f(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame J and F of a (T, H, W) binary prediction against a (T, H, W) ground truth."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction is {pred.shape}, ground truth is {gt.shape}")
    radius = disk_radius(*pred.shape[1:])
    j = np.empty(len(pred))
    f = np.empty(len(pred))
    for t in range(len(pred)):
        inter = int(np.count_nonzero(pred[t] & gt[t]))
        j[t] = iou_from_counts(inter, int(np.count_nonzero(pred[t])), int(np.count_nonzero(gt[t])))
        f[t] = f_from_edges(mask_edges(pred[t], radius), mask_edges(gt[t], radius))
    return j, f


# ---------------------------------------------------------------------------------------------
# AVSBench measures (M_J, M_F) on binary masks, and the AVSS semantic measures


AVS_EPS = 1e-7  # AVSBench mask_iou's eps
AVS_BETA2 = 0.3
AVS_THRESHOLDS = np.linspace(0.0, 1 - 1e-10, 255)
_LEVEL_PASSES = (np.arange(256)[None, :] / 255.0) >= AVS_THRESHOLDS[:, None]  # (255 thr, 256 levels)


def avs_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """AVSBench ``mask_iou`` of one frame: IoU, and where the ground truth is empty the share of all
    pixels that both leave as background."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if not gt.any():
        return int(np.count_nonzero(~pred)) / (pred.size + AVS_EPS)
    inter = int(np.count_nonzero(pred & gt))
    union = int(np.count_nonzero(pred | gt))
    return inter / (union + AVS_EPS)


def avs_f_curve(pred_levels: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """AVSBench F-measure of one frame at each of the 255 thresholds (β² = 0.3). ``pred_levels`` are
    uint8 probabilities (value/255; a binary mask is 0/255); NaN (0/0) counts as 0."""
    levels = np.asarray(pred_levels, np.uint8).ravel()
    gt = np.asarray(gt, bool).ravel()
    all_hist = np.bincount(levels, minlength=256)
    gt_hist = np.bincount(levels[gt], minlength=256)
    predicted = _LEVEL_PASSES @ all_hist
    tp = _LEVEL_PASSES @ gt_hist
    precision = tp / (predicted + 1e-20)
    recall = tp / (int(gt.sum()) + 1e-20)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = (1 + AVS_BETA2) * precision * recall / (AVS_BETA2 * precision + recall)
    return np.nan_to_num(f, nan=0.0)


def avs_f_group(pred_levels: list[np.ndarray], gts: list[np.ndarray]) -> float:
    """AVSBench ``Eval_Fmeasure`` over a group of frames: the mean F curve over frames whose ground
    truth is not empty (empty ones are skipped), then its maximum; 0 if every frame is empty."""
    curves = [avs_f_curve(p, g) for p, g in zip(pred_levels, gts, strict=True) if np.any(g)]
    if not curves:
        return 0.0
    return float(np.max(np.mean(curves, axis=0)))


AVSS_CLASSES = 71
_AVSS_EPS = 2.220446049250313e-16


class SemanticAccumulator:
    """The AVSBench-semantic scorer (``_batch_miou_fscore``): per frame and class, IoU and F (β² = 0.3)
    are summed and the frames where the class is in the prediction or the ground truth are counted;
    mIoU and F are the per-class means (0 for a class never seen) averaged over all 71 classes."""

    def __init__(self, num_classes: int = AVSS_CLASSES) -> None:
        self.num_classes = num_classes
        self.iou_sum = np.zeros(num_classes)
        self.f_sum = np.zeros(num_classes)
        self.count = np.zeros(num_classes, np.int64)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        pred, gt = np.asarray(pred).ravel(), np.asarray(gt).ravel()
        n = self.num_classes
        area_pred = np.bincount(pred, minlength=n)[:n].astype(np.float64)
        area_gt = np.bincount(gt, minlength=n)[:n].astype(np.float64)
        area_inter = np.bincount(gt[pred == gt], minlength=n)[:n].astype(np.float64)
        union = area_pred + area_gt - area_inter
        self.iou_sum += area_inter / (_AVSS_EPS + union)
        self.count[union > 0] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = area_inter / area_pred
            recall = area_inter / area_gt
            f = (1 + AVS_BETA2) * precision * recall / (AVS_BETA2 * precision + recall)
        self.f_sum += np.nan_to_num(f, nan=0.0)

    def result(self) -> tuple[float, float, np.ndarray, np.ndarray]:
        """(mIoU, F, per-class IoU, per-class F), fractions; absent classes count as 0."""
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.nan_to_num(self.iou_sum / self.count, nan=0.0)
            f = np.nan_to_num(self.f_sum / self.count, nan=0.0)
        return float(np.mean(iou)), float(np.mean(f)), iou, f
