"""Synthetic benchmark datasets in every layout alref.eval reads (plain functions, not fixtures).

Shapes are ellipses moving with the frame index, so masks are known exactly; every writer returns
the dataset root (and, where useful, the ground-truth arrays it wrote).
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from alref.media.writers import davis_palette

PALETTE = davis_palette()


def ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, (int(round(cx)), int(round(cy))), (max(int(rx), 1), max(int(ry), 1)), 0, 0, 360, 1, -1)
    return mask.astype(bool)


def moving_labels(frames: int, height: int, width: int, objects: int, seed: int = 0, late: int | None = None):
    """(T, H, W) uint8 labels: ``objects`` moving ellipses (ids 1..n); object 1 appears from frame
    ``late`` when given (ids stay as they are, so the first frame still holds the highest id)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((frames, height, width), np.uint8)
    params = [
        (rng.uniform(0.25, 0.75) * height, rng.uniform(0.25, 0.75) * width, rng.uniform(-1, 1),
         rng.uniform(-2, 2), rng.uniform(0.1, 0.22) * height, rng.uniform(0.08, 0.2) * width)
        for _ in range(objects)
    ]  # fmt: skip
    for t in range(frames):
        for i, (cy, cx, vy, vx, ry, rx) in enumerate(params):
            if late is not None and i == 0 and t < late:
                continue
            labels[t][ellipse((height, width), cy + vy * t, cx + vx * t, ry, rx)] = i + 1
    return labels


def perturb(labels: np.ndarray, seed: int = 1, shift: int = 2, drop: float = 0.1) -> np.ndarray:
    """A plausible prediction: each object shifted a little, sometimes missing."""
    rng = np.random.default_rng(seed)
    out = np.zeros_like(labels)
    for t in range(len(labels)):
        for obj in np.unique(labels[t]):
            if obj in (0, 255) or rng.random() < drop:
                continue
            dy, dx = rng.integers(-shift, shift + 1, 2)
            m = np.roll(labels[t] == obj, (int(dy), int(dx)), axis=(0, 1))
            out[t][m] = obj
    return out


def write_palette(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(labels, np.uint8), "P")
    image.putpalette(PALETTE)
    image.save(path)


def write_grey(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8), "L").save(path)


