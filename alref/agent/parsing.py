"""A tolerant reader of LLM answers: JSON anywhere in the text (fenced or bare), else plain phrases
("Frame 3", "I choose box 2", "none of the boxes fits").

It reads schemas made of ``str`` fields plus at most one ``int`` or ``int | None`` field (the
:mod:`alref.agent.answers` models). Range checks (frame in 1..n) are the caller's job. Every
:class:`AnswerParseError` message says what went wrong and what was expected, so it can be sent back
to the LLM as a correction turn.
"""

from __future__ import annotations

import ast
import json
import re
import types
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError


class AnswerParseError(ValueError):
    """The answer could not be read; the message is written for the LLM (what to answer instead)."""


_NONE_WORDS = {"none", "null", "nil", "no", "n/a", "na", "no box", "-1", ""}
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}
_NUM = r"(-?\d+|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")(?![\w.]\d)\b"
_SEP = r"[\s*_:#=()\"'`]*"
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n`]*\n?(.*?)```", re.S)
_REFUSAL = re.compile(
    r"\bI\s*(?:can(?:'|’)?t|cannot|can not|won(?:'|’)?t|will not|am unable to|(?:'|’)m unable to|"
    r"am not able to|(?:'|’)m not able to)\s+(?:help|assist|comply|provide|fulfil+|do (?:that|this)|"
    r"answer|process|identify|support)",
    re.I,
)
_ANSWER_WORDS = re.compile(
    r"\b(?:answer|chosen|choose|chose|choosing|select|selected|selecting|pick|picked|final|conclusion)\b",
    re.I,
)


@dataclass(frozen=True)
class _Spec:
    schema: type[BaseModel]
    str_fields: tuple[str, ...]
    int_field: str | None
    nullable: bool

    @property
    def expected(self) -> str:
        parts = []
        for name, field in self.schema.model_fields.items():
            if not field.is_required():  # the short form: optional fields (e.g. "ambiguous") may be left out
                continue
            if name == self.int_field:
                what = (
                    f"<number of the {name}, or null if none fits>"
                    if self.nullable
                    else f"<number of the {name}>"
                )
                parts.append(f'"{name}": {what}')
            else:
                parts.append(f'"{name}": "..."')
        return "Answer with a JSON object {" + ", ".join(parts) + "}"


def _spec(schema: type[BaseModel]) -> _Spec:
    str_fields: list[str] = []
    ints: list[tuple[str, bool]] = []
    for name, field in schema.model_fields.items():
        ann = field.annotation
        args = set(get_args(ann)) if get_origin(ann) in (Union, types.UnionType) else set()
        if ann is str:
            str_fields.append(name)
        elif ann is int:
            ints.append((name, False))
        elif args == {int, type(None)}:
            ints.append((name, True))
    int_field, nullable = ints[0] if len(ints) == 1 else (None, False)
    return _Spec(schema, tuple(str_fields), int_field, nullable)


# JSON extraction


def _loads(text: str) -> Any | None:
    text = text.strip()
    if not text or text[0] not in "{[":
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    fixed = re.sub(r",\s*([}\]])", r"\1", text)  # trailing commas
    try:
        return json.loads(fixed)
    except ValueError:
        pass
    pythonic = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", fixed)))
    try:
        value = ast.literal_eval(pythonic)  # {'frame': 3} with single quotes
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict | list) else None


def _balanced_end(text: str, start: int) -> int | None:
    """Index after the bracket that closes the one at ``start``, skipping brackets inside strings."""
    stack: list[str] = []
    in_string: str | None = None
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == in_string:
                in_string = None
        elif ch == '"':
            in_string = ch
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if not stack or stack.pop() != ch:
                return None
            if not stack:
                return i + 1
    return None


