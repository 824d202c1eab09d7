"""J, F, the boundary map and the AVSBench measures: hand-computed cases and agreement with
vos-benchmark (per frame) and with direct re-implementations of the official formulas."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import eval_synth  # noqa: E402

from alref.eval.metrics import (  # noqa: E402
    SemanticAccumulator,
    avs_f_curve,
    avs_f_group,
    avs_iou,
    binary_j_f,
    boundary_map,
    disk,
    disk_radius,
    f_measure,
    jaccard,
    mask_edges,
)
from alref.eval.protocols import avs_summary, avs_video_scores  # noqa: E402

vos_evaluator = pytest.importorskip("vos_benchmark.evaluator")
vos_utils = pytest.importorskip("vos_benchmark.utils")


@pytest.mark.parametrize(("h", "w", "r"), [(480, 854, 8), (720, 1280, 12), (224, 224, 3), (1080, 1920, 18)])
def test_disk_radius_from_resolution(h, w, r):
    assert disk_radius(h, w) == r


def test_disk_is_the_euclidean_ball():
    k = disk(3)
    assert k.shape == (7, 7) and k[3, 0] == 1 and k[0, 0] == 0 and k.sum() == 29


def test_boundary_map_rules():
    m = np.zeros((4, 5), bool)
    m[1, 1] = True
    b = boundary_map(m)
    # the pixel itself, and the pixels whose east, south or south-east neighbour it is
    assert {tuple(p) for p in np.argwhere(b)} == {(1, 1), (1, 0), (0, 1), (0, 0)}
    assert not boundary_map(np.ones((6, 7), bool)).any()  # a full-frame mask has no boundary
    last = np.zeros((3, 3), bool)
    last[2, 1] = True  # on the last row only the east neighbour counts
    assert {tuple(p) for p in np.argwhere(boundary_map(last))} == {(2, 1), (2, 0), (1, 1), (1, 0)}


def test_boundary_map_matches_vos_benchmark_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(30):
        m = rng.random((int(rng.integers(1, 12)), int(rng.integers(1, 12)))) < rng.random()
        assert np.array_equal(boundary_map(m), vos_utils._seg2bmap(m))


def test_cropped_edges_equal_full_frame_edges_at_borders():
    rng = np.random.default_rng(1)
    for _ in range(40):
        m = np.zeros((40, 50), bool)
        y, x = rng.integers(-5, 40), rng.integers(-5, 50)
        m[max(y, 0) : y + rng.integers(1, 20), max(x, 0) : x + rng.integers(1, 20)] = True
        e = mask_edges(m, 3)
        full = np.argwhere(boundary_map(m))
        assert e.count == len(full)
        assert {(int(a), int(b)) for a, b in zip(e.ys, e.xs, strict=True)} == {tuple(p) for p in full}


def test_j_edge_cases():
    empty, full = np.zeros((5, 5), bool), np.ones((5, 5), bool)
    assert jaccard(empty, empty) == 1.0
    assert jaccard(full, empty) == 0.0 and jaccard(empty, full) == 0.0
    half = full.copy()
    half[:, :2] = False
    assert jaccard(half, full) == pytest.approx(15 / 25)
    void = np.zeros((5, 5), bool)
    void[:, :2] = True  # void pixels count for neither mask
    assert jaccard(half, full, void) == 1.0


def test_f_edge_cases():
    empty, full = np.zeros((20, 20), bool), np.ones((20, 20), bool)
    square = np.zeros((20, 20), bool)
    square[5:10, 5:10] = True
    assert f_measure(empty, empty) == 1.0
    assert f_measure(square, empty) == 0.0 and f_measure(empty, square) == 0.0
    assert f_measure(full, full) == 1.0  # neither has a boundary
    assert f_measure(full, square) == 0.0  # the full-frame prediction has no boundary
    assert f_measure(square, square) == 1.0
    void = np.zeros((20, 20), bool)
    void[0:12, 0:12] = True
    assert f_measure(square, empty, void) == 1.0  # the square lies in void: nothing is left


def _vos_per_frame(pred: np.ndarray, gt: np.ndarray) -> dict[int, tuple[list, list]]:
    ev = vos_evaluator.Evaluator()
    for p, g in zip(pred, gt, strict=True):
        ev.feed_frame(p, g)
    return {k: (ev.object_iou[k], ev.boundary_f[k]) for k in ev.object_iou}


def test_j_f_agree_with_vos_benchmark_per_frame_including_late_objects():
    gt = eval_synth.moving_labels(12, 60, 90, 3, seed=3, late=5)  # object 1 appears on frame 5
    pred = eval_synth.perturb(gt, seed=4, shift=3, drop=0.2)
    vos = _vos_per_frame(pred, gt)
    for obj in (1, 2, 3):
        j, f = binary_j_f(pred == obj, gt == obj)
        vj, vf = vos[obj]
        first = len(j) - len(vj)  # vos-benchmark starts scoring an object at its first appearance
        assert first == (5 if obj == 1 else 0)
        np.testing.assert_allclose(j[first:], vj, atol=1e-6, rtol=0)
        np.testing.assert_allclose(f[first:], vf, atol=1e-6, rtol=0)
        # before it appears, an empty prediction scores 1 (both empty)
        assert np.all(j[:first] == 1.0) and np.all(f[:first] == 1.0)


def test_f_agrees_with_vos_benchmark_at_davis_resolution():
    gt = eval_synth.moving_labels(3, 480, 854, 2, seed=5)
    pred = eval_synth.perturb(gt, seed=6, shift=9, drop=0.0)
    vos = _vos_per_frame(pred, gt)
    for obj in (1, 2):
        j, f = binary_j_f(pred == obj, gt == obj)
        np.testing.assert_allclose(j, vos[obj][0], atol=1e-6, rtol=0)
        np.testing.assert_allclose(f, vos[obj][1], atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------
# AVSBench


def _official_f_curve(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The AVSBench _eval_pr/Eval_Fmeasure loop for one frame, in float32 like the torch code."""
    y_pred = (pred.astype(np.float32) / np.float32(255)).ravel()
    y = gt.astype(np.float32).ravel()
    out = np.zeros(255, np.float32)
    for i, th in enumerate(np.linspace(0, 1 - 1e-10, 255, dtype=np.float32)):
        y_temp = (y_pred >= th).astype(np.float32)
        tp = (y_temp * y).sum()
        prec, rec = tp / (y_temp.sum() + np.float32(1e-20)), tp / (y.sum() + np.float32(1e-20))
        with np.errstate(invalid="ignore"):
            f = (1 + 0.3) * prec * rec / (0.3 * prec + rec)
        out[i] = 0 if np.isnan(f) else f
    return out


