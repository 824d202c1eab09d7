"""Scoring speed on a synthetic DAVIS-sized set: ``alref eval score --protocol davis`` against the
official DAVIS evaluation loop (re-implemented here from its algorithm) and ``vos-benchmark``.

    python benchmarks/score_speed.py                      # 30 sequences x 80 frames x 480x854
    python benchmarks/score_speed.py --sequences 5 --json

The set: palette PNGs with 2-3 moving objects per sequence (one of them appearing late), a band
of void (255) pixels around one object, and predictions that shift, grow, shrink, drop and swap the
objects. ``official`` is the davis2017-evaluation unsupervised loop as that script runs it: for every
(ground truth, prediction) pair, per frame, ``db_eval_iou`` and ``db_eval_boundary`` on full frames,
then Hungarian matching; single process. ``vos-benchmark`` runs with one process per CPU; it scores
an object from its first appearance and treats 255 as an object, so its numbers differ on this set
(it is timed, not compared). Needs numpy, opencv, pillow, scipy (and vos-benchmark for its column).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alref.media.writers import davis_palette  # noqa: E402

PALETTE = davis_palette()


# ---------------------------------------------------------------------------------------------
# the synthetic set


def _save(path: Path, labels: np.ndarray) -> None:
    image = Image.fromarray(labels.astype(np.uint8), "P")
    image.putpalette(PALETTE)
    image.save(path)


def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, (int(cx), int(cy)), (max(int(rx), 1), max(int(ry), 1)), 0, 0, 360, 1, -1)
    return mask.astype(bool)


def synth_sequence(
    rng: np.random.Generator, frames: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """(gt, pred) label maps (T, H, W) for one sequence."""
    n_obj = int(rng.integers(2, 4))
    late = int(rng.integers(frames // 4, frames // 2))  # the last object appears from here on
    params = []
    for _ in range(n_obj):
        params.append(
            dict(
                cy=rng.uniform(0.2, 0.8) * height, cx=rng.uniform(0.2, 0.8) * width,
                vy=rng.uniform(-2, 2), vx=rng.uniform(-4, 4),
                ry=rng.uniform(0.06, 0.2) * height, rx=rng.uniform(0.05, 0.18) * width,
            )
        )  # fmt: skip
    perm = rng.permutation(n_obj) + 1  # predicted ids are a permutation of the true ones
    gt = np.zeros((frames, height, width), np.uint8)
    pred = np.zeros((frames, height, width), np.uint8)
    for t in range(frames):
        for i, p in enumerate(params):
            if i == n_obj - 1 and t < late:
                continue
            cy, cx = p["cy"] + p["vy"] * t, p["cx"] + p["vx"] * t
            m = _ellipse((height, width), cy, cx, p["ry"], p["rx"])
            gt[t][m] = i + 1
            if i == 0:  # a void band around the first object
                ring = _ellipse((height, width), cy, cx, p["ry"] + 3, p["rx"] + 3) & ~m
                gt[t][ring & (gt[t] == 0)] = 255
            if rng.random() < 0.05:
                continue  # the prediction misses this object on this frame
            jitter = rng.normal(0, 3, 2)
            scale = 1 + rng.normal(0, 0.08)
            pm = _ellipse((height, width), cy + jitter[0], cx + jitter[1], p["ry"] * scale, p["rx"] * scale)
            pred[t][pm] = perm[i]
        if t % 7 == 0:  # a false positive blob with an extra id
            pred[t][_ellipse((height, width), height * 0.1, width * 0.9, 12, 20)] = n_obj + 1
    return gt, pred


def write_set(
    root: Path, sequences: int, frames: int, height: int, width: int, seed: int
) -> tuple[Path, Path]:
    """Writes ROOT/DAVIS/Annotations_unsupervised/480p/<seq>/ and ROOT/pred/<seq>/; returns both."""
    rng = np.random.default_rng(seed)
    gt_root = root / "DAVIS" / "Annotations_unsupervised" / "480p"
    pred_root = root / "pred"
    jobs = []
    for s in range(sequences):
        name = f"seq{s:03d}"
        gt, pred = synth_sequence(rng, frames, height, width)
        (gt_root / name).mkdir(parents=True)
        (pred_root / name).mkdir(parents=True)
        for t in range(frames):
            jobs.append((gt_root / name / f"{t:05d}.png", gt[t]))
            jobs.append((pred_root / name / f"{t:05d}.png", pred[t]))
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(lambda job: _save(*job), jobs))
    return root / "DAVIS", pred_root


# ---------------------------------------------------------------------------------------------
# the official loop, re-implemented from the davis2017-evaluation algorithm


def _disk(radius: float) -> np.ndarray:
    axis = np.arange(-radius, radius + 1)
    xx, yy = np.meshgrid(axis, axis)
    return (xx**2 + yy**2 <= radius**2).astype(np.uint8)


def _seg2bmap(seg: np.ndarray) -> np.ndarray:
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def db_eval_iou(annotation: np.ndarray, segmentation: np.ndarray, void: np.ndarray) -> np.ndarray:
    keep = np.logical_not(void)
    inters = np.sum((segmentation & annotation) & keep, axis=(-2, -1))
    union = np.sum((segmentation | annotation) & keep, axis=(-2, -1))
    j = inters / np.where(union == 0, 1, union)
    j[np.isclose(union, 0)] = 1
    return j


def f_measure(fg: np.ndarray, gt: np.ndarray, void: np.ndarray, bound_th: float = 0.008) -> float:
    bound_pix = np.ceil(bound_th * np.linalg.norm(fg.shape))
    fg_b = _seg2bmap(fg * np.logical_not(void))
    gt_b = _seg2bmap(gt * np.logical_not(void))
    kernel = _disk(bound_pix)
    fg_dil = cv2.dilate(fg_b.astype(np.uint8), kernel)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel)
    gt_match = gt_b * fg_dil
    fg_match = fg_b * gt_dil
    n_fg, n_gt = np.sum(fg_b), np.sum(gt_b)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision, recall = np.sum(fg_match) / float(n_fg), np.sum(gt_match) / float(n_gt)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def official_davis(gt_dir: Path, pred_dir: Path) -> dict[str, float]:
    """J, F, J&F (fractions) as davis2017-evaluation's unsupervised task computes them."""
    from scipy.optimize import linear_sum_assignment

    annotations = gt_dir / "Annotations_unsupervised" / "480p"
    j_means, f_means = [], []
    for seq in sorted(p.name for p in annotations.iterdir() if p.is_dir()):
        names = sorted(p.stem for p in (annotations / seq).glob("*.png"))
        gt = np.stack([np.array(Image.open(annotations / seq / f"{n}.png")) for n in names]).astype(float)
        void = gt == 255
        gt[void] = 0
        n_gt = int(np.max(gt[0]))
        gt_masks = np.stack([gt == k for k in range(1, n_gt + 1)]) if n_gt else np.zeros((0, *gt.shape), bool)
        pred = np.stack([np.array(Image.open(pred_dir / seq / f"{n}.png")) for n in names]).astype(float)
        n_pred = int(np.max(pred))
        if n_pred > 20:
            raise SystemExit("more than 20 proposals")
        pred_masks = (
            np.stack([pred == k for k in range(1, n_pred + 1)])
            if n_pred
            else np.zeros((0, *pred.shape), bool)
        )
        if n_pred < n_gt:
            pred_masks = np.concatenate([pred_masks, np.zeros((n_gt - n_pred, *pred.shape), bool)])
        rows = len(pred_masks)
        j = np.zeros((rows, n_gt, len(names)))
        f = np.zeros((rows, n_gt, len(names)))
        for ii in range(n_gt):
            for jj in range(rows):
                j[jj, ii] = db_eval_iou(gt_masks[ii], pred_masks[jj], void)
                f[jj, ii] = [
                    f_measure(pred_masks[jj][t], gt_masks[ii][t], void[t]) for t in range(len(names))
                ]
        row_ind, col_ind = linear_sum_assignment(-(np.mean(j, axis=2) + np.mean(f, axis=2)) / 2)
        for r, c in zip(row_ind, col_ind, strict=True):
            j_means.append(np.mean(j[r, c]))
            f_means.append(np.mean(f[r, c]))
    jm, fm = float(np.mean(j_means)), float(np.mean(f_means))
    return {"J": jm, "F": fm, "J&F": (jm + fm) / 2}


