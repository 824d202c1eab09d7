"""`alref app` as a subprocess for the browser tests (tests/test_web_*.py), and the system Chromium.

:func:`running_app` serves ``alref app ARGS`` on 127.0.0.1 (a free port, its chats and outputs under a
temporary folder, run from it), optionally with a scripted OpenAI-compatible LLM (tests/llm_server.py,
in this process) answering it, and yields its address, a headless Chromium and the app's stderr; at the
end the browser closes, the app is stopped and so is the LLM server. :func:`serving` and
:func:`chromium` are its two halves, for a module that shares one browser between apps.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click_segmenter
import pytest
from llm_server import ScriptedOpenAIServer

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
]
TIMEOUT_MS = 60_000
TESTS = Path(__file__).resolve().parent


def playwright():
    """Playwright's ``sync_playwright``, or the test is skipped (no Chromium, Playwright or Gradio)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip('playwright is not installed: pip install -c constraints.txt -e ".[test]"')
    try:
        import gradio  # noqa: F401
    except ImportError:
        pytest.skip('gradio is not installed: pip install -c constraints.txt -e ".[app]"')
    return sync_playwright


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def click_standin(tmp: Path) -> dict[str, str]:
    """The environment that lets the app select the click stand-in (tests/click_segmenter.py) with
    ``--segmentation click_segmenter.NAME``: its distribution installed under ``tmp/site`` and on the
    ``PYTHONPATH`` with this folder."""
    site = click_segmenter.install(tmp / "site")
    return {"PYTHONPATH": os.pathsep.join([str(site), str(TESTS), os.environ.get("PYTHONPATH", "")])}


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless system Chromium (Playwright's sync API), closed at the end."""
    sync_playwright = playwright()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def serving(
    tmp: Path, args: list[str], env: dict[str, str], llm: Callable[[dict], Any] | None = None
) -> Iterator[dict]:
    """``alref app ARGS`` until the block ends; yields {"url", "log", "server"}: its address, its stderr
    lines (shown when a check fails) and the scripted LLM server (None without ``llm``).

    The app runs from ``tmp`` with its chats and outputs there, with this process's environment less
    ``OPENAI_API_KEY``, ``ALREF_LLM_BACKOFF=0`` and then ``env``. With ``llm`` (a scripted server's
    answer to a request body) it is given ``--llm m --llm-base-url`` the server's address."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(ScriptedOpenAIServer(llm)) if llm is not None else None
        given = [*args, "--llm", "m", "--llm-base-url", server.base_url] if server is not None else args
        command = [sys.executable, "-m", "alref.cli", "app", *given, "--db", str(tmp / "chats.sqlite"),
                   "--host", "127.0.0.1", "--port", str(free_port()), "--out", str(tmp / "app")]  # fmt: skip
        environ = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"} | {"ALREF_LLM_BACKOFF": "0"}
        process = subprocess.Popen(
            command, cwd=tmp, env=environ | env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        lines: queue.Queue[str] = queue.Queue()
        log: list[str] = []

        def read() -> None:
            for line in process.stderr:
                log.append(line)
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        try:
            while True:
                try:
                    line = lines.get(timeout=120)  # the app prints its address once it serves
                except queue.Empty:
                    pytest.fail("alref app did not start: " + "".join(log)[-3000:])
                if line.startswith("alref app: http"):
                    break
            yield {"url": line.split()[2], "log": log, "server": server}
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@contextlib.contextmanager
def running_app(
    tmp: Path, args: list[str], env: dict[str, str], llm: Callable[[dict], Any] | None = None
) -> Iterator[dict]:
    """:func:`serving` with a Chromium of its own: yields {"url", "log", "server", "browser"}."""
    playwright()  # skipped before the app starts
    with serving(tmp, args, env, llm) as app, chromium() as browser:
        yield {**app, "browser": browser}


def browser_context(app: dict, height: int = 1100, **options: Any) -> Any:
    """A new context (1280 px wide) of the app's browser, it and Playwright's ``expect`` waiting up to
    ``TIMEOUT_MS``."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = app["browser"].new_context(viewport={"width": 1280, "height": height}, **options)
    context.set_default_timeout(TIMEOUT_MS)
    return context


def explained(drive: Callable[[dict], None], app: dict) -> None:
    """``drive(app)``, a failed check shown with the end of the app's stderr."""
    try:
        drive(app)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- alref app stderr ---\n{''.join(app['log'])[-4000:]}") from None
