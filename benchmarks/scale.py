"""Throughput of one manifest batch, without Ray and on 1, 2, … Ray workers, as ratios in one run.

The script writes ``--videos`` synthetic videos (``tests/synth.py``: a red square and a blue circle
moving) and a manifest (``video,reference`` with "the red square"), then runs the same command,
``alref segment --manifest m.csv --out OUT --models smoke --no-overlay`` as a user would, once
without Ray and once per ``--workers`` count with ``--ray --ray-workers N`` (a Ray cluster started
on this machine for that command; or ``--ray-address`` for an existing one). Each run writes into a
fresh folder, so nothing is skipped. It times the whole command (Ray's start, the workers' imports
and model loading included: what a user waits for) and reports videos per minute and the ratio to
the run without Ray. Every run's masks are compared with the run without Ray (they must be the same
bytes).

Usage (from the repository root, with ``alref[ray]`` installed)::

    python benchmarks/scale.py                                  # 8 videos of 100 frames; 1 and 2 workers
    python benchmarks/scale.py --videos 16 --frames 300 --workers 1 2 --json
    # on a GPU node (one worker per GPU, real models):
    python benchmarks/scale.py --models default --videos 64 --frames 300 --workers 1 2 4 8
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stages import _synth, machine_info  # noqa: E402 - the synthetic media and machine facts of stages.py

REFERENCE = "the red square"


def write_batch(folder: Path, videos: int, frames: int, width: int, height: int) -> Path:
    synth = _synth()
    lines = ["video,reference"]
    for i in range(videos):
        name = f"video{i:03d}.mp4"
        synth.write_shapes_video(
            folder / name, num_frames=frames, width=width, height=height, fps=25, audio=False
        )
        lines.append(f"{name},{REFERENCE}")
    manifest = folder / "m.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def run_batch(manifest: Path, out: Path, models: str, extra: list[str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "alref.cli", "segment", "--manifest", str(manifest), "--out", str(out),
               "--models", models, "--no-overlay", "--json", *extra]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout)
    return {"wall_s": round(wall, 3), "videos": summary["videos"], "ran": summary["ran"],
            "video_seconds": [r["seconds"] for r in summary["records"]]}  # fmt: skip


def masks_of(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/masks.json"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--models", default="smoke", help="model profile (smoke: tiny random models)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray worker counts to run")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument(
        "--ray-address", default=None, help="an existing cluster (default: one on this machine)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="alref-scale-") as tmp:
        folder = Path(tmp)
        manifest = write_batch(folder, args.videos, args.frames, args.width, args.height)
        # one untimed run builds the smoke models into the cache (and warms the disk cache)
        (folder / "warm").mkdir()
        run_batch(write_batch(folder / "warm", 1, 8, 64, 48), folder / "warm-out", args.models, [])
        runs: dict[str, dict[str, Any]] = {}
        runs["no ray"] = run_batch(manifest, folder / "local", args.models, [])
        reference = masks_of(folder / "local")
        ray = ["--ray-address", args.ray_address] if args.ray_address else ["--ray"]
        for n in args.workers:
            name = f"ray, {n} worker{'s' if n > 1 else ''}"
            out = folder / f"ray{n}"
            runs[name] = run_batch(manifest, out, args.models,
                                   [*ray, "--ray-workers", str(n), "--ray-cpus-per-worker", str(args.cpus_per_worker)])  # fmt: skip
            runs[name]["same_masks"] = masks_of(out) == reference
    base = runs["no ray"]["wall_s"]
    for run in runs.values():
        run["videos_per_min"] = round(60 * run["videos"] / run["wall_s"], 2)
        run["throughput_vs_no_ray"] = round(base / run["wall_s"], 2)
    report = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "batch": {
            "videos": args.videos,
            "frames": args.frames,
            "size": f"{args.width}x{args.height}",
            "models": args.models,
            "cpus_per_worker": args.cpus_per_worker,
        },  # fmt: skip
        "runs": runs,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    m = report["machine"]
    print(f"command : {report['command']}")
    print(f"machine : {m['cpu']} | {m['cpus_usable']} usable CPUs | GPU {m['cuda'] or 'none'} | python {m['python']}, "
          f"torch {m['torch']} | load avg {m['load_avg_1m']} | {m['date_utc']}")  # fmt: skip
    b = report["batch"]
    print(f"batch   : {b['videos']} videos x {b['frames']} frames {b['size']}, models {b['models']}")
    print(f"{'run':<18}{'wall s':>9}{'videos/min':>12}{'vs no ray':>11}  same masks")
    for name, run in runs.items():
        same = "" if name == "no ray" else ("yes" if run["same_masks"] else "NO")
        print(
            f"{name:<18}{run['wall_s']:>9.1f}{run['videos_per_min']:>12.2f}{run['throughput_vs_no_ray']:>10.2f}x  {same}"
        )


if __name__ == "__main__":
    main()
