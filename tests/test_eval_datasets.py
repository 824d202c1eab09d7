"""Dataset readers on synthetic datasets in every layout, their error messages for each missing
piece, and the prediction writers (layouts, palette merging, the submission zip)."""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

import eval_synth  # noqa: E402

from alref.errors import InputError  # noqa: E402
from alref.eval.datasets import DavisGroundTruth, MevisGroundTruth, open_dataset  # noqa: E402
from alref.eval.errors import DatasetLayoutError  # noqa: E402
from alref.eval.writers import merge_objects, write_colour_png, write_davis_annotator, zip_folder  # noqa: E402


@pytest.fixture
def refdavis(tmp_path: Path) -> Path:
    eval_synth.write_refdavis(tmp_path / "ref-davis", videos=2, frames=3, objects=2)
    return tmp_path / "ref-davis"


def test_refdavis_videos_expressions_and_annotators(refdavis):
    ds = open_dataset("ref-davis17", refdavis)
    assert ds.name == "ref-davis" and ds.protocol == "davis" and ds.split == "valid"
    videos = ds.videos()
    assert [v.id for v in videos] == ["vid0", "vid1"]
    v = videos[0]
    assert v.frame_names == ("00000", "00001", "00002") and v.frames_dir == refdavis / "valid/JPEGImages/vid0"
    assert [e.annotator for e in v.expressions] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert [e.object_ids[0] for e in v.expressions] == ["1"] * 4 + ["2"] * 4
    assert ds.objects(v) == ["1", "2"]
    assert ds.select(["vid1"])[0].id == "vid1" and len(ds.select(limit=1)) == 1
    with pytest.raises(DatasetLayoutError, match="no video 'nope'"):
        ds.select(["nope"])


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("meta_expressions/valid/meta_expressions.json", "meta_expressions.json is missing"),
        ("valid/JPEGImages", "frames folder is missing"),
        ("valid/JPEGImages/vid1/00002.jpg", "frame '00002' of Ref-DAVIS video 'vid1' is missing"),
        ("DAVIS/Annotations_unsupervised", "Annotations_unsupervised/480p"),
    ],
)
def test_refdavis_missing_pieces_are_named(refdavis, remove, message):
    target = refdavis / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DatasetLayoutError, match=message) as info:
        open_dataset("ref-davis", refdavis).videos()
    assert isinstance(info.value, InputError) and info.value.exit_code == 2


def test_refdavis_falls_back_to_the_moved_annotations(refdavis):
    shutil.move(refdavis / "DAVIS" / "Annotations_unsupervised" / "480p", refdavis / "valid" / "Annotations")
    ds = open_dataset("ref-davis", refdavis)
    assert ds.gt_dir == refdavis / "valid" / "Annotations"
    assert ds.ground_truth().read("vid0").shape == (3, 32, 40)


def test_davis_ground_truth_sequences_and_errors(tmp_path):
    labels = eval_synth.moving_labels(2, 10, 12, 1)
    eval_synth.write_davis_gt(tmp_path / "D", {"a": labels, "b": labels, "c": labels}, imageset=["a", "b"])
    gt = DavisGroundTruth(tmp_path / "D")
    assert gt.sequences == ["a", "b"] and gt.frames("a") == ["00000", "00001"]
    assert np.array_equal(gt.read("b"), labels)
    assert DavisGroundTruth(tmp_path / "D" / "Annotations_unsupervised" / "480p").sequences == ["a", "b"]
    imageset = tmp_path / "D" / "ImageSets" / "2017" / "val.txt"
    imageset.unlink()  # without ImageSets/2017/val.txt: every sequence folder
    assert DavisGroundTruth(tmp_path / "D").sequences == ["a", "b", "c"]
    imageset.write_text("a\nzzz\n")
    with pytest.raises(DatasetLayoutError, match="ground truth of sequence 'zzz' is missing"):
        DavisGroundTruth(tmp_path / "D")
    with pytest.raises(DatasetLayoutError, match="Annotations_unsupervised/480p"):
        DavisGroundTruth(tmp_path)


def test_refytvos_is_valid_minus_test(tmp_path):
    eval_synth.write_refytvos(tmp_path)
    ds = open_dataset("ref-ytvos", tmp_path)
    videos = ds.videos()
    assert [v.id for v in videos] == ["a1", "b2"] and ds.protocol is None
    assert [(e.id, e.text) for e in videos[0].expressions] == [("0", "a red thing"), ("1", "the shape")]
    assert videos[0].frame_names == ("00000", "00005", "00010")
    (tmp_path / "meta_expressions" / "test" / "meta_expressions.json").unlink()
    with pytest.raises(DatasetLayoutError, match="test meta_expressions.json is missing"):
        open_dataset("ref-youtube-vos", tmp_path)


def test_refytvos_expression_without_text(tmp_path):
    eval_synth.write_refytvos(tmp_path)
    meta_path = tmp_path / "meta_expressions" / "valid" / "meta_expressions.json"
    meta = json.loads(meta_path.read_text())
    meta["videos"]["a1"]["expressions"]["1"] = {"exp": ""}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DatasetLayoutError, match='expression 1 of video .a1. .* has no "exp" text'):
        open_dataset("ref-youtube-vos", tmp_path).videos()


@pytest.mark.parametrize("layout", ["release", "referformer"])
def test_mevis_both_layouts_and_ground_truth_union(tmp_path, layout):
    targets = eval_synth.write_mevis(tmp_path, layout=layout)
    ds = open_dataset("mevis", tmp_path)
    assert ds.protocol == "mevis" and ds.split == "valid_u"
    videos = ds.videos()
    assert [v.id for v in videos] == ["m0", "m1"]
    e = videos[0].expressions[1]
    assert e.text == "both of them" and e.anno_ids == (0, 1) and e.object_ids == ("0", "1")
    gt = ds.gt.masks("m0", "1", (24, 32))
    assert np.array_equal(gt, targets[("m0", "1")])  # the union of both objects


