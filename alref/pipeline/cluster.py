"""A batch on a Ray cluster: ``--ray`` (a cluster on this machine) or ``--ray-address ADDRESS``.

One long-lived worker (a Ray actor) per GPU of the cluster, or per ``--ray-cpus-per-worker`` CPUs
where there is no GPU, loads the models once and runs videos: each video is the same
``segment_video`` call as without Ray, writing into its folder of the shared output folder with the
same atomic writes. The driver hands a video to each idle worker, draws the progress, and alone
writes the batch's records.

A worker that dies mid-video (killed, out of memory, its node gone) is restarted by Ray; its video is
given to the next idle worker (up to :data:`MAX_ATTEMPTS` times), which resumes it from what its folder
holds. Its masks are then the same bytes as in a run without Ray: the same code on the same input.

The LLM calls of the whole cluster at once stay within ``--llm-concurrency``: every worker takes a slot
of one semaphore actor before each HTTP call (``alref.agent.llm.set_admission``); the slots of a dead
worker are given back by the driver.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from alref import threads
from alref.config import Settings
from alref.errors import AlrefError, InputError
from alref.pipeline.batch import Executor, Job, LocalExecutor, Outcome, Progress, run_job
from alref.progress import Reporter

MAX_ATTEMPTS = 3  # a video whose worker died this many times is reported failed
INSTALL = 'Ray is not installed: pip install -c constraints.txt -e ".[ray]" (or pip install "ray>=2.40")'


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(f"--ray: {INSTALL}") from None
    return ray


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """An address that nothing answers on is one line (exit 2), not a minute of Ray's retries."""
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"//{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise InputError(
            f"--ray-address {address}: expected HOST:PORT (e.g. 127.0.0.1:6379), ray://HOST:PORT or auto"
        )
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(
            f"cannot reach the Ray cluster at {address} ({reason}); start it with `ray start --head` "
            "there, or check the address"
        ) from None


def use_cluster_token() -> None:
    """Send the cluster's token when one is here (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or the
    ``~/.ray/auth_token`` that ``ray start`` writes): Ray's own driver connects to an existing cluster
    without it unless ``RAY_AUTH_MODE=token`` is set, and a cluster that checks tokens then refuses it.
    A cluster that does not check tokens accepts a driver that sends one."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.isfile(path):
        os.environ["RAY_AUTH_MODE"] = "token"
        if "ray" in sys.modules:  # Ray was imported before: make it read the mode again
            from ray._raylet import Config

            Config.initialize("")


def worker_settings(settings: Settings) -> Settings:
    """The settings as a worker needs them: the API key from the driver's environment made explicit
    (a worker on another machine does not have that environment)."""
    if settings.llm_api_key is None and settings.api_key:
        return settings.model_copy(update={"llm_api_key": SecretStr(settings.api_key)})
    return settings


def torch_threads(settings: Settings) -> int:
    """The torch threads a run without Ray uses on this machine (:func:`alref.threads.torch_threads`: the
    ``threads`` setting, else ``OMP_NUM_THREADS``, else every usable CPU), given to every worker: torch's
    float sums depend on the thread count, so a worker with Ray's own choice (one thread per CPU it
    holds) could flip a pixel of a mask here and there, and the masks would not be the same bytes as
    without Ray. (On a GPU the model runs on the GPU either way.)"""
    return threads.torch_threads(settings.threads)


def batch_executor(
    settings: Settings, *, ray: bool, address: str | None, cpus_per_worker: float, workers: int | None,
    force: bool,
) -> Executor:  # fmt: skip
    """The executor the batch options ask for: Ray (``--ray`` / ``--ray-address``) or this process
    (:class:`alref.pipeline.batch.LocalExecutor`). It lives here so that this module uses the batch
    runner and never the other way round."""
    if ray or address:
        return RayExecutor(settings, address=address, cpus_per_worker=cpus_per_worker, workers=workers,
                           force=force)  # fmt: skip
    if workers is not None:
        raise InputError("--ray-workers needs --ray or --ray-address")
    return LocalExecutor(settings, force=force)


class _Gate:
    """The cluster's LLM slots (an async Ray actor). Slots are counted per holder (a worker's pid) so
    a dead worker's can be given back."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.free = asyncio.Semaphore(limit)
        self.held: Counter[str] = Counter()
        self.gone: set[str] = set()  # dead workers: a call of theirs still queued here gets no slot
        self.most = 0

    async def acquire(self, holder: str) -> None:
        await self.free.acquire()
        if holder in self.gone:  # its worker died while this call waited: the slot goes straight back
            self.free.release()
            return
        self.held[holder] += 1
        self.most = max(self.most, sum(self.held.values()))

    async def release(self, holder: str) -> None:
        if self.held[holder] > 0:
            self.held[holder] -= 1
            self.free.release()

    async def release_all(self, holder: str) -> int:
        self.gone.add(holder)
        count = self.held.pop(holder, 0)
        for _ in range(count):
            self.free.release()
        return count

    async def stats(self) -> dict[str, int]:
        return {"limit": self.limit, "held": sum(self.held.values()), "most_at_once": self.most}