def write_colour(path: Path, classes: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.array(PALETTE, np.uint8).reshape(256, 3)[np.asarray(classes, np.uint8)]
    Image.fromarray(rgb, "RGB").save(path)


def write_jpegs(
    folder: Path, names: list[str], height: int, width: int, labels: np.ndarray | None = None
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for t, name in enumerate(names):
        image = np.full((height, width, 3), 40, np.uint8)
        if labels is not None:
            image[labels[t] > 0] = (220, 30, 30)
        suffix = ".png" if name.endswith("_png") else ".jpg"
        Image.fromarray(image).save(folder / f"{name.removesuffix('_png')}{suffix}")


def write_wav(path: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    data = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())
    return path


def write_davis_gt(root: Path, sequences: dict[str, np.ndarray], imageset: list[str] | None = None) -> Path:
    """``root/Annotations_unsupervised/480p/<seq>/<t:05d>.png``; returns ``root``."""
    for seq, labels in sequences.items():
        for t, frame in enumerate(labels):
            write_palette(root / "Annotations_unsupervised" / "480p" / seq / f"{t:05d}.png", frame)
    if imageset is not None:
        (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(imageset) + "\n")
    return root


def write_predictions(root: Path, sequences: dict[str, np.ndarray]) -> Path:
    for seq, labels in sequences.items():
        for t, frame in enumerate(labels):
            write_palette(root / seq / f"{t:05d}.png", frame)
    return root


def write_refdavis(root: Path, videos: int = 2, frames: int = 4, size=(32, 40), objects: int = 1) -> dict:
    """A Ref-DAVIS17 folder (ReferFormer layout); returns {video: gt labels}."""
    h, w = size
    meta: dict = {"videos": {}}
    truth = {}
    for v in range(videos):
        name = f"vid{v}"
        labels = moving_labels(frames, h, w, objects, seed=v)
        truth[name] = labels
        names = [f"{t:05d}" for t in range(frames)]
        write_jpegs(root / "valid" / "JPEGImages" / name, names, h, w, labels)
        exps = {}
        for o in range(objects):
            for k, kind in enumerate(("first frame", "full video", "first frame b", "full video b")):
                exps[str(o * 4 + k)] = {"exp": f"the red shape {o} ({kind})", "obj_id": str(o + 1)}
        meta["videos"][name] = {"expressions": exps, "frames": names}
    (root / "meta_expressions" / "valid").mkdir(parents=True, exist_ok=True)
    (root / "meta_expressions" / "valid" / "meta_expressions.json").write_text(json.dumps(meta))
    write_davis_gt(root / "DAVIS", truth, imageset=sorted(truth))
    return truth


def write_refytvos(root: Path, frames: int = 3, size=(24, 32)) -> None:
    """Three videos in valid, one of them also in test (so two are evaluated)."""
    h, w = size
    valid: dict = {"videos": {}}
    for v, name in enumerate(("a1", "b2", "t9")):
        names = [f"{t * 5:05d}" for t in range(frames)]
        write_jpegs(root / "valid" / "JPEGImages" / name, names, h, w, moving_labels(frames, h, w, 1, seed=v))
        valid["videos"][name] = {
            "expressions": {"0": {"exp": "a red thing"}, "1": {"exp": "the shape"}},
            "frames": names,
        }
    test = {"videos": {"t9": valid["videos"]["t9"]}}
    for split, data in (("valid", valid), ("test", test)):
        (root / "meta_expressions" / split).mkdir(parents=True, exist_ok=True)
        (root / "meta_expressions" / split / "meta_expressions.json").write_text(json.dumps(data))


def rle_or_none(mask: np.ndarray) -> dict | None:
    """The COCO RLE of a mask as the MeViS / ReVOS mask_dict.json holds it; None where it is empty."""
    from pycocotools import mask as mask_utils

    if not mask.any():
        return None
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode()}


def write_mevis(
    root: Path,
    layout: str = "release",
    split: str = "valid_u",
    frames: int = 4,
    size=(24, 32),
    late: int | None = None,
) -> dict:
    """Two videos with two objects each; expression 0 → object 0, 1 → both (union of anno ids),
    2 → object 1; with ``late``, object 0 appears only from that frame (empty ground-truth frames).
    Returns {(video, exp): (T, H, W) bool target}."""
    from pycocotools import mask as mask_utils

    h, w = size
    meta: dict = {"videos": {}}
    mask_dict: dict = {}
    targets = {}
    anno = 0
    for v in range(2):
        name = f"m{v}"
        labels = moving_labels(frames, h, w, 2, seed=10 + v, late=late)
        names = [f"{t:05d}" for t in range(frames)]
        write_jpegs(root / split / "JPEGImages" / name, names, h, w, labels)
        ids = []
        for obj in (1, 2):
            rles = []
            for t in range(frames):
                m = labels[t] == obj
                if m.any():
                    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
                    rles.append({"size": [h, w], "counts": rle["counts"].decode()})
                else:
                    rles.append(None)
            mask_dict[str(anno)] = rles
            ids.append(anno)
            anno += 1
        exps = {
            "0": {"exp": "the first one", "obj_id": [0], "anno_id": [ids[0]]},
            "1": {"exp": "both of them", "obj_id": [0, 1], "anno_id": ids},
            "2": {"exp": "the second one", "obj_id": [1], "anno_id": [ids[1]]},
        }
        meta["videos"][name] = {"expressions": exps, "frames": names, "vid_id": v}
        targets[(name, "0")] = labels == 1
        targets[(name, "1")] = labels > 0
        targets[(name, "2")] = labels == 2
    folder = root / split if layout == "release" else root / "meta_expressions" / split
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta_expressions.json").write_text(json.dumps(meta))
    if split != "valid":
        (root / split / "mask_dict.json").write_text(json.dumps(mask_dict))
    return targets


REVOS_VIDEOS = {
    # video: [(text, type_id, objects)] over the video's objects 0..n-1 (drawn separately, so they overlap)
    "r0": [
        ("the ball that rolls in", 0, [0]),  # object 0 is absent from frame 0: empty ground truth there
        ("which two things move together?", 1, [1, 2]),  # union of two overlapping objects
        ("what would a child pick up first?", 1, [2]),
        ("the purple elephant", 2, []),  # type_id 2: in no mean
    ],
    "r1": [
        ("the shape on the left", 0, [0]),
        ("both shapes", 0, [0, 1]),
        ("what could roll off the table?", 1, [1]),
    ],
}


def revos_objects(video: str, frames: int, size=(24, 32)) -> list[np.ndarray]:
    """The objects of a synthetic ReVOS video, each (T, H, W) bool: moving ellipses that overlap."""
    h, w = size
    count = 1 + max(o for _, _, objs in REVOS_VIDEOS[video] for o in objs)
    rng = np.random.default_rng(50 + sorted(REVOS_VIDEOS).index(video))
    out = []
    for i in range(count):
        cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.3, 0.7) * w
        vy, vx = rng.uniform(-1, 1), rng.uniform(-2, 2)
        ry, rx = rng.uniform(0.15, 0.3) * h, rng.uniform(0.12, 0.25) * w
        masks = np.stack([ellipse((h, w), cy + vy * t, cx + vx * t, ry, rx) for t in range(frames)])
        if video == "r0" and i == 0:
            masks[0] = False
        out.append(masks)
    return out


