"""On-disk cache of LLM answers, keyed by everything that was sent (model, settings, messages, images).

One JSON file per answer in ``<folder>/<key[:2]>/<key>.json``, written atomically. A per-key lock lets
concurrent identical questions wait for the first one instead of all reaching the server.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any


class AnswerCache:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @staticmethod
    def key(payload: Any) -> str:
        """sha256 of the canonical JSON of ``payload`` (sorted keys, no whitespace)."""
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored value, or ``None`` when absent or unreadable (a broken entry is a miss)."""
        try:
            value = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(value, ensure_ascii=False, default=str), encoding="utf-8")
        os.replace(tmp, path)

    def lock(self, key: str) -> AbstractContextManager[Any]:
        """A lock for ``key`` (the same object for the same key for the life of this cache)."""
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock
