"""LLMClient against the real ChatOpenAI and a scripted OpenAI-compatible server on 127.0.0.1 (and a
scripted chat model): request shape, retries and their waits, errors a user can act on, the cache."""

from __future__ import annotations

import base64
import email.utils
import io
import json
import threading
import time
from pathlib import Path

import pytest
from llm_server import Drop, Malformed, Reply, ScriptedOpenAIServer, Status
from PIL import Image
from scripted_llm import ScriptedChatModel, ScriptExhaustedError, connection_error, http_error

from alref.agent.answers import BoxChoice, FrameChoice
from alref.agent.llm import (
    LLMCannotSeeImagesError,
    LLMClient,
    LLMUnavailableError,
    Turn,
    image_tokens,
)
from alref.agent.parsing import parse_answer
from alref.config import Settings
from alref.trace.record import Tracer, read_events

KEY = "sk-test-5ecret-key-0123456789"
GOOD = '{"reasoning": "the dog is clearest there", "frame": 3}'
LLAMA_CPP_TEXT_ONLY = {
    "error": {
        "code": 500,
        "message": "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj",
        "type": "server_error",
    }
}


def make_client(url: str, tmp_path: Path, tracer: Tracer | None = None, **overrides):
    values = dict(
        llm="vision-test",
        llm_base_url=url,
        llm_api_key=KEY,
        cache_dir=tmp_path / "cache",
        cache=False,
        llm_backoff=1.0,
        llm_transport_retries=3,
        llm_image_detail="low",
        llm_max_image_side=64,
    )
    values.update(overrides)
    waits: list[float] = []
    return LLMClient(Settings(**values), tracer=tracer, sleep=waits.append), waits


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "tile.png"
    Image.new("RGB", (200, 100), (200, 30, 30)).save(path)
    return path


def frame_turns(picture: Path, question: str = "Which frame shows the dog most clearly?") -> list[Turn]:
    return [Turn("system", "You choose frames."), Turn("user", question, images=(str(picture),))]


