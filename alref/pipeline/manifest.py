"""``alref segment --manifest FILE --out DIR``: many videos, each with its references, in one command.

The manifest is CSV (a header row) or JSONL (one object per line), with the columns / keys

- ``video`` (required): a video file or a folder of frames; a relative path is read from the
  manifest's own folder;
- ``reference``: one sentence; in JSONL also a list of sentences. Rows of the same video (and the
  same ``audio`` and ``out``) are merged, their references in order: one SAM 2 session per video,
  one object id per reference, as ``--ref`` does;
- ``audio`` (optional): a sound file (relative to the manifest's folder), or ``video`` for the video's
  own audio track; the references then come from the sound, and a ``reference`` given with it names
  the sounding object, as ``alref segment VIDEO --audio`` does;
- ``out`` (optional): the video's output folder under DIR (default: the video's file name without
  its extension; a second video of the same name gets ``-2``, ``-3``, …).

A row that cannot run (no such video, an empty reference, a bad line) is reported and skipped; the
others run. ``DIR/results.jsonl`` gets one line per finished video, and a rerun skips the videos
whose line and result are there for the same input and settings.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alref.config import Settings
from alref.errors import AlrefError, InputError
from alref.media.writers import atomic_write_json
from alref.pipeline.audio import VIDEO_TRACK
from alref.pipeline.batch import (
    Executor,
    Job,
    Outcome,
    append_records,
    outcome_record,
    read_records,
    run_batch,
)
from alref.pipeline.keys import digest, video_key

RESULTS_FILE = "results.jsonl"

COLUMNS = ("video", "reference", "audio", "out")
OWN_AUDIO = "video"  # the manifest's word for the video's own audio track


@dataclass(frozen=True)
class BadRow:
    line: int  # 1-based line of the manifest (a CSV header is line 1)
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def read_manifest(path: str | Path, out: str | Path) -> tuple[list[Job], list[BadRow]]:
    """The jobs of a manifest (in the order their videos first appear) and the rows it skipped.
    A file that is not a manifest at all (missing, no ``video`` column) is an InputError."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"--manifest {path}: no such file")
    text = path.read_text(encoding="utf-8-sig")
    rows = _jsonl_rows(text) if _is_jsonl(path, text) else _csv_rows(path, text)
    return _jobs(rows, path.parent.resolve(), Path(out).expanduser().resolve())


def _is_jsonl(path: Path, text: str) -> bool:
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return True
    if path.suffix.lower() == ".csv":
        return False
    return text.lstrip().startswith("{")


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any] | str]]:
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    if "video" not in header:
        raise InputError(
            f"--manifest {path}: the first row must name the columns, with at least `video` "
            f"(columns: {', '.join(COLUMNS)})"
        )
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise InputError(f"--manifest {path}: unknown column {unknown[0]!r} (columns: {', '.join(COLUMNS)})")
    rows: list[tuple[int, dict[str, Any] | str]] = []
    for record in reader:
        line = reader.line_num
        values = {k.strip(): v for k, v in record.items() if k is not None}
        if None in record:  # more cells than columns
            rows.append((line, f"{len(record[None]) + len(header)} cells for {len(header)} columns"))
            continue
        if all(not (v or "").strip() for v in values.values()):
            continue  # a blank line
        rows.append((line, values))
    return rows