# ---------------------------------------------------------------------------------------------


def machine(argv: list[str]) -> dict:
    """The command, the machine, the software versions and the date (the benchmarks' convention)."""
    versions = {}
    for package in ("numpy", "opencv-python-headless", "scipy", "pillow", "vos-benchmark"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "command": ("python benchmarks/score_speed.py " + shlex.join(argv)).strip(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_before": os.getloadavg()[0],
        "versions": versions,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=30)
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="alref's threads [default: CPUs, max 8]")
    parser.add_argument("--no-official", action="store_true", help="skip the official loop")
    parser.add_argument("--no-vos", action="store_true", help="skip vos-benchmark")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)

    from alref.eval.score import score

    report: dict = {"machine": machine(argv), "set": {k: v for k, v in vars(args).items() if k != "json"}}
    with tempfile.TemporaryDirectory(prefix="alref-score-speed-") as tmp:
        t = time.perf_counter()
        gt_dir, pred_dir = write_set(
            Path(tmp), args.sequences, args.frames, args.height, args.width, args.seed
        )
        report["write_s"] = round(time.perf_counter() - t, 2)

        t = time.perf_counter()
        ours = score("davis", pred_dir, gt_dir, workers=args.workers)
        report["alref"] = {"seconds": time.perf_counter() - t, **{k: ours[k] for k in ("J", "F", "J&F")}}

        if not args.no_official:
            t = time.perf_counter()
            official = {k: v * 100 for k, v in official_davis(gt_dir, pred_dir).items()}
            report["official_loop"] = {"seconds": time.perf_counter() - t, **official}
            report["max_abs_diff"] = max(abs(ours[k] - official[k]) for k in ("J", "F", "J&F"))
            report["speedup_vs_official"] = report["official_loop"]["seconds"] / report["alref"]["seconds"]

        if not args.no_vos:
            try:
                from vos_benchmark.benchmark import benchmark
            except ImportError:
                report["vos_benchmark"] = None
            else:
                t = time.perf_counter()
                jf, j, f, _ = benchmark(
                    [str(gt_dir / "Annotations_unsupervised" / "480p")], [str(pred_dir)],
                    verbose=False, skip_first_and_last=False,
                )  # fmt: skip
                seconds = time.perf_counter() - t
                report["vos_benchmark"] = {"seconds": seconds, "J": j[0], "F": f[0], "J&F": jf[0]}
                report["speedup_vs_vos_benchmark"] = seconds / report["alref"]["seconds"]

    report["machine"]["load_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(report, indent=2))
        return report
    m = report["machine"]
    print(f"$ {m['command']}\n{m['date']}, Python {m['python']}, {m['cpus']} CPUs ({m['usable_cpus']} usable), "
          f"load {m['load_before']:.2f} -> {m['load_after']:.2f}; "
          + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v))  # fmt: skip
    print(f"set: {args.sequences} sequences x {args.frames} frames x {args.height}x{args.width} "
          f"({report['write_s']} s to write)")  # fmt: skip
    rows = [("alref eval score", report["alref"])]
    if report.get("official_loop"):
        rows.append(("official DAVIS loop", report["official_loop"]))
    if report.get("vos_benchmark"):
        rows.append(("vos-benchmark", report["vos_benchmark"]))
    for name, r in rows:
        print(f"{name:<22} {r['seconds']:8.2f} s   J {r['J']:.6f}  F {r['F']:.6f}  J&F {r['J&F']:.6f}")
    if "speedup_vs_official" in report:
        print(f"speed-up vs the official loop: {report['speedup_vs_official']:.1f}x "
              f"(max |difference| {report['max_abs_diff']:.2e})")  # fmt: skip
    if "speedup_vs_vos_benchmark" in report:
        print(f"speed-up vs vos-benchmark: {report['speedup_vs_vos_benchmark']:.1f}x")
    return report


if __name__ == "__main__":
    main()
