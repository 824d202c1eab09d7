"""``alref eval run``: the smoke profile end to end on a tiny Ref-DAVIS set (layout, JSONL, resume
after an interruption), and each dataset's layout with a stand-in for the pipeline."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

import eval_synth  # noqa: E402

from alref.config import load_settings  # noqa: E402
from alref.errors import InputError  # noqa: E402
from alref.eval.cli import eval_app  # noqa: E402
from alref.eval.runner import read_results, run_eval  # noqa: E402
from alref.media.writers import atomic_write_json, mask_to_rle  # noqa: E402


def test_refdavis_smoke_run_layout_jsonl_and_resume(tmp_path, monkeypatch):
    from alref.pipeline import run as pipeline

    eval_synth.write_refdavis(tmp_path / "ds", videos=2, frames=3, size=(32, 32), objects=1)
    settings = load_settings(models="smoke", samples=1, clip_frames=3, overlay=False)
    real = pipeline.segment_video
    calls: list[str] = []

    def interrupted(video, references, out, *args, **kwargs):
        calls.append(Path(video).name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stopped while the second video runs
        return real(video, references, out, *args, **kwargs)

    monkeypatch.setattr(pipeline, "segment_video", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_eval("ref-davis", tmp_path / "ds", tmp_path / "out", settings)
    first = read_results(tmp_path / "out" / "results.jsonl")
    assert [(r["video"], r["expression"], r["annotator"]) for r in first] == [
        ("vid0", str(k), k) for k in range(4)
    ]
    assert all(r["smoke"] and r["text"].startswith("the red shape") for r in first)

    calls.clear()
    summary = run_eval("ref-davis", tmp_path / "ds", tmp_path / "out", settings)
    assert calls == ["vid1"]  # the finished video is not segmented again
    records = read_results(tmp_path / "out" / "results.jsonl")
    assert len(records) == 8 and {r["video"] for r in records} == {"vid0", "vid1"}
    for k in range(4):
        for video in ("vid0", "vid1"):
            names = sorted(p.name for p in (tmp_path / "out" / "predictions" / f"anno_{k}" / video).iterdir())
            assert names == ["00000.png", "00001.png", "00002.png"]
    assert Image.open(tmp_path / "out" / "predictions" / "anno_0" / "vid0" / "00000.png").mode == "P"
    assert summary["smoke"] is True and summary["protocol"] == "davis"
    assert set(summary["scores"]) == {"J", "F", "J&F"} and 0 <= summary["scores"]["J&F"] <= 100
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["scores"] == summary["scores"]
    assert json.loads((tmp_path / "out" / "scores.json").read_text())["runs"].keys() == {
        "anno_0", "anno_1", "anno_2", "anno_3",
    }  # fmt: skip

    calls.clear()
    run_eval("ref-davis", tmp_path / "ds", tmp_path / "out", settings)
    assert calls == []  # everything done: nothing runs, the table is rebuilt
    with pytest.raises(InputError, match="different settings"):
        run_eval("ref-davis", tmp_path / "ds", tmp_path / "out", load_settings(models="smoke", samples=3))


def _fake_segment(truth: dict | None = None, categories: list[str] | None = None):
    """A stand-in for segment_video: writes masks.json (object i = the truth, or a box) fast."""
    calls = []

    def segment(video, references, out, settings, reporter=None, **kwargs):
        from alref.media.video import open_video

        info = open_video(video).info
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        n = len(references) if references else len(categories or [])
        objects = []
        for i in range(n):
            masks = []
            for t in range(info.num_frames):
                m = np.zeros((info.height, info.width), bool)
                if truth is not None:
                    m = (
                        truth[Path(video).name if Path(video).name in truth else Path(video).parent.name][t]
                        > 0
                    )
                else:
                    m[2 + i : 8 + i, 3:9] = True
                masks.append(mask_to_rle(m))
            objects.append({"id": i + 1, "reference": (references or categories)[i], "masks": masks})
        atomic_write_json(out / "masks.json", {"frames": list(info.frame_names), "objects": objects})
        refs = [
            {"id": i + 1, "status": "ok"} | ({"category": categories[i]} if categories else {})
            for i in range(n)
        ]
        calls.append((Path(video).name, list(references), kwargs.get("audio")))
        return {"references": refs, "mode": "baseline", "smoke": False}

    segment.calls = calls
    return segment


def test_refytvos_run_writes_annotations_and_the_submission_zip(tmp_path):
    eval_synth.write_refytvos(tmp_path / "yt")
    segment = _fake_segment()
    summary = run_eval("ref-youtube-vos", tmp_path / "yt", tmp_path / "out", load_settings(), segment=segment)
    assert [c[0] for c in segment.calls] == ["a1", "b2"]
    assert segment.calls[0][1] == ["a red thing", "the shape"]  # all expressions in one call
    assert summary["scores"] is None and summary["submission"].endswith("submission.zip")
    with zipfile.ZipFile(summary["submission"]) as archive:
        names = archive.namelist()
    assert len(names) == 2 * 2 * 3 and "Annotations/a1/1/00005.png" in names
    mask = np.asarray(Image.open(tmp_path / "out" / "predictions" / "Annotations" / "b2" / "1" / "00010.png"))
    assert set(np.unique(mask)) == {0, 255} and mask[3, 4] == 255  # object 2 of the stand-in


def test_mevis_run_scores_each_expression(tmp_path):
    targets = eval_synth.write_mevis(tmp_path / "mevis")
    segment = _fake_segment()
    summary = run_eval(
        "mevis", tmp_path / "mevis", tmp_path / "out", load_settings(), segment=segment, limit=1
    )
    records = read_results(tmp_path / "out" / "results.jsonl")
    assert [r["expression"] for r in records] == ["0", "1", "2"] and summary["videos"] == 1
    assert all(0 <= r["J"] <= 100 and 0 <= r["F"] <= 100 for r in records)
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert set(scores["expressions"]) == {"m0/0", "m0/1", "m0/2"}  # only the video that ran
    assert summary["scores"]["J"] == pytest.approx(np.mean([r["J"] for r in records]))
    assert targets  # the ground truth the stand-in's boxes were scored against


def test_avsbench_s4_run_uses_the_sound_and_writes_the_layout(tmp_path):
    pytest.importorskip("alref.pipeline.audio")
    truth = eval_synth.write_s4(tmp_path / "s4")
    segment = _fake_segment(truth=truth, categories=["dog"])
    summary = run_eval("avsbench-s4", tmp_path / "s4", tmp_path / "out", load_settings(), segment=segment)
    video, refs, audio = segment.calls[0]
    assert video == "s0" and refs == [] and audio.source.endswith("s0.wav")
    written = tmp_path / "out" / "predictions" / "dog_barking" / "s1" / "s1_5.png"
    assert np.array_equal(np.asarray(Image.open(written)) > 0, truth["s1"][4])
    assert summary["scores"]["M_J"] == pytest.approx(100.0, abs=1e-4)
    assert read_results(tmp_path / "out" / "results.jsonl")[0]["M_J"] == pytest.approx(100.0, abs=1e-4)


def test_avss_run_paints_each_sounding_object_in_its_class_colour(tmp_path):
    pytest.importorskip("alref.pipeline.audio")
    truth = eval_synth.write_avss(tmp_path / "avss")
    segment = _fake_segment(truth={uid: c for uid, c in truth.items()}, categories=["accordion"])
    summary = run_eval(
        "avss", tmp_path / "avss", tmp_path / "out", load_settings(), segment=segment, videos=["u2a"]
    )
    rgb = np.asarray(Image.open(tmp_path / "out" / "predictions" / "v2" / "u2a" / "9.png"))
    fg = truth["u2a"][9] > 0
    assert (rgb[fg] == [128, 0, 0]).all() and (rgb[~fg] == 0).all()  # accordion is class 1
    assert set(summary["scores"]) == {"M_J", "M_F"} and summary["videos"] == 1


def test_eval_run_cli_json_and_layout_errors(tmp_path, monkeypatch):
    from alref.pipeline import run as pipeline

    eval_synth.write_refytvos(tmp_path / "yt")
    monkeypatch.setattr(pipeline, "segment_video", _fake_segment())
    result = CliRunner().invoke(
        eval_app,
        [
            "run",
            "ref-ytvos",
            "--root",
            str(tmp_path / "yt"),
            "--out",
            str(tmp_path / "o"),
            "--videos",
            "b2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["videos"] == 1 and data["dataset"] == "ref-youtube-vos" and data["submission"]
    bad = CliRunner().invoke(
        eval_app, ["run", "mevis", "--root", str(tmp_path / "yt"), "--out", str(tmp_path / "m")]
    )
    assert isinstance(bad.exception, InputError) and "MeViS meta_expressions.json is missing" in str(
        bad.exception
    )
