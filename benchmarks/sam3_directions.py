"""SAM 3 concept tracks forward only against both ways (the forward pass, then the reverse pass).

alref's ``Sam3ConceptTracker.track`` follows SAM 3's forward pass with a reverse pass on the same session
(transformers issue 46493: one direction only loses quality), from the latest frame on which a tracked
object was first detected down to frame 0, and merges the two (see ``alref/tools/sam3_tracks.py``). This
script measures what that gives and costs on the smoke model: the ``smoke`` profile's tiny random SAM 3,
resolved and loaded as ``alref segment --models smoke --strategy tracks`` does, over a synthetic video
(``tests/synth.py``'s moving red square and blue circle, plus a green square that enters from the right
at frame ``--enter``). Forward only and both ways run ``--repeats`` times each in one process, alternating
(which goes first alternates too), and it prints

- per track: its first frame and its frames with a mask, forward only and both ways (the model is
  deterministic: every repeat gives the same tracks, which the script checks);
- the medians of the wall time of ``track`` and of its model calls, and the ratio both / forward;
- the 1-minute load average before and after each timed run (a value near or above the core count
  means other work competed: the times are pessimistic; the ratio, from alternating runs, less so).

Random weights: the smoke model's detection scores hardly depend on the image and its masks are
meaningless, so the frame counts show the mechanism (objects SAM 3 first detected after frame 0 get
frames before it), not segmentation quality.

Usage (from the repository root)::

    python benchmarks/sam3_directions.py                 # 40 frames, 320x180, the square enters at 12
    python benchmarks/sam3_directions.py --frames 60 --enter 25 --repeats 5
    python benchmarks/sam3_directions.py --json
"""

from __future__ import annotations

import alref  # noqa: F401 - first: it sets torch's thread wait policy before torch loads (alref/threads.py)

