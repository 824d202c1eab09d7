"""A clip's conversation with the LLM: turns kept in graph state as text + image paths, asked
through the LLM client, and the ask-parse-validate step that the ``choose_*`` nodes share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from alref.agent.context import AgentContext
from alref.agent.llm import LLMReply, LLMUnavailableError, Turn
from alref.agent.parsing import AnswerParseError, parse_answer
from alref.agent.state import ClipState, Message
from alref.prompts import render

M = TypeVar("M", bound=BaseModel)


def message(role: str, text: str, images: Sequence[str] = ()) -> Message:
    return {"role": role, "text": text, "images": [str(p) for p in images]}


def turns(conversation: Sequence[Message]) -> list[Turn]:
    return [Turn(m["role"], m["text"], tuple(m["images"])) for m in conversation]  # type: ignore[arg-type]


def start(user_text: str, images: Sequence[str] = ()) -> list[Message]:
    return [message("system", render("system")), message("user", user_text, images)]


def trace_context(state: ClipState, **extra: Any) -> dict[str, Any]:
    return {"ref": state.get("ref_id"), "clip": state.get("clip", {}).get("index"), **extra}


def ask(ctx: AgentContext, conversation: list[Message], step: str, context: dict[str, Any],
        schema: type[BaseModel] | None = None, once: bool = False, max_tokens: int | None = None) -> LLMReply:  # fmt: skip
    """Ask with the whole conversation so far; a failure is raised for the node to route to its
    fallback (a fatal one also marks the client dead, so later steps stop asking)."""
    return ctx.llm.ask(
        turns(conversation), schema, step=step, context=context, once=once, max_tokens=max_tokens
    )


#: an answer cut at the token limit is asked again with twice the budget, up to this many times it
MAX_BUDGET_FACTOR = 4


def describe(
    ctx: AgentContext, state: ClipState, conversation: list[Message], step: str, answer_key: str
) -> dict[str, Any]:
    """A free-text step: ask with the conversation so far (unless the LLM is down) and keep the answer
    in the conversation and under ``answer_key``."""
    if ctx.llm_dead:
        return {"conversation": conversation, "llm_down": ctx.llm_dead}
    try:
        reply = ask(ctx, conversation, step, trace_context(state))
    except LLMUnavailableError as error:
        return {"conversation": conversation, "llm_down": str(error)}
    conversation.append(message("assistant", reply.text))
    return {"conversation": conversation, answer_key: reply.text}


def choose(
    ctx: AgentContext,
    state: ClipState,
    *,
    step: str,
    schema: type[M],
    first_prompt: str,
    expected: str,
    attempts_key: str,
    error_key: str,
    validate: Callable[[M], None],
    first_images: Sequence[str] = (),
    cuts_key: str | None = None,
) -> tuple[dict[str, Any], M | None]:
    """One attempt of a deciding step. The first attempt asks ``first_prompt``; a retry appends the
    previous validation error as a new turn. An answer cut at the token limit (``finish_reason``
    "length") is recorded as such, and the re-ask says so and doubles the budget (``cuts_key`` counts
    the cuts; at most :data:`MAX_BUDGET_FACTOR` times the first budget). Returns (state update, valid
    answer or None)."""
    attempt = state.get(attempts_key, 0) + 1
    cuts = state.get(cuts_key, 0) if cuts_key else 0
    base = ctx.llm.budget(schema)
    budget = base * min(2**cuts, MAX_BUDGET_FACTOR)
    conversation = list(state.get("conversation", []))
    if attempt == 1:
        conversation.append(message("user", first_prompt, first_images))
    else:
        conversation.append(message("user", render("retry", error=state.get(error_key), expected=expected)))
    update: dict[str, Any] = {attempts_key: attempt, "conversation": conversation}
    try:
        reply = ask(ctx, conversation, step, trace_context(state, attempt=attempt), schema, max_tokens=budget)
    except LLMUnavailableError as error:
        return update | {"llm_down": str(error)}, None
    conversation.append(message("assistant", reply.text))
    if reply.finish_reason == "length":
        more = min(budget * 2, base * MAX_BUDGET_FACTOR)
        text = (f"the answer was cut at the token limit ({budget} tokens) before it was complete; "
                f"answer in the short form, with a brief reasoning" + (f" (the limit is now {more} tokens)" if more > budget else ""))  # fmt: skip
        ctx.tracer.event("validation_error", step=step, **trace_context(state, attempt=attempt), error=text,
                         cut_at_tokens=budget)  # fmt: skip
        return update | {error_key: text} | ({cuts_key: cuts + 1} if cuts_key else {}), None
    try:
        answer = parse_answer(reply.text, schema)
        validate(answer)
    except (AnswerParseError, ValueError) as error:
        text = " ".join(str(error).split())
        ctx.tracer.event("validation_error", step=step, **trace_context(state, attempt=attempt), error=text)
        return update | {error_key: text}, None
    return update | {error_key: None}, answer  # type: ignore[return-value]


def fallback_reason(state: Any, attempts_key: str, error_key: str) -> str:
    """Why a deciding step falls back to its deterministic choice."""
    if state.get("llm_down"):
        return f"LLM unavailable: {state['llm_down']}"
    return f"no valid answer after {state.get(attempts_key, 0)} attempts (last: {state.get(error_key)})"


def route_choice(state: Any, decided_key: str, attempts_key: str, ok: str, retry: str, fallback: str) -> str:
    """The conditional edge after a deciding step: valid → ``ok``; invalid with attempts left →
    ``retry`` (the same node); exhausted or LLM down → ``fallback``."""
    if state.get(decided_key) == "llm":
        return ok
    if not state.get("llm_down") and state.get(attempts_key, 0) < state.get("max_attempts", 3):
        return retry
    return fallback
