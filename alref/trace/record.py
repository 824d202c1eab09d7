"""The trace of a run: one JSON line per event in ``<folder>/events.jsonl`` and every image the LLM saw,
saved once per content under ``<folder>/images/``.

Events never hold image data (only paths relative to the trace folder) and never a secret: every string
that contains one of the tracer's secrets has it replaced by ``***``, however deep it sits.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from alref.core.workspace import EVENTS_FILE, IMAGES_DIR, TRACE_DIR
from alref.errors import InputError

_JPEG_MAGIC = b"\xff\xd8\xff"
_MIN_SECRET_LEN = 4  # shorter "secrets" (dummy keys, empty strings) would scrub ordinary text


class Tracer:
    """Writes events and images of one run. Safe to use from several threads; a resumed run appends."""

    enabled = True

    def __init__(self, folder: Path, secrets: Iterable[str] = ()) -> None:
        self.folder = Path(folder)
        (self.folder / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        self._events_path = self.folder / EVENTS_FILE
        self._lock = threading.Lock()
        self._secrets: list[str] = []
        self._start = time.monotonic()
        self._image_memo: dict[tuple[str, int, int], str] = {}
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, secret: str | None) -> None:
        """Scrub ``secret`` from every later event (the LLM client adds its API key)."""
        if secret and len(secret) >= _MIN_SECRET_LEN and secret not in self._secrets:
            with self._lock:
                # longest first, so a secret that contains another is replaced whole
                self._secrets = sorted({*self._secrets, secret}, key=len, reverse=True)

    # events

    def event(self, kind: str, **fields: Any) -> None:
        record = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "t": round(time.monotonic() - self._start, 4),
            "kind": kind,
            **fields,
        }
        line = json.dumps(self._clean(record), ensure_ascii=False)
        with self._lock, open(self._events_path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def node_start(self, node: str, **summary: Any) -> None:
        self.event("node_start", node=node, **summary)

    def node_end(self, node: str, **summary: Any) -> None:
        self.event("node_end", node=node, **summary)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def _clean(self, value: Any) -> Any:
        """A JSON-ready deep copy of ``value`` with secrets scrubbed; other objects become ``str()``."""
        if isinstance(value, str):
            return self._scrub(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, dict):
            return {self._scrub(str(k)): self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._clean(v) for v in value]
        if isinstance(value, np.generic):
            return self._clean(value.item())
        if isinstance(value, np.ndarray) and value.size <= 64:
            return self._clean(value.tolist())
        return self._scrub(str(value))

    # images

    def image(self, image: Path | str | np.ndarray) -> str:
        """Save ``image`` as ``images/<sha256[:16]>.jpg`` (once per content); returns that relative path.

        JPEG files are copied byte for byte, other formats re-encoded as JPEG (quality 90); arrays are
        RGB ``uint8``. An unreadable file gives ``""`` and a ``trace_error`` event, never an exception.
        """
        if isinstance(image, np.ndarray):
            array = np.ascontiguousarray(image)
            digest = hashlib.sha256(f"{array.shape}{array.dtype}".encode() + array.tobytes()).hexdigest()
            return self._store(digest, lambda: _encode_jpeg(Image.fromarray(array)))
        path = Path(image)
        try:
            stat = path.stat()
            memo_key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
            if memo_key in self._image_memo:
                return self._image_memo[memo_key]
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            rel = self._store(digest, lambda: data if data.startswith(_JPEG_MAGIC) else _reencode(data))
        except (OSError, ValueError) as exc:
            self.event("trace_error", what="image", path=str(path), error=f"{type(exc).__name__}: {exc}")
            return ""
        self._image_memo[memo_key] = rel
        return rel

    def _store(self, digest: str, encode: Any) -> str:
        rel = f"{IMAGES_DIR}/{digest[:16]}.jpg"
        target = self.folder / rel
        if not target.exists():
            tmp = target.with_name(f".{target.name}.{threading.get_ident()}.tmp")
            tmp.write_bytes(encode())
            os.replace(tmp, target)
        return rel


class NullTracer(Tracer):
    """A tracer that records nothing (tracing off)."""

    enabled = False

    def __init__(self) -> None:  # deliberately no folder: nothing is written
        self.folder = Path()
        self._secrets = []
        self._lock = threading.Lock()

    def add_secret(self, secret: str | None) -> None:
        pass

    def event(self, kind: str, **fields: Any) -> None:
        pass

    def image(self, image: Path | str | np.ndarray) -> str:
        return ""


def read_events(folder: Path) -> list[dict[str, Any]]:
    """All events of a trace folder, oldest first; a torn (half-written) line is skipped."""
    path = Path(folder) / EVENTS_FILE
    if not path.is_file():
        return []
    events: list[dict[str, Any]] = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                events.append(record)
    return events


def trace_folder(run: Path) -> Path:
    run = Path(run)
    folder = run if (run / EVENTS_FILE).is_file() else run / TRACE_DIR
    if not (folder / EVENTS_FILE).is_file():
        raise InputError(
            f"no trace in {run}: expected {run}/trace/events.jsonl (written by every alref segment run)"
        )
    return folder


def load_trace(run: Path) -> list[dict[str, Any]]:
    return read_events(trace_folder(run))


def _encode_jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _reencode(data: bytes) -> bytes:
    try:
        with Image.open(io.BytesIO(data)) as img:
            return _encode_jpeg(img)
    except Exception as exc:  # PIL raises many types for a broken file
        raise ValueError(f"not an image ({exc})") from exc