class _Worker:
    """One Ray actor: the models of this process stay loaded between videos."""

    def __init__(self, settings: Settings, gate: Any, index: int, torch_threads: int) -> None:
        self.settings, self.gate, self.index = settings, gate, index
        self.holder = f"{index}:{os.getpid()}"
        # workers of one node share its cores: alref.threads made idle OpenMP threads sleep instead of
        # spinning when this process imported alref (before torch); Ray sets one thread per CPU of the
        # worker, the driver's count replaces it (see torch_threads())
        threads.use_threads(torch_threads)
        if gate is not None:
            from alref.agent.llm import set_admission

            set_admission(self._slot)

    @contextmanager
    def _slot(self) -> Iterator[None]:
        import ray

        ray.get(self.gate.acquire.remote(self.holder))
        try:
            yield
        finally:
            ray.get(self.gate.release.remote(self.holder))

    def ready(self) -> dict[str, Any]:
        """Load the models (a failure is returned, not raised, so the driver can say it in one line)."""
        import ray

        info = {"pid": os.getpid(), "holder": self.holder, "node": ray.util.get_node_ip_address(),
                "gpus": [str(g) for g in ray.get_gpu_ids()]}  # fmt: skip
        try:
            if self.settings.strategy == "pivot":
                from alref.tools.registry import resolve_models

                models = resolve_models(self.settings)
                models.load_grounding()
                models.load_segmentation(self.settings)
        except AlrefError as exc:
            return info | {"error": " ".join(str(exc).split()), "exit_code": exc.exit_code}
        return info

    def run(self, job: Job, force: bool) -> Outcome:
        return run_job(job, self.settings, Reporter(), force=force, worker=f"ray worker {self.index + 1}")


