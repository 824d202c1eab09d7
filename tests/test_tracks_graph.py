"""The tracks strategy's graph with a scripted LLM and a fake track source (no SAM 3, no HTTP): every
edge — the concept retry, pruning rounds, all rejected, all uncertain, several accepted, invalid labels
re-asked, the LLM down — and the frame / track bookkeeping of each round."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import verify_script
from scripted_llm import ScriptedChatModel, connection_error

from alref.agent.context import AgentContext
from alref.agent.llm import LLMClient
from alref.agent.tracks.select import select_tracks
from alref.config import Settings
from alref.core.records import Reference, Track
from alref.core.workspace import Workspace

H, W, N = 48, 64, 20


def track(tid, concept, score, frames, x):
    boxes = {str(f): [x, 10, x + 12, 30] for f in frames}
    return Track(id=tid, concept=concept, score=score, frames=list(frames), boxes=boxes,
                 area={str(f): 240 for f in frames})  # fmt: skip


class FakeTracks:
    """Three dogs: 1 on every frame, 2 on frames 10-19 only, 3 on every frame; nothing for 'dog'."""

    def __init__(self):
        self.asked: list[str] = []
        self.by_concept = {
            "puppy": [track(1, "puppy", 0.9, range(N), 2), track(2, "puppy", 0.5, range(10, N), 22),
                      track(3, "puppy", 0.7, range(N), 42)],
        }  # fmt: skip

    def tracks(self, concept):
        self.asked.append(concept)
        return self.by_concept.get(concept, [])

    def mask(self, concept, track_id, frame):
        t = next(t for t in self.by_concept[concept] if t["id"] == track_id)
        m = np.zeros((H, W), bool)
        if frame in t["frames"]:
            x0, y0, x1, y1 = t["boxes"][str(frame)]
            m[y0:y1, x0:x1] = True
        return m

    def frames(self, indices):
        return {i: np.full((H, W, 3), 10 * (i % 20), np.uint8) for i in indices}


def step(messages) -> str:
    last = messages[-1].content
    text = last if isinstance(last, str) else " ".join(p.get("text", "") for p in last if isinstance(p, dict))
    if "could not be used" in text:
        return "retry"
    if "finds every object of a category" in text:
        return "extract_concepts"
    if "For every numbered candidate decide" in text:
        return "judge"
    if "Describe each numbered candidate" in text:
        return "describe"
    raise AssertionError(text[:200])


def numbers_in(messages) -> list[int]:
    """The candidate numbers the judge question asks about."""
    for m in reversed(messages):
        text = (
            m.content
            if isinstance(m.content, str)
            else " ".join(p.get("text", "") for p in m.content if isinstance(p, dict))
        )
        found = re.search(r"one label for each of the numbers ([\d, ]+)", text)
        if found:
            return [int(n) for n in found.group(1).split(",")]
    raise AssertionError("no judge question")


def labels(**verdicts):
    return json.dumps({"reasoning": "r", "labels": [{"number": int(n[1:]), "verdict": v, "reason": f"{v} {n}"}
                                                    for n, v in verdicts.items()]})  # fmt: skip


class Judge:
    """``rounds[k]`` answers round k + 1: a dict number -> verdict, or a raw string."""

    def __init__(self, *rounds, concept=None, verify=()):
        self.verify, self.verified = list(verify), []  # answers to the verification question, in order
        self.rounds, self.asked, self.concept = (
            list(rounds),
            [],
            concept
            or json.dumps({"reasoning": "a dog", "concept": "dog", "alternatives": ["puppy", "animal"]}),
        )

    def __call__(self, messages):
        if verify_script.is_verify(messages):
            self.verified.append(verify_script.objects_in(messages))
            answer = self.verify.pop(0) if self.verify else None
            return answer(messages) if callable(answer) else (answer or verify_script.verdicts(messages))
        kind = step(messages)
        if kind == "extract_concepts":
            return self.concept
        if kind == "describe":
            return "1 is a brown dog, 2 a small white dog, 3 a black dog."
        self.asked.append(numbers_in(messages))
        answer = self.rounds.pop(0)
        return answer if isinstance(answer, str) else labels(**{f"n{k}": v for k, v in answer.items()})


@pytest.fixture
def run(tmp_path):
    def go(script, references=("the dogs that run",), llm=True, **settings):
        s = Settings(cache=False, **settings)
        source = FakeTracks()
        refs = [Reference(id=i, text=t) for i, t in enumerate(references, start=1)]
        ctx = None
        if llm:
            model = ScriptedChatModel(script if isinstance(script, list) else [script] * 50)
            ctx = AgentContext(
                settings=s, llm=LLMClient(s, chat_model=model), workspace=Workspace(tmp_path), tools=source
            )
        decisions = select_tracks(refs, s, source, ctx)
        return decisions, source

    return go


def test_no_track_for_the_first_concept_tries_the_next(run):
    judge = Judge({1: "accept", 2: "reject", 3: "reject"})
    (d,), source = run(judge)
    assert (
        source.asked == ["dog", "puppy"]
        and d["concepts_tried"] == ["dog", "puppy"]
        and d["concept"] == "puppy"
    )
    assert d["accepted"] == [1] and d["decided_by"] == "llm" and d["not_found"] is None
    assert [t["id"] for t in d["candidates"]] == [1, 3, 2]  # numbered by score: 1 -> 1, 3 -> 2, 2 -> 3


def test_uncertain_candidates_are_judged_again_on_new_frames(run, tmp_path):
    # numbers: track 1 -> 1, track 3 -> 2, track 2 -> 3 (only on frames 10-19)
    judge = Judge({1: "accept", 2: "reject", 3: "uncertain"}, {3: "accept"})
    (d,), _ = run(judge, track_frames=4)
    assert judge.asked == [[1, 2, 3], [3]]
    first, second = d["rounds"]
    assert first["candidates"] == [1, 3, 2] and second["candidates"] == [2]
    assert first["frames"] == [0, 6, 13, 19] and set(second["frames"]) <= set(range(10, N))
    assert not set(second["frames"]) & set(first["frames"])  # frames not shown before
    assert sorted(d["accepted"]) == [1, 2] and d["decided_by"] == "llm"  # several objects: the union
    assert (tmp_path / "work" / "agent" / second["image"]).is_file()


def test_every_candidate_rejected_is_not_found(run):
    (d,), _ = run(Judge({1: "reject", 2: "reject", 3: "reject"}))
    assert d["accepted"] == [] and d["not_found"].startswith("the LLM rejected every candidate")


def test_uncertain_until_the_round_limit_takes_the_best_scoring_one(run):
    (d,), _ = run(Judge(*[{1: "uncertain", 2: "uncertain", 3: "uncertain"}] * 2), track_rounds=2)
    assert len(d["rounds"]) == 2 and d["accepted"] == [1] and d["decided_by"] == "fallback"
    assert "took the highest-scoring uncertain candidate 1" in d["reason"]


def test_labels_missing_a_number_are_asked_again_with_the_error(run):
    judge = Judge(labels(n1="accept"), {1: "accept", 2: "reject", 3: "reject"})
    script = [judge] * 10
    (d,), _ = run(script)
    assert d["accepted"] == [1] and d["rounds"][0]["decided_by"] == "llm"
    assert len(judge.asked) == 2  # the re-ask said which numbers had no label


def test_describe_candidates_comes_first_when_asked(run):
    judge = Judge({1: "accept", 2: "reject", 3: "reject"})
    (d,), _ = run(judge, describe_candidates=True)
    assert d["accepted"] == [1]


def test_without_an_llm_the_top_track_of_the_sentences_concept(run):
    (d,), source = run(None, references=("the puppy on the left",), llm=False)
    assert source.asked == ["puppy"] and d["accepted"] == [1] and d["decided_by"] == "baseline"
    assert "no LLM configured" in d["reason"]


def test_an_llm_that_cannot_be_reached_falls_back_at_every_step(run):
    (d,), _ = run([connection_error()] * 20, references=("the puppy that runs",), llm_transport_retries=0)
    assert d["concepts_tried"] == ["puppy"] and d["accepted"] == [1] and d["decided_by"] == "fallback"
    assert d["rounds"][0]["decided_by"] == "fallback"


def test_two_references_each_get_their_decision(run):
    judge = Judge(*[{1: "accept", 2: "reject", 3: "reject"}] * 2)
    decisions, _ = run([judge] * 20, references=("the dogs that run", "the black dog"))
    assert [d["id"] for d in decisions] == [1, 2] and all(d["accepted"] == [1] for d in decisions)
