"""ReVOS (reader, ground truth, the ``revos`` protocol, ``alref eval run revos``) and MeViS ``valid_u``
against the official scorers' algorithms, re-implemented here from VISA's ``tools/eval_revos.py`` /
``tools/metrics.py`` and MeViS's ``eval_mevis.py`` (the same loop): predictions read as OpenCV grey
values, targets as the uint8 sum of the decoded ``anno_id`` masks, per-frame J and F (DAVIS, from
benchmarks/score_speed.py), ReVOS's robustness R on uint8 arithmetic, per-expression rounding to
0.01 %, and the per-split means."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "benchmarks"))

import eval_synth  # noqa: E402
import score_speed  # noqa: E402  (the DAVIS db_eval_iou / f_measure, re-implemented independently)

from alref.config import load_settings  # noqa: E402
from alref.eval.catalog import DATASET_NAMES, PROTOCOLS  # noqa: E402
from alref.eval.datasets import RevosGroundTruth, open_dataset  # noqa: E402
from alref.eval.errors import DatasetLayoutError, PredictionLayoutError  # noqa: E402
from alref.eval.runner import read_results, run_eval  # noqa: E402
from alref.eval.score import headline, score  # noqa: E402
from alref.media.writers import atomic_write_json, mask_to_rle  # noqa: E402

FRAMES = [f"{t * 5:05d}" for t in range(4)]


@pytest.fixture
def revos(tmp_path: Path) -> tuple[Path, dict]:
    targets = eval_synth.write_revos(tmp_path / "ReVOS")
    return tmp_path / "ReVOS", targets


# ---------------------------------------------------------------------------------------------
# the official algorithms, written from the scripts (not from alref.eval)


def _decode(rle: dict) -> np.ndarray:
    import warnings

    from pycocotools import mask as cocomask

    with warnings.catch_warnings():  # pycocotools predates numpy 2's copy= keyword
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return cocomask.decode({"size": rle["size"], "counts": rle["counts"].encode()})


def _frame_scores(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """db_eval_iou(...).mean() and db_eval_boundary(...).mean() of one expression (uint8 stacks)."""
    g, p = gt.astype(bool), pred.astype(bool)
    void = np.zeros_like(g)
    j = score_speed.db_eval_iou(g, p, void).mean()
    f = np.array([score_speed.f_measure(p[t], g[t], void[t]) for t in range(len(g))]).mean()
    return j, f


def _read_official(folder: Path, frames: list[str]) -> np.ndarray | None:
    if not folder.is_dir():
        return None
    first = cv2.imread(str(folder / f"{frames[0]}.png"), cv2.IMREAD_GRAYSCALE)
    out = np.zeros((len(frames), *first.shape), np.uint8)
    for t, name in enumerate(frames):
        out[t] = cv2.imread(str(folder / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
    return out


def official_revos(pred_dir: Path, root: Path) -> tuple[dict, dict]:
    """(results, per-expression rows) as eval_revos.py computes them (Annotations folder as pred)."""
    exp_dict = json.loads((root / "meta_expressions_valid_.json").read_text())["videos"]
    mask_dict = json.loads((root / "mask_dict.json").read_text())
    foreground = json.loads((root / "mask_dict_foreground.json").read_text())
    rows = {}
    for vid_name, vid in exp_dict.items():
        for exp in vid["expressions"]:
            if not (pred_dir / vid_name).exists():
                j = f = r = 0
            else:
                pred = _read_official(pred_dir / vid_name / exp, vid["frames"])
                n, h, w = pred.shape
                gt = np.zeros((n, h, w), np.uint8)
                fg = np.zeros((n, h, w), np.uint8)
                for t in range(n):
                    for anno_id in vid["expressions"][exp]["anno_id"]:
                        rle = mask_dict[str(anno_id)][t]
                        if rle:
                            gt[t] += _decode(rle)
                    fg[t] = _decode(foreground[vid_name]["masks_rle"][t]).astype(np.uint8)
                j, f = _frame_scores(gt, pred)
                robust = []
                for g, p, m in zip(gt, pred, fg, strict=True):
                    neg = ((1 - g) * p).sum()  # uint8 arithmetic, as the script's arrays are uint8
                    robust.append(max(1 - neg / (m.sum() + 1e-6), 0.0))
                r = np.array(robust).mean()
            rows[f"{vid_name}/{exp}"] = {
                "J": round(100 * j, 2),
                "F": round(100 * f, 2),
                "R": round(100 * r, 2),
                "type_id": vid["expressions"][exp]["type_id"],
            }
    results = {}
    for type_id, split in ((0, "referring"), (1, "reasoning")):
        chosen = [d for d in rows.values() if d["type_id"] == type_id]
        j = np.array([d["J"] for d in chosen]).mean()
        f = np.array([d["F"] for d in chosen]).mean()
        r = np.array([d["R"] for d in chosen]).mean()
        results[split] = {"J": j, "F": f, "R": r, "JF": (j + f) / 2}
    ref, rea = results["referring"], results["reasoning"]
    results["overall"] = {k: (ref[k] + rea[k]) / 2 for k in ("J", "F", "R", "JF")}
    return results, rows


def official_mevis(pred_dir: Path, split_dir: Path) -> tuple[float, float, dict]:
    """Mean J, mean F over expressions and the per-expression (j, f), as MeViS's eval_mevis.py."""
    exp_dict = json.loads((split_dir / "meta_expressions.json").read_text())["videos"]
    mask_dict = json.loads((split_dir / "mask_dict.json").read_text())
    out = {}
    for vid_name, vid in exp_dict.items():
        for exp in vid["expressions"]:
            if not (pred_dir / vid_name).exists():
                out[f"{vid_name}/{exp}"] = (0, 0)
                continue
            pred = _read_official(pred_dir / vid_name / exp, vid["frames"])
            gt = np.zeros(pred.shape, np.uint8)
            for t in range(len(gt)):
                for anno_id in vid["expressions"][exp]["anno_id"]:
                    rle = mask_dict[str(anno_id)][t]
                    if rle:
                        gt[t] += _decode(rle)
            out[f"{vid_name}/{exp}"] = _frame_scores(gt, pred)
    return float(np.mean([v[0] for v in out.values()])), float(np.mean([v[1] for v in out.values()])), out


