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
from rich.table import Table

from alref.eval.catalog import DATASET_NAMES, PROTOCOLS

eval_app = typer.Typer(
    help="Benchmarks: run alref over Ref-DAVIS17, Ref-YouTube-VOS, MeViS or AVSBench, and score "
    "predictions exactly as the official tools do.",
    no_args_is_help=True,
)
Protocol = Enum("Protocol", {name: name for name in PROTOCOLS}, type=str)  # type: ignore[misc]
out_console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
MODELS = "Models and method (as alref segment)"


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


@eval_app.command("score")
def score_cmd(
    protocol: Annotated[Protocol, typer.Option("--protocol", help="scoring protocol")],  # type: ignore[valid-type]
    pred: Annotated[Path, typer.Option("--pred", help="predictions folder")],
    gt: Annotated[Path, typer.Option("--gt", help="ground-truth folder")],
    workers: Annotated[int | None, typer.Option(help="parallel threads [default: CPUs, at most 8]")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the result (with its detail) as JSON")
    ] = False,
) -> None:
    """Score existing predictions; nothing is run.

    davis: --gt holds Annotations_unsupervised/480p (ImageSets/2017/val.txt beside it picks the sequences); --pred is one annotator's folder of <video>/<frame>.png palette PNGs, or the parent of anno_0..anno_3 (the mean of the four runs is reported).

    mevis: --gt holds meta_expressions.json and mask_dict.json (valid_u); --pred holds <video>/<exp_id>/<frame>.png (or Annotations/).

    AVSBench (avsbench-s4, avsbench-ms3, avss, avss-v2-binary and the *-alref-sam2 variants): --gt is the dataset folder with its metadata CSV; --pred mirrors the ground truth's relative paths.
    """
    from alref.eval.score import score

    name = protocol.value if isinstance(protocol, Enum) else str(protocol)
    result = score(name, pred, gt, workers=workers)
    if as_json:
        _print_json(result)
        return
    keys = ("M_J", "M_F") if "M_J" in result else ("J", "F", "J&F")
    extra = {k: v for k, v in result.items() if k.startswith("num_")}
    if result.get("runs") and len(result["runs"]) > 1:
        for run, values in result["runs"].items():
            extra[f"{run} J&F"] = _fmt(values["J&F"])
    if result.get("missing_videos"):
        extra["videos without predictions (scored 0)"] = len(result["missing_videos"])
    out_console.print(_table(f"alref eval score · {name}", {k: result[k] for k in keys}, extra))


@eval_app.command("run")
def run_cmd(
    dataset: Annotated[str, typer.Argument(metavar="DATASET", help=f"one of: {', '.join(DATASET_NAMES)}")],
    root: Annotated[Path, typer.Option("--root", help="the dataset folder")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder (rerun to resume)")],
    split: Annotated[str | None, typer.Option(help="dataset split [default: the usual one]")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N videos")] = None,
    videos: Annotated[
        list[str] | None, typer.Option("--videos", help="only these videos (repeat, or comma-separated)")
    ] = None,
    models: Annotated[str | None, typer.Option(help="default, fast or smoke", rich_help_panel=MODELS)] = None,
    grounding_model: Annotated[str | None, typer.Option(rich_help_panel=MODELS)] = None,
    segmentation_model: Annotated[str | None, typer.Option(rich_help_panel=MODELS)] = None,
    device: Annotated[str | None, typer.Option(help="auto, cuda, mps, cpu", rich_help_panel=MODELS)] = None,
    precision: Annotated[str | None, typer.Option(rich_help_panel=MODELS)] = None,
    clip_frames: Annotated[int | None, typer.Option(rich_help_panel=MODELS)] = None,
    samples: Annotated[int | None, typer.Option(rich_help_panel=MODELS)] = None,
    box_threshold: Annotated[float | None, typer.Option(rich_help_panel=MODELS)] = None,
    text_threshold: Annotated[float | None, typer.Option(rich_help_panel=MODELS)] = None,
    llm: Annotated[
        str | None, typer.Option("--llm", help="vision LLM (agent)", rich_help_panel=MODELS)
    ] = None,
    llm_base_url: Annotated[str | None, typer.Option(rich_help_panel=MODELS)] = None,
    no_llm: Annotated[bool | None, typer.Option("--no-llm", rich_help_panel=MODELS)] = None,
    offline: Annotated[bool | None, typer.Option("--offline", rich_help_panel=MODELS)] = None,
    overlay: Annotated[
        bool, typer.Option("--overlay/--no-overlay", help="write each video's overlay.mp4")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="redo every video")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Run alref over a dataset (one SAM 2 session per video for all its expressions), write the
    predictions in the dataset's layout, and print and save the benchmark's table. Resumable."""
    from alref.config import load_settings
    from alref.eval.runner import read_results, run_eval

    settings = load_settings(
        models=models, grounding_model=grounding_model, segmentation_model=segmentation_model, device=device,
        precision=precision, clip_frames=clip_frames, samples=samples, box_threshold=box_threshold,
        text_threshold=text_threshold, llm=llm, llm_base_url=llm_base_url, no_llm=no_llm, offline=offline,
        overlay=overlay,
    )  # fmt: skip
    names = [n.strip() for value in videos or [] for n in value.split(",") if n.strip()] or None
    try:
        summary = run_eval(
            dataset,
            root,
            out,
            settings,
            split=split,
            limit=limit,
            videos=names,
            force=force,
            console=err_console,
        )
    except KeyboardInterrupt:
        finished = {r["video"] for r in read_results(Path(out) / "results.jsonl")}
        err_console.print(
            f"interrupted: {len(finished)} videos are done in {out}; rerun the same command to continue"
        )
        raise typer.Exit(130) from None
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
