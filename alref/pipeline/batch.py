"""Many videos in one command: the batch runner behind ``alref segment --manifest`` and ``alref eval run``.

A batch is a list of :class:`Job` (one video, its references, its own output folder). An executor runs
them: :class:`LocalExecutor` in this process, one after the other, with the models loaded once for the
whole batch (``alref.tools.loading.load_once``) and the next video's frames decoded while the current
one runs; :class:`alref.pipeline.cluster.RayExecutor` on the long-lived workers of a Ray cluster. Either
way each finished video comes back to the driver as an :class:`Outcome`, in the order they finish, and
only the driver writes the batch's own records (``results.jsonl``), so nothing is written twice.

Each video is an ordinary ``segment_video`` run into its folder, with its atomic writes and
result.json last: a video interrupted anywhere (a killed worker) is simply run again, and it resumes
from what its folder holds.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from alref.config import Settings
from alref.errors import AlrefError
from alref.progress import Reporter


@dataclass(frozen=True)
class Job:
    """One video of a batch: what ``alref segment VIDEO --ref … --out RUN_DIR`` would do."""

    name: str  # unique in the batch: the name of its output folder
    video: str  # absolute path (workers of a cluster do not share the driver's working directory)
    references: tuple[str, ...]
    run_dir: str  # absolute
    audio: str | None = None  # a sound file, or the video's own track (alref.pipeline.audio.VIDEO_TRACK)
    rows: tuple[int, ...] = ()  # the manifest lines it came from

    def audio_request(self) -> Any:
        if self.audio is None:
            return None
        from alref.pipeline.audio import AudioRequest

        return AudioRequest(self.audio, self.references[0] if self.references else None)

    def segment_references(self) -> list[str]:
        """With sound the references come from the sound; a text given with it names the sounding object."""
        return [] if self.audio is not None else list(self.references)


@dataclass
class Outcome:
    """What became of one job: its result.json content, or the one-line error that stopped it."""

    job: Job
    result: dict[str, Any] | None = None
    error: str | None = None
    exit_code: int = 0
    seconds: float = 0.0
    worker: str = "local"
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


class JobFailed(AlrefError):
    """A video of a batch failed; raised where the batch must stop at the first failure (eval run)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.error or "failed")
        self.exit_code = outcome.exit_code or 1


def run_job(
    job: Job, settings: Settings, reporter: Reporter, *, force: bool = False, chat_model: Any = None,
    worker: str = "local", segment: Callable[..., dict[str, Any]] | None = None,
) -> Outcome:  # fmt: skip
    """Run one job (``segment``: ``segment_video`` unless a test gives its own); an AlrefError (a video
    that does not decode, --strict-llm, …) becomes its outcome."""
    if segment is None:
        from alref.pipeline.run import segment_video as segment

    started = time.perf_counter()
    try:
        result = segment(job.video, job.segment_references(), job.run_dir, settings, reporter,
                               force=force, chat_model=chat_model, audio=job.audio_request())  # fmt: skip
    except AlrefError as exc:
        return Outcome(job, error=" ".join(str(exc).split()), exit_code=exc.exit_code,
                       seconds=round(time.perf_counter() - started, 3), worker=worker)  # fmt: skip
    return Outcome(job, result=result, seconds=round(time.perf_counter() - started, 3), worker=worker)


class Progress(Protocol):
    """What an executor tells the driver's display."""

    reporter: Reporter  # the pipeline's stage bars, for jobs run in this process

    def started(self, job: Job, worker: str) -> None: ...

    def finished(self, outcome: Outcome) -> None: ...

    def note(self, message: str) -> None: ...


class Executor(Protocol):
    name: str

    def run(self, jobs: Sequence[Job], progress: Progress) -> None:
        """Run every job; call ``progress.started`` and ``progress.finished`` for each."""
        ...

    def close(self) -> None: ...


@dataclass
class LocalExecutor:
    """The jobs one after the other in this process. While a video runs, the next one's frames are
    decoded into its folder's frame store (``prefetch``), which its run then finds there and reuses."""

    settings: Settings
    force: bool = False
    chat_model: Any = None
    prefetch: bool = True
    segment: Callable[..., dict[str, Any]] | None = None  # segment_video; tests give their own
    name: str = field(default="local", init=False)

    def run(self, jobs: Sequence[Job], progress: Progress) -> None:
        ahead: _Prefetch | None = None
        for i, job in enumerate(jobs):
            if ahead is not None:
                ahead.wait()  # never two decodes of one video at once
            ahead = None
            if self.prefetch and self.segment is None and i + 1 < len(jobs):
                ahead = _Prefetch(jobs[i + 1], self.settings, self.force)
            progress.started(job, self.name)
            progress.finished(run_job(job, self.settings, progress.reporter, force=self.force,
                                      chat_model=self.chat_model, segment=self.segment))  # fmt: skip
        if ahead is not None:
            ahead.wait()

    def close(self) -> None:
        pass


class _Prefetch:
    """Decode a job's frames in a background thread (errors are left for the job's own run to report)."""

    def __init__(self, job: Job, settings: Settings, force: bool) -> None:
        self.thread = threading.Thread(target=self._run, args=(job, settings, force), daemon=True,
                                       name=f"alref-prefetch-{job.name}")  # fmt: skip
        self.thread.start()

    @staticmethod
    def _run(job: Job, settings: Settings, force: bool) -> None:
        try:
            prefetch_frames(job, settings, force=force)
        except Exception:  # noqa: BLE001 - the job's own run meets the same problem and says it
            pass

    def wait(self) -> None:
        self.thread.join()


