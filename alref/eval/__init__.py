"""Benchmarks: dataset readers, metrics exact to the official scorers, writers and the runner.

>>> from alref.eval import score
>>> score("davis", "runs/refdavis/predictions", "data/ref-davis/DAVIS")["J&F"]

``score(protocol, pred, gt)`` scores predictions on disk (protocols in :data:`PROTOCOLS`);
``open_dataset(name, root, split)`` reads a dataset; ``run_eval(...)`` is ``alref eval run``.
Names are resolved lazily, so ``import alref.eval`` (and the CLI) stays light.
"""

from __future__ import annotations

from typing import Any

from alref.eval.catalog import DATASET_NAMES, PROTOCOLS

__all__ = [
    "DATASET_NAMES",
    "PROTOCOLS",
    "DatasetLayoutError",
    "PredictionLayoutError",
    "open_dataset",
    "run_eval",
    "score",
]

_LAZY = {
    "score": ("alref.eval.score", "score"),
    "open_dataset": ("alref.eval.datasets", "open_dataset"),
    "run_eval": ("alref.eval.runner", "run_eval"),
    "DatasetLayoutError": ("alref.eval.errors", "DatasetLayoutError"),
    "PredictionLayoutError": ("alref.eval.errors", "PredictionLayoutError"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(name)