def _write_png(path: Path, mask: np.ndarray, style: str) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.asarray(mask, bool)
    if style == "grey255":
        Image.fromarray(np.where(m, 255, 0).astype(np.uint8), "L").save(path)
    elif style == "grey1":  # a 0/1 mask: the same J and F, but R reads the grey values
        Image.fromarray(m.astype(np.uint8), "L").save(path)
    else:  # a palette PNG (index 1 = DAVIS red, grey 38 for OpenCV)
        eval_synth.write_palette(path, m.astype(np.uint8))


def _write_predictions(pred: Path, targets: dict, skip_video: str | None = None) -> dict:
    """Imperfect predictions in several PNG flavours; returns what was written."""
    rng = np.random.default_rng(7)
    written = {}
    styles = {"r0/1": "grey1", "r1/0": "grey1", "r1/2": "palette"}
    for (video, exp), target in targets.items():
        if video == skip_video:
            continue
        masks = np.roll(target, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(1, 2))
        masks[int(rng.integers(0, len(masks)))] = False  # a missed frame
        if (video, exp) in (("r0", "0"), ("r0", "3")):
            masks[0, 2:6, 3:9] = True  # a false positive where the ground truth is empty
        written[(video, exp)] = masks
        for t, name in enumerate(FRAMES):
            style = styles.get(f"{video}/{exp}", "grey255")
            _write_png(pred / "Annotations" / video / exp / f"{name}.png", masks[t], style)
    return written


# ---------------------------------------------------------------------------------------------
# reader and ground truth


def test_revos_is_a_dataset_and_a_protocol():
    assert "revos" in DATASET_NAMES and "revos" in PROTOCOLS


def test_revos_reader_layout_type_ids_and_splits(revos):
    root, _ = revos
    ds = open_dataset("revos", root)
    assert ds.name == "revos" and ds.protocol == "revos" and ds.split == "valid" and ds.has_ground_truth
    videos = ds.videos()
    assert [v.id for v in videos] == ["r0", "r1"]  # the meta file's order (train's t0 is not there)
    v = videos[0]
    assert v.frames_dir == root / "JPEGImages" / "r0" and v.frame_names == tuple(FRAMES)
    assert [(e.id, e.type_id) for e in v.expressions] == [("0", 0), ("1", 1), ("2", 1), ("3", 2)]
    assert v.expressions[1].text == "which two things move together?"
    assert v.expressions[1].anno_ids == (1, 2) and v.expressions[3].anno_ids == ()
    train = open_dataset("revos", root, "train")
    assert [x.id for x in train.videos()] == ["t0"] and train.protocol == "revos"
    with pytest.raises(DatasetLayoutError, match="revos has no split 'test'"):
        open_dataset("revos", root, "test")


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("meta_expressions_valid_.json", "ReVOS meta_expressions_valid_.json is missing"),
        ("JPEGImages", "ReVOS frames folder is missing"),
        ("mask_dict.json", r"ReVOS mask_dict.json \(the ground truth\) is missing"),
        ("JPEGImages/r1/00010.jpg", "frame '00010' of ReVOS video 'r1' is missing"),
    ],
)
def test_revos_missing_pieces_are_named(revos, remove, message):
    root, _ = revos
    target = root / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DatasetLayoutError, match=message) as info:
        open_dataset("revos", root).videos()
    assert info.value.exit_code == 2