def write_revos(root: Path, frames: int = 4, size=(24, 32), foreground: bool = True) -> dict:
    """ReVOS as released: ``JPEGImages/``, ``meta_expressions_{valid,train}_.json``, one
    ``mask_dict.json`` for both splits (train: one video ``t0``), ``mask_dict_foreground.json`` unless
    ``foreground`` is False. Frame names step by 5. Returns {(video, exp): (T, H, W) bool target} for
    the valid videos."""
    h, w = size
    names = [f"{t * 5:05d}" for t in range(frames)]
    mask_dict: dict = {}
    fg_dict: dict = {}
    targets = {}
    anno = 0
    metas: dict = {"valid": {"videos": {}}, "train": {"videos": {}}}
    videos = {**REVOS_VIDEOS, "t0": [("the train shape", 0, [0])]}
    for v, (video, expressions) in enumerate(videos.items()):
        split = "train" if video.startswith("t") else "valid"
        if video in REVOS_VIDEOS:
            objects = revos_objects(video, frames, size)
        else:
            objects = [moving_labels(frames, h, w, 1, seed=60) > 0]
        write_jpegs(root / "JPEGImages" / video, names, h, w, np.any(objects, axis=0).astype(np.uint8))
        ids = []
        for masks in objects:
            mask_dict[str(anno)] = [rle_or_none(m) for m in masks]
            ids.append(anno)
            anno += 1
        exps = {}
        for k, (text, type_id, objs) in enumerate(expressions):
            exps[str(k)] = {
                "exp": text,
                "obj_id": objs,
                "anno_id": [ids[o] for o in objs],
                "type_id": type_id,
            }
            union = np.zeros((frames, h, w), bool)
            for o in objs:
                union |= objects[o]
            targets[(video, str(k))] = union
        metas[split]["videos"][video] = {
            "vid_id": v,
            "height": h,
            "width": w,
            "frames": names,
            "expressions": exps,
        }
        fg = np.any(objects, axis=0)
        fg_dict[video] = {
            "masks_rle": [rle_or_none(m) or {"size": [h, w], "counts": _empty_counts(h, w)} for m in fg],
            "foreground_ratio": [float(m.mean()) for m in fg],
        }
    for split, meta in metas.items():
        (root / f"meta_expressions_{split}_.json").write_text(json.dumps(meta))
    (root / "mask_dict.json").write_text(json.dumps(mask_dict))
    if foreground:
        (root / "mask_dict_foreground.json").write_text(json.dumps(fg_dict))
    return {k: t for k, t in targets.items() if k[0] in REVOS_VIDEOS}