def test_good_answer_round_trips_and_the_request_carries_the_settings(llm_server, tmp_path, picture):
    llm_server.push(Reply(GOOD, prompt_tokens=321, completion_tokens=12))
    client, waits = make_client(llm_server.base_url, tmp_path, llm_seed=7)
    reply = client.ask(frame_turns(picture), FrameChoice, step="choose_frame", context={"clip": 0})

    assert parse_answer(reply.text, FrameChoice).frame == 3
    assert (reply.prompt_tokens, reply.completion_tokens) == (321, 12)
    assert reply.transport_attempts == 1 and reply.structured and not reply.cache_hit
    assert reply.image_tokens_estimate == 85  # detail low
    assert waits == [] and client.calls == 1
    (request,) = llm_server.chat_requests
    assert request["model"] == "vision-test"
    assert request["temperature"] == 0.0 and request["seed"] == 7
    # a JSON answer gets the JSON budget (--llm-json-max-tokens), sent both ways for local servers
    assert request["max_completion_tokens"] == 512 and request["max_tokens"] == 512
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["name"] == "FrameChoice"
    assert request["response_format"]["json_schema"]["schema"]["properties"]["frame"]["type"] == "integer"
    assert request["_headers"]["authorization"] == f"Bearer {KEY}"
    system, user = request["messages"]
    assert system == {"role": "system", "content": "You choose frames."}
    text, image = user["content"]
    assert text == {"type": "text", "text": "Which frame shows the dog most clearly?"}
    assert image["image_url"]["detail"] == "low"
    url = image["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.format == "JPEG" and sent.size == (64, 32)  # downscaled to llm_max_image_side


def test_chat_openai_is_built_without_its_own_retries(tmp_path):
    client, _ = make_client("http://127.0.0.1:9/v1", tmp_path, llm_timeout=12.5)
    model = client.chat_model
    assert model.max_retries == 0 and model.request_timeout == 12.5 and model.max_tokens == 2048
    openai_client, _ = make_client(None, tmp_path)
    assert openai_client.base_url == "https://api.openai.com/v1"
    assert openai_client.chat_model.extra_body is None  # only local servers get max_tokens as well


@pytest.mark.parametrize(
    ("width", "height", "detail", "tokens"),
    [(1024, 1024, "high", 765), (2048, 4096, "high", 1105), (4000, 3000, "low", 85), (300, 200, "auto", 255)],
)
def test_image_token_estimate_follows_openais_formula(width, height, detail, tokens):
    assert image_tokens(width, height, detail) == tokens


def test_rate_limit_honours_retry_after_seconds(llm_server, tmp_path, picture):
    llm_server.push(
        Status(429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": "7"}), Reply(GOOD)
    )
    client, waits = make_client(llm_server.base_url, tmp_path)
    reply = client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    assert waits == [7.0]
    assert reply.transport_attempts == 2 and len(llm_server.chat_requests) == 2 and client.calls == 2


def test_rate_limit_honours_retry_after_http_date(llm_server, tmp_path, picture):
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    llm_server.push(Status(429, {"error": {"message": "slow down"}}, {"Retry-After": when}), Reply(GOOD))
    client, waits = make_client(llm_server.base_url, tmp_path)
    client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    assert len(waits) == 1 and 15 <= waits[0] <= 21


def test_server_errors_back_off_exponentially_then_succeed(llm_server, tmp_path, picture):
    llm_server.push(
        Status(500, {"error": {"message": "overloaded"}}), Status(502, "Bad Gateway"), Reply(GOOD)
    )
    client, waits = make_client(llm_server.base_url, tmp_path, llm_backoff=0.5)
    reply = client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    assert reply.transport_attempts == 3 and len(llm_server.chat_requests) == 3
    assert waits == [0.5, 1.0]


def test_backoff_is_capped_and_a_persistent_5xx_gives_up(llm_server, tmp_path, picture):
    llm_server.default = Status(503, {"error": {"message": "model is loading"}})
    client, waits = make_client(llm_server.base_url, tmp_path, llm_backoff=10, llm_transport_retries=3)
    with pytest.raises(LLMUnavailableError) as info:
        client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    assert info.value.kind == "server_error" and info.value.attempts == 4
    assert waits == [10, 20, 30]  # 40 capped at 30
    assert "model is loading" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "status",
    [
        Status(500, LLAMA_CPP_TEXT_ONLY),
        Status(
            400, {"error": {"message": "This model does not support image input", "type": "invalid_request"}}
        ),
        Status(400, {"object": "error", "message": "Qwen2 is not a multimodal model", "code": 400}),
        Status(400, {"error": {"message": "At most 0 image(s) may be provided in one prompt.", "code": 400}}),
    ],
)
def test_text_only_model_is_recognised_at_once(llm_server, tmp_path, picture, status):
    llm_server.default = status
    client, waits = make_client(llm_server.base_url, tmp_path)
    with pytest.raises(LLMCannotSeeImagesError) as info:
        client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    assert len(llm_server.chat_requests) == 1 and waits == []
    assert info.value.kind == "cannot_see_images"
    message = str(info.value)
    assert "the model vision-test at http://127.0.0.1:" in message
    assert "cannot see images (it is text-only); use a vision model" in message


def test_a_500_without_images_is_a_plain_server_error(llm_server, tmp_path):
    llm_server.default = Status(500, LLAMA_CPP_TEXT_ONLY)
    client, _ = make_client(llm_server.base_url, tmp_path, llm_transport_retries=1)
    with pytest.raises(LLMUnavailableError) as info:
        client.ask([Turn("user", "hi")], step="chat")
    assert type(info.value) is LLMUnavailableError and info.value.kind == "server_error"


def test_timeout_is_retried_then_reported(llm_server, tmp_path, picture):
    llm_server.default = Reply(GOOD, delay=2.0)
    client, waits = make_client(llm_server.base_url, tmp_path, llm_timeout=0.5, llm_transport_retries=1)
    with pytest.raises(LLMUnavailableError) as info:
        client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    assert info.value.kind == "timeout" and info.value.attempts == 2
    assert waits == [1.0] and len(llm_server.chat_requests) == 2
    assert "did not answer within 0.5 s" in str(info.value)


def test_connection_refused_counts_its_retries(tmp_path, picture):
    client, waits = make_client(ScriptedOpenAIServer.closed_port_url(), tmp_path, llm_transport_retries=2)
    with pytest.raises(LLMUnavailableError) as info:
        client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    assert info.value.kind == "connection" and info.value.attempts == 3 and client.calls == 3
    assert waits == [1.0, 2.0]
    assert "check that the server is running" in str(info.value)


def test_dropped_connection_is_retried(llm_server, tmp_path, picture):
    llm_server.push(Drop(), Reply(GOOD))
    client, waits = make_client(llm_server.base_url, tmp_path)
    assert client.ask(frame_turns(picture), FrameChoice, step="choose_frame").text == GOOD
    assert waits == [1.0]


def test_auth_failure_is_not_retried_and_hides_the_key(llm_server, tmp_path, picture):
    llm_server.default = Status(401, {"error": {"message": f"Incorrect API key provided: {KEY}"}})
    client, waits = make_client(llm_server.base_url, tmp_path)
    with pytest.raises(LLMUnavailableError) as info:
        client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    assert info.value.kind == "auth" and len(llm_server.chat_requests) == 1 and waits == []
    assert "check the key" in str(info.value) and KEY not in str(info.value)


@pytest.mark.parametrize(
    ("code", "kind", "hint"),
    [(404, "not_found", "check the model name"), (400, "bad_request", "rejected the request")],
)
def test_client_errors_are_not_retried(llm_server, tmp_path, picture, code, kind, hint):
    llm_server.default = Status(code, {"error": {"message": "nope"}})
    client, waits = make_client(llm_server.base_url, tmp_path)
    with pytest.raises(LLMUnavailableError) as info:
        client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    assert info.value.kind == kind and hint in str(info.value)
    assert len(llm_server.chat_requests) == 1 and waits == []


@pytest.mark.parametrize(
    "rejection",
    [
        Status(400, {"error": {"message": "response_format json_schema is not supported by this server"}}),
        Status(500, {"error": {"message": "Invalid schema: expected type json_object with a schema"}}),
    ],
)
def test_rejected_response_format_is_dropped_for_the_life_of_the_client(
    llm_server, tmp_path, picture, rejection
):
    llm_server.push(rejection, Reply(GOOD), Reply(GOOD))
    trace = Tracer(tmp_path / "trace")
    client, waits = make_client(llm_server.base_url, tmp_path, tracer=trace)
    first = client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    second = client.ask(frame_turns(picture, "again?"), FrameChoice, step="choose_frame")
    requests = llm_server.chat_requests
    assert len(requests) == 3 and waits == []
    assert "response_format" in requests[0]
    assert "response_format" not in requests[1] and "response_format" not in requests[2]
    assert first.transport_attempts == 2 and not first.structured and not second.structured
    assert not client.structured_enabled
    assert [e["kind"] for e in read_events(trace.folder)].count("llm_structured_disabled") == 1


def test_forced_json_schema_reports_the_rejection(llm_server, tmp_path, picture):
    llm_server.default = Status(400, {"error": {"message": "unknown field response_format"}})
    client, _ = make_client(llm_server.base_url, tmp_path, llm_json="json_schema")
    with pytest.raises(LLMUnavailableError) as info:
        client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    assert info.value.kind == "bad_request" and "llm_json" in str(info.value)
    assert len(llm_server.chat_requests) == 1


def test_llm_json_none_never_sends_a_schema(llm_server, tmp_path, picture):
    llm_server.push(Reply(GOOD))
    client, _ = make_client(llm_server.base_url, tmp_path, llm_json="none")
    assert not client.ask(frame_turns(picture), FrameChoice, step="choose_frame").structured
    assert "response_format" not in llm_server.chat_requests[0]


def test_malformed_body_is_retried_then_reported(llm_server, tmp_path, picture):
    llm_server.push(Malformed(), Reply(GOOD))
    client, waits = make_client(llm_server.base_url, tmp_path)
    assert client.ask(frame_turns(picture), FrameChoice, step="choose_frame").text == GOOD
    assert waits == [1.0]
    llm_server.default = Malformed(b"<html>proxy error</html>")
    with pytest.raises(LLMUnavailableError) as info:
        client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    assert info.value.kind == "server_error" and "not a valid chat completion" in str(info.value)


def test_answer_cut_at_max_tokens_is_returned_but_not_cached(llm_server, tmp_path, picture):
    cut = '{"reasoning": "the dog is clear'
    llm_server.push(Reply(cut, finish_reason="length"), Reply(GOOD))
    client, _ = make_client(llm_server.base_url, tmp_path, cache=True)
    first = client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    assert first.text == cut and first.finish_reason == "length" and first.completion_tokens == 5
    assert client.ask(frame_turns(picture), FrameChoice, step="choose_frame").text == GOOD
    assert len(llm_server.chat_requests) == 2


def test_cache_hit_makes_no_call(llm_server, tmp_path, picture):
    llm_server.default = Reply(GOOD)
    client, _ = make_client(llm_server.base_url, tmp_path, cache=True)
    first = client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    second = client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    assert len(llm_server.chat_requests) == 1 and client.calls == 1
    assert not first.cache_hit and second.cache_hit and second.transport_attempts == 0
    assert (second.text, second.prompt_tokens, second.structured) == (GOOD, 10, True)
    # a new client (a rerun) reads the same cache on disk
    rerun, _ = make_client(llm_server.base_url, tmp_path, cache=True)
    assert rerun.ask(frame_turns(picture), FrameChoice, step="choose_frame").cache_hit
    assert len(llm_server.chat_requests) == 1


def test_cache_misses_on_other_image_content_or_other_settings(llm_server, tmp_path, picture):
    llm_server.default = Reply(GOOD)
    client, _ = make_client(llm_server.base_url, tmp_path, cache=True)
    client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    Image.new("RGB", (200, 100), (30, 30, 200)).save(picture)  # same path, other pixels
    assert not client.ask(frame_turns(picture), FrameChoice, step="choose_frame").cache_hit
    other, _ = make_client(llm_server.base_url, tmp_path, cache=True, llm_temperature=0.7)
    assert not other.ask(frame_turns(picture), FrameChoice, step="choose_frame").cache_hit
    assert len(llm_server.chat_requests) == 3


def test_no_cache_asks_every_time(llm_server, tmp_path, picture):
    llm_server.default = Reply(GOOD)
    client, _ = make_client(llm_server.base_url, tmp_path, cache=False)
    client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    assert not client.ask(frame_turns(picture), FrameChoice, step="choose_frame").cache_hit
    assert len(llm_server.chat_requests) == 2


def test_failures_are_not_cached(llm_server, tmp_path, picture):
    llm_server.push(Status(401, {"error": {"message": "bad key"}}), Reply(GOOD))
    client, _ = make_client(llm_server.base_url, tmp_path, cache=True)
    with pytest.raises(LLMUnavailableError):
        client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    assert client.ask(frame_turns(picture), FrameChoice, step="choose_frame").text == GOOD


def _ask_from_threads(client: LLMClient, turns: list[Turn], count: int) -> list:
    results: list = []
    barrier = threading.Barrier(count)

    def work() -> None:
        barrier.wait()
        results.append(client.ask(turns, FrameChoice, step="choose_frame"))

    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    return results


def test_concurrent_identical_asks_make_one_call(llm_server, tmp_path, picture):
    llm_server.default = Reply(GOOD, delay=0.2)
    client, _ = make_client(llm_server.base_url, tmp_path, cache=True)
    results = _ask_from_threads(client, frame_turns(picture), 8)
    assert len(results) == 8 and {r.text for r in results} == {GOOD}
    assert len(llm_server.chat_requests) == 1 and client.calls == 1
    assert sorted(r.cache_hit for r in results) == [False] + [True] * 7


def test_concurrent_asks_without_cache_are_all_counted(llm_server, tmp_path, picture):
    llm_server.default = Reply(GOOD)
    client, _ = make_client(llm_server.base_url, tmp_path, cache=False)
    results = _ask_from_threads(client, frame_turns(picture), 8)
    assert len(results) == 8 and client.calls == 8 and len(llm_server.chat_requests) == 8


def test_trace_records_calls_and_retries_without_images_or_key(llm_server, tmp_path, picture):
    llm_server.push(Status(500, {"error": {"message": f"upstream failed for key {KEY}"}}), Reply(GOOD))
    trace = Tracer(tmp_path / "trace")  # no secrets given: the client adds its key itself
    client, _ = make_client(llm_server.base_url, tmp_path, tracer=trace)
    client.ask(frame_turns(picture), FrameChoice, step="choose_frame", context={"clip": 2, "attempt": 1})
    llm_server.default = Status(401, {"error": {"message": f"Incorrect API key provided: {KEY}"}})
    with pytest.raises(LLMUnavailableError):
        client.ask(frame_turns(picture), FrameChoice, step="choose_frame", context={"clip": 3})

    text = (trace.folder / "events.jsonl").read_text()
    assert KEY not in text and "base64" not in text
    retry, ok, failed = read_events(trace.folder)
    assert retry["kind"] == "llm_retry" and retry["error_kind"] == "server_error" and retry["wait_s"] == 1.0
    assert ok["kind"] == "llm_call" and ok["ok"] and ok["step"] == "choose_frame"
    assert ok["context"] == {"clip": 2, "attempt": 1} and ok["answer"] == GOOD
    assert ok["transport_attempts"] == 2 and ok["structured"] and not ok["cache_hit"]
    assert ok["prompt_tokens"] == 10 and ok["image_tokens_estimate"] == 85
    image_ref = ok["messages"][1]["images"][0]
    assert image_ref.startswith("images/") and (trace.folder / image_ref).is_file()
    assert failed["ok"] is False and failed["error_kind"] == "auth" and "check the key" in failed["error"]


# the same client over a scripted chat model (no HTTP)


def test_scripted_chat_model_gets_the_schema_and_retries(tmp_path, picture):
    model = ScriptedChatModel(
        [
            http_error(429, {"error": {"message": "slow"}}, {"retry-after": "3"}),
            connection_error(),
            '{"reasoning": "r", "box": null}',
        ]
    )
    waits: list[float] = []
    client = LLMClient(Settings(cache=False, llm_backoff=2.0), chat_model=model, sleep=waits.append)
    reply = client.ask(frame_turns(picture), BoxChoice, step="choose_box")
    assert parse_answer(reply.text, BoxChoice).box is None
    assert waits == [3.0, 4.0] and reply.transport_attempts == 3 and client.calls == 3
    kwargs = model.calls[-1]["kwargs"]
    assert kwargs["response_format"]["json_schema"]["name"] == "BoxChoice"
    content = model.calls[-1]["messages"][1].content
    assert content[1]["type"] == "image_url" and content[1]["image_url"]["detail"] == "high"
    assert reply.prompt_tokens and reply.prompt_tokens > 0


def test_scripted_text_only_error_and_unexpected_errors_propagate(tmp_path, picture):
    client = LLMClient(
        Settings(cache=False), chat_model=ScriptedChatModel([http_error(500, LLAMA_CPP_TEXT_ONLY)])
    )
    with pytest.raises(LLMCannotSeeImagesError):
        client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    with pytest.raises(ScriptExhaustedError):  # a bug in a test or the caller is not "the server failed"
        client.ask(frame_turns(picture), FrameChoice, step="choose_frame")


def test_text_turns_without_schema_send_plain_strings(tmp_path):
    model = ScriptedChatModel([lambda messages: f"{len(messages)} messages"])
    client = LLMClient(Settings(cache=False), chat_model=model)
    turns = [Turn("system", "s"), Turn("user", "u"), Turn("assistant", "a"), Turn("user", "again")]
    reply = client.ask(turns, step="chat")
    assert reply.text == "4 messages" and not reply.structured
    assert "response_format" not in model.calls[0]["kwargs"]
    assert [type(m).__name__ for m in model.calls[0]["messages"]] == [
        "SystemMessage",
        "HumanMessage",
        "AIMessage",
        "HumanMessage",
    ]
    assert json.dumps([m.content for m in model.calls[0]["messages"]]) == '["s", "u", "a", "again"]'


def test_every_http_call_is_made_inside_the_admission_slot(llm_server, tmp_path, picture):
    """A Ray worker installs a cluster-wide slot (alref.pipeline.cluster); each HTTP call, retries
    included, holds one, and none is held while waiting to retry."""
    from contextlib import contextmanager

    from alref.agent.llm import set_admission

    events: list[str] = []

    @contextmanager
    def slot():
        events.append("take")
        try:
            yield
        finally:
            events.append("give")

    llm_server.push(Status(503, {"error": {"message": "busy"}}), Reply(GOOD))
    client, waits = make_client(llm_server.base_url, tmp_path)
    client._sleep = lambda s: (events.append("wait"), waits.append(s))
    set_admission(slot)
    try:
        client.ask(frame_turns(picture), FrameChoice, step="choose_frame")
    finally:
        set_admission(None)
    assert events == ["take", "give", "wait", "take", "give"]
    assert len(llm_server.chat_requests) == 2
