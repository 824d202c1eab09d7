"""What following the canonical transformers SAM 2 session costs alref, against its earlier session.

alref's ``SegmentationSession`` now computes what transformers' canonical session API computes (see
``alref/tools/segmentation.py``). Against the earlier implementation that costs:

- memory: the outputs each prompt call leaves for the *other* objects on its frame ("co-tracked"
  outputs; the earlier session dropped them) are kept as the prompts' state, so that every propagation
  starts from it; while a propagation runs, its own outputs for those frames exist next to them;
- time: the reverse pass starts at the start frame (the earlier one at start - 1), so the start frame
  is computed twice (once per pass) for every object that has no prompt there; and a prompt call
  after a propagation restores the prompts' state instead of clearing it (dict work only);
- frame preparation: the antialiased float32 bilinear resize of ``Sam2VideoProcessor`` (torch)
  instead of PIL's uint8 bilinear.

This script runs both sessions on the same model, frames and prompts in one process, alternating
them ``--repeats`` times, and prints the medians and the ratio canonical / earlier:

- ``prompt_s``: all the box prompts; ``propagate_s``: one propagation from the start frame (every
  frame once); ``model_calls``: frames the model ran in the propagation;
- ``state_mib_after_prompts`` / ``state_mib_peak``: the bytes of the distinct tensors the session
  holds (tracked outputs, the prompts' state), after the prompts and at most during the propagation
  (measured in a separate, untimed pass);
- ``prepare_ms``: one frame of ``--video-size`` resized to the model's side and to 1024 px (the
  real SAM 2 input), PIL (earlier) and ``resize_frame`` (now), median of ``--resize-frames`` frames.

The earlier session is reproduced as a subclass with the earlier behaviour (every tracked output
dropped before each prompt and propagation; reverse pass from start - 1).

Usage (from the repository root)::

    python benchmarks/sam2_session.py                        # tiny model, 60 frames, 3 objects x 4 prompts
    python benchmarks/sam2_session.py --frames 200 --objects 5 --prompts 6 --repeats 5
    python benchmarks/sam2_session.py --model large --device cuda --frames 60   # SAM 2.1 hiera-large, random
    python benchmarks/sam2_session.py --json
"""

from __future__ import annotations