def _candidates(text: str) -> list[tuple[Any, tuple[int, int]]]:
    """Every JSON value in ``text``, in order of preference: ```json blocks, other fences, bare JSON."""
    json_fenced: list[tuple[Any, tuple[int, int]]] = []
    other_fenced: list[tuple[Any, tuple[int, int]]] = []
    covered: list[tuple[int, int]] = []
    for m in _FENCE.finditer(text):
        lang = m.group(1).lower()
        covered.append(m.span())
        if lang not in ("", "json", "json5", "jsonc", "javascript", "js"):
            continue  # code in another language is not an answer
        body = m.group(2)
        value = _loads(body)
        found = [(value, m.span())] if value is not None else _bare(body, m.start(2))
        (json_fenced if lang.startswith("json") else other_fenced).extend(found)
    bare = [c for c in _bare(text, 0) if not any(a <= c[1][0] < b for a, b in covered)]
    return json_fenced + other_fenced + bare


def _bare(text: str, offset: int) -> list[tuple[Any, tuple[int, int]]]:
    found = []
    i = 0
    while i < len(text):
        if text[i] in "{[":
            end = _balanced_end(text, i)
            if end is not None:
                value = _loads(text[i:end])
                if value is not None:
                    found.append((value, (offset + i, offset + end)))
                    i = end
                    continue
        i += 1
    return found


def extract_json(text: str) -> Any | None:
    """The first JSON object or list in ``text`` (```json fences first, then other fences, then bare)."""
    found = _candidates(text or "")
    return found[0][0] if found else None


# answers


class _Invalid(Exception):
    pass


def _to_int(value: Any, spec: _Spec) -> int | None:
    name = spec.int_field
    if isinstance(value, list) and len(value) <= 1:
        value = value[0] if value else None
    if isinstance(value, bool) or isinstance(value, dict | list):
        raise _Invalid(f'"{name}" must be a number, not {json.dumps(value)}')
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        word = value.strip().strip("*#\"'` .").lower()
        if word in _NONE_WORDS or re.fullmatch(rf"(?:no|none of the) {name}(?:es|s)?(?: fits?)?", word):
            value = None
        elif re.fullmatch(r"-?\d+", word):
            value = int(word)
        elif word in _NUMBER_WORDS:
            value = _NUMBER_WORDS[word]
        else:
            numbers = re.findall(r"-?\d+", word)
            if len(numbers) != 1:
                raise _Invalid(f'"{name}" must be a number, not "{value}"')
            value = int(numbers[0])
    if value == -1:
        value = None
    if value is None and not spec.nullable:
        raise _Invalid(f'"{name}" must be the number of one {name}, not null')
    if value is not None and not isinstance(value, int):
        raise _Invalid(f'"{name}" must be a number, not {value!r}')
    return value


