"""The one way alref reaches an LLM: a ``ChatOpenAI`` (OpenAI or any OpenAI-compatible server) behind
:class:`LLMClient`, which adds what a long unattended run needs:

- images as JPEG data URLs, downscaled to ``llm_max_image_side``, with the configured detail;
- a JSON-schema ``response_format`` for structured answers, dropped for good when the server rejects it;
- transport retries (timeout, 429 with ``Retry-After``, 5xx, refused connection) with exponential backoff
  through an injectable ``sleep``; everything else fails at once with a one-line :class:`LLMUnavailableError`,
  and a text-only model that is sent an image fails with :class:`LLMCannotSeeImagesError`;
- an on-disk answer cache keyed by everything sent (images by the sha256 of the bytes sent);
- one ``llm_call`` trace event per question (images by path, never base64; the API key scrubbed);
- ``once=True``: a question that every branch asks alike (each clip of a reference asks the same
  syntax question) is answered once for the client's life, even with the disk cache off; concurrent
  identical asks wait for the first;
- once a failure shows that no later call can succeed (refused connection, bad key, unknown model, a
  text-only model), :attr:`LLMClient.dead` says why, so callers can stop asking;
- counts of what happened (:meth:`LLMClient.usage`): asks, HTTP calls, transport retries, cache hits,
  failures and the tokens of accepted requests.

Two kinds of callers share it: the strategy steps (:meth:`LLMClient.ask`: turns of text and image
paths, raw text back) and the chat agent (:meth:`LLMClient.chat`: LangChain messages and tools, an
``AIMessage`` back). Parsing a strategy answer is the caller's job
(:func:`alref.agent.parsing.parse_answer`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from PIL import Image
from pydantic import BaseModel

from alref.agent.cache import AnswerCache
from alref.agent.llm_errors import (
    Failure,
    LLMCannotSeeImagesError,
    LLMError,
    LLMUnavailableError,
    classify,
    unavailable,
)
from alref.config import Settings
from alref.trace.record import NullTracer, Tracer

OPENAI_URL = "https://api.openai.com/v1"
MAX_BACKOFF_S = 30.0
#: failures after which no later call of this client can succeed
FATAL_KINDS = frozenset({"connection", "auth", "not_found", "cannot_see_images"})

__all__ = [
    "FATAL_KINDS",
    "LLMCannotSeeImagesError",
    "LLMClient",
    "LLMUsage",
    "LLMError",
    "LLMReply",
    "LLMUnavailableError",
    "Turn",
    "image_tokens",
]


@dataclass(frozen=True)
class Turn:
    role: Literal["system", "user", "assistant"]
    text: str
    images: tuple[str, ...] = ()  # image FILE paths, sent after the text (user turns only)


@dataclass
class LLMReply:
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    image_tokens_estimate: int = 0  # OpenAI's published formula for the detail used, summed over images
    latency_s: float = 0.0
    cache_hit: bool = False
    transport_attempts: int = 0  # HTTP attempts made (0 on a cache hit)
    structured: bool = False  # whether a JSON-schema response_format was sent
    finish_reason: str | None = None  # "stop", "length" (cut at llm_max_tokens), ...


_CACHED = ("text", "prompt_tokens", "completion_tokens", "structured", "finish_reason")


class LLMUsage(TypedDict):
    """What one client did, counted as it happened (result.json's ``llm``)."""

    model: str
    asks: int  # questions asked by alref (each one llm_call trace event)
    http_calls: int  # requests sent to the server, transport retries included
    transport_retries: int  # requests re-sent after a timeout, 429, 5xx or refused connection
    cache_hits: int  # questions answered from the disk cache or by an identical earlier question
    failed: int  # questions that got no answer after the retries
    prompt_tokens: int  # of the requests the server answered (its own usage figures)
    completion_tokens: int
    image_tokens_estimate: int  # estimated image tokens of the answered requests (OpenAI's formula)


@dataclass(frozen=True)
class _Image:
    path: str
    data_url: str
    sha256: str
    width: int
    height: int


def image_tokens(width: int, height: int, detail: str) -> int:
    """OpenAI's published image cost; ``auto`` is counted as ``high`` (an upper bound)."""
    if detail == "low":
        return 85
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return 170 * math.ceil(w / 512) * math.ceil(h / 512) + 85


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise LLMError(f"cannot read the image {path} to send to the LLM: {exc}") from None


def _encode_image(path: str, data: bytes, max_side: int) -> _Image:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            width, height = img.size
            scale = max_side / max(width, height)
            if scale >= 1 and img.format == "JPEG" and img.mode == "RGB":
                sent = data  # already a small enough JPEG: send it untouched
            else:
                out = img.convert("RGB")
                if scale < 1:
                    width, height = max(1, round(width * scale)), max(1, round(height * scale))
                    out = out.resize((width, height), Image.Resampling.LANCZOS)
                buffer = io.BytesIO()
                out.save(buffer, format="JPEG", quality=90)
                sent = buffer.getvalue()
    except (OSError, ValueError) as exc:
        raise LLMError(f"cannot read the image {path} to send to the LLM: {exc}") from None
    url = "data:image/jpeg;base64," + base64.b64encode(sent).decode("ascii")
    return _Image(path, url, hashlib.sha256(sent).hexdigest(), width, height)


def _answer_text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, list):
        content = "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in content)
    return content or str(message.additional_kwargs.get("refusal") or "")