# isort: split
import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
for extra in (REPO / "benchmarks", REPO / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

MODES = ("forward", "both")
GREEN = (40, 200, 60)


def entering_video(num: int, width: int, height: int, enter: int) -> list[np.ndarray]:
    """tests/synth.py's shapes, plus a green square that enters from the right edge at frame ``enter``
    and moves left."""
    import synth

    side = max(4, height // 4)
    speed = max(1.0, (width / 2) / max(1, num - enter))
    frames = []
    for i in range(num):
        frame = synth.shapes_frame(i, num, width, height)
        if i >= enter:
            x0 = width - round((i - enter + 1) * speed)
            y0 = (height - side) // 2
            frame[y0 : y0 + side, max(0, x0) : max(0, x0 + side)] = GREEN
        frames.append(frame)
    return frames


def load_tracker(cache_dir: Path | None, device: str) -> Any:
    """The concept tracker of ``--models smoke --strategy tracks`` (alref/pipeline/tracks.py)."""
    from alref.config import load_settings
    from alref.pipeline.tracks import resolve_tracker

    settings = load_settings(models="smoke", device=device, cache_dir=cache_dir)
    models = resolve_tracker(settings)
    return models.tool.load(models.source, models.device, precision=settings.precision), models


def run(tracker: Any, store: Any, size: tuple[int, int], concept: str, both_ways: bool) -> dict[str, Any]:
    import stages

    calls = [0]
    model = tracker.model
    detect = model._det_track_one_frame

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return detect(*args, **kwargs)

    model._det_track_one_frame = counted  # one per model call (frame) of either pass
    load_before = stages.load_avg()
    started = time.perf_counter()
    try:
        found = tracker.track(store, size[1], size[0], concept, both_ways=both_ways)
    finally:
        del model._det_track_one_frame
    seconds = time.perf_counter() - started
    tracks = {t["id"]: t["frames"] for t in found.tracks}
    return {"seconds": seconds, "model_calls": calls[0], "tracks": tracks, "load_before": load_before,
            "load_after": stages.load_avg()}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--enter", type=int, default=12, help="frame where the green square enters")
    parser.add_argument("--video-size", default="320x180")
    parser.add_argument("--concept", default="square")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: alref's)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="alref's cache (default: alref's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from alref.threads import use_threads

    use_threads(args.threads)
    import stages

    from alref.tools.segmentation import MemmapFrameStore

    width, height = (int(v) for v in args.video_size.split("x"))
    load_start = stages.load_avg()
    tracker, models = load_tracker(args.cache_dir, args.device)
    report: dict[str, Any] = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": stages.machine_info() | {"load_avg_1m_at_start": load_start},
        "settings": {k: getattr(args, k) for k in ("frames", "enter", "concept", "repeats", "device")}
        | {"video_size": args.video_size, "model": models.source.name, "smoke": models.smoke},
    }
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="alref-sam3-directions-") as tmp:
        store = MemmapFrameStore(Path(tmp) / "frames.u8", args.frames, tracker.image_size)
        for i, frame in enumerate(entering_video(args.frames, width, height, args.enter)):
            store[i] = tracker.prepare_frame(frame)
        tracker.track(store, height, width, args.concept, both_ways=False)  # untimed warm-up
        for repeat in range(args.repeats):
            order = MODES if repeat % 2 == 0 else MODES[::-1]
            for mode in order:
                runs[mode].append(run(tracker, store, (width, height), args.concept, mode == "both"))
            print(
                f"repeat {repeat + 1}/{args.repeats}: "
                + ", ".join(f"{m} {runs[m][-1]['seconds']:.2f} s" for m in order),
                file=sys.stderr,
            )
    for mode in MODES:
        if any(r["tracks"] != runs[mode][0]["tracks"] for r in runs[mode]):
            raise SystemExit(f"{mode}: the tracks differ between repeats")
    forward, both = runs["forward"][0]["tracks"], runs["both"][0]["tracks"]
    report["tracks"] = [
        {
            "id": track_id,
            "forward_first": forward[track_id][0] if track_id in forward else None,
            "forward_frames": len(forward.get(track_id, [])),
            "both_first": both[track_id][0] if track_id in both else None,
            "both_frames": len(both.get(track_id, [])),
        }
        for track_id in sorted(set(forward) | set(both))
    ]
    table: dict[str, dict[str, float]] = {}
    for key in ("seconds", "model_calls"):
        row = {mode: statistics.median(r[key] for r in runs[mode]) for mode in MODES}
        table[key] = row | {"ratio": row["both"] / row["forward"]}
    report["median"] = table
    report["load_avg_1m"] = {
        mode: [[r["load_before"], r["load_after"]] for r in runs[mode]] for mode in MODES
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    m = report["machine"]
    print(report["command"])
    print(
        f"machine: {m['cpu']}, {m['cpus_usable']} usable cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"transformers {m['transformers']}, {m['date_utc']}"
    )
    print(json.dumps(report["settings"]))
    print(f"{'track':>6}{'fwd first':>11}{'fwd frames':>12}{'both first':>12}{'both frames':>13}")
    for row in report["tracks"]:
        print(
            f"{row['id']:>6}{_cell(row['forward_first']):>11}{row['forward_frames']:>12}"
            f"{_cell(row['both_first']):>12}{row['both_frames']:>13}"
        )
    print(f"{'median':<14}{'forward':>10}{'both':>10}{'ratio':>8}   load avg 1m (before/after each run)")
    for key, row in table.items():
        loads = "  ".join(
            f"{mode}: " + " ".join(f"{b}/{a}" for b, a in report["load_avg_1m"][mode]) for mode in MODES
        )
        print(
            f"{key:<14}{row['forward']:>10.2f}{row['both']:>10.2f}{row['ratio']:>8.2f}"
            + (f"   {loads}" if key == "seconds" else "")
        )
    print(f"load average at start: {load_start}, after: {stages.load_avg()}")


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


if __name__ == "__main__":
    main()
