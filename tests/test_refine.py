"""`alref refine RUN` and `alref.refine(...)`: clicks and boxes on a finished smoke run.

The refined object's masks must be alref's SAM 2 session's for the run's box prompts plus the
refinements (test_segmentation.py proves that session equal to the canonical transformers one, points
included); the outputs are replaced atomically; the same refinement again changes nothing; bad input
is one line, exit 2, nothing written."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import alref
from alref.errors import InputError
from alref.media.writers import rle_to_mask

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import synth

    folder = tmp_path_factory.mktemp("refine")
    video = synth.write_shapes_video(folder / "shapes.mp4", num_frames=30, width=160, height=120, fps=10)
    out = folder / "run"
    result = alref.segment(video, "the red square", out=out, models="smoke", clip_frames=10)
    assert result.status == "ok" and not (out / "work" / "frames_256.u8").exists()
    return out


@pytest.fixture
def run(finished_run: Path, tmp_path: Path) -> Path:
    """A copy of the finished run that a test may change."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``folder``: its mtime and content hash."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def masks_of(run: Path, obj: int = 1) -> list[np.ndarray]:
    data = json.loads((run / "masks.json").read_text())
    (entry,) = [o for o in data["objects"] if o["id"] == obj]
    return [rle_to_mask(rle) for rle in entry["masks"]]


def session_masks(run: Path, refinements: list[dict]) -> dict[int, np.ndarray]:
    """What alref's SAM 2 session gives for the run's valid pivot boxes then ``refinements``, propagated
    from the run's start frame (the pipeline's own prompts, written out by hand)."""
    from alref.config import load_settings
    from alref.media.video import open_video
    from alref.tools.registry import resolve_models
    from alref.tools.segmentation import MemmapFrameStore

    result = json.loads((run / "result.json").read_text())
    settings = load_settings(models="smoke")
    segmenter = resolve_models(settings).load_segmentation(settings)
    video = open_video(result["input"]["path"])
    info = video.info
    store = MemmapFrameStore(run.parent / "expected.u8", info.num_frames, segmenter.image_size)
    for index, frame in video.iter_frames():
        store[index] = segmenter.prepare_frame(frame)
    session = segmenter.start_session(store, info.height, info.width)
    (ref,) = result["references"]
    for clip in ref["clips"]:
        if clip["valid"]:
            session.add_box(clip["pivot_frame"], 1, clip["pivot_box"])
    for r in refinements:
        session.add_points(r["frame"], 1, r["points"], r["labels"], r["box"])
    return {frame: masks[1] for frame, masks in session.propagate(ref["start_frame"])}


def test_refine_cli_rewrites_the_run_and_a_rerun_changes_nothing(run_cli, run: Path) -> None:
    before = masks_of(run)
    old_result = json.loads((run / "result.json").read_text())
    args = ["refine", run, "--object", "1", "--frame", "12", "--point", "60,30", "--negative", "150,100"]
    code, out, err = run_cli(*args, "--models", "smoke")
    assert code == 0, err
    assert "refined object 1 on frame 12" in out
    refinement = {"frame": 12, "points": [[60.0, 30.0], [150.0, 100.0]], "labels": [1, 0], "box": None}
    result = json.loads((run / "result.json").read_text())
    assert result["references"][0]["refinements"] == [refinement]
    assert (
        result["run_key"] == old_result["run_key"]
        and result["references"][0]["clips"] == old_result["references"][0]["clips"]
    )

    # the masks are alref's session's (= the canonical session's) for the run's boxes + the clicks
    after = masks_of(run)
    expected = session_masks(run, [refinement])
    assert sorted(expected) == list(range(len(after)))
    assert all(np.array_equal(after[f], expected[f]) for f in expected)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))  # it changed something
    from PIL import Image

    names = json.loads((run / "masks.json").read_text())["frames"]
    for f in (0, 12, 29):  # the PNGs too
        png = np.array(Image.open(run / "masks" / f"{names[f]}.png")) > 0
        assert np.array_equal(png, expected[f])
    summary = result["references"][0]["masks"]
    assert summary["frames_with_mask"] == sum(bool(m.any()) for m in after)

    events = [json.loads(line) for line in (run / "trace" / "events.jsonl").read_text().splitlines()]
    assert events[-1]["kind"] == "refined" and events[-1]["object"] == 1
    assert {k: events[-1][k] for k in refinement} == refinement
    assert not (run / "work" / "refine").exists() and not list((run / "work").glob("frames_*"))

    # the same command again: already applied, nothing rewritten
    files = snapshot(run)
    code, out, err = run_cli(*args, "--models", "smoke")
    assert code == 0, err
    assert "already applied" in out
    assert snapshot(run) == files