class RayExecutor:
    """Runs a batch's jobs on the workers of a Ray cluster (see the module's text)."""

    name = "ray"

    def __init__(
        self, settings: Settings, *, address: str | None = None, cpus_per_worker: float = 1.0,
        workers: int | None = None, force: bool = False,
    ) -> None:  # fmt: skip
        if cpus_per_worker <= 0:
            raise InputError("--ray-cpus-per-worker must be more than 0")
        if address:
            check_reachable(address)
            use_cluster_token()  # before Ray reads its configuration
        ray = _ray()
        self.settings = worker_settings(settings)
        self.cpus_per_worker, self.workers, self.force = cpus_per_worker, workers, force
        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level="WARNING")
            else:
                ray.init(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise InputError(f"cannot connect to the Ray cluster at {address or 'this machine'}: "
                             f"{' '.join(str(exc).split())[:300]}") from None  # fmt: skip
        self.address = address or "local"
        self.gate: Any = None
        self.actors: list[Any] = []
        self.infos: list[dict[str, Any]] = []

    # which workers, how many

    def _slots(self) -> tuple[int, dict[str, Any]]:
        ray = _ray()
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if self.settings.device in ("auto", "cuda") else 0
        if gpus:
            return gpus, {"num_gpus": 1, "num_cpus": min(self.cpus_per_worker, resources.get("CPU", 1))}
        cpus = float(resources.get("CPU", 0))
        if cpus < self.cpus_per_worker:
            raise InputError(
                f"the Ray cluster has {cpus:g} CPUs, fewer than --ray-cpus-per-worker {self.cpus_per_worker:g}"
            )
        return int(cpus // self.cpus_per_worker), {"num_cpus": self.cpus_per_worker}

    def _start(self, wanted: int, progress: Progress) -> None:
        ray = _ray()
        slots, options = self._slots()
        count = min(self.workers or slots, slots, wanted)
        if self.workers and self.workers > slots:
            progress.note(f"ray: the cluster has room for {slots} workers, not {self.workers}")
        if self.settings.llm_configured or self.settings.llm_base_url:
            self.gate = ray.remote(_Gate).options(num_cpus=0).remote(self.settings.llm_concurrency)
        worker_cls = ray.remote(_Worker).options(**options, max_restarts=-1, max_task_retries=0)
        count_threads = torch_threads(self.settings)
        self.actors = [worker_cls.remote(self.settings, self.gate, i, count_threads) for i in range(count)]
        self.infos = ray.get([a.ready.remote() for a in self.actors])
        for info in self.infos:
            if "error" in info:
                error = AlrefError(info["error"])
                error.exit_code = info["exit_code"]
                raise error
        for i, info in enumerate(self.infos):
            where = f"pid {info['pid']} on {info['node']}" + (
                f", GPU {','.join(info['gpus'])}" if info["gpus"] else ""
            )
            progress.note(f"ray: worker {i + 1} of {count} ready ({where})")

    # running

    def run(self, jobs: Sequence[Job], progress: Progress) -> None:
        ray = _ray()
        from ray.exceptions import RayError, RayTaskError

        self._start(len(jobs), progress)
        pending: deque[tuple[Job, int]] = deque((job, 1) for job in jobs)
        idle = deque(range(len(self.actors)))
        running: dict[Any, tuple[str, int, Job | None, int]] = {}  # ref -> (kind, worker, job, attempt)
        while pending or running:
            if not running and not idle:  # every worker failed to restart
                for job, attempt in pending:
                    progress.finished(Outcome(job, error="no Ray worker is left to run it", exit_code=1,
                                              worker="ray", attempts=attempt))  # fmt: skip
                return
            while idle and pending:
                index = idle.popleft()
                job, attempt = pending.popleft()
                running[self.actors[index].run.remote(job, self.force)] = ("run", index, job, attempt)
                progress.started(job, f"worker {index + 1}")
            ready, _ = ray.wait(list(running), num_returns=1)
            ref = ready[0]
            kind, index, job, attempt = running.pop(ref)
            try:
                value = ray.get(ref)
            except RayTaskError as exc:  # a bug, not a death: the same video would fail again
                if kind == "ready" or job is None:
                    raise
                progress.finished(Outcome(job, error=f"worker {index + 1} failed: {exc.cause!r}"[:500],
                                          exit_code=1, worker=f"ray worker {index + 1}", attempts=attempt))  # fmt: skip
                idle.append(index)
                continue
            except RayError as exc:  # the worker died: give its LLM slots back, retry its video elsewhere
                holder = self.infos[index]["holder"]
                if self.gate is not None:
                    ray.get(self.gate.release_all.remote(holder))
                if job is not None:
                    if attempt < MAX_ATTEMPTS:
                        progress.note(f"ray: worker {index + 1} died during {job.name} ({type(exc).__name__}); "
                                      "it is retried")  # fmt: skip
                        pending.appendleft((job, attempt + 1))
                    else:
                        progress.finished(Outcome(job, error=f"its worker died {attempt} times", exit_code=1,
                                                  worker=f"ray worker {index + 1}", attempts=attempt))  # fmt: skip
                running[self.actors[index].ready.remote()] = ("ready", index, None, 0)  # back when restarted
                continue
            if kind == "ready":
                self.infos[index] = value
                if "error" in value:
                    progress.note(f"ray: worker {index + 1} cannot restart: {value['error']}")
                    continue
                idle.append(index)
                continue
            assert job is not None
            progress.finished(replace(value, attempts=attempt))
            idle.append(index)

    def gate_stats(self) -> dict[str, int] | None:
        return _ray().get(self.gate.stats.remote()) if self.gate is not None else None

    def close(self) -> None:
        ray = _ray()
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        if self.gate is not None:
            ray.kill(self.gate)
        self.actors, self.gate = [], None
        ray.shutdown()