def test_avs_iou_empty_ground_truth_rule():
    gt = np.zeros((10, 10), bool)
    pred = np.zeros((10, 10), bool)
    pred[:2] = True  # 20 of 100 pixels wrongly foreground
    assert avs_iou(pred, gt) == pytest.approx(80 / 100, abs=1e-7)
    assert avs_iou(np.zeros_like(gt), gt) == pytest.approx(1.0, abs=1e-6)
    gt[:4] = True
    assert avs_iou(pred, gt) == pytest.approx(20 / 40, abs=1e-7)


def test_avs_f_curve_matches_the_official_loop_for_soft_and_binary_masks():
    rng = np.random.default_rng(7)
    gt = np.zeros((16, 16), bool)
    gt[4:12, 3:9] = True
    soft = rng.integers(0, 256, (16, 16)).astype(np.uint8)
    binary = np.where(np.roll(gt, 2, axis=1), 255, 0).astype(np.uint8)
    for pred in (soft, binary):
        np.testing.assert_allclose(avs_f_curve(pred, gt), _official_f_curve(pred, gt), atol=1e-6)
    # binary: threshold 0 makes everything foreground, all others give the mask itself
    p, r = 32 / 48, 32 / 48  # 8x6 target, the prediction shifted by 2 columns
    assert avs_f_curve(binary, gt)[100] == pytest.approx(1.3 * p * r / (0.3 * p + r))
    p0 = 48 / 256  # threshold 0: all 256 pixels predicted, recall 1
    assert avs_f_curve(binary, gt)[0] == pytest.approx(1.3 * p0 / (0.3 * p0 + 1))


def test_avs_f_group_skips_empty_frames_and_alref_counts_them_as_zero():
    gt = [np.zeros((8, 8), bool), np.zeros((8, 8), bool)]
    gt[1][2:6, 2:6] = True
    preds = [np.zeros((8, 8), np.uint8), np.where(gt[1], 255, 0).astype(np.uint8)]
    assert avs_f_group(preds, gt) == pytest.approx(1.0)  # the empty frame is skipped
    assert avs_f_group(preds[:1], gt[:1]) == 0.0  # no frame with ground truth → 0
    official = avs_summary([avs_video_scores(preds, gt)], "avsbench")
    alref = avs_summary([avs_video_scores(preds, gt)], "alref-sam2")
    assert official["M_F"] == pytest.approx(1.0) and alref["M_F"] == pytest.approx(0.5)
    assert official["M_J"] == alref["M_J"] == pytest.approx(1.0, abs=1e-6)


def _official_semantic(preds: list[np.ndarray], gts: list[np.ndarray], n: int = 71):
    """_batch_miou_fscore + the final per-class means, written out directly."""
    ious, fs, counts = np.zeros(n), np.zeros(n), np.zeros(n)
    for p, g in zip(preds, gts, strict=True):
        for c in range(n):
            inter = np.sum((p == c) & (g == c))
            area_p, area_g = np.sum(p == c), np.sum(g == c)
            union = area_p + area_g - inter
            ious[c] += inter / (2.220446049250313e-16 + union)
            counts[c] += union > 0
            with np.errstate(invalid="ignore", divide="ignore"):
                prec, rec = inter / area_p, inter / area_g
                f = 1.3 * prec * rec / (0.3 * prec + rec)
            fs[c] += 0 if np.isnan(f) else f
    with np.errstate(invalid="ignore"):
        miou = np.nan_to_num(ious / counts)
        fsc = np.nan_to_num(fs / counts)
    return miou.mean(), fsc.mean()


def test_semantic_accumulator_matches_the_official_formulas():
    rng = np.random.default_rng(8)
    preds = [rng.choice([0, 3, 5, 70], (12, 12)).astype(np.uint8) for _ in range(4)]
    gts = [rng.choice([0, 3, 9], (12, 12)).astype(np.uint8) for _ in range(4)]
    acc = SemanticAccumulator()
    for p, g in zip(preds, gts, strict=True):
        acc.add(p, g)
    miou, f, per_iou, _ = acc.result()
    ref_miou, ref_f = _official_semantic(preds, gts)
    assert miou == pytest.approx(ref_miou, abs=1e-9) and f == pytest.approx(ref_f, abs=1e-9)
    assert per_iou[1] == 0.0 and acc.count[9] == 4  # absent class → 0; class 9 seen on every frame
