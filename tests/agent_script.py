"""A content-based LLM script for agent tests: it recognises which step a request is from its
prompt text, so the answers do not depend on the order in which parallel clips ask."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import verify_script

STEP_MARKERS = [
    ("retry", "could not be used"),
    ("describe_event", "Describe what happens"),
    ("choose_frame", "choose the single frame"),
    ("describe_boxes", "candidate boxes drawn by an object detector"),
    ("syntax_analysis", "Analyse the grammar"),
    ("choose_box", "Choose the one numbered box"),
    ("choose_box", "was asked which box they mean"),  # the person's words, sent back (--ask)
    ("verify_masks", "judge whether its outlined mask is what its sentence refers to"),
]


text_of = verify_script.text_of  # a message's text, whatever its shape (one helper for both scripts)


def step_of(messages: list[Any]) -> str:
    last = text_of(messages[-1])
    for step, marker in STEP_MARKERS:
        if marker in last:
            if step == "retry":
                return "retry_frame" if '"frame"' in last else "retry_box"
            return step
    raise AssertionError(f"unrecognised prompt: {last[:200]}")


def clip_start(messages: list[Any]) -> int | None:
    """The first frame of the clip, read from the describe_event prompt ("frames 10 to 19 of the video")."""
    for message in messages:
        match = re.search(r"frames (\d+) to (\d+) of the video", text_of(message))
        if match:
            return int(match.group(1))
    return None


class Script:
    """``answers[step]`` is a string, or a callable (clip_start, attempt) -> string."""

    def __init__(self, **answers: str | Callable[[int | None, int], str]) -> None:
        self.answers: dict[str, Any] = {
            "describe_event": "A red square moves from left to right; a blue circle stays below.",
            "choose_frame": json.dumps({"reasoning": "the square is whole in frame 2", "frame": 2}),
            "describe_boxes": "Box 1 holds the red square. Box 2 holds part of the circle.",
            "syntax_analysis": json.dumps(
                {"reasoning": "the noun phrase is 'square'", "subject": "the red square"}
            ),
            "choose_box": json.dumps({"reasoning": "box 1 holds the whole square", "box": 1}),
        }
        self.answers.update(answers)
        self.steps: Counter[str] = Counter()
        self.by_clip: Counter[tuple[int | None, str]] = Counter()
        self.requests: list[tuple[str, int | None, list[Any]]] = []
        self._lock = threading.Lock()

    def __call__(self, messages: list[Any]) -> str:
        if verify_script.is_verify(messages):  # verification after propagation
            with self._lock:
                self.steps["verify_masks"] += 1
                self.requests.append(("verify_masks", None, messages))
            answer = self.answers.get("verify_masks")
            if answer is None:
                return verify_script.verdicts(messages)
            return answer(messages) if callable(answer) else answer
        step = step_of(messages)
        start = clip_start(messages)
        with self._lock:
            self.steps[step] += 1
            self.by_clip[(start, step)] += 1
            attempt = self.by_clip[(start, step)]
            self.requests.append((step, start, messages))
        answer = self.answers.get(step, self.answers.get(step.removeprefix("retry_")))
        if step.startswith("retry_"):
            base = "choose_frame" if step == "retry_frame" else "choose_box"
            answer = self.answers.get(step, self.answers[base])
            attempt += self.by_clip[(start, base)]
        return answer(start, attempt) if callable(answer) else answer

    def model(self, calls: int = 500):
        from scripted_llm import ScriptedChatModel

        return ScriptedChatModel([self] * calls)
