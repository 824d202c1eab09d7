"""alref/threads.py: every entry point has ``OMP_WAIT_POLICY=PASSIVE`` in the environment when torch loads
(unless the user named a policy), ``--threads`` / ``ALREF_THREADS`` set torch's thread count, and
``alref doctor`` shows both with their source. Each case runs in a fresh Python process, since libgomp
reads its environment once, when torch loads; a probe records the environment at that moment. No
timings here: ``benchmarks/contention.py`` measures what the policy buys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alref.config import Settings

REPO = Path(__file__).resolve().parents[1]

# records OMP_WAIT_POLICY / OMP_NUM_THREADS as they are when something first imports torch
PROBE = r"""
import importlib.abc, json, os, sys
seen = {}
class Probe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" and "policy" not in seen:
            seen["policy"] = os.environ.get("OMP_WAIT_POLICY")
            seen["count_env"] = os.environ.get("OMP_NUM_THREADS")
        return None
sys.meta_path.insert(0, Probe())
def finish(**extra):
    import torch
    print("PROBE " + json.dumps(seen | {"threads": torch.get_num_threads()} | extra))
"""
CLEAN = (
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "OMP_NUM_THREADS",
    "ALREF_THREADS",
    "ALREF_TORCH_DEFAULTS",
    "MKL_NUM_THREADS",
)


def probe(code: str, **env: str) -> dict:
    """Run ``code`` after the probe in a fresh interpreter (environment: this one's without the thread
    variables, plus ``env``); returns what ``finish(...)`` printed."""
    environ = {k: v for k, v in os.environ.items() if k not in CLEAN} | env
    proc = subprocess.run([sys.executable, "-c", PROBE + code], capture_output=True, text=True, env=environ,
                          cwd=REPO, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")][-1]
    return json.loads(line.removeprefix("PROBE "))


def usable() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def test_import_alref_sets_the_passive_policy_before_torch_loads() -> None:
    seen = probe("import alref, torch\nfrom alref.threads import report\nfinish(report=report())")
    assert seen["policy"] == "PASSIVE"
    assert seen["threads"] == usable()  # torch's own count where nothing asks for another
    assert (
        seen["report"]["wait_policy"] == "PASSIVE" and "set by alref" in seen["report"]["wait_policy_source"]
    )


def test_a_users_policy_and_thread_count_are_left_alone() -> None:
    seen = probe("import alref, torch\nfrom alref.threads import report\nfinish(report=report())",
                 OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS="1", GOMP_SPINCOUNT="1000")  # fmt: skip
    assert seen["policy"] == "ACTIVE" and seen["threads"] == 1
    assert seen["report"]["wait_policy"].startswith(
        "ACTIVE, GOMP_SPINCOUNT=1000"
    )  # doctor shows the spin too
    assert seen["report"]["wait_policy_source"] == "the environment"
    assert seen["report"]["torch_threads_source"] == "OMP_NUM_THREADS"


def test_alref_torch_defaults_changes_nothing() -> None:
    code = "import alref\nfrom alref.config import load_settings\nload_settings(threads=1)\nfinish()"
    seen = probe(code, ALREF_TORCH_DEFAULTS="1")
    assert seen["policy"] is None and seen["threads"] == usable()


def test_torch_imported_before_alref_is_reported() -> None:
    seen = probe("import torch, alref\nfrom alref.threads import report\nfinish(report=report())")
    assert seen["policy"] is None  # torch loaded first: libgomp never saw the policy
    assert "NOT in effect" in seen["report"]["wait_policy_source"]


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--threads", "1"], {}), ([], {"ALREF_THREADS": "1"})],
    ids=["--threads", "ALREF_THREADS"],
)
def test_the_cli_sets_the_policy_and_the_thread_count_and_doctor_shows_them(args, env) -> None:
    code = ("import contextlib, io\nfrom alref.cli import main\nout = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n    main(['doctor', '--json', '--models', 'smoke', *ARGS])\n"
            "finish(doctor=json.loads(out.getvalue())['threads'])").replace("ARGS", repr(args))  # fmt: skip
    seen = probe(code, **env)
    assert seen["policy"] == "PASSIVE" and seen["threads"] == 1
    assert seen["doctor"] == {
        "wait_policy": "PASSIVE",
        "wait_policy_source": "set by alref: the environment named none",
        "torch_threads": 1,
        "torch_threads_source": "the threads setting (--threads, ALREF_THREADS or the config file)",
        "usable_cpus": usable(),
    }


def test_the_python_api_applies_the_threads_setting(tmp_path: Path) -> None:
    code = ("import alref\nfrom alref.errors import InputError\n"
            f"try:\n    alref.segment({str(tmp_path / 'missing.mp4')!r}, 'x', threads=1)\n"
            "except InputError:\n    pass\nfinish()")  # fmt: skip
    seen = probe(code)
    assert seen["policy"] == "PASSIVE" and seen["threads"] == 1


def test_the_langgraph_server_graphs_set_the_policy() -> None:
    """``langgraph.json`` names alref/app/graphs.py by its path; the server loads it as a file."""
    code = ("import importlib.util\n"
            "spec = importlib.util.spec_from_file_location('graphs', 'alref/app/graphs.py')\n"
            "graphs = importlib.util.module_from_spec(spec)\nsys.modules['graphs'] = graphs\n"
            "spec.loader.exec_module(graphs)\n"
            "graphs.settings_from_context({'threads': 1})\nfinish()")  # fmt: skip
    seen = probe(code)
    assert seen["policy"] == "PASSIVE" and seen["threads"] == 1


def test_a_ray_worker_takes_the_drivers_thread_count() -> None:
    """The worker (alref.pipeline.cluster._Worker, built here without Ray) runs torch on the count the
    driver gives it; importing its module set the policy."""
    code = ("from alref.config import Settings\nfrom alref.pipeline.cluster import _Worker, torch_threads\n"
            "assert torch_threads(Settings(threads=1)) == 1\n_Worker(Settings(), None, 0, 1)\nfinish()")  # fmt: skip
    seen = probe(code, OMP_NUM_THREADS="2")  # as Ray sets it for a worker holding 2 CPUs
    assert seen["policy"] == "PASSIVE" and seen["threads"] == 1


def test_threads_is_a_setting_outside_the_runs_identity() -> None:
    assert Settings(threads=1).identity_dict() == Settings().identity_dict()
    assert Settings(threads=1).public_dict()["threads"] == 1
