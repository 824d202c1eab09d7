"""Time each stage of ``alref segment`` on the smoke profile over a synthetic video.

The script writes a video of moving shapes (``tests/synth.py``: a red square and a blue circle, with
a tone), then runs the real pipeline, ``alref.segment(video, "the red square", models="smoke",
force=True)``, several times and reads ``result.data["timings_s"]`` (load_models, decode, detection,
propagation, writing, total). The smoke profile's models are tiny and random, so the figures
measure alref's own work around the models (decoding, resizing into the frame store, the
detection and propagation loops, mask encoding, overlay writing), not the models' compute; for
that see ``benchmarks/real_size.py``.

By default each repeat runs in a fresh Python process, like one CLI call: ``load_models`` is a
cold load and the peak RSS is that run's own. ``--in-process`` repeats inside this process instead
(models stay loaded after the first run, so ``load_models`` drops to ~0). One untimed warm-up run
comes first; it also builds the smoke models if they are not in the alref cache yet.

``--compare`` runs every repeat twice, with ``--no-overlap`` (the serial path: each stage after the
previous one, "before") and with the default overlap (detection while decoding, mask PNGs written
on a thread while SAM 2 propagates, "after"), alternating which goes first, and reports for each
the ratio (total − load_models) / propagation: how long the run takes beyond the model loads, in
units of the propagation (1.0 = everything else hidden behind it).

``--llm-latency SECONDS`` runs the GPT-PS agent instead of the baseline, against a local
OpenAI-compatible server started by this script (``tests/llm_server.py``, answering each step with
``tests/agent_script.py``'s valid answers) that takes that long per answer, like a remote vision
model. With ``--compare`` this times the agent's reasoning while the video is still being decoded
and detected (after) against reasoning once both are done (before).

Usage (from the repository root, with alref installed)::

    python benchmarks/stages.py                    # 300 frames, 640x360, 25 fps, 3 repeats
    python benchmarks/stages.py --compare --repeats 3   # before / after the overlap, in one run
    python benchmarks/stages.py --frames 1000 --width 1280 --height 720 --repeats 5
    python benchmarks/stages.py --clip-frames 25 --samples 5 --json
    python benchmarks/stages.py --compare --llm-latency 0.5   # the agent, 0.5 s per LLM answer
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STAGES = ["load_models", "decode", "detection", "propagation", "writing", "total"]
REFERENCE = "the red square"


def _tests_module(name: str):
    """A helper module of the test suite (``tests/synth.py``, ``tests/llm_server.py``, …)."""
    import importlib

    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    return importlib.import_module(name)


def _synth():
    """``tests/synth.py`` (the test suite's media writers)."""
    return _tests_module("synth")


def llm_server(latency: float):
    """A started local OpenAI-compatible server whose every answer (a valid one for its step) takes
    ``latency`` seconds."""
    server_mod, script_mod = _tests_module("llm_server"), _tests_module("agent_script")
    script = script_mod.Script()
    return server_mod.ScriptedOpenAIServer(
        lambda body: server_mod.Reply(script(body["messages"]), delay=latency)
    ).start()


def machine_info() -> dict[str, Any]:
    import torch
    import transformers

    import alref

    cpu_model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "load_avg_1m": load_avg(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "alref": alref.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def load_avg() -> float | None:
    """1-minute load average: above the CPU count while measuring means something else competed."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(who).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def segment_settings(spec: dict[str, Any]) -> dict[str, Any]:
    """Keyword settings for ``alref.segment``; the LLM is switched off where the setting exists."""
    from alref.config import Settings

    settings: dict[str, Any] = {
        "models": "smoke",
        "device": spec["device"],
        "clip_frames": spec["clip_frames"],
        "samples": spec["samples"],
    }
    if spec.get("llm_base_url"):  # the GPT-PS agent, over the local scripted server
        settings |= {"llm": "scripted", "llm_base_url": spec["llm_base_url"], "llm_api_key": "unused",
                     "cache": False}  # fmt: skip
    elif "no_llm" in Settings.model_fields:  # the baseline pipeline only, even if an LLM is configured
        settings["no_llm"] = True
    if spec.get("overlap") is not None:
        settings["overlap"] = spec["overlap"]
    return settings


def run_once(spec: dict[str, Any]) -> dict[str, Any]:
    """One ``alref.segment`` run in this process; its timings and what it processed."""
    import alref

    out = Path(spec["out"])
    if out.exists():  # a fresh folder: force=True redoes the run, but work/ would still hold detections
        shutil.rmtree(out)
    started = time.perf_counter()
    result = alref.segment(spec["video"], REFERENCE, out=spec["out"], force=True, **segment_settings(spec))
    wall = time.perf_counter() - started
    data = result.data
    sampled = {f for clip in data.get("clips", []) for f in clip["samples"]}
    return {
        "timings_s": {k: float(v) for k, v in data["timings_s"].items()},
        "segment_wall_s": round(wall, 3),
        "num_frames": result.num_frames,
        "sampled_frames": len(sampled),
        "status": result.status,
        "smoke": result.smoke,
        "device": data.get("device"),
        "overlap": data.get("settings", {}).get("overlap"),
        "mode": data.get("mode"),
    }


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One run in a fresh Python process (``--child``): cold imports and model loads, own peak RSS."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"stages.py: a benchmark run failed (exit {proc.returncode}); its stderr is above")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    data["process_wall_s"] = round(wall, 3)
    return data


def child_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    data = run_once(spec)
    data["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(data))


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    found = [k for r in runs for k in r["timings_s"]]
    extra = [k for k in dict.fromkeys(found) if k not in STAGES]  # stages added to alref later
    names = [s for s in STAGES[:-1] if s in found] + extra + (["total"] if "total" in found else [])
    for stage in names:
        values = [r["timings_s"][stage] for r in runs if stage in r["timings_s"]]
        if values:
            table[stage] = {"median_s": statistics.median(values), "min_s": min(values)}
    for key in ("process_wall_s", "segment_wall_s"):
        values = [r[key] for r in runs if key in r]
        if values:
            table[key.removesuffix("_s")] = {"median_s": statistics.median(values), "min_s": min(values)}
    first = runs[0]
    rates = {}
    for stage, count, unit in (
        ("decode", first["num_frames"], "frames/s"),
        ("detection", first["sampled_frames"], "images/s"),
        ("propagation", first["num_frames"], "frames/s"),
        ("total", first["num_frames"], "frames/s"),
    ):
        if stage in table and table[stage]["median_s"] > 0:
            rates[stage] = {
                "median": round(count / table[stage]["median_s"], 1),
                "best": round(count / table[stage]["min_s"], 1),
                "unit": unit,
            }
    return {"stages": table, "rates": rates}


def overlap_ratio(timings: dict[str, float]) -> float | None:
    """(total − load_models) / propagation: 1.0 when everything but the model loads hides behind SAM 2."""
    if not timings.get("propagation"):
        return None
    return round((timings["total"] - timings.get("load_models", 0.0)) / timings["propagation"], 3)


def compare_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per mode (before = serial, after = overlapped): medians of the ratio, total − load, propagation."""
    out: dict[str, Any] = {}
    for mode, overlap in (("before", False), ("after", True)):
        mine = [r for r in runs if r["overlap"] is overlap]
        if not mine:
            continue
        out[mode] = {
            "overlap": overlap,
            "ratio": statistics.median(overlap_ratio(r["timings_s"]) for r in mine),
            "ratios": [overlap_ratio(r["timings_s"]) for r in mine],
            "beyond_load_s": round(
                statistics.median(
                    r["timings_s"]["total"] - r["timings_s"].get("load_models", 0) for r in mine
                ),
                3,
            ),
            "propagation_s": statistics.median(r["timings_s"]["propagation"] for r in mine),
            "summary": summarise(mine),
        }
    return out


def print_compare(compare: dict[str, Any]) -> None:
    print()
    print("overlap: before = --no-overlap (one stage after another), after = the default (overlapped)")
    before, after = compare.get("before"), compare.get("after")
    rows = [("total - load_models s", "beyond_load_s"), ("propagation s", "propagation_s"),
            ("ratio (median)", "ratio")]  # fmt: skip
    print(f"{'':<24}{'before':>10}{'after':>10}")
    for label, key in rows:
        print(f"{label:<24}{before[key]:>10.3f}{after[key]:>10.3f}")
    print(
        f"{'ratio per run':<24}{' '.join(map(str, before['ratios'])):>10}  |  {' '.join(map(str, after['ratios']))}"
    )
    for mode in ("before", "after"):
        stages = compare[mode]["summary"]["stages"]
        print(f"{mode:<7}: " + ", ".join(f"{k} {v['median_s']:.2f}" for k, v in stages.items()))


def print_report(report: dict[str, Any]) -> None:
    m, s, cfg = report["machine"], report["summary"], report["config"]
    print(f"command : {report['command']}")
    print(
        f"machine : {m['cpu']} | {m['cpus_usable']} usable CPUs (of {m['cpu_count']}) | "
        f"{m['memory_gib']} GiB | load avg {report['load_avg_1m_before']} before, {m['load_avg_1m']} after"
    )
    print(
        f"software: python {m['python']}, torch {m['torch']} ({m['torch_threads']} threads), "
        f"transformers {m['transformers']}, alref {m['alref']} | device {report['device']}"
    )
    print(
        f"input   : {cfg['frames']} frames {cfg['width']}x{cfg['height']} @ {cfg['fps']} fps, "
        f"clip {cfg['clip_frames']} frames, {cfg['samples']} samples/clip "
        f"-> {report['sampled_frames']} detected frames | {cfg['repeats']} repeats "
        f"({'one process' if cfg['in_process'] else 'fresh process each'}), {report['date_utc']}"
    )
    latency = cfg.get("llm_latency_s")
    llm = f", each LLM answer after {latency} s (local scripted server)" if latency is not None else ""
    print(f"mode    : {cfg.get('mode')}{llm}")
    print()
    print(f"{'stage':<14}{'median s':>10}{'min s':>10}   rate (median / best)")
    for stage, row in s["stages"].items():
        rate = s["rates"].get(stage)
        text = f"{rate['median']:>8} / {rate['best']:<8} {rate['unit']}" if rate else ""
        print(f"{stage:<14}{row['median_s']:>10.3f}{row['min_s']:>10.3f}   {text}")
    print()
    print(f"peak RSS: {report['peak_rss_mib']} MiB (largest run)")
    if report.get("warmup_runs"):
        print(f"warm-up run (not in the table): {json.dumps(report['warmup_runs'][0]['timings_s'])}")
    if report.get("compare"):
        print_compare(report["compare"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time each stage of `alref segment` (smoke profile) on a synthetic video.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--frames", type=int, default=300, help="frames in the synthetic video")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=float, default=25)
    p.add_argument("--clip-frames", type=int, default=50, help="alref --clip-frames")
    p.add_argument("--samples", type=int, default=5, help="alref --samples (frames detected per clip)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs")
    p.add_argument("--warmup-runs", type=int, default=1, help="untimed runs first (build smoke models)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    p.add_argument("--in-process", action="store_true", help="repeat inside this process (warm models)")
    p.add_argument(
        "--compare",
        action="store_true",
        help="each repeat with --no-overlap (before) and overlapped (after); report (total - load) / propagation",
    )
    p.add_argument("--no-overlap", action="store_true", help="time the serial path only (alref --no-overlap)")
    p.add_argument(
        "--llm-latency",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run the GPT-PS agent against a local scripted LLM server taking SECONDS per answer "
        "(default: the baseline, no LLM)",
    )
    p.add_argument("--workdir", type=Path, default=None, help="where the video and outputs go (temp dir)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON only")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.frames < 1 or args.width < 16 or args.height < 16 or args.repeats < 1 or args.warmup_runs < 0:
        p.error("need --frames >= 1, --width/--height >= 16, --repeats >= 1, --warmup-runs >= 0")
    if args.llm_latency is not None and args.llm_latency < 0:
        p.error("--llm-latency must be >= 0 seconds")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child_main(args.child)
        return
    command = shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["stages.py", *argv])
    load_before = load_avg()
    log = sys.stderr
    server = llm_server(args.llm_latency) if args.llm_latency is not None else None
    with tempfile.TemporaryDirectory(prefix="alref-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        video = work / "shapes.mp4"
        t = time.perf_counter()
        _synth().write_shapes_video(
            video, num_frames=args.frames, width=args.width, height=args.height, fps=args.fps
        )
        print(f"wrote {video.name}: {args.frames} frames in {time.perf_counter() - t:.1f} s", file=log)
        spec = {
            "video": str(video),
            "out": str(work / "out"),
            "device": args.device,
            "clip_frames": args.clip_frames,
            "samples": args.samples,
            "overlap": False if args.no_overlap else None,
            "llm_base_url": server.base_url if server is not None else None,
        }
        run = run_once if args.in_process else run_child
        warmups, runs = [], []
        for i in range(args.warmup_runs):
            warmups.append(run(spec))
            print(f"warm-up {i + 1}/{args.warmup_runs}: {warmups[-1]['timings_s']}", file=log)
        for i in range(args.repeats):
            # --compare: before and after in every repeat, alternating which goes first (drift cancels)
            order = ([False, True] if i % 2 == 0 else [True, False]) if args.compare else [spec["overlap"]]
            for overlap in order:
                runs.append(run(spec | {"overlap": overlap}))
                ratio = overlap_ratio(runs[-1]["timings_s"])
                print(f"run {i + 1}/{args.repeats} (overlap {runs[-1]['overlap']}, ratio {ratio}): "
                      f"{runs[-1]['timings_s']}", file=log)  # fmt: skip
    if server is not None:
        server.stop()
    if args.in_process:
        peak = peak_rss_mib()
    else:
        peak = max(r["peak_rss_mib"] for r in runs)
    machine = machine_info()
    report = {
        "command": command,
        "date_utc": machine["date_utc"],
        "machine": machine,
        "load_avg_1m_before": load_before,
        "device": runs[0]["device"],
        "config": {
            "frames": args.frames,
            "width": args.width,
            "height": args.height,
            "fps": args.fps,
            "clip_frames": args.clip_frames,
            "samples": args.samples,
            "repeats": args.repeats,
            "in_process": args.in_process,
            "compare": args.compare,
            "reference": REFERENCE,
            "models": "smoke",
            "llm_latency_s": args.llm_latency,
            "mode": runs[0]["mode"],
        },
        "sampled_frames": runs[0]["sampled_frames"],
        "summary": summarise(runs),
        "compare": compare_summary(runs) if args.compare else None,
        "peak_rss_mib": peak,
        "runs": runs,
        "warmup_runs": warmups,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