_admission: Callable[[], AbstractContextManager[Any]] = nullcontext


def set_admission(slot: Callable[[], AbstractContextManager[Any]] | None) -> None:
    """Hold every HTTP call to the LLM inside ``slot()`` (None: no limit beyond ``--llm-concurrency``
    per run). A Ray worker installs a slot of a semaphore shared by the whole cluster, so the cluster's
    calls at once stay within ``--llm-concurrency`` however many workers there are."""
    global _admission
    _admission = slot or nullcontext


class LLMClient:
    """Asks the configured vision LLM; safe to call from several threads at once."""

    def __init__(
        self,
        settings: Settings,
        chat_model: BaseChatModel | None = None,
        tracer: Tracer | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.base_url = (settings.llm_base_url or OPENAI_URL).rstrip("/")
        self._key = settings.api_key
        local = bool(settings.llm_base_url) and "api.openai.com" not in self.base_url
        self._local = local and chat_model is None  # a ChatOpenAI built here for a local server
        if chat_model is None:
            from langchain_openai import ChatOpenAI

            chat_model = ChatOpenAI(
                model=settings.llm_model,
                base_url=settings.llm_base_url,
                api_key=self._key or "not-needed",
                temperature=settings.llm_temperature,
                seed=settings.llm_seed,
                max_tokens=settings.llm_max_tokens,  # sent as max_completion_tokens
                timeout=settings.llm_timeout,
                max_retries=0,  # we retry: a 5xx must not be tripled by the openai client
                # local servers (llama.cpp, Ollama, LM Studio) read max_tokens, not max_completion_tokens
                extra_body={"max_tokens": settings.llm_max_tokens} if local else None,
            )
        self.chat_model = chat_model
        self.model_name: str = getattr(chat_model, "model_name", None) or settings.llm_model
        self.tracer = tracer or NullTracer()
        self.tracer.add_secret(self._key)
        self._sleep = sleep
        self._cache = AnswerCache(settings.cache_dir / "llm") if settings.cache else None
        self._structured_ok = settings.llm_json != "none"
        self._lock = threading.Lock()
        self._images: dict[tuple[str, int], _Image] = {}
        self._memory: dict[str, dict[str, Any]] = {}  # answers of this client's life, by cache key
        self._memory_locks: dict[str, threading.Lock] = {}
        self._dead: str | None = None
        self._dead_error: LLMUnavailableError | None = None
        self._usage: LLMUsage = LLMUsage(model=self.model_name, asks=0, http_calls=0, transport_retries=0,
                                         cache_hits=0, failed=0, prompt_tokens=0, completion_tokens=0,
                                         image_tokens_estimate=0)  # fmt: skip

    @property
    def calls(self) -> int:
        """HTTP requests sent so far."""
        with self._lock:
            return self._usage["http_calls"]

    @property
    def structured_enabled(self) -> bool:
        return self._structured_ok

    @property
    def dead(self) -> str | None:
        """Why no later call can succeed (the first fatal failure), or None."""
        return self._dead

    @property
    def dead_kind(self) -> str | None:
        """The kind of that failure: connection, auth, not_found or cannot_see_images."""
        return self._dead_error.kind if self._dead_error is not None else None

    def usage(self) -> LLMUsage:
        with self._lock:
            return LLMUsage(**self._usage)  # type: ignore[typeddict-item]

    def _count(self, **amounts: int) -> None:
        with self._lock:
            for key, value in amounts.items():
                self._usage[key] += value  # type: ignore[literal-required]

    def _note_failure(self, exc: BaseException) -> None:
        self._count(failed=1)
        if isinstance(exc, LLMUnavailableError) and exc.kind in FATAL_KINDS:
            with self._lock:
                if self._dead is None:
                    self._dead, self._dead_error = str(exc), exc

    def _check_alive(self) -> None:
        """After a fatal failure no request is sent again: the same error, at once."""
        error = self._dead_error
        if error is not None:
            raise type(error)(str(error), kind=error.kind, status=error.status, attempts=0)

    # strategy steps: turns in, text out

    def ask(
        self,
        turns: Sequence[Turn],
        schema: type[BaseModel] | None = None,
        *,
        step: str,
        context: Mapping[str, Any] | None = None,
        once: bool = False,
        max_tokens: int | None = None,
    ) -> LLMReply:
        """Send ``turns`` and return the raw answer; raises :class:`LLMUnavailableError` on failure.
        ``once``: answer this exact question once for the client's life (see the module docstring).
        ``max_tokens``: the answer budget, default :meth:`budget`."""
        started = time.monotonic()
        budget = max_tokens or self.budget(schema)
        images = [[self._image(p) for p in turn.images] for turn in turns]
        detail = self.settings.llm_image_detail
        estimate = sum(image_tokens(i.width, i.height, detail) for sent in images for i in sent)
        structured = schema is not None and self._structured_ok
        event = {"step": step, "context": dict(context or {}), "model": self.model_name, "max_tokens": budget}
        event["messages"] = self._trace_messages(turns)
        self._count(asks=1)
        try:
            reply = self._cached_call(turns, images, schema, structured, step, once, budget)
        except Exception as exc:
            self._note_failure(exc)
            latency = round(time.monotonic() - started, 4)
            kind = exc.kind if isinstance(exc, LLMUnavailableError) else type(exc).__name__
            attempts = exc.attempts if isinstance(exc, LLMUnavailableError) else None
            failure = {"error_kind": kind, "error": str(exc), "transport_attempts": attempts}
            failure |= {"latency_s": latency, "structured": structured, "image_tokens_estimate": 0}
            self.tracer.event("llm_call", **event, ok=False, **failure)
            raise
        reply.image_tokens_estimate = 0 if reply.cache_hit else estimate
        reply.latency_s = round(time.monotonic() - started, 4)
        self._count_reply(reply)
        outcome = {k: v for k, v in vars(reply).items() if k != "text"}
        self.tracer.event("llm_call", **event, ok=True, answer=reply.text, **outcome)
        return reply

    def _count_reply(self, reply: LLMReply) -> None:
        if reply.cache_hit:
            self._count(cache_hits=1)
            return
        self._count(prompt_tokens=reply.prompt_tokens or 0, completion_tokens=reply.completion_tokens or 0,
                    image_tokens_estimate=reply.image_tokens_estimate)  # fmt: skip

    def _remembered(
        self, key: str, compute: Callable[[], tuple[dict[str, Any], bool]]
    ) -> tuple[dict[str, Any], bool]:
        """``compute()`` once per key for this client's life (``compute`` returns (value, keep));
        concurrent identical questions wait for the first, and none is sent once the client is dead.
        Returns (value, answered_from_memory)."""
        with self._lock:
            lock = self._memory_locks.setdefault(key, threading.Lock())
        with lock:
            if key in self._memory:
                return self._memory[key], True
            self._check_alive()
            value, keep = compute()
            if keep:
                self._memory[key] = value
            return value, False

    def budget(self, schema: type[BaseModel] | None) -> int:
        """The answer budget: ``llm_json_max_tokens`` for a JSON answer, ``llm_max_tokens`` for free text."""
        s = self.settings
        return min(s.llm_json_max_tokens, s.llm_max_tokens) if schema is not None else s.llm_max_tokens

    def _cached_call(
        self, turns: Sequence[Turn], images: list[list[_Image]], schema: Any, structured: bool, step: str,
        once: bool = False, budget: int | None = None,
    ) -> LLMReply:  # fmt: skip
        budget = budget or self.budget(schema)
        key = AnswerCache.key(self._cache_payload(turns, images, schema, structured, budget))

        def compute() -> tuple[dict[str, Any], bool]:
            if self._cache is not None:
                with self._cache.lock(key):  # another process may be asking the same
                    stored = self._cache.get(key)
                    if stored is not None and isinstance(stored.get("text"), str):
                        return {**stored, "cache_hit": True}, True
                    reply = self._call(turns, images, schema, structured, step, budget)
                    value = {"model": self.model_name, **{k: getattr(reply, k) for k in _CACHED}}
                    if _keep(reply):
                        self._cache.put(key, value)
                        if reply.structured != structured:  # the schema was rejected: later asks send none
                            unstructured = self._cache_payload(turns, images, schema, False, budget)
                            self._cache.put(AnswerCache.key(unstructured), value)
                    return {**value, "transport_attempts": reply.transport_attempts}, _keep(reply)
            reply = self._call(turns, images, schema, structured, step, budget)
            value = {k: getattr(reply, k) for k in _CACHED}
            return {**value, "transport_attempts": reply.transport_attempts}, _keep(reply)

        value, remembered = self._remembered(key, compute) if once else (compute()[0], False)
        hit = remembered or bool(value.get("cache_hit"))
        return LLMReply(**{k: value.get(k) for k in _CACHED}, cache_hit=hit,
                        transport_attempts=0 if hit else value.get("transport_attempts", 0))  # fmt: skip

    # the chat agent: LangChain messages and tools in, an AIMessage out

    def chat(
        self,
        messages: Sequence[BaseMessage],
        tools: Sequence[Any] = (),
        *,
        images: Sequence[str] = (),
        step: str = "chat",
        context: Mapping[str, Any] | None = None,
    ) -> AIMessage:
        """One step of a tool-calling conversation, with the same retries, error recognition, cache
        and trace as :meth:`ask`. ``images`` (file paths) are shown after the messages, as a user
        turn; they are downscaled like every image alref sends, and saved in the trace."""
        from langchain_core.messages import messages_from_dict, messages_to_dict
        from langchain_core.utils.function_calling import convert_to_openai_tool

        started = time.monotonic()
        sent = [self._image(p) for p in images]
        detail = self.settings.llm_image_detail
        request = list(messages)
        if sent:
            parts: list[str | dict[str, Any]] = [{"type": "text", "text": "The images the last tools made:"}]
            parts += [{"type": "image_url", "image_url": {"url": i.data_url, "detail": detail}} for i in sent]
            request.append(HumanMessage(content=parts))
        specs = [convert_to_openai_tool(t) for t in tools]
        event: dict[str, Any] = {"step": step, "context": dict(context or {}), "model": self.model_name}
        event["messages"] = self._trace_chat(messages, images)
        self._count(asks=1)
        payload = {"chat": self._cache_base(), "tools": specs,
                   "messages": messages_to_dict(list(messages)), "images": [i.sha256 for i in sent]}  # fmt: skip
        key = AnswerCache.key(payload)

        def compute() -> tuple[dict[str, Any], bool]:
            if self._cache is not None:
                stored = self._cache.get(key)
                if stored is not None and isinstance(stored.get("message"), dict):
                    return {**stored, "cache_hit": True}, True
            model = self.chat_model.bind_tools(specs) if specs else self.chat_model
            answer, attempts = self._send(
                lambda kwargs: model.invoke(request, **kwargs), bool(sent), None, step
            )
            value = {"message": messages_to_dict([answer])[0], "transport_attempts": attempts}
            finish = answer.response_metadata.get("finish_reason")
            keep = finish not in ("length", "content_filter") and bool(answer.content or answer.tool_calls)
            if keep and self._cache is not None:
                self._cache.put(key, {"model": self.model_name, "message": value["message"]})
            return value, keep

        try:
            value, remembered = compute()[0], False
        except Exception as exc:
            self._note_failure(exc)
            kind = exc.kind if isinstance(exc, LLMUnavailableError) else type(exc).__name__
            attempts = exc.attempts if isinstance(exc, LLMUnavailableError) else None
            self.tracer.event("llm_call", **event, ok=False, error_kind=kind, error=str(exc),
                              transport_attempts=attempts, latency_s=round(time.monotonic() - started, 4),
                              image_tokens_estimate=0)  # fmt: skip
            raise
        answer = messages_from_dict([value["message"]])[0]
        hit = remembered or bool(value.get("cache_hit"))
        usage = getattr(answer, "usage_metadata", None) or {}
        reply = LLMReply(
            text=_answer_text(answer), prompt_tokens=usage.get("input_tokens"),
            completion_tokens=usage.get("output_tokens"),
            image_tokens_estimate=0 if hit else sum(image_tokens(i.width, i.height, detail) for i in sent),
            latency_s=round(time.monotonic() - started, 4), cache_hit=hit,
            transport_attempts=0 if hit else value.get("transport_attempts", 0),
            finish_reason=answer.response_metadata.get("finish_reason"),
        )  # fmt: skip
        self._count_reply(reply)
        outcome = {k: v for k, v in vars(reply).items() if k != "text"}
        calls = [{"name": c["name"], "args": c["args"]} for c in getattr(answer, "tool_calls", [])]
        self.tracer.event("llm_call", **event, ok=True, answer=reply.text, tool_calls=calls, **outcome)
        return answer  # type: ignore[return-value]

    # building requests

    def _image(self, path: str) -> _Image:
        """The image as sent; encoded once per file content (tiles are shown in several questions)."""
        data = _read(str(path))
        memo = (hashlib.sha256(data).hexdigest(), self.settings.llm_max_image_side)
        with self._lock:
            cached = self._images.get(memo)
        if cached is None:
            cached = _encode_image(str(path), data, self.settings.llm_max_image_side)
            with self._lock:
                if len(self._images) > 256:
                    self._images.clear()
                self._images[memo] = cached
        return cached

    def _messages(self, turns: Sequence[Turn], images: list[list[_Image]]) -> list[BaseMessage]:
        messages: list[BaseMessage] = []
        detail = self.settings.llm_image_detail
        for turn, sent in zip(turns, images, strict=True):
            if turn.role == "system":
                messages.append(SystemMessage(content=turn.text))
            elif turn.role == "assistant":
                messages.append(AIMessage(content=turn.text))
            elif not sent:
                messages.append(HumanMessage(content=turn.text))
            else:
                parts: list[str | dict[str, Any]] = [{"type": "text", "text": turn.text}]
                parts += [
                    {"type": "image_url", "image_url": {"url": i.data_url, "detail": detail}} for i in sent
                ]
                messages.append(HumanMessage(content=parts))
            if sent and turn.role != "user":
                raise LLMError(f"only user turns can carry images (a {turn.role} turn has {len(sent)})")
        return messages

    def _cache_base(self) -> dict[str, Any]:
        s = self.settings
        return dict(model=self.model_name, base_url=self.base_url, temperature=s.llm_temperature, seed=s.llm_seed,
                    max_tokens=s.llm_max_tokens, detail=s.llm_image_detail)  # fmt: skip

    def _cache_payload(
        self, turns: Sequence[Turn], images: list[list[_Image]], schema: Any, structured: bool, budget: int
    ) -> dict[str, Any]:
        sent = [
            {"role": t.role, "text": t.text, "images": [i.sha256 for i in im]}
            for t, im in zip(turns, images, strict=True)
        ]
        return self._cache_base() | dict(
            max_tokens=budget,
            schema=None if schema is None else [schema.__name__, schema.model_json_schema()],
            structured=structured,
            messages=sent,
        )

    def _trace_messages(self, turns: Sequence[Turn]) -> list[dict[str, Any]]:
        if not self.tracer.enabled:
            return []
        return [
            {"role": t.role, "text": t.text, "images": [self.tracer.image(p) for p in t.images]}
            for t in turns
        ]

    def _trace_chat(self, messages: Sequence[BaseMessage], images: Sequence[str]) -> list[dict[str, Any]]:
        """The chat's messages as the trace shows them: role, text, tool calls; the images sent after them."""
        if not self.tracer.enabled:
            return []
        roles = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
        out: list[dict[str, Any]] = []
        for m in messages:
            entry: dict[str, Any] = {"role": roles.get(m.type, m.type), "text": _answer_text(m), "images": []}
            if getattr(m, "tool_calls", None):
                entry["tool_calls"] = [{"name": c["name"], "args": c["args"]} for c in m.tool_calls]
            if m.type == "tool":
                entry["tool"] = getattr(m, "name", None)
            out.append(entry)
        if images:
            out.append({"role": "user", "text": "The images the last tools made:",
                        "images": [self.tracer.image(p) for p in images]})  # fmt: skip
        return out

    # calling

    def _call(
        self, turns: Sequence[Turn], images: list[list[_Image]], schema: Any, structured: bool, step: str,
        budget: int,
    ) -> LLMReply:  # fmt: skip
        messages = self._messages(turns, images)
        state = {"structured": structured}
        limit: dict[str, Any] = {}
        if budget != self.settings.llm_max_tokens:  # the model was built with llm_max_tokens
            limit = {"max_tokens": budget} | ({"extra_body": {"max_tokens": budget}} if self._local else {})

        def send(kwargs: dict[str, Any]) -> BaseMessage:
            return self.chat_model.invoke(messages, **kwargs, **limit)

        try:
            message, attempts = self._send(send, any(images), schema if structured else None, step, state)
        except _CutAnswer as cut:
            return _from_completion(cut.completion, cut.attempts, state["structured"])
        usage = getattr(message, "usage_metadata", None) or {}
        return LLMReply(
            text=_answer_text(message),
            prompt_tokens=usage.get("input_tokens"),
            completion_tokens=usage.get("output_tokens"),
            transport_attempts=attempts,
            structured=state["structured"],
            finish_reason=message.response_metadata.get("finish_reason"),
        )

    def _send(
        self,
        send: Callable[[dict[str, Any]], BaseMessage],
        has_images: bool,
        schema: Any,
        step: str,
        state: dict[str, Any] | None = None,
    ) -> tuple[BaseMessage, int]:
        """``send`` with transport retries: (message, HTTP attempts). ``state["structured"]`` is turned
        off when the server rejects the JSON schema (for the rest of this client's life)."""
        state = state if state is not None else {"structured": False}
        attempts = retries = 0
        while True:
            kwargs: dict[str, Any] = {}
            if state["structured"] and schema is not None:
                json_schema = {"name": schema.__name__, "schema": schema.model_json_schema(), "strict": False}
                kwargs["response_format"] = {"type": "json_schema", "json_schema": json_schema}
            attempts += 1
            self._count(http_calls=1)
            try:
                with _admission():
                    return send(kwargs), attempts
            except (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError) as exc:
                # with a response_format the openai client raises instead of returning a cut answer
                raise _CutAnswer(getattr(exc, "completion", None), attempts) from None
            except Exception as exc:
                failure = classify(exc, has_images, state["structured"])
                if failure is None:
                    raise
                trace = {"step": step, "status": failure.status, "error": self._scrub(failure.detail)}
                if failure.kind == "schema_rejected" and self.settings.llm_json == "auto":
                    self._structured_ok = state["structured"] = False
                    self.tracer.event("llm_structured_disabled", **trace)
                    continue
                if not failure.retryable or retries >= self.settings.llm_transport_retries:
                    raise self._error(failure, attempts) from None
                wait = failure.retry_after
                if wait is None:
                    wait = min(MAX_BACKOFF_S, self.settings.llm_backoff * 2**retries)
                self.tracer.event(
                    "llm_retry", **trace, error_kind=failure.kind, attempt=attempts, wait_s=wait
                )
                retries += 1
                self._count(transport_retries=1)
                self._sleep(wait)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key and len(self._key) >= 4 else text

    def _error(self, failure: Failure, attempts: int) -> LLMUnavailableError:
        timeout = self.settings.llm_timeout
        return unavailable(
            failure, attempts, url=self.base_url, model=self.model_name, timeout=timeout, secret=self._key
        )


class _CutAnswer(Exception):
    def __init__(self, completion: Any, attempts: int) -> None:
        self.completion, self.attempts = completion, attempts


def _keep(reply: LLMReply) -> bool:
    """Whether an answer may be reused: not empty, not cut at the token limit, not filtered."""
    return bool(reply.text.strip()) and reply.finish_reason not in ("length", "content_filter")


def _from_completion(completion: Any, attempts: int, structured: bool) -> LLMReply:
    """The answer of a completion the openai client refused to parse (cut at max tokens, filtered)."""
    choice = completion.choices[0] if completion is not None and completion.choices else None
    usage = getattr(completion, "usage", None)
    return LLMReply(
        text=(choice.message.content or choice.message.refusal or "") if choice else "",
        prompt_tokens=getattr(usage, "prompt_tokens", None),
        completion_tokens=getattr(usage, "completion_tokens", None),
        transport_attempts=attempts,
        structured=structured,
        finish_reason=choice.finish_reason if choice else "content_filter",
    )