def test_mevis_valid_has_no_ground_truth_and_missing_mask_dict_is_named(tmp_path):
    eval_synth.write_mevis(tmp_path, split="valid")
    assert open_dataset("mevis", tmp_path, "valid").protocol is None
    eval_synth.write_mevis(tmp_path / "u")
    (tmp_path / "u" / "valid_u" / "mask_dict.json").unlink()
    with pytest.raises(DatasetLayoutError, match="mask_dict.json"):
        open_dataset("mevis", tmp_path / "u")
    with pytest.raises(DatasetLayoutError, match="mask_dict.json"):
        MevisGroundTruth(tmp_path / "u" / "valid_u")


def test_avsbench_s4_ms3_readers(tmp_path):
    eval_synth.write_s4(tmp_path / "s4")
    s4 = open_dataset("s4", tmp_path / "s4")
    videos = s4.videos()
    assert [v.id for v in videos] == ["s0", "s1"] and s4.sound and s4.split == "test"
    v = videos[0]
    assert v.group == "dog_barking" and v.frame_names == tuple(f"s0_{i}" for i in range(1, 6))
    assert v.audio == tmp_path / "s4/s4_data/audio_wav/test/dog_barking/s0.wav"
    assert v.expressions[0].text is None
    assert s4.gt_paths(v)[0].name == "s0_1.png"
    eval_synth.write_ms3(tmp_path / "ms3")
    ms3 = open_dataset("avsbench-ms3", tmp_path / "ms3")
    assert [v.frame_names[0] for v in ms3.videos()] == ["ms0.mp4_1", "ms1.mp4_1"]


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("s4_meta_data.csv", "S4 metadata is missing"),
        ("s4_data/audio_wav/test/dog_barking/s1.wav", "audio of avsbench-s4 video 's1' is missing"),
        ("s4_data/visual_frames/test/dog_barking/s0", "avsbench-s4 video 's0' is missing"),
    ],
)
def test_avsbench_missing_pieces_are_named(tmp_path, remove, message):
    eval_synth.write_s4(tmp_path)
    target = tmp_path / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DatasetLayoutError, match=message):
        open_dataset("avsbench-s4", tmp_path).videos()


def test_avsbench_csv_without_a_needed_column(tmp_path):
    eval_synth.write_ms3(tmp_path)
    (tmp_path / "ms3_meta_data.csv").write_text("name,subset\nms0,test\n")
    with pytest.raises(DatasetLayoutError, match="has no column 'split'"):
        open_dataset("avsbench-ms3", tmp_path)


def test_avss_and_v2_binary_readers(tmp_path):
    eval_synth.write_avss(tmp_path)
    avss = open_dataset("avss", tmp_path)
    videos = {v.id: v for v in avss.videos()}
    assert set(videos) == {"u1s", "u1m", "u2a", "u2b"}  # test split only
    assert len(videos["u1s"].frame_names) == 5 and len(videos["u2a"].frame_names) == 10
    assert avss.classes[0] == "background" and len(avss.classes) == 71
    binary = open_dataset("avss-v2-binary", tmp_path)
    assert [v.id for v in binary.videos()] == ["u2a", "u2b"] and binary.binary
    (tmp_path / "label2idx.json").unlink()
    with pytest.raises(DatasetLayoutError, match="label2idx.json is missing"):
        open_dataset("avss", tmp_path)


def test_unknown_dataset_and_split():
    with pytest.raises(DatasetLayoutError, match="unknown dataset 'kitti'"):
        open_dataset("kitti", ".")
    with pytest.raises(DatasetLayoutError, match="has no split 'nope'"):
        open_dataset("mevis", ".", "nope")


# ---------------------------------------------------------------------------------------------
# writers


def test_davis_annotator_palette_merge_later_object_wins(tmp_path):
    a = np.zeros((2, 4, 4), bool)
    b = np.zeros((2, 4, 4), bool)
    a[:, :2, :2] = True
    b[:, 1:3, 1:3] = True
    labels = merge_objects([a, None, b], (2, 4, 4))
    assert labels[0, 0, 0] == 1 and labels[0, 1, 1] == 3 and labels[0, 2, 2] == 3 and labels.max() == 3
    write_davis_annotator(tmp_path, 2, "v", ["00000", "00001"], labels)
    image = Image.open(tmp_path / "anno_2" / "v" / "00001.png")
    assert image.mode == "P" and np.array_equal(np.asarray(image), labels[1])
    assert image.getpalette()[3:6] == [128, 0, 0]


def test_colour_png_and_zip_layout(tmp_path):
    classes = np.array([[0, 1], [2, 70]], np.uint8)
    write_colour_png(tmp_path / "c.png", classes)
    rgb = np.asarray(Image.open(tmp_path / "c.png"))
    assert (
        rgb[0, 0].tolist() == [0, 0, 0]
        and rgb[0, 1].tolist() == [128, 0, 0]
        and rgb[1, 0].tolist() == [0, 128, 0]
    )
    ann = tmp_path / "pred" / "Annotations"
    eval_synth.write_grey(ann / "v" / "0" / "00000.png", np.ones((3, 3)))
    eval_synth.write_grey(ann / "v" / "1" / "00000.png", np.zeros((3, 3)))
    z = zip_folder(ann, tmp_path / "pred" / "submission.zip")
    with zipfile.ZipFile(z) as archive:
        assert archive.namelist() == ["Annotations/v/0/00000.png", "Annotations/v/1/00000.png"]
    assert not list((tmp_path / "pred").glob(".*.tmp"))