def test_revos_meta_without_the_underscore_is_accepted(revos):
    root, _ = revos
    (root / "meta_expressions_valid_.json").rename(root / "meta_expressions_valid.json")
    assert [v.id for v in open_dataset("revos", root).videos()] == ["r0", "r1"]


def test_revos_ground_truth_union_empty_frames_and_foreground(revos):
    root, targets = revos
    gt = RevosGroundTruth(root)
    for (video, exp), target in targets.items():
        assert np.array_equal(gt.masks(video, exp, (24, 32)), target)
    assert not targets[("r0", "0")][0].any()  # an empty ground-truth frame
    assert not targets[("r0", "3")].any()  # type_id 2 without a target
    overlap = gt.target("r0", "1", 1, (24, 32))
    assert overlap.max() == 2  # two objects over one pixel: the script's uint8 sum
    for video in ("r0", "r1"):
        union = np.any([t for (v, _), t in targets.items() if v == video], axis=0)
        from_file = [gt.foreground(video, t, (24, 32)) for t in range(4)]
        assert np.array_equal(np.stack(from_file), union.astype(np.uint8))
    (root / "mask_dict_foreground.json").unlink()
    derived = RevosGroundTruth(root)
    assert derived.foreground_path is None
    assert np.array_equal(derived.foreground("r0", 2, (24, 32)), gt.foreground("r0", 2, (24, 32)))
    with pytest.raises(DatasetLayoutError, match="ground truth of r0/0 is 32x24, the prediction is 16x8"):
        gt.target("r0", "0", 1, (8, 16))


# ---------------------------------------------------------------------------------------------
# scoring: exact to the official algorithm


def test_revos_perfect_prediction(revos):
    root, targets = revos
    for (video, exp), target in targets.items():
        for t, name in enumerate(FRAMES):
            eval_synth.write_grey(root.parent / "pred" / video / exp / f"{name}.png", target[t])
    result = score("revos", root.parent / "pred", root)
    assert result["J"] == result["F"] == result["J&F"] == 100.0
    assert result["referring"]["J&F"] == result["reasoning"]["J&F"] == 100.0
    assert result["expressions"]["r0/0"]["R"] == 100.0
    # the script's uint8 arithmetic: where two objects overlap, (1 - 2) * 255 wraps to 1 per pixel
    assert result["expressions"]["r0/1"]["R"] < 100.0


def test_revos_matches_the_official_script_per_expression_and_per_split(revos):
    root, targets = revos
    _write_predictions(root.parent / "pred", targets)
    ours = score("revos", root.parent / "pred", root, workers=2)
    official, rows = official_revos(root.parent / "pred" / "Annotations", root)
    assert set(ours["expressions"]) == set(rows)
    for key, row in rows.items():
        for metric in ("J", "F", "R"):
            assert ours["expressions"][key][metric] == pytest.approx(row[metric], abs=1e-9), (key, metric)
        assert ours["expressions"][key]["type_id"] == row["type_id"]
    for split in ("referring", "reasoning"):
        for ours_key, key in (("J", "J"), ("F", "F"), ("J&F", "JF"), ("R", "R")):
            assert ours[split][ours_key] == pytest.approx(official[split][key], abs=1e-9)
    for ours_key, key in (("J", "J"), ("F", "F"), ("J&F", "JF"), ("R", "R")):
        assert ours[ours_key] == pytest.approx(official["overall"][key], abs=1e-9)
    assert ours["referring"]["num_expressions"] == 3 and ours["reasoning"]["num_expressions"] == 3
    assert ours["num_other_expressions"] == 1 and ours["num_expressions"] == 7
    # not a degenerate case: the splits differ, and a 0/1 PNG gives another R than 0/255 would
    assert 0 < ours["J"] < 100 and ours["referring"]["J"] != ours["reasoning"]["J"]
    assert ours["expressions"]["r0/3"]["R"] < 100  # the false positive on the no-target expression
    assert ours["expressions"]["r1/0"]["R"] not in (0.0, 25.0, 50.0, 75.0, 100.0)  # 0/1: 1 per pixel


