"""LangGraph's SQLite checkpointer on a file, for every graph alref runs (the pivot and tracks
strategies in OUT/work/agent.sqlite, the chat's conversations in chats.sqlite)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def sqlite_saver(path: Path) -> Iterator[Any]:
    """A ``SqliteSaver`` on ``path`` (its folder made), closed on exit."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    try:
        yield SqliteSaver(conn)
    finally:
        conn.close()
