"""How torch uses the CPU's threads: decided here, once, for every entry point.

torch runs its CPU ops on an OpenMP thread pool (libgomp in the PyPI wheels). By default an idle pool
thread *spins* for a few milliseconds before it sleeps, so on a machine where anything else is busy
(another program, a browser app's server, alref's own decoding and mask-writing threads) the spinners
hold the cores that the thread each op waits for needs, and a run collapses: on a 2-core machine beside
one busy core, SAM 2 propagated 2.8-4.3x slower than alone (10x in the first report), against at most
1.05x with the passive policy (``benchmarks/contention.py``; docs/performance.md). So alref

- sets ``OMP_WAIT_POLICY=PASSIVE`` (idle pool threads sleep at once; how they wait changes no result)
  where the environment names no policy. libgomp reads it once, when torch loads it, so
  :func:`prepare` runs when the ``alref`` package is imported (``alref/__init__.py``), before any alref
  module imports torch. Every entry point imports ``alref`` first: the CLI (``alref.cli:main``, also
  ``alref app``), the LangGraph server graphs (``alref/app/graphs.py``), ``alref.segment``, the Ray
  workers (which unpickle ``alref.pipeline.cluster``). A program that imports torch before alref keeps
  torch's own policy; :func:`report` (``alref doctor``) says so.
- runs torch on the ``threads`` setting's count (``--threads N``, ``ALREF_THREADS``, the config file)
  where one is given, through :func:`use_threads`, which :func:`alref.config.load_settings` calls (the
  environment's ``OMP_NUM_THREADS`` while torch is not loaded yet, else ``torch.set_num_threads``).
  Without one torch keeps its own count: ``OMP_NUM_THREADS`` if set, else every CPU this process may
  use (one thread was as robust beside a busy core, but gives the real models half of a 2-core CPU).

``ALREF_TORCH_DEFAULTS=1`` turns both off (torch exactly as it comes; ``benchmarks/contention.py``
compares the two): the passive policy's cost is on an otherwise idle machine, where waking a sleeping
thread for each small op made the tiny smoke models' propagation 1.05-1.2x slower in a default run and
1.2-1.7x with ``--no-overlay``. A bounded spin (``GOMP_SPINCOUNT=1000``, which the user may set) halves
that but slows a run beside a busy core 1.3-1.8x more, so alref does not set it. This module imports
nothing of alref and never imports torch.
"""

from __future__ import annotations

import os
import sys
from typing import Any

POLICY_ENV = "OMP_WAIT_POLICY"
COUNT_ENV = "OMP_NUM_THREADS"
SPIN_ENV = "GOMP_SPINCOUNT"
OFF_ENV = "ALREF_TORCH_DEFAULTS"
POLICY = "PASSIVE"
SETTING = "the threads setting (--threads, ALREF_THREADS or the config file)"

# what alref did: filled by prepare() and use_threads(), read by report()
_state: dict[str, Any] = {"prepared": False, "set_policy": False, "late": False, "count": None}


def torch_defaults() -> bool:
    """``ALREF_TORCH_DEFAULTS`` is set (to anything but empty, 0, false or no): alref leaves threads alone."""
    return os.environ.get(OFF_ENV, "").strip().lower() not in ("", "0", "false", "no")


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask): torch's default thread count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _env_count() -> int | None:
    value = os.environ.get(COUNT_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def prepare() -> None:
    """Put ``OMP_WAIT_POLICY=PASSIVE`` in the environment unless the user named a policy (or set
    ``ALREF_TORCH_DEFAULTS``). Runs once, at ``import alref``; torch must not be loaded yet to obey it."""
    if _state["prepared"]:
        return
    _state["prepared"] = True
    if torch_defaults() or os.environ.get(POLICY_ENV):
        return
    os.environ[POLICY_ENV] = POLICY
    _state["set_policy"] = True
    _state["late"] = "torch" in sys.modules  # libgomp has read its environment already


def torch_threads(threads: int | None = None) -> int:
    """The torch thread count a run uses here: ``threads`` (the setting) if given, else
    ``OMP_NUM_THREADS``, else every usable CPU. Ray workers are given the driver's (see
    ``alref.pipeline.cluster``): torch's float sums depend on the count."""
    if threads is not None and threads > 0:
        return threads
    return _env_count() or usable_cpus()


def use_threads(threads: int | None) -> None:
    """Run torch on ``threads`` threads (the setting; None: leave torch's count alone). Cheap: imports
    nothing while torch is not loaded; a no-op with ``ALREF_TORCH_DEFAULTS``."""
    prepare()
    if threads is None or torch_defaults():
        return
    _state["count"] = threads
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "set_num_threads"):  # not loaded (or half-way through loading)
        os.environ[COUNT_ENV] = str(threads)  # the explicit setting beats a generic OMP_NUM_THREADS
    elif torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def report() -> dict[str, Any]:
    """What this process uses: the OpenMP wait policy and torch's thread count, each with its source."""
    off = torch_defaults()
    policy = os.environ.get(POLICY_ENV) or "unset (torch's default: idle threads spin, then sleep)"
    if spins := os.environ.get(SPIN_ENV, "").strip():  # libgomp takes it over the policy's own spin count
        policy += f", {SPIN_ENV}={spins} (idle threads spin that long, then sleep)"
    if off:
        policy_source = f"{OFF_ENV}: alref sets nothing"
    elif not _state["set_policy"]:
        policy_source = "the environment"
    elif _state["late"]:
        policy_source = "alref's, NOT in effect: torch was imported before alref (set it in the environment)"
    else:
        policy_source = "set by alref: the environment named none"
    torch = sys.modules.get("torch")
    count = torch.get_num_threads() if torch is not None else torch_threads(_state["count"])
    if _state["count"] is not None:
        count_source = SETTING
    elif _env_count() is not None:
        count_source = COUNT_ENV
    else:
        count_source = f"{OFF_ENV}: torch's default" if off else "torch's default: every usable CPU"
    return {
        "wait_policy": policy,
        "wait_policy_source": policy_source,
        "torch_threads": count,
        "torch_threads_source": count_source,
        "usable_cpus": usable_cpus(),
    }
