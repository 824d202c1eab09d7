"""What identifies a run: the input files, references, settings and models, as short digests.
A rerun with the same identity is skipped; work saved under one identity is reused by it only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def file_key(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def video_key(path: Path) -> dict[str, Any]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        return {
            "path": str(path.resolve()),
            "files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files],
        }
    return file_key(path)