def test_revos_missing_video_scores_zero_as_the_script(revos):
    root, targets = revos
    _write_predictions(root.parent / "pred", targets, skip_video="r1")
    ours = score("revos", root.parent / "pred", root)
    official, rows = official_revos(root.parent / "pred" / "Annotations", root)
    assert ours["missing_videos"] == ["r1"] and ours["expressions"]["r1/0"] == {
        "J": 0.0, "F": 0.0, "R": 0.0, "type_id": 0,
    }  # fmt: skip
    assert ours["J&F"] == pytest.approx(official["overall"]["JF"], abs=1e-9)
    assert ours["R"] == pytest.approx(official["overall"]["R"], abs=1e-9)


def test_revos_subset_without_reasoning_uses_the_referring_split(revos):
    root, targets = revos
    _write_predictions(root.parent / "pred", targets)
    meta_path = root / "meta_expressions_valid_.json"
    meta = json.loads(meta_path.read_text())
    for exp in meta["videos"]["r1"]["expressions"].values():
        exp["type_id"] = 0
    meta_path.write_text(json.dumps(meta))
    result = score("revos", root.parent / "pred", root, videos=["r1"])
    assert result["reasoning"] == {"J": None, "F": None, "J&F": None, "R": None, "num_expressions": 0}
    assert result["J&F"] == result["referring"]["J&F"] and result["R"] == result["referring"]["R"]
    assert headline(result)["reasoning J&F"] is None


@pytest.mark.parametrize(
    ("breakage", "error", "message"),
    [
        ("no_expression", PredictionLayoutError, "no predictions for expression 2 of r0"),
        ("no_frame", PredictionLayoutError, r"predicted mask is missing: .*r0/1/00015.png"),
        ("size", DatasetLayoutError, "of r0.* is 32x24, the prediction is 16x8"),
        ("no_type", DatasetLayoutError, "expression 1 of video 'r1' .* has no type_id"),
        ("no_anno", DatasetLayoutError, "anno_id 99 of r1/1 is not in"),
        ("nothing", PredictionLayoutError, "no predictions for any video"),
    ],
)
def test_revos_errors_name_the_problem(revos, breakage, error, message):
    root, targets = revos
    pred = root.parent / "pred"
    _write_predictions(pred, targets)
    meta_path = root / "meta_expressions_valid_.json"
    meta = json.loads(meta_path.read_text())
    if breakage == "no_expression":
        shutil.rmtree(pred / "Annotations" / "r0" / "2")
    elif breakage == "no_frame":
        (pred / "Annotations" / "r0" / "1" / "00015.png").unlink()
    elif breakage == "size":
        for name in FRAMES:
            eval_synth.write_grey(pred / "Annotations" / "r0" / "0" / f"{name}.png", np.ones((8, 16)))
    elif breakage == "no_type":
        del meta["videos"]["r1"]["expressions"]["1"]["type_id"]
    elif breakage == "no_anno":
        meta["videos"]["r1"]["expressions"]["1"]["anno_id"] = [3, 99]
    else:
        shutil.rmtree(pred / "Annotations")
        (pred / "Annotations").mkdir()
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(error, match=message):
        score("revos", pred, root)


# ---------------------------------------------------------------------------------------------
# MeViS valid_u: exact to MeViS's eval_mevis.py


def test_mevis_valid_u_matches_the_official_script(tmp_path):
    targets = eval_synth.write_mevis(tmp_path / "mevis", late=2)  # object 0 empty on frames 0-1
    assert not targets[("m0", "0")][0].any() and targets[("m0", "1")][0].any()
    rng = np.random.default_rng(3)
    for (video, exp), target in targets.items():
        masks = np.roll(target, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(1, 2))
        masks[0, 1:4, 1:5] |= exp == "0"  # a false positive on the empty frame
        for t, m in enumerate(masks):
            style = "palette" if (video, exp) == ("m1", "2") else "grey255"
            _write_png(tmp_path / "pred" / video / exp / f"{t:05d}.png", m, style)
    split_dir = tmp_path / "mevis" / "valid_u"
    ours = score("mevis", tmp_path / "pred", split_dir)
    j, f, rows = official_mevis(tmp_path / "pred", split_dir)
    assert ours["J"] == pytest.approx(100 * j, abs=1e-9) and ours["F"] == pytest.approx(100 * f, abs=1e-9)
    assert ours["J&F"] == pytest.approx(100 * (j + f) / 2, abs=1e-9)
    for key, (ej, ef) in rows.items():
        assert ours["expressions"][key]["J"] == pytest.approx(100 * ej, abs=1e-9)
        assert ours["expressions"][key]["F"] == pytest.approx(100 * ef, abs=1e-9)
    assert 0 < ours["J"] < 100
    shutil.rmtree(tmp_path / "pred" / "m1")  # a video without predictions scores 0, as the script
    ours = score("mevis", tmp_path / "pred", tmp_path / "mevis")  # --gt may be the MeViS root
    j, f, _ = official_mevis(tmp_path / "pred", split_dir)
    assert ours["J"] == pytest.approx(100 * j, abs=1e-9) and ours["missing_videos"] == ["m1"]


