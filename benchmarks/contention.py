"""How much a busy CPU slows `alref segment`: torch's default threads against alref's.

The script writes a synthetic video (``tests/synth.py``: 60 frames at 640x360 by default) and runs the
command a user runs, ``alref segment VIDEO "the red square" --models smoke --no-llm`` (overlay.mp4 is
written on a thread while SAM 2 propagates, as in every default run; ``--no-overlay`` passes that flag
on, so that nothing of alref's runs beside SAM 2), each time in a fresh process and a fresh output
folder, reading the propagation time from its result.json (``timings_s.propagation``). Every repeat
runs each configuration twice, alone and beside a CPU load of ``--load-cores`` cores (default one:
busy-loop processes the script starts before the run and stops after it; they also stop themselves
after ``--load-limit`` seconds), alternating the order of the configurations and of alone / busy, so
that drift of the machine cancels. Configurations:

- ``default``: torch as it comes: ``ALREF_TORCH_DEFAULTS=1`` (alref sets nothing), ``OMP_WAIT_POLICY``,
  ``OMP_NUM_THREADS`` and ``ALREF_THREADS`` unset;
- ``alref``: what alref chooses (alref/threads.py), the same variables unset;
- ``--config NAME:VAR=VALUE,VAR=VALUE`` adds one (on top of ``default``'s environment), e.g.
  ``--config one-thread:ALREF_THREADS=1``.

It reports, per configuration, the median propagation time alone and busy, their ratio (busy / alone,
the slowdown), the ratio of its alone time to ``default``'s, and the 1-minute load average measured
after each run beside every figure (about 1 alone and 2 busy on a quiet machine: more means other work
competed). Goals: busy / alone <= 2.0 with alref's settings, and alref alone no more than 5 % slower
than default alone.

Usage (from the repository root, with alref installed)::

    python benchmarks/contention.py                       # 60 frames, 3 repeats
    python benchmarks/contention.py --repeats 5 --json
    python benchmarks/contention.py --config passive:OMP_WAIT_POLICY=PASSIVE --config one:ALREF_THREADS=1
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
REFERENCE = "the red square"
CLEARED = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "ALREF_THREADS", "ALREF_TORCH_DEFAULTS", "GOMP_SPINCOUNT",
           "MKL_NUM_THREADS")  # fmt: skip
BUILTIN = {"default": {"ALREF_TORCH_DEFAULTS": "1"}, "alref": {}}
ALREF = "import sys; from alref.cli import main; sys.argv[0] = 'alref'; main()"


def _synth():
    sys.path.insert(0, str(REPO / "tests"))
    import synth

    return synth


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Load:
    """A bounded CPU load of ``cores`` busy-loop processes, stopped on exit (or by themselves after
    ``limit`` s)."""

    def __init__(self, limit: float, cores: int = 1) -> None:
        code = f"import time\nend = time.monotonic() + {limit}\nwhile time.monotonic() < end:\n    pass\n"
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(cores)]
        time.sleep(0.5)  # running before the run starts

    def __enter__(self) -> Load:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


def environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return env | extra


def run_segment(
    video: Path, out: Path, env: dict[str, str], timeout: float, overlay: bool = False
) -> dict[str, Any]:
    """One `alref segment` in a fresh process; its timings from result.json."""
    cmd = [sys.executable, "-c", ALREF, "segment", str(video), REFERENCE, "--models", "smoke",
           *(() if overlay else ("--no-overlay",)), "--no-llm", "--force", "--out", str(out)]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"contention.py: alref segment failed (exit {proc.returncode}); its stderr is above")
    timings = json.loads((out / "result.json").read_text())["timings_s"]
    return {"propagation_s": timings["propagation"], "total_s": timings["total"], "wall_s": round(wall, 3)}


def parse_config(text: str) -> tuple[str, dict[str, str]]:
    name, _, assignments = text.partition(":")
    env = {}
    for item in filter(None, assignments.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--config {text}: expected NAME:VAR=VALUE[,VAR=VALUE]")
        env[key] = value
    if not name or name in BUILTIN:
        raise argparse.ArgumentTypeError(f"--config {text}: give a new name before the colon")
    return name, BUILTIN["default"] | env


def summarise(runs: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for name in names:
        row: dict[str, Any] = {}
        for cond in ("alone", "busy"):
            mine = [r for r in runs if r["config"] == name and r["condition"] == cond]
            row[cond] = {
                "propagation_s": round(statistics.median(r["propagation_s"] for r in mine), 3),
                "runs_s": [r["propagation_s"] for r in mine],
                "load_avg": [r["load_avg"] for r in mine],
            }
        row["busy_over_alone"] = round(row["busy"]["propagation_s"] / row["alone"]["propagation_s"], 2)
        table[name] = row
    base = table["default"]["alone"]["propagation_s"]
    for row in table.values():
        row["alone_over_default"] = round(row["alone"]["propagation_s"] / base, 3)
    return table


def print_table(report: dict[str, Any]) -> None:
    print(f"command : {report['command']}")
    print(f"machine : {report['cpus_usable']} usable CPUs, load avg {report['load_avg_before']} before, "
          f"{report['load_avg_after']} after | {report['date']}")  # fmt: skip
    print(f"input   : {report['frames']} frames {report['width']}x{report['height']}, "
          f"{report['repeats']} repeats, {'with' if report['overlay'] else 'no'} overlay, busy = beside "
          f"{report['load_cores']} busy core(s), a fresh process "
          "per run | propagation seconds, median "
          "(load average after each run)")  # fmt: skip
    print()
    print(f"{'config':<12}{'alone s':>9}  {'(load)':<18}{'busy s':>9}  {'(load)':<18}{'busy/alone':>11}"
          f"{'alone/default':>15}")  # fmt: skip
    for name, row in report["table"].items():
        alone, busy = row["alone"], row["busy"]
        loads = [", ".join(f"{x:.2f}" for x in r["load_avg"]) for r in (alone, busy)]
        print(f"{name:<12}{alone['propagation_s']:>9.2f}  {'(' + loads[0] + ')':<18}{busy['propagation_s']:>9.2f}"
              f"  {'(' + loads[1] + ')':<18}{row['busy_over_alone']:>11.2f}{row['alone_over_default']:>15.3f}")  # fmt: skip
    alref = report["table"]["alref"]
    print()
    print(f"goal busy/alone <= 2.0 with alref's settings: {alref['busy_over_alone']:.2f} "
          f"({'met' if alref['busy_over_alone'] <= 2.0 else 'NOT met'}); alref alone within 5 % of default: "
          f"{alref['alone_over_default']:.3f} ({'met' if alref['alone_over_default'] <= 1.05 else 'NOT met'})")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per configuration and condition")
    p.add_argument("--config", type=parse_config, action="append", default=[], metavar="NAME:VAR=VALUE,...",
                   help="another configuration: environment variables on top of default's")  # fmt: skip
    p.add_argument(
        "--load-cores",
        type=int,
        default=1,
        help="busy-loop processes beside a busy run (default 1: one core)",
    )
    p.add_argument(
        "--no-overlay",
        dest="overlay",
        action="store_false",
        help="run with --no-overlay: no overlay.mp4 writer thread beside SAM 2 (default: as a "
        "plain `alref segment` does, overlay written)",
    )
    p.add_argument("--load-limit", type=float, default=600, help="seconds after which the load stops itself")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = p.parse_args(argv)
    configs = dict(BUILTIN) | dict(args.config)
    names = list(configs)
    command = shlex.join(["python", "benchmarks/contention.py", *(sys.argv[1:] if argv is None else argv)])
    log = sys.stderr
    load_before = load_avg()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="alref-contention-", dir=args.workdir) as tmp:
        work = Path(tmp)
        video = _synth().write_shapes_video(work / "shapes.mp4", num_frames=args.frames, width=args.width,
                                            height=args.height, fps=25)  # fmt: skip
        run_segment(
            video, work / "warmup", environment(configs["alref"]), args.load_limit
        )  # smoke models built
        for i in range(args.repeats):
            order = names if i % 2 == 0 else names[::-1]
            conditions = ("alone", "busy") if i % 2 == 0 else ("busy", "alone")
            for name in order:
                for cond in conditions:
                    env = environment(configs[name])
                    if cond == "busy":
                        with Load(args.load_limit, args.load_cores):
                            timing = run_segment(video, work / "out", env, args.load_limit, args.overlay)
                    else:
                        timing = run_segment(video, work / "out", env, args.load_limit, args.overlay)
                    runs.append(
                        {"config": name, "condition": cond, "repeat": i + 1, "load_avg": load_avg()} | timing
                    )
                    print(f"repeat {i + 1}/{args.repeats} {name:<10} {cond:<5} propagation "
                          f"{timing['propagation_s']:6.2f} s (total {timing['total_s']:.2f} s) "
                          f"load avg {runs[-1]['load_avg']:.2f}", file=log)  # fmt: skip
    report = {
        "command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus_usable": usable_cpus(), "load_avg_before": load_before, "load_avg_after": load_avg(),
        "frames": args.frames, "width": args.width, "height": args.height, "repeats": args.repeats,
        "load_cores": args.load_cores, "overlay": args.overlay,
        "configs": configs, "table": summarise(runs, names), "runs": runs,
    }  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
