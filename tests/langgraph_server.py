"""Start LangGraph's own local server (``langgraph dev``, from ``langgraph-cli[inmem]``) for tests.

    with LangGraphDevServer(ROOT / "langgraph.json") as server:
        client = server.client()  # langgraph_sdk.get_sync_client(url=server.url)
        state = client.runs.wait(None, "segment", input={...}, context={...})

The server runs in its own process group, in a work folder (a temp folder unless ``workdir`` is
given): the in-memory runtime writes its checkpoints and run queue to ``.langgraph_api/`` in its
current directory, and ``langgraph dev`` resolves the config's relative paths (``dependencies``,
graph files, ``env``) against its current directory, not the config file's. So the config is
rewritten into the work folder with those paths made absolute against the config file's folder,
and the repository is never written to.

Nothing leaves the machine: no browser/Studio, no reload watcher, no tunnel, no CLI analytics, no
PyPI version check, no LangSmith tracing (API and license keys are dropped from the environment).
Readiness is ``GET /ok`` answering 200, polled until a deadline; ``/ok`` answers only once the
server's lifespan has imported every graph. The log goes to ``server.log`` in the work folder
(:meth:`log_tail`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

#: set for the server so that it never reaches the network and its log is plain text
QUIET_ENV = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",  # langgraph_cli.analytics: no usage ping per CLI command
    "LANGGRAPH_NO_VERSION_CHECK": "true",  # langgraph_api.cli: no PyPI lookup for a newer version
    "LANGSMITH_TRACING": "false",
    "LANGSMITH_TRACING_V2": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGCHAIN_TRACING": "false",
    "LOG_COLOR": "false",  # langgraph_api.logging: no ANSI colours in server.log
    "PYTHONUNBUFFERED": "1",
}
#: removed from the server's environment: with any of them the server posts metadata / traces out
DROPPED_ENV = (
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
    "LANGGRAPH_API_KEY",
    "LANGSMITH_CONTROL_PLANE_API_KEY",
    "LANGGRAPH_CLOUD_LICENSE_KEY",
    "LANGSMITH_ENDPOINT",
    "LANGCHAIN_ENDPOINT",
)


def langgraph_cli_available() -> bool:
    """Whether ``langgraph dev`` can run the in-memory server here (``langgraph-cli[inmem]``).

    Looks the packages up without importing them: importing ``langgraph_runtime_inmem`` creates
    ``.langgraph_api/`` in the current directory."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("langgraph_cli", "langgraph_api", "langgraph_runtime_inmem", "langgraph_sdk")
    )


def skip_without_langgraph_cli() -> None:
    """Skip the calling test module where ``langgraph-cli[inmem]`` is not installed."""
    if not langgraph_cli_available():
        import pytest

        pytest.skip(
            "langgraph-cli[inmem] is not installed (pip install -e '.[test]' -c constraints.txt)",
            allow_module_level=True,
        )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _absolute(path: str, base: Path) -> str:
    """A relative file path from langgraph.json made absolute against ``base``."""
    return path if Path(path).is_absolute() else str((base / path).resolve())


def _absolute_spec(spec: str, base: Path) -> str:
    """``./pkg/file.py:attr`` made absolute; module specs (``pkg.mod:attr``) unchanged."""
    target, sep, attr = spec.rpartition(":")
    if sep and "/" in target:
        return f"{_absolute(target, base)}:{attr}"
    return spec


def _absolute_dependency(dep: str, base: Path) -> str:
    """Local folders (``"."``, ``"./src"``) absolute; pip requirements (``"langchain-openai"``) as is."""
    return _absolute(dep, base) if (base / dep).is_dir() else dep


def rewrite_config(config: dict[str, Any], base: Path) -> dict[str, Any]:
    """A copy of a langgraph.json whose relative paths are absolute against ``base`` (its folder)."""
    out = json.loads(json.dumps(config))
    out["dependencies"] = [_absolute_dependency(dep, base) for dep in out.get("dependencies", [])]
    graphs = out.get("graphs", {})
    for key, value in graphs.items():
        if isinstance(value, str):
            graphs[key] = _absolute_spec(value, base)
        elif isinstance(value, dict) and isinstance(value.get("path"), str):
            value["path"] = _absolute_spec(value["path"], base)
    if isinstance(out.get("env"), str):
        out["env"] = _absolute(out["env"], base)
    if isinstance(out.get("auth"), dict) and isinstance(out["auth"].get("path"), str):
        out["auth"]["path"] = _absolute_spec(out["auth"]["path"], base)
    if isinstance(out.get("http"), dict) and isinstance(out["http"].get("app"), str):
        out["http"]["app"] = _absolute_spec(out["http"]["app"], base)
    return out


