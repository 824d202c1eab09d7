"""Scoring predictions on disk per protocol: DAVIS unsupervised (Hungarian matching, void, late
objects, the four annotators), MeViS, AVSBench; agreement with an independent implementation of the
official DAVIS loop and with vos-benchmark; error messages; the ``alref eval score`` CLI."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "benchmarks"))

import eval_synth  # noqa: E402
import score_speed  # noqa: E402  (the official DAVIS loop, re-implemented independently)

from alref.eval.cli import eval_app  # noqa: E402
from alref.eval.errors import PredictionLayoutError  # noqa: E402
from alref.eval.score import score  # noqa: E402


def _davis(tmp_path: Path, gt: dict, pred: dict, sub: str = "pred") -> tuple[Path, Path]:
    eval_synth.write_davis_gt(tmp_path / "DAVIS", gt)
    eval_synth.write_predictions(tmp_path / sub, pred)
    return tmp_path / sub, tmp_path / "DAVIS"


def test_davis_perfect_prediction_with_swapped_ids_scores_100(tmp_path):
    gt = eval_synth.moving_labels(4, 30, 40, 3, seed=1)
    swapped = np.choose(gt, [0, 3, 1, 2]).astype(np.uint8)  # 1→3, 2→1, 3→2
    pred, gt_dir = _davis(tmp_path, {"s": gt}, {"s": swapped})
    result = score("davis", pred, gt_dir)
    assert result["J"] == result["F"] == result["J&F"] == pytest.approx(100.0)
    matched = {o["gt_id"]: o["pred_id"] for o in result["sequences"]["s"]["objects"]["pred"]}
    assert matched == {1: 3, 2: 1, 3: 2}


def test_davis_void_is_excluded_and_late_objects_score_every_frame(tmp_path):
    gt = eval_synth.moving_labels(6, 30, 40, 2, seed=2, late=3)  # object 1 appears on frame 3
    pred = gt.copy()
    gt_void = gt.copy()
    gt_void[:, :5, :] = np.where(gt[:, :5, :] == 0, 255, gt[:, :5, :])  # a void band on top
    pred[:, :5, :] = 2  # prediction paints the void band: no penalty
    pred[:, :5, :][gt[:, :5, :] == 1] = 1
    pred_dir, gt_dir = _davis(tmp_path, {"s": gt_void}, {"s": pred})
    result = score("davis", pred_dir, gt_dir)
    assert result["J"] == pytest.approx(100.0) and result["num_objects"] == 2
    # a false positive on frame 0 for the late object costs J = 0 on that frame only
    pred[0][10:12, 10:12] = 1
    eval_synth.write_predictions(pred_dir, {"s": pred})
    objects = score("davis", pred_dir, gt_dir)["sequences"]["s"]["objects"]["pred"]
    late = next(o for o in objects if o["gt_id"] == 1)
    assert late["J"] == pytest.approx(100 * 5 / 6)


def test_davis_object_missing_from_the_first_frame_with_the_highest_id_is_not_scored(tmp_path):
    gt = eval_synth.moving_labels(4, 30, 40, 2, seed=3)
    gt[0][gt[0] == 2] = 0  # object 2 (the highest id) absent from frame 0: the official rule skips it
    pred_dir, gt_dir = _davis(tmp_path, {"s": gt}, {"s": np.where(gt == 1, 1, 0).astype(np.uint8)})
    result = score("davis", pred_dir, gt_dir)
    assert result["num_objects"] == 1 and result["J"] == pytest.approx(100.0)


def test_davis_mean_over_the_four_annotators(tmp_path):
    gt = eval_synth.moving_labels(4, 30, 40, 2, seed=4)
    eval_synth.write_davis_gt(tmp_path / "DAVIS", {"s": gt})
    runs = {}
    for k in range(4):
        pred = gt.copy() if k % 2 == 0 else np.zeros_like(gt)
        eval_synth.write_predictions(tmp_path / "pred" / f"anno_{k}", {"s": pred})
        runs[k] = score("davis", tmp_path / "pred" / f"anno_{k}", tmp_path / "DAVIS")
    result = score("davis", tmp_path / "pred", tmp_path / "DAVIS")
    assert set(result["runs"]) == {"anno_0", "anno_1", "anno_2", "anno_3"}
    for key in ("J", "F", "J&F"):
        assert result[key] == pytest.approx(np.mean([runs[k][key] for k in range(4)]), abs=1e-9)
    assert result["J"] == pytest.approx(50.0)
    shutil.rmtree(tmp_path / "pred" / "anno_3")
    with pytest.raises(PredictionLayoutError, match="anno_3 is missing"):
        score("davis", tmp_path / "pred", tmp_path / "DAVIS")


def test_davis_agrees_with_the_official_loop_on_random_data(tmp_path):
    gt, pred = {}, {}
    rng = np.random.default_rng(5)
    for s in range(3):
        g, p = score_speed.synth_sequence(rng, 8, 60, 90)
        gt[f"s{s}"], pred[f"s{s}"] = g, p
    pred_dir, gt_dir = _davis(tmp_path, gt, pred)
    ours = score("davis", pred_dir, gt_dir, workers=2)
    official = score_speed.official_davis(gt_dir, pred_dir)
    for key in ("J", "F", "J&F"):
        assert ours[key] == pytest.approx(official[key] * 100, abs=1e-6)


def test_davis_agrees_with_vos_benchmark_where_the_rules_coincide(tmp_path):
    evaluator = pytest.importorskip("vos_benchmark.evaluator")
    gt = {f"s{i}": eval_synth.moving_labels(6, 40, 60, 2, seed=10 + i) for i in range(2)}
    pred = {k: eval_synth.perturb(v, seed=20, shift=2, drop=0.0) for k, v in gt.items()}
    pred_dir, gt_dir = _davis(tmp_path, gt, pred)
    ours = score("davis", pred_dir, gt_dir)
    js, fs = [], []
    for seq in gt:  # vos-benchmark's global score: the mean over (sequence, object) of per-object means
        ev = evaluator.Evaluator()
        for p, g in zip(pred[seq], gt[seq], strict=True):
            ev.feed_frame(p, g)
        iou, bf = ev.conclude()
        js += list(iou.values())
        fs += list(bf.values())
    assert ours["J"] == pytest.approx(np.mean(js), abs=1e-6)
    assert ours["F"] == pytest.approx(np.mean(fs), abs=1e-6)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("no_sequence", "no predictions for sequence 's'"),
        ("no_frame", "predicted mask is missing: .*00002.png"),
        ("too_many", "at most 20 objects"),
        ("rgb", "is a RGB image; expected a palette"),
        ("size", "is 20x10, the ground truth is 40x30"),
    ],
)
def test_davis_prediction_errors_name_the_problem(tmp_path, breakage, message):
    gt = eval_synth.moving_labels(3, 30, 40, 1)
    pred_dir, gt_dir = _davis(tmp_path, {"s": gt}, {"s": gt})
    frame = pred_dir / "s" / "00002.png"
    if breakage == "no_sequence":
        shutil.rmtree(pred_dir / "s")
        (pred_dir / "other").mkdir()
    elif breakage == "no_frame":
        frame.unlink()
    elif breakage == "too_many":
        eval_synth.write_palette(frame, np.full((30, 40), 21, np.uint8))
    elif breakage == "rgb":
        Image.new("RGB", (40, 30)).save(frame)
    else:
        eval_synth.write_palette(frame, np.zeros((10, 20), np.uint8))
    with pytest.raises(PredictionLayoutError, match=message):
        score("davis", pred_dir, gt_dir)


# ---------------------------------------------------------------------------------------------
# MeViS


def _write_mevis_predictions(root: Path, targets: dict, skip_video: str | None = None) -> None:
    for (video, exp), masks in targets.items():
        if video == skip_video:
            continue
        for t, m in enumerate(masks):
            eval_synth.write_grey(root / video / exp / f"{t:05d}.png", m)


def test_mevis_perfect_missing_video_and_errors(tmp_path):
    targets = eval_synth.write_mevis(tmp_path / "mevis")
    _write_mevis_predictions(tmp_path / "out" / "Annotations", targets)
    result = score("mevis", tmp_path / "out", tmp_path / "mevis" / "valid_u")
    assert result["J"] == pytest.approx(100.0) and result["F"] == pytest.approx(100.0)
    assert result["num_expressions"] == 6 and set(result["expressions"]) >= {"m0/1", "m1/2"}
    shutil.rmtree(tmp_path / "out" / "Annotations" / "m1")  # a missing video scores 0 (official)
    result = score("mevis", tmp_path / "out" / "Annotations", tmp_path / "mevis")
    assert result["J"] == pytest.approx(50.0) and result["missing_videos"] == ["m1"]
    shutil.rmtree(tmp_path / "out" / "Annotations" / "m0" / "2")
    with pytest.raises(PredictionLayoutError, match="expression 2 of m0"):
        score("mevis", tmp_path / "out", tmp_path / "mevis")
    with pytest.raises(PredictionLayoutError, match="no predictions for any video"):
        score("mevis", tmp_path / "mevis", tmp_path / "mevis")


def test_mevis_union_target_half_prediction(tmp_path):
    targets = eval_synth.write_mevis(tmp_path / "mevis")
    half = {k: (v if k[1] != "1" else targets[(k[0], "0")]) for k, v in targets.items()}
    _write_mevis_predictions(tmp_path / "p", half)
    result = score("mevis", tmp_path / "p", tmp_path / "mevis")
    union, first = targets[("m0", "1")], targets[("m0", "0")]
    expected = np.mean([f.sum() / u.sum() if u.any() else 1.0 for f, u in zip(first, union, strict=True)])
    assert result["expressions"]["m0/1"]["J"] == pytest.approx(100 * expected)


# ---------------------------------------------------------------------------------------------
# AVSBench


def _official_binary(preds, gts):
    from alref.eval.metrics import avs_f_group, avs_iou

    ious = [avs_iou(p > 0, g) for p, g in zip(preds, gts, strict=True)]
    return np.mean(ious), avs_f_group([np.where(p > 0, 255, 0).astype(np.uint8) for p in preds], gts)


def test_avsbench_s4_both_variants_and_the_alref_file_names(tmp_path):
    truth = eval_synth.write_s4(tmp_path / "s4", empty_frame=True)
    preds = {}
    for name, gt in truth.items():
        pred = np.roll(gt, 2, axis=2)
        pred[2] |= name == "s0"  # a prediction on the frame whose ground truth is empty
        preds[name] = pred
        for i in range(5):
            file = f"{name}_{i + 1}.png" if name == "s0" else f"{i + 1}_video_mask.png"  # AL-Ref-SAM 2 naming
            eval_synth.write_grey(tmp_path / "pred" / "dog_barking" / name / file, pred[i])
    official = score("avsbench-s4", tmp_path / "pred", tmp_path / "s4")
    per_video = [_official_binary(preds[n], truth[n]) for n in truth]
    assert official["M_J"] == pytest.approx(100 * np.mean([v[0] for v in per_video]), abs=1e-6)
    assert official["M_F"] == pytest.approx(100 * np.mean([v[1] for v in per_video]), abs=1e-6)
    alref = score("avsbench-s4-alref-sam2", tmp_path / "pred", tmp_path / "s4")
    assert alref["M_J"] == pytest.approx(official["M_J"])
    assert alref["M_F"] < official["M_F"]  # the empty-ground-truth frame counts 0 there
    (tmp_path / "pred" / "dog_barking" / "s1" / "3_video_mask.png").unlink()
    with pytest.raises(PredictionLayoutError, match=r"s1 frame 2 is missing: .*s1_3.png"):
        score("avsbench-s4", tmp_path / "pred", tmp_path / "s4")


def test_avss_semantic_and_v2_binary(tmp_path):
    truth = eval_synth.write_avss(tmp_path / "avss")
    for uid, classes in truth.items():
        label = {"u1s": "v1s", "u1m": "v1m"}.get(uid, "v2")
        for i, frame in enumerate(classes):
            eval_synth.write_colour(tmp_path / "pred" / label / uid / f"{i}.png", frame)
    result = score("avss", tmp_path / "pred", tmp_path / "avss")
    present = {int(c) for uid, cls in truth.items() if uid != "u2t" for c in np.unique(cls)}
    assert result["M_J"] == pytest.approx(100 * len(present) / 71)
    assert result["M_F"] == pytest.approx(100 * len(present) / 71)
    assert result["classes"]["background"]["frames"] == 30
    binary = score("avss-v2-binary", tmp_path / "pred", tmp_path / "avss")
    assert binary["M_J"] == pytest.approx(100.0, abs=1e-4) and binary["num_videos"] == 2


# ---------------------------------------------------------------------------------------------
# CLI


def test_eval_score_cli_json_keys(tmp_path):
    gt = eval_synth.moving_labels(3, 30, 40, 2)
    pred_dir, gt_dir = _davis(tmp_path, {"s": gt}, {"s": gt})
    result = CliRunner().invoke(
        eval_app, ["score", "--protocol", "davis", "--pred", str(pred_dir), "--gt", str(gt_dir), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"J", "F", "J&F", "sequences"} <= set(data) and data["J&F"] == pytest.approx(100.0)
    table = CliRunner().invoke(
        eval_app, ["score", "--protocol", "davis", "--pred", str(pred_dir), "--gt", str(gt_dir)]
    )
    assert table.exit_code == 0 and "J&F" in table.stdout and "100.00" in table.stdout

    truth = eval_synth.write_s4(tmp_path / "s4")
    for name, masks in truth.items():
        for i, m in enumerate(masks):
            eval_synth.write_grey(tmp_path / "p4" / "dog_barking" / name / f"{name}_{i + 1}.png", m)
    args = [
        "score",
        "--protocol",
        "avsbench-s4",
        "--pred",
        str(tmp_path / "p4"),
        "--gt",
        str(tmp_path / "s4"),
    ]
    data = json.loads(CliRunner().invoke(eval_app, [*args, "--json"]).stdout)
    assert {"M_J", "M_F", "videos"} <= set(data) and "J" not in data


def test_eval_score_errors_exit_2_through_the_alref_entry_point(tmp_path, capsys):
    import alref.cli as cli

    if not any(group.name == "eval" for group in cli.app.registered_groups):
        cli.app.add_typer(eval_app, name="eval")
    with pytest.raises(SystemExit) as info:
        cli.main(["eval", "score", "--protocol", "davis", "--pred", str(tmp_path), "--gt", str(tmp_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Annotations_unsupervised/480p" in err and err.count("\n") == 1
