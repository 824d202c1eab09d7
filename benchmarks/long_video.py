"""Per-frame cost and peak memory of ``alref segment`` as the video grows (300, 1500, 3000 frames).

The script writes synthetic videos (``tests/synth.py``: a red square and a blue circle moving, no
audio) at 640x360 and runs the command a user runs, once per video length and strategy, each in a
fresh process::

    alref segment VIDEO "the red square" --models smoke --no-overlay --no-llm --force --out OUT
        [--strategy tracks]

with ``OMP_NUM_THREADS=1`` (``--threads``) so that the figures do not depend on what else shares the
CPU. From each run it reads the propagation time alref records in result.json (``timings_s``:
``propagation`` for the pivot strategy, SAM 2 over the whole video; for ``tracks`` SAM 3's concept
tracking, ``tracking``, or, where a version lacks that figure, ``selection``, which without an LLM is
the tracking) and the process's peak RSS (``os.wait4``'s ``ru_maxrss``, plus the peak of the
anonymous memory, ``RssAnon``, polled from ``/proc/PID/status`` every 0.1 s). It reports
propagation frames/s, peak RSS and wall time per run, and, per strategy, the growth: frames/s at the
longest video over frames/s at the shortest (1.0 = a flat per-frame cost), and peak RSS MiB per 1000
frames (the slope between the shortest and the longest video).

``--before DIR`` also runs every measurement with the alref package of another source tree (e.g. the
last commit: ``git archive HEAD alref | tar -x -C /tmp/before``), alternating which goes first, so a
change is measured before and after in one run on the same machine state. The 1-minute load average
is printed before and after every run: on a shared machine a value well above 1 (this benchmark's own
load) means other work competed, and only ratios within one run are worth comparing.

Usage (from the repository root)::

    python benchmarks/long_video.py                                   # 300 1500 3000 frames, both strategies
    python benchmarks/long_video.py --frames 300 1500 --strategies pivot   # a quicker run
    python benchmarks/long_video.py --frames 300 1000 --before /tmp/before --json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stages import REPO, _synth, load_avg, machine_info  # noqa: E402 - stages.py's synthetic media and machine facts

REFERENCE = "the red square"
STRATEGIES = ("pivot", "tracks")


def write_video(folder: Path, frames: int, width: int, height: int, fps: float) -> Path:
    path = folder / f"shapes-{frames}-{width}x{height}.mp4"
    if not path.is_file():
        _synth().write_shapes_video(path, num_frames=frames, width=width, height=height, fps=fps, audio=False)
    return path


def propagation_seconds(timings: dict[str, float], strategy: str) -> float:
    """What alref recorded for the model's pass over the whole video."""
    if strategy == "pivot":
        return float(timings["propagation"])
    return float(timings.get("tracking", timings["selection"]))


