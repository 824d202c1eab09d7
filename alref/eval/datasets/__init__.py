"""Dataset readers, one module per family; :func:`open_dataset` picks one by name."""

from __future__ import annotations

from pathlib import Path

from alref.eval.catalog import DATASET_NAMES
from alref.eval.datasets.avsbench import AvsMS3, Avss, AvsS4, AvssV2Binary
from alref.eval.datasets.base import EvalDataset, Expression, VideoItem
from alref.eval.datasets.mevis import Mevis, MevisGroundTruth
from alref.eval.datasets.refdavis import DavisGroundTruth, RefDavis
from alref.eval.datasets.refytvos import RefYouTubeVOS
from alref.eval.datasets.revos import Revos, RevosGroundTruth
from alref.eval.errors import DatasetLayoutError

DATASETS: dict[str, type[EvalDataset]] = {
    cls.name: cls for cls in (RefDavis, RefYouTubeVOS, Mevis, Revos, AvsS4, AvsMS3, Avss, AvssV2Binary)
}
assert tuple(DATASETS) == DATASET_NAMES, "alref.eval.catalog.DATASET_NAMES is out of date"
ALIASES = {
    "ref-davis17": "ref-davis",
    "refdavis": "ref-davis",
    "davis": "ref-davis",
    "ref-ytvos": "ref-youtube-vos",
    "refytvos": "ref-youtube-vos",
    "ytvos": "ref-youtube-vos",
    "s4": "avsbench-s4",
    "ms3": "avsbench-ms3",
    "avsbench-avss": "avss",
    "v2-binary": "avss-v2-binary",
}


def dataset_class(name: str) -> type[EvalDataset]:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise DatasetLayoutError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[key]


def open_dataset(name: str, root: str | Path, split: str | None = None) -> EvalDataset:
    """The reader for ``name`` (see :data:`DATASETS`) over ``root``; checks the layout at once."""
    return dataset_class(name)(root, split)


__all__ = [
    "DATASETS",
    "DatasetLayoutError",
    "DavisGroundTruth",
    "EvalDataset",
    "Expression",
    "MevisGroundTruth",
    "RevosGroundTruth",
    "VideoItem",
    "dataset_class",
    "open_dataset",
]