def _jsonl_rows(text: str) -> list[tuple[int, dict[str, Any] | str]]:
    rows: list[tuple[int, dict[str, Any] | str]] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            rows.append((line, f"not JSON ({exc.msg})"))
            continue
        if not isinstance(value, dict):
            rows.append((line, f"expected an object with {', '.join(COLUMNS)}, got {type(value).__name__}"))
            continue
        unknown = [k for k in value if k not in COLUMNS]
        rows.append(
            (line, f"unknown key {unknown[0]!r} (keys: {', '.join(COLUMNS)})") if unknown else (line, value)
        )
    return rows


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _jobs(rows, base: Path, out: Path) -> tuple[list[Job], list[BadRow]]:
    bad: list[BadRow] = []
    groups: dict[tuple[str, str | None, str | None], dict[str, Any]] = {}
    for line, row in rows:
        if isinstance(row, str):
            bad.append(BadRow(line, row))
            continue
        parsed = _parse_row(row, base)
        if isinstance(parsed, str):
            bad.append(BadRow(line, parsed))
            continue
        video, references, audio, name = parsed
        group = groups.setdefault((video, audio, name), {"references": [], "rows": [], "line": line})
        if audio is not None and len(set(group["references"] + references)) > 1:
            bad.append(BadRow(line, "with audio give at most one text reference per video"))
            continue
        group["references"] += [r for r in references if r not in group["references"]]
        group["rows"].append(line)
    jobs: list[Job] = []
    taken: dict[str, str] = {}  # folder name -> the video it holds
    for (video, audio, name), group in groups.items():
        folder = name or _free_name(Path(video).stem if Path(video).is_file() else Path(video).name, taken)
        if taken.get(folder, video) != video:
            bad.append(BadRow(group["line"], f"out {folder!r} is already the folder of {taken[folder]}"))
            continue
        if folder in taken:  # the same video and folder with another audio: one folder, one result
            bad.append(BadRow(group["line"], f"out {folder!r} already holds a run of this video"))
            continue
        taken[folder] = video
        jobs.append(Job(name=folder, video=video, references=tuple(group["references"]),
                        run_dir=str(out / folder), audio=audio, rows=tuple(group["rows"])))  # fmt: skip
    return jobs, sorted(bad, key=lambda b: b.line)


def _parse_row(row: dict[str, Any], base: Path) -> tuple[str, list[str], str | None, str | None] | str:
    """(video, references, audio, out name) of a row, or why it cannot run."""
    raw_video = _text(row.get("video"))
    if raw_video is None:
        return "no video"
    video = (base / Path(raw_video).expanduser()).resolve()
    if not video.exists():
        return f"no such video: {raw_video}"
    reference = row.get("reference")
    if isinstance(reference, list):
        if not all(isinstance(r, str) for r in reference):
            return "reference must be a sentence or a list of sentences"
        references = [r.strip() for r in reference]
    elif reference is None or isinstance(reference, str):
        references = [reference.strip()] if isinstance(reference, str) else []
    else:
        return "reference must be a sentence or a list of sentences"
    raw_audio = _text(row.get("audio"))
    audio = None
    if raw_audio is not None:
        if raw_audio == OWN_AUDIO:
            audio = VIDEO_TRACK
        else:
            audio_path = (base / Path(raw_audio).expanduser()).resolve()
            if not audio_path.is_file():
                return f"no such audio file: {raw_audio}"
            audio = str(audio_path)
    if any(not r for r in references) or (audio is None and not references):
        return 'empty reference: give a sentence, e.g. "the dog on the left"'
    name = _text(row.get("out"))
    if name is not None and (Path(name).is_absolute() or ".." in Path(name).parts or name in (".",)):
        return f"out must be a folder name under --out, not {name!r}"
    return str(video), references, audio, name


def _free_name(stem: str, taken: dict[str, str]) -> str:
    if stem not in taken:
        return stem
    n = 2
    while f"{stem}-{n}" in taken:
        n += 1
    return f"{stem}-{n}"


class BatchIncomplete(AlrefError):
    """Some rows of a manifest were skipped or some videos failed; the others finished."""


def job_key(job: Job, settings: Settings) -> str:
    """What a finished video's record must match to be skipped on a rerun: its input and settings."""
    from alref.pipeline.audio import AudioRequest

    video = Path(job.video)
    audio = AudioRequest(job.audio, None).key(video) if job.audio is not None else None
    return digest({"video": video_key(video), "references": list(job.references), "audio": audio,
                   "settings": settings.identity_dict()})  # fmt: skip