def prefetch_frames(job: Job, settings: Settings, *, force: bool = False) -> bool:
    """Decode every frame of ``job``'s video into its folder's frame store (what the decode stage of
    its run does first), so that run only reads the sampled frames again. Nothing is done for a folder
    that already holds a result (its run decides whether it is finished) or for the tracks strategy
    (SAM 3 reads the video itself). Returns whether it decoded."""
    from alref.core.workspace import Workspace
    from alref.media.video import open_video
    from alref.pipeline.keys import digest, video_key
    from alref.pipeline.stages import decode
    from alref.tools.registry import resolve_models

    run_dir = Path(job.run_dir)
    if settings.strategy != "pivot" or (not force and (run_dir / "result.json").exists()):
        return False
    video = open_video(job.video)
    segmenter = resolve_models(settings).load_segmentation(settings)  # loaded once per process
    workspace = Workspace(run_dir)
    workspace.work.mkdir(parents=True, exist_ok=True)
    decode(video, segmenter, [], workspace, Reporter(), digest(video_key(Path(job.video))))
    return True


# ---------------------------------------------------------------------------------------------
# the batch's records and the driver's display


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file (a torn last line, from a crash while writing, is ignored)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def append_records(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Append whole lines and fsync: a crash leaves at most a torn last line, which readers skip."""
    with open(path, "a", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


class ProgressReporter(Reporter):
    """Draws the pipeline's stages as sub-bars of the batch's rich Progress; each distinct note is
    printed once (not once per video)."""

    def __init__(self, progress: Any) -> None:
        super().__init__()
        self.progress = progress
        self._seen: set[str] = set()

    @contextmanager
    def stage(self, name: str, total: int | None) -> Iterator[Any]:
        task = self.progress.add_task(f"  {name}", total=total)
        try:
            yield _SubStage(self.progress, task)
        finally:
            self.progress.remove_task(task)

    def note(self, message: str) -> None:
        super().note(message)
        if message not in self._seen and not message.startswith("already done"):
            self._seen.add(message)
            self.progress.console.print(message, highlight=False, markup=False)

    def warn(self, message: str) -> None:
        self.note(f"warning: {message}")


class _SubStage:
    def __init__(self, progress: Any, task: Any) -> None:
        self.progress, self.task = progress, task

    def advance(self, amount: int = 1) -> None:
        self.progress.advance(self.task, amount)


class BatchProgress:
    """One bar over the batch's videos (and the stage bars of a video run in this process); a line
    per video that failed or was retried."""

    def __init__(self, progress: Any, title: str, total: int, on_done: Callable[[Outcome], None]) -> None:
        self.progress = progress
        self.task = progress.add_task(title, total=total)
        self.reporter = ProgressReporter(progress)
        self.on_done = on_done
        self.running: dict[str, str] = {}  # job name -> worker
        self._lock = threading.Lock()
        self.title = title

    def _describe(self) -> None:
        running = ", ".join(sorted(self.running)[:3]) + (" …" if len(self.running) > 3 else "")
        self.progress.update(self.task, description=f"{self.title}" + (f" [{running}]" if running else ""))

    def started(self, job: Job, worker: str) -> None:
        with self._lock:
            self.running[job.name] = worker
            self._describe()

    def finished(self, outcome: Outcome) -> None:
        with self._lock:
            self.running.pop(outcome.job.name, None)
            self.on_done(outcome)
            if not outcome.ok:
                self.note(f"{outcome.job.name}: failed: {outcome.error}")
            self.progress.advance(self.task)
            self._describe()

    def note(self, message: str) -> None:
        self.progress.console.print(message, highlight=False, markup=False)


def run_batch(
    jobs: Sequence[Job], executor: Executor, on_done: Callable[[Outcome], None], *, console: Any, title: str
) -> None:
    """Run ``jobs`` on ``executor`` under one progress display; ``on_done`` gets each outcome on the
    driver as it finishes."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    with RichProgress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(), console=console,
    ) as progress:  # fmt: skip
        executor.run(jobs, BatchProgress(progress, title, len(jobs), on_done))


def outcome_record(outcome: Outcome) -> dict[str, Any]:
    """The JSON-able fields of an outcome that the batch's results.jsonl keeps (not the whole result)."""
    job = asdict(outcome.job)
    result = outcome.result or {}
    refs = result.get("references", [])
    return {
        "name": job["name"],
        "video": job["video"],
        "references": list(job["references"]),
        "audio": job["audio"],
        "out": job["run_dir"],
        "rows": list(job["rows"]),
        "status": result.get("status") if outcome.ok else "failed",
        "mode": result.get("mode"),
        "smoke": bool(result.get("smoke")),
        "objects": [
            {
                "id": r.get("id"),
                "text": r.get("text"),
                "status": r.get("status"),
                "frames_with_mask": (r.get("masks") or {}).get("frames_with_mask"),
            }
            for r in refs
        ],  # fmt: skip
        "num_frames": (result.get("input") or {}).get("num_frames"),
        "seconds": outcome.seconds,
        "worker": outcome.worker,
        "attempts": outcome.attempts,
        "error": outcome.error,
        "exit_code": outcome.exit_code or None,
    }
