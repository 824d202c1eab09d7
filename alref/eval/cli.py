"""``alref eval``: run alref over a benchmark (``run``) and score predictions (``score``).

Registered by :mod:`alref.cli` as ``app.add_typer(eval_app, name="eval")``. Errors are
:class:`alref.errors.AlrefError` subclasses; ``alref``'s entry point prints them on one line and
exits 2 for a bad dataset or prediction layout.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from alref.config import OUTPUTS
from alref.eval.catalog import DATASET_NAMES, PROTOCOLS
from alref.options import (
    Given,
    RayAddress,
    RayCpus,
    RayFlag,
    RayWorkers,
    SettingsCommand,
    settings_options,
)
from alref.terminal import AlrefCommand, AlrefGroup

eval_app = typer.Typer(
    help="Benchmarks: run alref over Ref-DAVIS17, Ref-YouTube-VOS, MeViS, ReVOS or AVSBench, and score "
    "predictions exactly as the official tools do.",
    no_args_is_help=True,
    cls=AlrefGroup,
)
Protocol = Enum("Protocol", {name: name for name in PROTOCOLS}, type=str)  # type: ignore[misc]
out_console = Console(soft_wrap=True, emoji=False)
err_console = Console(stderr=True, soft_wrap=True, emoji=False)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.2f}"


def _table(title: str, scores: dict[str, Any], extra: dict[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in scores.items():
        table.add_row(key, _fmt(value))
    for key, value in extra.items():
        table.add_row(key, str(value))
    return table


@eval_app.command("score", cls=AlrefCommand)
def score_cmd(
    protocol: Annotated[Protocol, typer.Option("--protocol", help="scoring protocol")],  # type: ignore[valid-type]
    pred: Annotated[Path, typer.Option("--pred", help="predictions folder")],
    gt: Annotated[Path, typer.Option("--gt", help="ground-truth folder")],
    workers: Annotated[
        int | None, typer.Option(help="parallel threads", show_default="the CPUs, at most 8")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the result (with its detail) as JSON")
    ] = False,
) -> None:
    """Score existing predictions; nothing is run.

    davis: --gt holds Annotations_unsupervised/480p (ImageSets/2017/val.txt beside it picks the sequences); --pred is one annotator's folder of <video>/<frame>.png palette PNGs, or the parent of anno_0..anno_3 (the mean of the four runs is reported).

    mevis: --gt holds meta_expressions.json and mask_dict.json (valid_u); --pred holds <video>/<exp_id>/<frame>.png (or Annotations/).

    revos: --gt is the ReVOS folder (meta_expressions_valid_.json, mask_dict.json, mask_dict_foreground.json); --pred as for mevis. Reports referring, reasoning and overall J, F, J&F, and R.

    AVSBench (avsbench-s4, avsbench-ms3, avss, avss-v2-binary and the *-alref-sam2 variants): --gt is the dataset folder with its metadata CSV; --pred mirrors the ground truth's relative paths.
    """
    from alref.eval.score import headline, score

    name = protocol.value if isinstance(protocol, Enum) else str(protocol)
    result = score(name, pred, gt, workers=workers)
    if as_json:
        _print_json(result)
        return
    extra = {k: v for k, v in result.items() if k.startswith("num_")}
    if result.get("runs") and len(result["runs"]) > 1:
        for run, values in result["runs"].items():
            extra[f"{run} J&F"] = _fmt(values["J&F"])
    if result.get("missing_videos"):
        extra["videos without predictions (scored 0)"] = len(result["missing_videos"])
    out_console.print(_table(f"alref eval score · {name}", headline(result), extra))


@eval_app.command("run", cls=SettingsCommand)
@settings_options(exclude=("overlay",))
def run_cmd(
    dataset: Annotated[str, typer.Argument(metavar="DATASET", help=f"one of: {', '.join(DATASET_NAMES)}")],
    root: Annotated[Path, typer.Option("--root", help="the dataset folder")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder (rerun to resume)")],
    split: Annotated[
        str | None, typer.Option(help="dataset split", show_default="the dataset's usual one")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N videos")] = None,
    videos: Annotated[
        list[str] | None, typer.Option("--videos", help="only these videos (repeat, or comma-separated)")
    ] = None,
    overlay: Annotated[
        bool,
        typer.Option(
            "--overlay/--no-overlay", help="write each video's overlay.mp4", rich_help_panel=OUTPUTS.panel
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="redo every video")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    ray: RayFlag = False,
    ray_address: RayAddress = None,
    ray_cpus_per_worker: RayCpus = 1.0,
    ray_workers: RayWorkers = None,
    *,
    given: Given,
) -> None:
    """Run alref over a dataset (one SAM 2 session per video for all its expressions), write the
    predictions in the dataset's layout, and print and save the benchmark's table. Resumable."""
    from alref.config import load_settings
    from alref.eval.runner import read_results, run_eval

    settings = load_settings(**given, overlay=overlay)  # off unless --overlay, as the README says
    names = [n.strip() for value in videos or [] for n in value.split(",") if n.strip()] or None
    executor = None
    if ray or ray_address or ray_workers:
        from alref.pipeline.cluster import batch_executor

        executor = batch_executor(settings, ray=ray, address=ray_address, cpus_per_worker=ray_cpus_per_worker,
                                  workers=ray_workers, force=force)  # fmt: skip
    try:
        summary = run_eval(dataset, root, out, settings, split=split, limit=limit, videos=names, force=force,
                           console=err_console, executor=executor)  # fmt: skip
    except KeyboardInterrupt:
        finished = {r["video"] for r in read_results(Path(out) / "results.jsonl")}
        err_console.print(
            f"interrupted: {len(finished)} videos are done in {out}; rerun the same command to continue"
        )
        raise typer.Exit(130) from None
    finally:
        if executor is not None:
            executor.close()
    if as_json:
        _print_json(summary)
        return
    scores = summary["scores"] or {}
    extra = {"videos": summary["videos"], "expressions": summary["expressions"]}
    extra |= {"predictions": summary["predictions"], "per-expression results": summary["results"]}
    if summary.get("submission"):
        extra["submission"] = summary["submission"]
    title = f"alref eval run · {summary['dataset']} ({summary['split']})"
    if not scores:
        title += " · no public ground truth: submit the zip"
    out_console.print(_table(title, scores, extra))
    if summary.get("smoke"):
        out_console.print(
            "[yellow]smoke models: tiny random weights, the masks and scores are meaningless[/]"
        )


@eval_app.command("compare", cls=AlrefCommand)
def compare_cmd(
    runs: Annotated[
        list[Path], typer.Argument(help="finished `alref eval run --out` folders, e.g. one per strategy")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print the table as JSON")] = False,
) -> None:
    """The tables of several eval runs side by side: the same dataset with --strategy pivot and tracks."""
    from alref.eval.runner import compare_runs

    data = compare_runs(runs)
    if as_json:
        _print_json(data)
        return
    table = Table(title="alref eval compare")
    table.add_column("metric")
    for run in data["runs"]:
        table.add_column(
            escape(
                f"{Path(run['folder']).name} ({run['dataset']}, {run['strategy']}, "
                f"verify {'on' if run.get('verify') else 'off'})"
            ),
            justify="right",
        )
    for key, values in data["metrics"].items():
        table.add_row(key, *(_fmt(v) for v in values))
    out_console.print(table)