class _Poller(threading.Thread):
    """Polls a process's ``RssAnon`` (KiB) in /proc and keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_anon_kib, self.stop = pid, 0, threading.Event()

    def run(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while not self.stop.is_set():
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("RssAnon:"):
                        self.peak_anon_kib = max(self.peak_anon_kib, int(line.split()[1]))
            except (OSError, ValueError):
                return
            self.stop.wait(0.1)


def run_once(
    source: Path, video: Path, out: Path, strategy: str, threads: int, timeout: float
) -> dict[str, Any]:
    """One ``alref segment`` in a fresh process, with ``source``'s alref package."""
    command = [sys.executable, "-m", "alref.cli", "segment", str(video), REFERENCE, "--models", "smoke",
               "--no-overlay", "--no-llm", "--force", "--out", str(out)]  # fmt: skip
    if strategy != "pivot":
        command += ["--strategy", strategy]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(source))
    load_before = load_avg()
    started = time.perf_counter()
    log = out.with_suffix(".log")
    out.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as sink:
        proc = subprocess.Popen(command, cwd=source, env=env, stdout=sink, stderr=subprocess.STDOUT)
        poller = _Poller(proc.pid)
        poller.start()
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            poller.stop.set()
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    result = json.loads((out / "result.json").read_text())
    frames = int(result["input"]["num_frames"])
    seconds = propagation_seconds(result["timings_s"], strategy)
    return {
        "frames": frames,
        "propagation_s": round(seconds, 2),
        "frames_per_s": round(frames / seconds, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        "peak_anon_mib": round(poller.peak_anon_kib / 1024, 1),
        "wall_s": round(wall, 2),
        "timings_s": result["timings_s"],
        "load_before": load_before,
        "load_after": load_avg(),
    }


def growth(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Frames/s at the longest video over the shortest, and peak RSS MiB per 1000 frames between them."""
    runs = sorted(runs, key=lambda r: r["frames"])
    short, long = runs[0], runs[-1]
    span = long["frames"] - short["frames"]
    if span <= 0:
        return {}
    return {
        "frames": [short["frames"], long["frames"]],
        "fps_ratio": round(long["frames_per_s"] / short["frames_per_s"], 3),
        "rss_mib_per_1000_frames": round(1000 * (long["peak_rss_mib"] - short["peak_rss_mib"]) / span, 1),
        "anon_mib_per_1000_frames": round(1000 * (long["peak_anon_mib"] - short["peak_anon_mib"]) / span, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[300, 1500, 3000], help="video lengths")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=float, default=25)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run")
    parser.add_argument("--before", type=Path, default=None, help="another source tree to measure too")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds a run may take")
    parser.add_argument("--workdir", type=Path, default=None, help="where the videos and outputs go")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    sources = {"after": REPO} | ({"before": args.before.resolve()} if args.before else {})
    with tempfile.TemporaryDirectory(prefix="alref-long-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        warm = write_video(work, 8, 64, 48, args.fps)
        for name, source in sources.items():  # untimed: builds the smoke models, warms the disk cache
            for strategy in args.strategies:
                run_once(source, warm, work / f"warm-{name}-{strategy}", strategy, args.threads, args.timeout)
        runs: list[dict[str, Any]] = []
        turn = 0
        for frames in sorted(args.frames):
            video = write_video(work, frames, args.width, args.height, args.fps)
            for strategy in args.strategies:
                order = list(sources.items())
                if turn % 2:
                    order.reverse()
                turn += 1
                for name, source in order:
                    out = work / f"out-{name}-{strategy}-{frames}"
                    run = {"code": name, "strategy": strategy} | run_once(
                        source, video, out, strategy, args.threads, args.timeout
                    )
                    runs.append(run)
                    if not args.json:
                        print(_row(run), flush=True)
    summary = {
        f"{strategy} {name}": growth([r for r in runs if r["strategy"] == strategy and r["code"] == name])
        for strategy in args.strategies
        for name in sources
    }
    report = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "video": f"{args.width}x{args.height} @ {args.fps:g} fps, models smoke, OMP_NUM_THREADS={args.threads}",
        "sources": {name: str(path) for name, path in sources.items()},
        "runs": runs,
        "growth": summary,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    m = report["machine"]
    print(f"command : {report['command']}")
    print(f"machine : {m['cpu']} | {m['cpus_usable']} usable CPUs | python {m['python']}, torch {m['torch']}, "
          f"transformers {m['transformers']} | {m['date_utc']}")  # fmt: skip
    print(f"video   : {report['video']}")
    print(
        f"{'strategy':<9}{'code':<8}{'frames':>14}{'fps ratio':>11}{'RSS MiB/1000 fr':>17}{'anon MiB/1000 fr':>18}"
    )
    for key, g in summary.items():
        if g:
            strategy, name = key.split()
            span = f"{g['frames'][0]} -> {g['frames'][1]}"
            print(f"{strategy:<9}{name:<8}{span:>14}{g['fps_ratio']:>11.3f}"
                  f"{g['rss_mib_per_1000_frames']:>17.1f}{g['anon_mib_per_1000_frames']:>18.1f}")  # fmt: skip


def _row(run: dict[str, Any]) -> str:
    return (f"{run['strategy']:<9}{run['code']:<8}{run['frames']:>6} frames  propagation {run['propagation_s']:>8.2f} s "
            f"{run['frames_per_s']:>7.2f} frames/s  peak RSS {run['peak_rss_mib']:>7.1f} MiB (anon {run['peak_anon_mib']:>7.1f})"
            f"  wall {run['wall_s']:>7.1f} s  load {run['load_before']} -> {run['load_after']}")  # fmt: skip


if __name__ == "__main__":
    main()
