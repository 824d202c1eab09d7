"""The errors of the LLM client, and how a failed call is classified (retry or not, and what to tell the
user). A private companion of :mod:`alref.agent.llm`, which re-exports the error classes."""

from __future__ import annotations

import email.utils
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import openai

from alref.errors import AlrefError

MAX_RETRY_AFTER_S = 60.0  # a longer Retry-After is cut to this
# how servers say the model is text-only (llama.cpp, vLLM, Ollama, OpenRouter, ...)
CANNOT_SEE = re.compile(
    r"image inputs? (?:is|are) not supported|mmproj|do(?:es)?(?: not|n't) support (?:image|vision|multimodal)"
    r"|image_url is (?:only|not) supported|not a multimodal model|(?:vision|images|multimodal) (?:is|are) not "
    r"supported|does not have vision|no endpoints found that support image|at most 0 image"
    r"|unsupported content type '?image_url"
)
SCHEMA_WORDS = ("response_format", "json_schema", "schema", "json_object", "structured output")


class LLMError(AlrefError):
    """A problem with the LLM (configuration, server, answers)."""


class LLMUnavailableError(LLMError):
    """The call failed after the retries, or with an error that retrying cannot fix."""

    exit_code = 4

    def __init__(self, message: str, kind: str, status: int | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.attempts = attempts


class LLMCannotSeeImagesError(LLMUnavailableError):
    """The model is text-only: it rejected an image."""


@dataclass(frozen=True)
class Failure:
    kind: str  # an LLMUnavailableError kind, or "schema_rejected"
    retryable: bool
    detail: str
    status: int | None = None
    retry_after: float | None = None


def retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    if value := headers.get("retry-after-ms"):
        try:
            return min(MAX_RETRY_AFTER_S, max(0.0, float(value) / 1000))
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))


def one_line(text: str, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_MESSAGES = {
    "cannot_see_images": "the model {model} at {url} cannot see images (it is text-only); use a vision model "
    "[{detail}]",
    "timeout": "{where} did not answer within {timeout} s ({tries}); raise --llm-timeout, or check that the "
    "server is not overloaded",
    "rate_limit": "{where} kept answering 429 rate limit ({tries}): wait and rerun, lower --llm-concurrency, "
    "or check your quota [{detail}]",
    "server_error": "{where} failed ({tries}): {detail}; check the server (its log, its load) and rerun",
    "connection": "cannot connect to {where} ({detail}; {tries}): check that the server is running and "
    "that --llm-base-url is right",
    "auth": "{where} refused the API key (HTTP {status}): check the key in ALREF_LLM_API_KEY or "
    "OPENAI_API_KEY (keys are never a flag) [{detail}]",
    "not_found": "{where} answered 404 for model '{model}': check the model name (--llm) and the base URL (it "
    "usually ends in /v1) [{detail}]",
    "bad_request": "{where} rejected the request (HTTP {status}): {detail}",
    "schema_rejected": "{where} rejected the JSON-schema response_format (HTTP {status}): pass --llm-json "
    "auto (or none), or set llm_json in the config file [{detail}]",
}


def unavailable(
    failure: Failure, attempts: int, *, url: str, model: str, timeout: float, secret: str | None
) -> LLMUnavailableError:
    """The one-line error for ``failure`` after ``attempts`` HTTP attempts (``secret`` scrubbed)."""
    detail = one_line(failure.detail)
    if secret and len(secret) >= 4:
        detail = detail.replace(secret, "***")
    message = _MESSAGES[failure.kind].format(
        where=f"the LLM server at {url}",
        url=url,
        model=model,
        status=failure.status,
        timeout=f"{timeout:g}",
        tries=f"{attempts} attempt{'s' if attempts != 1 else ''}",
        detail=detail,
    )
    cls = LLMCannotSeeImagesError if failure.kind == "cannot_see_images" else LLMUnavailableError
    kind = "bad_request" if failure.kind == "schema_rejected" else failure.kind
    return cls(message, kind=kind, status=failure.status, attempts=attempts)


def _connection_reason(exc: BaseException | None) -> str:
    """Why a connection failed, once: the innermost cause's text ("connection refused", "name or service
    not known"), not the openai client's "Connection error." repeated by each wrapper."""
    reason, seen = "", set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(exc).strip())
        if text and text.rstrip(".").lower() != "connection error":
            reason = text
        exc = exc.__cause__ or exc.__context__
    return reason[:1].lower() + reason[1:] if reason else "no connection"


def classify(exc: Exception, has_images: bool, structured: bool) -> Failure | None:
    """What a failed call means; ``None`` for an exception that is not a transport or server problem."""
    if isinstance(exc, openai.APITimeoutError):
        return Failure("timeout", True, "request timed out")
    if isinstance(exc, openai.APIConnectionError):
        return Failure("connection", True, _connection_reason(exc))
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        body = exc.body if exc.body is not None else ""
        detail = (
            body.get("message") or json.dumps(body) if isinstance(body, dict) else str(body or exc.message)
        )
        text = f"{exc.message} {json.dumps(body) if isinstance(body, dict) else body}".lower()
        if has_images and status >= 400 and CANNOT_SEE.search(text):
            return Failure("cannot_see_images", False, str(detail), status)
        if structured and status in (400, 422, 500, 501) and any(word in text for word in SCHEMA_WORDS):
            return Failure("schema_rejected", False, str(detail), status)
        wait = retry_after(exc.response.headers)
        if status == 429:
            return Failure("rate_limit", True, str(detail), status, wait)
        if status >= 500 or status == 408:
            return Failure("server_error", True, f"HTTP {status}: {detail}", status, wait)
        if status in (401, 403):
            return Failure("auth", False, str(detail), status)
        if status == 404:
            return Failure("not_found", False, str(detail), status)
        return Failure("bad_request", False, str(detail), status)
    if isinstance(exc, openai.APIResponseValidationError | ValueError | KeyError):
        # a 200 whose body is not a chat completion (broken JSON, HTML, no choices)
        return Failure("server_error", True, f"the answer is not a valid chat completion ({exc})")
    return None
