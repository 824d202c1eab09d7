"""The tolerant answer parser: JSON anywhere, plain phrases, refusals, ambiguity, and the correction
message it produces for the LLM."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from alref.agent.answers import BoxChoice, FrameChoice, SyntaxAnalysis
from alref.agent.parsing import AnswerParseError, extract_json, parse_answer

FRAME_EXPECTED = 'Answer with a JSON object {"reasoning": "...", "frame": <number of the frame>}'
BOX_EXPECTED = (
    'Answer with a JSON object {"reasoning": "...", "box": <number of the box, or null if none fits>}'
)


@pytest.mark.parametrize(
    ("text", "frame"),
    [
        ('{"reasoning": "clear view", "frame": 3}', 3),
        ('{"reasoning": "clear view", "frame": "3"}', 3),  # number as a string
        ('{"Reasoning": "x", "FRAME": 4}', 4),  # keys in another case
        ('{"reasoning": "x", "frame": "Frame #5"}', 5),
        ('{"reasoning": "x", "frame": 2.0}', 2),
        ('{"reasoning": "x", "chosen_frame": 6}', 6),  # a key that contains the field name
        ('{"answer": {"reasoning": "x", "frame": 7}}', 7),  # wrapped
        ("{'reasoning': 'single quotes', 'frame': 2,}", 2),  # python-ish, trailing comma
        ('Here is my answer:\n```json\n{"reasoning": "r", "frame": 8}\n```\nHope it helps.', 8),
        ('```\n{"reasoning": "r", "frame": 9}\n```', 9),
        ('The dog is clearest in the third tile. {"frame": 3} That is my choice.', 3),
        ('Frame 2 is blurry {"note": "ignore"} but {"reasoning": "r", "frame": 4}', 4),
        ("[3]", 3),
        ("I pick [5].", 5),
        ("Frame 3", 3),
        ("frame: 3", 3),
        ("The best one is frame #3.", 3),
        ("The dog is fully visible in **Frame 3**.", 3),
        ("**Frame:** 4", 4),
        ("Frame number 6 shows it best.", 6),
        ("frame three", 3),
        ("Answer: 4", 4),
        ("3", 3),
        ("Frame 2 is blurry. Frame 3 is sharp. Frame 4 is dark. So I choose frame 3.", 3),
        ("Frames 1 and 2 are dark; frame 5 shows the dog.", 5),  # plural "frames" is not a choice
        ("Frame 1 is dark.\nFrame 4 shows the whole dog.\nFinal answer: frame 4", 4),
    ],
)
def test_frame_answers(text, frame):
    assert parse_answer(text, FrameChoice).frame == frame


@pytest.mark.parametrize(
    ("text", "box"),
    [
        ('{"reasoning": "r", "box": 2}', 2),
        ('{"reasoning": "r", "box": null}', None),
        ('{"reasoning": "r", "box": -1}', None),
        ('{"reasoning": "r", "box": "none"}', None),
        ("[-1]", None),
        ("[]", None),
        ("[2]", 2),
        ("I choose box 2", 2),
        ("Box: none", None),
        ("**Box:** null", None),
        ("None of the boxes contains the dog.", None),
        ("none of the candidate boxes fits", None),
        ("No box fits the description.", None),
        ("box -1", None),
        ("There is no box around the cat. Box 2 holds the whole dog. Final answer: box 2", 2),
    ],
)
def test_box_answers(text, box):
    assert parse_answer(text, BoxChoice).box == box


def test_reasoning_is_kept_or_taken_from_the_text_around_the_json():
    assert parse_answer('{"reasoning": "inside", "frame": 1}', FrameChoice).reasoning == "inside"
    answer = parse_answer('The dog jumps in the second frame. {"frame": 2}', FrameChoice)
    assert answer.reasoning == "The dog jumps in the second frame." and answer.frame == 2
    plain = parse_answer("It is frame 2, the dog jumps.", FrameChoice)
    assert plain.reasoning == "It is frame 2, the dog jumps."


def test_syntax_analysis_from_json_or_plain_text():
    assert parse_answer('{"reasoning": "r", "subject": "the dog"}', SyntaxAnalysis).subject == "the dog"
    assert parse_answer('{"reasoning": "r", "Subject": ["the", "dog"]}', SyntaxAnalysis).subject == "the, dog"
    plain = parse_answer("The verb is jumps.\nSubject: **the brown dog**.", SyntaxAnalysis)
    assert plain.subject == "the brown dog" and plain.reasoning.startswith("The verb is jumps.")
    with pytest.raises(AnswerParseError, match='no "subject" was found'):
        parse_answer("The sentence is about jumping.", SyntaxAnalysis)


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, I can't help with that.",
        "I cannot assist with identifying people in frame 3.",
        "Sorry, but I am unable to help with this request.",
        "I’m sorry, but I can’t comply with this request.",
    ],
)
def test_refusals(text):
    with pytest.raises(AnswerParseError) as info:
        parse_answer(text, FrameChoice)
    assert str(info.value).startswith("the answer was a refusal")
    assert FRAME_EXPECTED in str(info.value)


def test_a_hedge_is_not_a_refusal():
    assert parse_answer("I can't be completely sure, but frame 4 shows it best.", FrameChoice).frame == 4


@pytest.mark.parametrize("text", ["", "   \n  ", None])
def test_empty_answer(text):
    with pytest.raises(AnswerParseError, match="the answer was empty") as info:
        parse_answer(text, BoxChoice)
    assert BOX_EXPECTED in str(info.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Frame 2 is blurry. Frame 3 is sharp.", "several frames (2, 3)"),
        ("Frame 2 or frame 3. I choose frame 2 or frame 3.", "several frames (2, 3)"),
        ("The dog is jumping happily.", "no frame number was found"),
        ('{"reasoning": "r", "frame": null}', '"frame" must be the number of one frame, not null'),
        ('{"reasoning": "r", "frame": "the third one"}', '"frame" must be a number'),
        ('{"reasoning": "r", "frame": true}', '"frame" must be a number'),
        ("[-1]", '"frame" must be the number of one frame, not null'),
        ("[]", '"frame" must be the number of one frame, not null'),
    ],
)
def test_errors_say_what_was_wrong_and_what_to_answer(text, problem):
    with pytest.raises(AnswerParseError) as info:
        parse_answer(text, FrameChoice)
    message = str(info.value)
    assert problem in message and message.endswith(FRAME_EXPECTED)


def test_ambiguous_boxes_and_none():
    with pytest.raises(AnswerParseError, match=r"several boxes \(2, none\)"):
        parse_answer("Box 2 might fit. No box fits perfectly.", BoxChoice)


def test_a_list_of_several_numbers_is_not_an_answer():
    assert parse_answer("Frames [1, 2, 4] are dark, so frame 3.", FrameChoice).frame == 3
    with pytest.raises(AnswerParseError):
        parse_answer("[1, 2]", FrameChoice)


def test_range_is_not_checked_here():
    assert parse_answer('{"reasoning": "r", "frame": 99}', FrameChoice).frame == 99


def test_any_schema_with_str_fields_and_one_int():
    class Pick(BaseModel):
        why: str
        label: str
        option: int | None

    answer = parse_answer('{"why": "w", "label": "dog", "option": "2"}', Pick)
    assert (answer.why, answer.label, answer.option) == ("w", "dog", 2)
    plain = parse_answer("why: it barks\nlabel: cat\nI choose option 4", Pick)
    assert (plain.why, plain.label, plain.option) == ("it barks", "cat", 4)
    with pytest.raises(AnswerParseError, match='no "why" was found'):  # only "reasoning" may be missing
        parse_answer("label: cat\nI choose option 4", Pick)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ("```\n[1, 2]\n```", [1, 2]),
        ('before {"a": {"b": [1, "}"]}} after', {"a": {"b": [1, "}"]}}),
        ("text [3] more", [3]),
        ('```python\nx = {"a": 1}\n```', None),
        ('first {"a": 1} then ```json\n{"b": 2}\n```', {"b": 2}),  # a json fence wins
        ("no json here { at all", None),
        ("", None),
    ],
)
def test_extract_json(text, value):
    assert extract_json(text) == value