def test_mevis_valid_u_is_the_default_split_with_ground_truth(tmp_path):
    eval_synth.write_mevis(tmp_path, late=1)
    ds = open_dataset("mevis", tmp_path)
    assert ds.split == "valid_u" and ds.protocol == "mevis" and ds.gt is not None
    assert ds.gt.mask_path == tmp_path / "valid_u" / "mask_dict.json"
    assert not ds.gt.masks("m0", "0", (24, 32))[0].any()  # null RLEs: empty frames


# ---------------------------------------------------------------------------------------------
# alref eval run revos / alref eval score --protocol revos


def _truth_segment(targets: dict):
    """A stand-in for segment_video whose object i is the ground truth of the video's expression i."""

    def segment(video, references, out, settings, reporter=None, **kwargs):
        name = Path(video).name
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        objects = [
            {"id": i + 1, "reference": ref, "masks": [mask_to_rle(m) for m in targets[(name, str(i))]]}
            for i, ref in enumerate(references)
        ]
        atomic_write_json(out / "masks.json", {"frames": FRAMES, "objects": objects})
        return {"references": [{"id": i + 1, "status": "ok"} for i in range(len(references))]}

    return segment


def test_revos_run_with_the_ground_truth_scores_100_per_split(revos, tmp_path):
    root, targets = revos
    summary = run_eval("revos", root, tmp_path / "out", load_settings(), segment=_truth_segment(targets))
    assert summary["protocol"] == "revos" and summary["videos"] == 2 and summary["expressions"] == 7
    scores = summary["scores"]
    assert list(scores) == [
        "J", "F", "J&F", "R",
        "referring J", "referring F", "referring J&F", "reasoning J", "reasoning F", "reasoning J&F",
    ]  # fmt: skip
    assert scores["J&F"] == scores["referring J&F"] == scores["reasoning J&F"] == 100.0
    records = read_results(tmp_path / "out" / "results.jsonl")
    assert [(r["video"], r["expression"]) for r in records][:4] == [("r0", str(k)) for k in range(4)]
    assert all(r["J"] == pytest.approx(100.0) for r in records)
    written = tmp_path / "out" / "predictions" / "Annotations" / "r1" / "2" / "00015.png"
    assert np.array_equal(cv2.imread(str(written), cv2.IMREAD_GRAYSCALE) > 0, targets[("r1", "2")][3])
    detail = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert detail["expressions"]["r0/3"]["type_id"] == 2


def test_eval_run_revos_smoke_end_to_end_prints_the_table(revos, run_cli, tmp_path):
    root, _ = revos
    out = tmp_path / "run"
    args = ["eval", "run", "revos", "--root", root, "--out", out, "--models", "smoke", "--limit", "1"]
    code, stdout, stderr = run_cli(*args, "--samples", "1", "--clip-frames", "4")
    assert code == 0, stderr
    for row in ("referring J&F", "reasoning J&F", "J&F", "R", "revos (valid)"):
        assert row in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "revos" and summary["smoke"] is True and summary["videos"] == 1
    assert 0 <= summary["scores"]["J&F"] <= 100 and summary["scores"]["reasoning J"] is not None
    assert len(read_results(out / "results.jsonl")) == 4
    assert sorted(p.name for p in (out / "predictions" / "Annotations" / "r0" / "1").iterdir()) == [
        f"{n}.png" for n in FRAMES
    ]
    code, stdout, _ = run_cli("eval", "score", "--protocol", "revos", "--pred", out / "predictions",
                              "--gt", root, "--json")  # fmt: skip
    assert code == 0
    data = json.loads(stdout)
    assert {"J", "F", "J&F", "R", "referring", "reasoning", "expressions"} <= set(data)
    assert data["missing_videos"] == ["r1"]  # only r0 ran: r1 scores 0, as the official script
    code, stdout, _ = run_cli("eval", "score", "--protocol", "revos", "--pred", out / "predictions",
                              "--gt", root)  # fmt: skip
    assert code == 0 and "reasoning J&F" in stdout and "num_expressions" in stdout