class LangGraphDevServer:
    """``langgraph dev`` on 127.0.0.1 for the graphs of ``config_path``; a context manager.

    ``env`` is added to the server's environment (after :data:`QUIET_ENV`). ``allow_blocking``
    passes ``--allow-blocking``: without it the dev server's blockbuster raises ``BlockingError``
    for blocking calls (``time.sleep``, sockets, ...) made on its event loop, i.e. in async nodes;
    sync nodes run in worker threads and may block either way.
    """

    def __init__(
        self,
        config_path: Path,
        port: int | None = None,
        env: dict[str, str] | None = None,
        *,
        workdir: Path | None = None,
        allow_blocking: bool = False,
        n_jobs_per_worker: int | None = None,
        startup_timeout: float = 60.0,
        log_level: str = "WARNING",
    ) -> None:
        self.config_path = Path(config_path).resolve()
        self.host = "127.0.0.1"
        self.port = port
        self.env = dict(env or {})
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else None
        self.allow_blocking = allow_blocking
        self.n_jobs_per_worker = n_jobs_per_worker
        self.startup_timeout = startup_timeout
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self.final_log = ""
        self._log_file: Any = None

    # -- paths -----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None, "the server has not been started"
        return self.workdir / "server.log"

    @property
    def state_dir(self) -> Path:
        """Where the in-memory runtime pickles its checkpoints, store and run queue."""
        assert self.workdir is not None, "the server has not been started"
        return self.workdir / ".langgraph_api"

    def command(self, config: Path) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "langgraph_cli",
            "dev",
            "--config",
            str(config),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--no-browser",
            "--no-reload",
            "--server-log-level",
            self.log_level,
        ]
        if self.allow_blocking:
            cmd.append("--allow-blocking")
        if self.n_jobs_per_worker is not None:
            cmd += ["--n-jobs-per-worker", str(self.n_jobs_per_worker)]
        return cmd

    def server_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
        env.update(QUIET_ENV)
        env.update(self.env)
        return env

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> LangGraphDevServer:
        if self.proc is not None:
            raise RuntimeError("the server is already running")
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="langgraph-dev-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port(self.host)
        config = rewrite_config(json.loads(self.config_path.read_text()), self.config_path.parent)
        config_file = self.workdir / "langgraph.json"
        config_file.write_text(json.dumps(config, indent=2))

        self._log_file = open(self.log_path, "ab")  # closed in stop()
        started = time.monotonic()
        self.proc = subprocess.Popen(
            self.command(config_file),
            cwd=self.workdir,
            env=self.server_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() signals the whole group
        )
        try:
            self._wait_ready(started + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_ready(self, deadline: float) -> None:
        assert self.proc is not None
        while True:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"langgraph dev exited with code {code} before it was ready:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/ok", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"langgraph dev did not answer {self.url}/ok within {self.startup_timeout:.0f} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the server's process group, SIGKILL if it is still there after ``timeout``."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    pass
            with contextlib.suppress(ProcessLookupError):  # children left in the group, if any
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
            self.final_log = self.log_tail()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LangGraphDevServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- use -------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except (OSError, AssertionError):
            return 0

    def log_tail(self, lines: int = 80, since: int = 0) -> str:
        """The last ``lines`` lines of the server's log (from byte offset ``since``)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                text = f.read().decode("utf-8", "replace")
        except (OSError, AssertionError):
            return self.final_log
        return "\n".join(text.splitlines()[-lines:])

    def client(self, timeout: float = 60.0) -> Any:
        """A ``langgraph_sdk`` sync client for this server (no API key, even if one is in the env)."""
        return sync_client(self.url, timeout=timeout)


def sync_client(url: str, timeout: float = 60.0) -> Any:
    """``langgraph_sdk.get_sync_client`` for a local server: ``api_key=None`` stops it from sending
    ``LANGGRAPH_API_KEY`` / ``LANGSMITH_API_KEY`` from the environment."""
    from langgraph_sdk import get_sync_client

    return get_sync_client(url=url, api_key=None, timeout=timeout)