def _from_dict(data: dict[str, Any], spec: _Spec, outside: str) -> BaseModel:
    lowered = {str(k).strip().lower(): v for k, v in data.items()}
    names = set(spec.schema.model_fields)
    if not names & set(lowered) and len(data) == 1 and isinstance(next(iter(data.values())), dict):
        return _from_dict(next(iter(data.values())), spec, outside)  # {"answer": {...}}
    values: dict[str, Any] = {}
    for name, field in spec.schema.model_fields.items():
        key = name.lower()
        if key in lowered:
            value = lowered[key]
        elif name == spec.int_field:
            near = [k for k in lowered if key in k] or [
                k for k in lowered if k in ("answer", "choice", "chosen", "selected", "selection")
            ]
            if len(near) != 1:
                raise _Invalid(f'the JSON answer has no "{name}" key')
            value = lowered[near[0]]
        elif name in spec.str_fields and key == "reasoning":
            value = outside.strip() or json.dumps(data)
        elif not field.is_required():
            continue
        else:
            raise _Invalid(f'the JSON answer has no "{name}" key')
        if name == spec.int_field:
            value = _to_int(value, spec)
        elif name in spec.str_fields and not isinstance(value, str):
            value = ", ".join(map(str, value)) if isinstance(value, list) else json.dumps(value)
        values[name] = value
    try:
        return spec.schema.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _Invalid(
            f"the JSON answer is invalid at {'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from None


def _outside(text: str, span: tuple[int, int]) -> str:
    rest = text[: span[0]] + " " + text[span[1] :]
    return re.sub(r"```\w*", "", rest).strip()


def _sentences(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in re.finditer(r"(?<=[.!?])\s+|\n+", text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return spans


def _mentions(text: str, spec: _Spec) -> list[tuple[int | None, int]]:
    """(value, position) of every phrase naming a value of the int field (``None`` = no fit)."""
    name = re.escape(spec.int_field or "")
    found: list[tuple[int | None, int]] = []
    patterns = [
        rf"\b{name}\b{_SEP}(?:number|num|no\.|id|index|is)?{_SEP}{_NUM}",
        rf"\b(?:final answer|answer|choice|chosen|selected|selection)\b(?:\s+is)?[\s*:#=]*{_NUM}",
    ]
    for pattern in patterns:
        for m in re.finditer(pattern, text, re.I):
            token = m.group(1).lower()
            number = _NUMBER_WORDS.get(token, None) if not token.lstrip("-").isdigit() else int(token)
            found.append((None if number == -1 else number, m.start()))
    if spec.nullable:
        for pattern in (
            rf"\b{name}\b[\s*:#=\"'`]*(?:none|null|nil|n/a)\b",
            rf"\bnone of the (?:\w+ )?{name}(?:es|s)?\b",
            rf"\bno (?:\w+ )?{name}(?:es|s)?\b",
            rf"\bnot? (?:a single|any|one) (?:\w+ )?{name}\b",
        ):
            found.extend((None, m.start()) for m in re.finditer(pattern, text, re.I))
    return sorted(found, key=lambda item: item[1])


def _pick(text: str, spec: _Spec) -> int | None:
    found = _mentions(text, spec)
    name = spec.int_field
    if not found:
        whole = text.strip().strip("*#\"'` .").lower()
        if re.fullmatch(r"-?\d+", whole) or (spec.nullable and whole in ("none", "null")):
            return _to_int(whole, spec)
        raise _Invalid(f"no {name} number was found in the answer")
    values = {value for value, _ in found}
    if len(values) == 1:
        return _to_int(found[0][0], spec)
    for start, end in reversed(_sentences(text)):
        inside = {value for value, pos in found if start <= pos < end}
        if inside and _ANSWER_WORDS.search(text[start:end]):
            if len(inside) == 1:
                return _to_int(inside.pop(), spec)
            break
    named = ", ".join(sorted("none" if v is None else str(v) for v in values))
    raise _Invalid(f"the answer names several {_plural(name)} ({named}) and no single final choice")


def _plural(word: str | None) -> str:
    word = word or "value"
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


def _str_field(text: str, name: str) -> str | None:
    m = re.search(rf"^[\s*#>_-]*{re.escape(name)}[\s*_]*[:=][\s*_]*(.+?)\s*$", text, re.I | re.M)
    if not m:
        return None
    value = m.group(1).strip(" .*_\"'`")
    return value or None


def parse_answer(text: str, schema: type[BaseModel]) -> BaseModel:
    """Read ``text`` as an instance of ``schema``; raise :class:`AnswerParseError` saying what to fix."""
    spec = _spec(schema)
    text = (text or "").strip()
    if not text:
        raise AnswerParseError(f"the answer was empty. {spec.expected}")
    problems: list[str] = []
    candidates = _candidates(text)
    for value, span in reversed(candidates):
        if isinstance(value, dict):
            try:
                return _from_dict(value, spec, _outside(text, span))
            except _Invalid as exc:
                problems.append(str(exc))
    if spec.int_field:
        for value, span in reversed(candidates):
            if (
                isinstance(value, list)
                and len(value) <= 1
                and all(not isinstance(v, dict | list) for v in value)
            ):
                try:
                    number = _to_int(value, spec)
                except _Invalid as exc:
                    problems.append(str(exc))
                    continue
                try:
                    return _fill(spec, {spec.int_field: number}, _outside(text, span) or text, text)
                except _Invalid as exc:
                    raise AnswerParseError(f"{exc}. {spec.expected}") from None
    first_sentence = text[: _sentences(text)[0][1]]
    if _REFUSAL.search(first_sentence):
        raise AnswerParseError(f"the answer was a refusal, not a choice. {spec.expected}")
    values: dict[str, Any] = {}
    try:
        if spec.int_field:
            values[spec.int_field] = _pick(text, spec)
        return _fill(spec, values, text, text)
    except _Invalid as exc:
        if _REFUSAL.search(text) and not problems:
            raise AnswerParseError(f"the answer was a refusal, not a choice. {spec.expected}") from None
        problem = problems[0] if problems else str(exc)
        raise AnswerParseError(f"{problem}. {spec.expected}") from None


def _fill(spec: _Spec, values: dict[str, Any], reasoning: str, text: str) -> BaseModel:
    """Complete ``values`` with the str fields read from plain text; ``reasoning`` defaults to the text."""
    for name, field in spec.schema.model_fields.items():
        if name in values or name not in spec.str_fields:
            continue
        found = _str_field(text, name) if name != "reasoning" else None
        if found is None and name == "reasoning":
            found = reasoning.strip()
        if found is None:
            if not field.is_required():
                continue
            raise _Invalid(f'no "{name}" was found in the answer')
        values[name] = found
    try:
        return spec.schema.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _Invalid(
            f"the answer is invalid at {'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from None


#: the keys small models use for a tool call written as JSON text
_NAME_KEYS = ("name", "tool", "tool_name", "function", "action")
_ARGS_KEYS = ("arguments", "args", "parameters", "input", "action_input")


def _tool_call(data: Any) -> tuple[str, dict[str, Any]] | None:
    """(name, arguments) of a JSON value shaped as a tool call: a name key *and* an arguments key (a tool
    result that happens to hold a "name", e.g. ``{"object_id": 1, "name": "the dog"}``, is not a call)."""
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("function"), dict):  # the OpenAI shape {"type": "function", "function": {...}}
        data = data["function"]
    name = next((data[k] for k in _NAME_KEYS if isinstance(data.get(k), str)), None)
    key = next((k for k in _ARGS_KEYS if k in data), None)
    if name is None or key is None:
        return None
    args: Any = data[key]
    if isinstance(args, str):
        args = _loads(args) if args.strip() else {}
    return (name, args) if isinstance(args, dict) else None


def _calls(data: Any) -> list[tuple[str, dict[str, Any]]]:
    """The calls of one JSON value when *all* of it is calls: one, a list of them, or ``{"tool_calls": [...]}``."""
    items = data.get("tool_calls") if isinstance(data, dict) and "tool_calls" in data else data
    items = items if isinstance(items, list) else [items]
    calls = [_tool_call(item) for item in items]
    return [c for c in calls if c is not None] if calls and None not in calls else []


def tool_calls_in_text(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Tool calls a model wrote as JSON in its answer instead of ``tool_calls`` (what small local models
    behind llama.cpp do with ``tool_choice="auto"``): ``{"name": ..., "arguments": {...}}`` (or
    ``tool``/``args``/``parameters``), a list of them, or ``{"tool_calls": [...]}``. Only when the whole
    answer is such JSON, or a fenced block (```json or a bare fence) is: JSON inside prose (a model
    quoting a tool result, say) is an answer, not a call. Returns (name, arguments) pairs; the caller
    checks the names against its tools."""
    whole = _loads(text)
    if whole is not None:
        return _calls(whole)
    for m in _FENCE.finditer(text):
        if m.group(1).lower() not in ("", "json", "json5", "jsonc"):
            continue
        if calls := _calls(_loads(m.group(2))):
            return calls
    return []
