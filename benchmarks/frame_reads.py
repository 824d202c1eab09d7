"""How long the tracks strategy's set-of-marks frames take to read: one decoding pass per frame (as
``VideoTracks.frame`` read them before) against one pass for the round (``VideoTracks.frames``).

A video file decodes from its start for every read (alref never seeks: its frame numbers are decode
order, exact for variable frame rates), so a round of ``--count`` frames spread over the video cost
``--count`` passes, most of them long. The script writes a synthetic video (``tests/synth.py``), then
alternates the two ways ``--repeats`` times in one process and prints each time, the ratio and the load
average beside it.

Usage (from the repository root)::

    python benchmarks/frame_reads.py                         # 1500 frames, 640x360, 6 frames a round
    python benchmarks/frame_reads.py --frames 3000 --count 6 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=1500)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--count", type=int, default=6, help="frames in a round (--track-frames)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests"))
    import synth

    from alref.media.video import open_video

    with tempfile.TemporaryDirectory() as tmp:
        path = synth.write_shapes_video(Path(tmp) / "v.mp4", num_frames=args.frames, width=args.width,
                                        height=args.height, fps=25, audio=False)  # fmt: skip
        video = open_video(path)
        step = args.frames / args.count
        frames = [int(step * (i + 0.5)) for i in range(args.count)]
        print(f"{args.frames} frames {args.width}x{args.height}, a round of frames {frames}")
        times: dict[str, list[float]] = {"one pass per frame": [], "one pass per round": []}
        for repeat in range(args.repeats):
            order = list(times) if repeat % 2 == 0 else list(reversed(times))  # alternate who goes first
            for way in order:
                load = os.getloadavg()[0]
                t = time.perf_counter()
                if way == "one pass per frame":
                    got = {f: video.read_frame(f) for f in frames}
                else:
                    got = video.read_frames(frames)
                times[way].append(time.perf_counter() - t)
                assert len(got) == len(frames)
                print(f"  {way:<20} {times[way][-1]:7.2f} s   (load average {load:.2f})")
        per_frame, per_round = (statistics.median(v) for v in times.values())
        print(f"median: one pass per frame {per_frame:.2f} s, one pass per round {per_round:.2f} s, "
              f"ratio {per_frame / per_round:.1f}x (load average {os.getloadavg()[0]:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