def test_python_api_records_refinements_in_order(run: Path) -> None:
    box = (40.0, 5.0, 110.0, 50.0)
    first = alref.refine(run, 1, 20, points=[(80, 30)], box=box, models="smoke", keep_work=True)
    assert isinstance(first, alref.SegmentResult) and first.out_dir == run
    assert (run / "work" / "frames_256.u8").is_file()  # kept, and reused by the next refine
    second = alref.refine(run, 1, 5, points=[(30, 30), (100, 90)], labels=[1, 0], models="smoke")
    assert not list((run / "work").glob("frames_*"))
    refinements = second.references[0]["refinements"]
    assert refinements == [
        {"frame": 20, "points": [[80.0, 30.0]], "labels": [1], "box": list(box)},
        {"frame": 5, "points": [[30.0, 30.0], [100.0, 90.0]], "labels": [1, 0], "box": None},
    ]
    expected = session_masks(run, refinements)
    assert all(np.array_equal(second.mask(f), expected[f]) for f in expected)
    assert json.loads((run / "result.json").read_text())["references"][0]["refinements"] == refinements
    # the first refinement again is still the last one on frame 20: already applied
    files = snapshot(run)
    again = alref.refine(run, 1, 20, points=[(80, 30)], box=box, models="smoke")
    assert again.references[0]["refinements"] == refinements and snapshot(run) == files


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frame", "30", "--point", "10,10"], "frame 30 is outside the video: its frames are 0..29"),
        (["--frame", "-1", "--point", "10,10"], "outside the video"),
        (["--object", "9", "--frame", "3", "--point", "10,10"], "no object 9; its objects are 1"),
        (["--frame", "3", "--point", "161,10"], "outside the frame: x is 0..160, y is 0..120"),
        (["--frame", "3", "--negative", "10,-2"], "outside the frame"),
        (["--frame", "3", "--box", "10,10,200,50"], "outside the frame"),
        (["--frame", "3", "--box", "50,10,20,50"], "bad prompt"),
        (["--frame", "3", "--point", "ten,10"], "--point 'ten,10' is not X,Y"),
        (["--frame", "3"], "give a prompt"),
        (["--point", "10,10"], "--frame"),
        (["--frame", "3", "--point", "10,10", "--video", "missing.mp4"], "missing.mp4"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(run_cli, run: Path, args, message) -> None:
    files = snapshot(run)
    code, out, err = run_cli("refine", run, *args, "--models", "smoke")
    assert code == 2, err
    assert err.startswith("alref: error:") and err.count("\n") == 1 and message in err, err
    assert out == "" and snapshot(run) == files


def test_not_a_finished_run_and_tracks_runs_are_refused(run_cli, run: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder, message in [(empty, "is not a finished alref run (no result.json)"),
                            (tmp_path / "nowhere", "is not a run folder")]:  # fmt: skip
        code, _, err = run_cli("refine", folder, "--frame", "1", "--point", "1,1")
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert list(empty.iterdir()) == [] and not (tmp_path / "nowhere").exists()
    result = json.loads((run / "result.json").read_text())
    (run / "result.json").write_text(json.dumps(result | {"strategy": "tracks"}))
    files = snapshot(run)
    code, _, err = run_cli("refine", run, "--frame", "1", "--point", "1,1")
    assert code == 2 and "tracks-strategy run is not supported yet" in err and err.count("\n") == 1
    assert snapshot(run) == files


def test_a_killed_refine_leaves_the_earlier_outputs_intact(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import alref.media.masks as masks_module

    files = snapshot(run)
    written = []
    original = masks_module.write_mask_png

    def dying(path, mask):  # the process is killed while the new PNGs are written
        written.append(path)
        if len(written) == 12:
            raise KeyboardInterrupt
        original(path, mask)

    monkeypatch.setattr(masks_module, "write_mask_png", dying)
    with pytest.raises(KeyboardInterrupt):
        alref.refine(run, 1, 12, points=[(60, 30)], models="smoke")
    assert all(run / "work" / "refine" in p.parents for p in written)  # only ever the staging folder
    assert snapshot(run) == files  # nothing of the run changed, and nothing was left behind
    monkeypatch.undo()

    def broken_overlay(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr("alref.pipeline.refine.write_overlay", broken_overlay)
    with pytest.raises(OSError, match="No space"):
        alref.refine(run, 1, 12, points=[(60, 30)], models="smoke")
    assert snapshot(run) == files
    monkeypatch.undo()
    refined = alref.refine(run, 1, 12, points=[(60, 30)], models="smoke")  # and it works afterwards
    assert refined.references[0]["refinements"][0]["frame"] == 12


def test_parsing_and_checks_of_the_api(run: Path) -> None:
    with pytest.raises(InputError, match="one label per point"):
        alref.refine(run, 1, 3, points=[(1, 1)], labels=[1, 0])
    with pytest.raises(InputError, match="give a prompt: positive/negative points and/or a box"):
        alref.refine(run, 1, 3)
