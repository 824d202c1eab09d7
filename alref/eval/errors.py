"""Errors of the benchmark tools: each names the file or folder that is missing or wrong.

Both are :class:`alref.errors.InputError` subclasses, so the CLI prints them on one line and exits 2.
"""

from __future__ import annotations

from alref.errors import InputError


class DatasetLayoutError(InputError):
    """A dataset folder does not have the expected layout (a missing or unreadable file or folder)."""


class PredictionLayoutError(InputError):
    """Predictions to score are missing, misnamed, of the wrong size or of an unreadable kind."""
