"""Bytes at known offsets in one file, for what a long video must not hold in memory: the frame store,
the sampled frames and the masks' RLE (each reads back one item at a time from where it was written).

Plain file I/O, not a memory map: the pages of a mapped file count in the process's resident memory
once touched; read and written this way they stay in the kernel's page cache, which it reclaims under
pressure. Thread-safe: one lock around each seek and its read or write (a decoding or writer thread
and the caller share a file).
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any


class OffsetFile:
    """``write_at`` / ``append`` bytes and ``read_into`` / ``read_at`` them back, whole (a short read or
    write of the OS is completed; a file that ends early is an OSError naming ``what``)."""

    def __init__(self, file: Any, what: str, end: int = 0) -> None:
        self._file, self.what, self._end = file, what, end
        self._lock = threading.Lock()

    @classmethod
    def temporary(cls, folder: Path, prefix: str, what: str) -> OffsetFile:
        """An unnamed temporary file in ``folder`` (gone when closed, or when the process ends)."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        return cls(tempfile.TemporaryFile(dir=folder, prefix=prefix, buffering=0), what)

    def write_at(self, offset: int, data: Any) -> None:
        view, done = memoryview(data).cast("B"), 0
        with self._lock:
            self._file.seek(offset)
            while done < len(view):
                done += self._file.write(view[done:])
            self._end = max(self._end, offset + len(view))

    def append(self, data: Any) -> tuple[int, int]:
        """``data`` after everything written so far; returns (its offset, its length)."""
        view = memoryview(data).cast("B")
        with self._lock:
            offset = self._end
            self._end += len(view)
        self.write_at(offset, view)
        return offset, len(view)

    def read_into(self, offset: int, buffer: Any) -> None:
        view, done = memoryview(buffer).cast("B"), 0
        with self._lock:
            self._file.seek(offset)
            while done < len(view):
                got = self._file.readinto(view[done:])
                if not got:
                    raise OSError(f"{self.what} ends before byte {offset + len(view)}: it lost data")
                done += got

    def read_at(self, offset: int, length: int) -> bytes:
        buffer = bytearray(length)
        self.read_into(offset, buffer)
        return bytes(buffer)

    def sync(self) -> None:
        """Everything written, on disk."""
        with self._lock:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()