def _empty_counts(h: int, w: int) -> str:
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(np.zeros((h, w), np.uint8)))["counts"].decode()


def write_s4(root: Path, videos: int = 2, size=(24, 24), empty_frame: bool = False) -> dict:
    """AVSBench S4 (test split, plus one train row); returns {name: (5, H, W) bool ground truth}."""
    h, w = size
    rows = ["name,split,category"]
    truth = {}
    for v in range(videos):
        name, cat = f"s{v}", "dog_barking"
        rows.append(f"{name},test,{cat}")
        labels = moving_labels(5, h, w, 1, seed=20 + v) > 0
        if empty_frame and v == 0:
            labels[2] = False
        truth[name] = labels
        names = [f"{name}_{i}_png" for i in range(1, 6)]
        write_jpegs(root / "s4_data" / "visual_frames" / "test" / cat / name, names, h, w, labels)
        write_wav(root / "s4_data" / "audio_wav" / "test" / cat / f"{name}.wav")
        for i in range(1, 6):
            write_grey(root / "s4_data" / "gt_masks" / "test" / cat / name / f"{name}_{i}.png", labels[i - 1])
    rows.append("other,train,dog_barking")
    (root / "s4_meta_data.csv").write_text("\n".join(rows) + "\n")
    return truth


def write_ms3(root: Path, size=(24, 24)) -> dict:
    h, w = size
    truth = {}
    rows = ["name,split"]
    for v in range(2):
        name = f"ms{v}"
        rows.append(f"{name},test")
        labels = moving_labels(5, h, w, 2, seed=30 + v) > 0
        truth[name] = labels
        write_jpegs(
            root / "ms3_data" / "visual_frames" / name, [f"{name}.mp4_{i}_png" for i in range(1, 6)], h, w
        )
        write_wav(root / "ms3_data" / "audio_wav" / "test" / f"{name}.wav")
        for i in range(1, 6):
            write_grey(root / "ms3_data" / "gt_masks" / "test" / name / f"{name}_{i}.png", labels[i - 1])
    (root / "ms3_meta_data.csv").write_text("\n".join(rows) + "\n")
    return truth


def write_avss(root: Path, size=(30, 40)) -> dict:
    """AVSBench-semantic: one v1s, one v1m and two v2 test videos, one v2 train video; returns
    {uid: (T, H, W) uint8 classes}."""
    h, w = size
    names = ["background"] + [f"class{k}" for k in range(1, 71)]
    (root / "label2idx.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "label2idx.json").write_text(json.dumps({n: i + 1 for i, n in enumerate(names)}))
    rows = ["vid,uid,s_min,s_sec,a_obj,split,label"]
    truth = {}
    for k, (uid, label, split) in enumerate(
        [
            ("u1s", "v1s", "test"),
            ("u1m", "v1m", "test"),
            ("u2a", "v2", "test"),
            ("u2b", "v2", "test"),
            ("u2t", "v2", "train"),
        ]
    ):
        rows.append(f"{uid[:2]},{uid},0,0,x,{split},{label}")
        frames = 10 if label == "v2" else 5
        labels = moving_labels(frames, h, w, 2, seed=40 + k)
        classes = np.where(labels == 1, 3 + k, np.where(labels == 2, 17, 0)).astype(np.uint8)
        truth[uid] = classes
        folder = root / label / uid
        write_jpegs(folder / "frames", [str(i) for i in range(frames)], h, w, labels)
        write_wav(folder / "audio.wav")
        for i in range(frames):
            write_colour(folder / "labels_rgb" / f"{i}.png", classes[i])
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return truth