def finished_records(out: Path, jobs: list[Job], keys: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The jobs already done in ``out``: the last record of each has the job's key (:func:`job_key`:
    the same input and settings), is finished, and its folder still holds its result."""
    last: dict[str, dict[str, Any]] = {}
    for record in read_records(out / RESULTS_FILE):
        last[record.get("name")] = record
    done = {}
    for job in jobs:
        record = last.get(job.name)
        if (record and record.get("key") == keys[job.name] and record.get("status") != "failed"
                and (Path(job.run_dir) / "result.json").is_file()):  # fmt: skip
            done[job.name] = record
    return done


def run_manifest(
    manifest: str | Path, out: str | Path, settings: Settings, executor: Executor, *, force: bool = False,
    console: Any = None,
) -> dict[str, Any]:  # fmt: skip
    """Run every job of ``manifest`` into ``out`` on ``executor``; returns the batch's summary (also
    ``out/summary.json``). Raises :class:`BatchIncomplete` at the end when rows were skipped or videos
    failed, after the others have finished."""
    from rich.console import Console

    console = console or Console(stderr=True, emoji=False)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    jobs, bad = read_manifest(manifest, out)
    for row in bad:
        console.print(f"manifest {row}; skipped", style="yellow", highlight=False, markup=False)
    if not jobs:
        raise InputError(f"--manifest {manifest}: no row can run ({len(bad)} skipped)")
    out.mkdir(parents=True, exist_ok=True)
    keys = {job.name: job_key(job, settings) for job in jobs}
    done = {} if force else finished_records(out, jobs, keys)
    todo = [job for job in jobs if job.name not in done]
    if done:
        console.print(f"skipping {len(done)} of {len(jobs)} videos already done in {out / RESULTS_FILE}",
                      highlight=False, markup=False)  # fmt: skip
    records = dict(done)

    def finished(outcome: Outcome) -> None:
        record = outcome_record(outcome) | {"key": keys[outcome.job.name]}
        append_records(out / RESULTS_FILE, [record])
        records[outcome.job.name] = record

    started = time.perf_counter()
    if todo:
        run_batch(todo, executor, finished, console=console, title=f"videos ({executor.name})")
    slots = getattr(executor, "gate_stats", None)
    rows = [records[job.name] for job in jobs if job.name in records]
    failed = [r for r in rows if r["status"] == "failed"]
    summary = {
        "manifest": str(Path(manifest).expanduser()),
        "out": str(out),
        "executor": executor.name,
        "videos": len(jobs),
        "ran": len(todo),
        "skipped_done": len(done),
        "failed": len(failed),
        "bad_rows": [{"line": b.line, "reason": b.reason} for b in bad],
        "elapsed_s": round(time.perf_counter() - started, 3),
        "results": str(out / RESULTS_FILE),
        "smoke": any(r.get("smoke") for r in rows),
        "llm_slots": slots() if slots is not None and todo else None,  # Ray: the cluster's LLM calls at once
        "records": rows,
    }
    atomic_write_json(out / "summary.json", summary)
    return summary


def incomplete_error(summary: dict[str, Any]) -> BatchIncomplete | None:
    """The one-line error for a batch that left rows or videos out, or None."""
    bad, failed = len(summary["bad_rows"]), summary["failed"]
    if not bad and not failed:
        return None
    parts = []
    if bad:
        parts.append(f"{bad} manifest row{'s' if bad != 1 else ''} skipped")
    if failed:
        parts.append(f"{failed} of {summary['videos']} videos failed")
    text = f"{' and '.join(parts)}; the other videos are in {summary['out']} (see {summary['results']})"
    # a model that is missing or does not load fails every video alike: exit 3, as a single run does, with
    # its message (what to pull or pass), not only the count
    model = next((r for r in summary["records"] if r["status"] == "failed" and r.get("exit_code") == 3), None)
    if model is None:
        return BatchIncomplete(text)
    error = BatchIncomplete(f"{model['error']} ({text})")
    error.exit_code = 3
    return error
