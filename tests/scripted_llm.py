"""A scripted LangChain chat model for unit tests (no HTTP): answers come from a list.

``ScriptedChatModel(["answer 1", ValueError("boom"), lambda messages: "answer 3"])``: each call takes
the next entry: a ``str`` is the answer, an ``AIMessage`` is returned as is (tool calls), an exception
is raised, a callable gets the messages and returns either. Every call's messages and keyword
arguments (e.g. ``response_format``) are recorded in ``.calls``. :func:`http_error` builds the openai
exceptions a real server's status codes turn into.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import httpx2
import openai
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr


class ScriptExhaustedError(AssertionError):
    """The code under test asked the LLM more often than the test scripted."""


class ScriptedChatModel(BaseChatModel):
    script: list[Any] = []
    calls: list[dict[str, Any]] = []
    model_name: str = "scripted"
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, script: Sequence[Any] = (), **kwargs: Any) -> None:
        super().__init__(script=list(script), calls=[], **kwargs)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def remaining(self) -> int:
        return len(self.script)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self._lock:
            self.calls.append({"messages": list(messages), "kwargs": dict(kwargs)})
            if not self.script:
                raise ScriptExhaustedError(
                    f"ScriptedChatModel: the script is exhausted after {len(self.calls) - 1} answers; "
                    "the code asked the LLM once more than the test expected"
                )
            entry = self.script.pop(0)
        if callable(entry) and not isinstance(entry, BaseException | AIMessage):
            entry = entry(messages)
        if isinstance(entry, BaseException):
            raise entry
        message = entry if isinstance(entry, AIMessage) else AIMessage(content=str(entry))
        if message.usage_metadata is None:
            prompt = sum(len(str(m.content)) for m in messages) // 4 + 1
            completion = len(str(message.content)) // 4 + 1
            message.usage_metadata = {
                "input_tokens": prompt,
                "output_tokens": completion,
                "total_tokens": prompt + completion,
            }
        message.response_metadata.setdefault("finish_reason", "stop")
        return ChatResult(generations=[ChatGeneration(message=message)])


def http_error(
    status: int, body: dict | str = "", headers: dict[str, str] | None = None
) -> openai.APIStatusError:
    """The openai exception for an HTTP ``status`` answer with ``body`` (as the openai client raises it)."""
    request = httpx2.Request("POST", "http://scripted.invalid/v1/chat/completions")
    if isinstance(body, dict):
        response = httpx2.Response(status, json=body, headers=headers, request=request)
    else:
        response = httpx2.Response(status, text=body, headers=headers, request=request)
    inner = body.get("error", body) if isinstance(body, dict) else body
    message = inner.get("message", str(inner)) if isinstance(inner, dict) else str(inner)
    classes: dict[int, type[openai.APIStatusError]] = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        403: openai.PermissionDeniedError,
        404: openai.NotFoundError,
        409: openai.ConflictError,
        422: openai.UnprocessableEntityError,
        429: openai.RateLimitError,
    }
    cls = classes.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
    return cls(f"Error code: {status} - {message}", response=response, body=inner)


def timeout_error() -> openai.APITimeoutError:
    return openai.APITimeoutError(
        request=httpx2.Request("POST", "http://scripted.invalid/v1/chat/completions")
    )


def connection_error() -> openai.APIConnectionError:
    request = httpx2.Request("POST", "http://scripted.invalid/v1/chat/completions")
    return openai.APIConnectionError(message="Connection error.", request=request)
