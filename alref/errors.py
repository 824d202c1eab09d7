"""Every failure a user can hit is an ``AlrefError`` subclass with a message that says what was
wrong and what to do. The CLI prints ``str(error)`` on one line and exits with ``exit_code``."""

from __future__ import annotations


class AlrefError(Exception):
    """Base class: a problem the user can fix. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class InputError(AlrefError):
    """Bad input from the user: a missing path, a file that is not a video, bad option values."""

    exit_code = 2


class MediaError(InputError):
    """A video, frame folder or audio file that cannot be read (missing, empty, corrupt)."""


class NoAudioError(MediaError):
    """Audio was asked for but the input has no audio track."""


class ModelUnavailableError(AlrefError):
    """A model is neither a local folder nor in the Hugging Face cache, and cannot be downloaded."""

    exit_code = 3

    def __init__(self, model: str, role: str, detail: str = "", download_failed: bool = False) -> None:
        self.model = model
        self.role = role
        if download_failed:
            hint = (
                f"could not download model '{model}': check the network (or HF_TOKEN for a gated model), "
                "or copy a Hugging Face cache that holds it from a connected machine"
            )
            super().__init__(f"{hint} [{detail}]" if detail else hint)
            return
        hint = (
            f"model '{model}' ({role}) is not available offline: download it with "
            f"`alref models pull {model}` on a machine with internet access (it goes to the Hugging Face "
            f"cache), or pass a local folder with --{role.replace('_', '-')}-model PATH; "
            "to check the install without weights run with `--models smoke` (tiny random models, meaningless masks)"
        )
        if detail:
            hint += f" [{detail}]"
        super().__init__(hint)


class ModelLoadError(AlrefError):
    """A model folder exists but does not load (wrong class, broken files)."""

    exit_code = 3


class ConfigError(InputError):
    """A config file or environment variable that does not parse."""


class LLMFallbackError(AlrefError):
    """``--strict-llm``: a run finished, but some decisions are the baseline's, not the LLM's."""

    exit_code = 5


class QuestionUnansweredError(AlrefError):
    """``--ask``: the run stopped to ask a person and got no answer (stdin closed). Everything it
    finished is saved; the same command continues from the question."""

    exit_code = 6