import argparse
import gc
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
for extra in (REPO / "benchmarks", REPO / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from alref.tools.loading import ModelSource  # noqa: E402
from alref.tools.segmentation import (  # noqa: E402
    MemmapFrameStore,
    Sam2VideoSegmenter,
    SegmentationSession,
    build_tiny,
    resize_frame,
)


class EarlierSession(SegmentationSession):
    """alref's session before it followed the canonical semantics: each prompt call and each propagation
    first dropped every tracked output (co-tracked ones included), and the reverse pass began at start - 1."""

    def _save_prompt_state(self) -> None:
        self._prompted = {}

    def _restore_prompt_state(self) -> None:
        for obj_idx, outputs in self.state.output_dict_per_obj.items():
            outputs["non_cond_frame_outputs"].clear()
            self.state.frames_tracked_per_obj[obj_idx].clear()
        self.state.obj_with_new_inputs = []

    def _schedule(self, start: int) -> list[tuple[int, bool, bool]]:
        forward = [(i, False, True) for i in range(start, self.num_frames)]
        return forward + [(i, True, True) for i in range(start - 1, -1, -1)]


def pil_resize(frame: np.ndarray, side: int) -> np.ndarray:
    """The earlier ``prepare_frame``."""
    from PIL import Image

    return np.array(Image.fromarray(frame).resize((side, side), Image.Resampling.BILINEAR))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def state_bytes(session: SegmentationSession) -> int:
    """Bytes of the distinct tensor storages the session's outputs and prompts' state hold."""
    storages: dict[int, int] = {}

    def add(outputs: dict[int, dict[str, Any]]) -> None:
        for out in outputs.values():
            for value in out.values():
                if isinstance(value, torch.Tensor):
                    storage = value.untyped_storage()
                    storages[storage.data_ptr()] = storage.nbytes()

    for outputs in session.state.output_dict_per_obj.values():
        add(outputs["cond_frame_outputs"])
        add(outputs["non_cond_frame_outputs"])
    for kept, _ in session._prompted.values():
        add(kept)
    return sum(storages.values())


def prompts_for(num_frames: int, objects: int, per_object: int, width: int, height: int) -> list[tuple]:
    """Boxes spread over the video, each object on its own frames (as the pipeline's clip pivots),
    in the order the pipeline adds them: object by object."""
    prompts = []
    for obj in range(objects):
        for j in range(per_object):
            frame = min(num_frames - 1, (j * num_frames) // per_object + 2 * obj)
            x = (0.1 + 0.25 * (obj % 3)) * width
            y = (0.2 + 0.2 * (obj // 3 % 3)) * height
            prompts.append((frame, obj + 1, (x, y, x + 0.2 * width, y + 0.3 * height)))
    return prompts


def build_model(kind: str, folder: Path) -> ModelSource:
    if kind == "tiny":
        build_tiny(folder)
        return ModelSource("smoke:sam2-video", "segmentation", folder, "smoke-v1")
    import real_size

    real_size.write_sam2(folder)
    return ModelSource("random:sam2.1-hiera-large", "segmentation", folder, "random")


def run_session(
    cls: type[SegmentationSession],
    segmenter: Sam2VideoSegmenter,
    store: MemmapFrameStore,
    size: tuple[int, int],
    prompts: list[tuple],
    start: int,
    measure_memory: bool,
) -> dict[str, Any]:
    width, height = size
    device = segmenter.device
    session = cls(segmenter, store, height, width)
    calls = [0]
    run = session._run

    def counting_run(frame_idx: int, reverse: bool) -> Any:
        calls[0] += 1
        return run(frame_idx, reverse)

    session._run = counting_run  # type: ignore[method-assign]
    sync(device)
    t = time.perf_counter()
    for frame, obj, box in prompts:
        session.add_box(frame, obj, box)
    sync(device)
    prompt_s = time.perf_counter() - t
    after_prompts = state_bytes(session)
    calls[0] = 0
    peak = after_prompts
    t = time.perf_counter()
    given = 0
    for _frame, _masks in session.propagate(start):
        given += 1
        if measure_memory:
            peak = max(peak, state_bytes(session))
    sync(device)
    propagate_s = time.perf_counter() - t
    if given != store.__len__():
        raise SystemExit(f"{cls.__name__} gave {given} frames for {len(store)}")
    result = {
        "prompt_s": prompt_s,
        "propagate_s": propagate_s,
        "model_calls": calls[0],
        "state_mib_after_prompts": after_prompts / 2**20,
        "state_mib_peak": peak / 2**20,
    }
    del session
    gc.collect()
    return result


def bench_resize(size: tuple[int, int], sides: list[int], frames: int) -> dict[str, dict[str, float]]:
    import synth

    width, height = size
    video = [synth.shapes_frame(i, frames, width, height) for i in range(frames)]
    out: dict[str, dict[str, float]] = {}
    for side in sides:
        row = {}
        for name, fn in (("earlier_pil", pil_resize), ("canonical_torch", resize_frame)):
            fn(video[0], side)  # warm-up
            times = []
            for frame in video:
                t = time.perf_counter()
                fn(frame, side)
                times.append(time.perf_counter() - t)
            row[name] = statistics.median(times) * 1000
        row["ratio"] = row["canonical_torch"] / row["earlier_pil"]
        out[f"{width}x{height}->{side}"] = row
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["tiny", "large"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=4, help="box prompts per object")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--video-size", default="640x360")
    parser.add_argument("--resize-frames", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import stages
    import synth

    width, height = (int(v) for v in args.video_size.split("x"))
    report: dict[str, Any] = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": stages.machine_info(),
        "settings": {
            k: getattr(args, k) for k in ("model", "device", "frames", "objects", "prompts", "repeats")
        }
        | {"video_size": args.video_size},
    }
    with tempfile.TemporaryDirectory(prefix="alref-sam2-session-") as tmp:
        work = Path(tmp)
        source = build_model(args.model, work / "model")
        segmenter = Sam2VideoSegmenter.load(source, args.device)
        store = MemmapFrameStore(work / "frames.u8", args.frames, segmenter.image_size)
        for i in range(args.frames):
            store[i] = segmenter.prepare_frame(synth.shapes_frame(i, args.frames, width, height))
        prompts = prompts_for(args.frames, args.objects, args.prompts, width, height)
        start = sorted({f for f, obj, _ in prompts if obj == 1})[len(prompts) // args.objects // 2]
        report["settings"] |= {"start_frame": start, "prompt_frames": sorted({f for f, _, _ in prompts})}
        variants = {"earlier": EarlierSession, "canonical": SegmentationSession}
        size = (width, height)
        memory = {
            name: run_session(cls, segmenter, store, size, prompts, start, True)
            for name, cls in variants.items()
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for repeat in range(args.repeats):
            for name, cls in variants.items():
                runs[name].append(run_session(cls, segmenter, store, size, prompts, start, False))
            log(
                f"repeat {repeat + 1}/{args.repeats}: "
                + ", ".join(f"{n} {runs[n][-1]['propagate_s']:.2f} s" for n in variants)
            )
        table: dict[str, dict[str, float]] = {}
        for key in ("prompt_s", "propagate_s", "model_calls"):
            row = {name: statistics.median(r[key] for r in runs[name]) for name in variants}
            table[key] = row | {"ratio": row["canonical"] / row["earlier"]}
        for key in ("state_mib_after_prompts", "state_mib_peak"):
            row = {name: memory[name][key] for name in variants}
            table[key] = row | {
                "ratio": row["canonical"] / row["earlier"] if row["earlier"] else float("nan")
            }
        report["session"] = table
        report["prepare_ms"] = bench_resize(size, sorted({segmenter.image_size, 1024}), args.resize_frames)
        report["load_avg_1m_after"] = stages.load_avg()
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(report["command"])
    print(json.dumps(report["machine"]))
    print(json.dumps(report["settings"]))
    print(f"{'session':<26}{'earlier':>12}{'canonical':>12}{'ratio':>8}")
    for key, row in report["session"].items():
        print(f"{key:<26}{row['earlier']:>12.3f}{row['canonical']:>12.3f}{row['ratio']:>8.3f}")
    print(f"{'prepare_ms (1 frame)':<26}{'PIL':>12}{'torch':>12}{'ratio':>8}")
    for key, row in report["prepare_ms"].items():
        print(f"{key:<26}{row['earlier_pil']:>12.2f}{row['canonical_torch']:>12.2f}{row['ratio']:>8.2f}")
    print(f"load average after: {report['load_avg_1m_after']}")


if __name__ == "__main__":
    main()
