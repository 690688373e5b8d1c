"""What imaginize learns of a server from its answers, over real HTTP against the fake server:
the reply format it accepts, its context size, and counts it cannot trust."""

from __future__ import annotations

import json
import threading
import time

import pytest

from imaginize import cancel
from imaginize.analysis.openai.chat import OpenAIAnalyzer, usage_from
from imaginize.analysis.openai.reply_schema import reply_schema
from imaginize.errors import ProviderError
from imaginize.model import Chapter, Usage
from tests.fake_openai import FakeOpenAI, error
from tests.replies import answer, schema_bound

PARAGRAPHS = [
    f"Paragraph {n}: the lantern swung over the orchard wall while Wren counted the glowing "
    f"fruit, one by one, until the count reached {n * 7} and the night was deep and blue."
    for n in range(1, 41)
]
LONG = Chapter(3, "The Long Night", "\n\n".join(PARAGRAPHS))


def analyzer(server: FakeOpenAI, **options: object) -> OpenAIAnalyzer:
    return OpenAIAnalyzer(model="fake-model", api_key="test", base_url=server.url, **options)


def formats(server: FakeOpenAI) -> list[str | None]:
    out: list[str | None] = []
    for record in server.requests:
        wanted = record["body"].get("response_format")
        if wanted is None:
            out.append(None)
        elif wanted["type"] == "json_object" and "schema" in wanted:
            out.append("json_object+schema")
        else:
            out.append(wanted["type"])
    return out


# --- the reply format, negotiated once -----------------------------------------------------


def test_a_server_that_takes_a_schema_gets_one(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(responder=schema_bound)
    subject = analyzer(fake_openai)
    assert len(subject.analyze(LONG, 2).scenes) == 2
    sent = fake_openai.requests[0]["body"]["response_format"]
    assert sent["json_schema"]["schema"] == reply_schema()
    assert sent["json_schema"]["strict"] is True
    assert subject.take_notices() == [f"reply format: json_schema ({fake_openai.url})"]


@pytest.mark.slow
def test_llama_cpp_python_500_on_json_schema_gets_the_schema_in_json_object(
    fake_openai: FakeOpenAI,
) -> None:
    # Today's small local models answer any JSON object they like without a schema: every
    # chapter failed "field scenes: Field required".
    fake_openai.script(
        responder=schema_bound, reject_response_format=500, rejected_formats=["json_schema"]
    )
    subject = analyzer(fake_openai)
    assert len(subject.analyze(LONG, 2).scenes) == 2
    assert len(subject.analyze(LONG, 1).scenes) == 1
    assert formats(fake_openai) == ["json_schema", "json_object+schema", "json_object+schema"]


def test_a_json_object_only_server_gets_json_object(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(
        responder=answer,
        reject_response_format=400,
        rejected_formats=["json_schema", "json_object+schema"],
    )
    subject = analyzer(fake_openai)
    subject.analyze(LONG, 1)
    subject.analyze(LONG, 1)
    assert formats(fake_openai) == [
        "json_schema",
        "json_object+schema",
        "json_object",
        "json_object",
    ]


def test_one_500_does_not_turn_structured_output_off(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(responder=answer)
    fake_openai.enqueue(error(500))
    subject = analyzer(fake_openai)
    with pytest.raises(ProviderError) as caught:
        subject.analyze(LONG, 1)
    assert caught.value.retryable  # a server's bad moment: tried again later, by the caller
    subject.analyze(LONG, 1)
    subject.analyze(LONG, 1)
    assert formats(fake_openai) == ["json_schema"] * 3


@pytest.mark.slow
def test_a_format_that_worked_is_kept_through_later_errors(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(responder=answer)
    subject = analyzer(fake_openai)
    subject.analyze(LONG, 1)
    fake_openai.enqueue(error(500), error(500), error(400, "Invalid request."))
    for _ in range(3):
        with pytest.raises(ProviderError):
            subject.analyze(LONG, 1)
    subject.analyze(LONG, 1)
    assert formats(fake_openai) == ["json_schema"] * 5


def test_a_model_refusing_max_tokens_gets_max_completion_tokens(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(responder=answer)
    fake_openai.enqueue(
        error(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
        )
    )
    analyzer(fake_openai).analyze(LONG, 1)
    first, second = (r["body"] for r in fake_openai.requests)
    assert "max_tokens" in first and "max_completion_tokens" not in first
    assert second["max_completion_tokens"] == first["max_tokens"]
    assert "max_tokens" not in second
    assert formats(fake_openai) == ["json_schema", "json_schema"]


# --- the context size, learned from a 400 -------------------------------------------------


@pytest.mark.parametrize("style", ["openai", "llama.cpp", "llama-cpp-python"])
@pytest.mark.slow
def test_a_context_400_splits_the_chunk_to_fit_and_sizes_later_chunks(
    fake_openai: FakeOpenAI, style: str
) -> None:
    fake_openai.script(responder=answer, context_tokens=2000, context_style=style)
    subject = analyzer(fake_openai, max_output_tokens=600)
    result = subject.analyze(LONG, 4)
    assert len(result.scenes) == 4
    statuses = [r["status"] for r in fake_openai.requests]
    assert statuses[0] == 400 and set(statuses[1:]) == {200}
    # Every part asked for fits, and together they cover the chapter once.
    asked = [r["body"]["messages"][-1]["content"] for r in fake_openai.requests[1:]]
    assert "".join(asked).count("Paragraph 17:") == 1
    assert all(p in "".join(asked) for p in (PARAGRAPHS[0], PARAGRAPHS[-1]))
    room = subject.chunk_tokens(12_000)
    assert 500 <= room < 2000
    assert (
        f"{fake_openai.url} holds 2,000 tokens of context: chunks of at most {room:,} tokens "
        "from now on"
    ) in subject.take_notices()
    # A later chapter is cut to the learned size up front: no second 400.
    before = len(fake_openai.requests)
    subject.analyze(Chapter(4, "Next", "\n\n".join(PARAGRAPHS[:6])), 1)
    assert all(r["status"] == 200 for r in fake_openai.requests[before:])


def test_a_context_error_without_a_size_halves_the_chunk(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(responder=answer)
    fake_openai.enqueue(error(400, "Prompt is too long for this model.", code="context_length"))
    result = analyzer(fake_openai).analyze(LONG, 2)
    assert len(result.scenes) == 2
    assert len(fake_openai.requests) == 3


def test_the_reply_cap_is_sized_to_the_scenes_and_the_context(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(responder=answer)
    subject = analyzer(fake_openai)
    subject.analyze(Chapter(1, "A", PARAGRAPHS[0]), 1)
    assert fake_openai.requests[-1]["body"]["max_tokens"] == 2048 + 512
    subject.analyze(Chapter(1, "A", PARAGRAPHS[0]), 12)
    assert fake_openai.requests[-1]["body"]["max_tokens"] == 8192  # the cap's ceiling
    fake_openai.script(responder=answer, context_tokens=2500)
    subject.analyze(LONG, 1)
    assert all(r["body"]["max_tokens"] < 2500 for r in fake_openai.requests[-2:])


# --- numbers a server sends ---------------------------------------------------------------


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -5, "completion_tokens": 10},
        {"prompt_tokens": 12.5, "completion_tokens": 10},
        {"prompt_tokens": "12", "completion_tokens": 10},
        {"prompt_tokens": [1], "completion_tokens": 10},
    ],
)
def test_untrustworthy_usage_counts_as_unknown_and_says_so(
    fake_openai: FakeOpenAI, usage: dict
) -> None:
    fake_openai.script(responder=lambda body: {**answer(body), "usage": usage})
    subject = analyzer(fake_openai)
    result = subject.analyze(LONG, 1)
    assert result.usage.prompt_tokens == 0
    assert [n for n in subject.take_notices() if "usage" in n] == [
        f"{fake_openai.url} reported invalid token usage "
        f"(prompt_tokens={str(usage['prompt_tokens'])!r}); counted as 0"
    ]


def test_missing_usage_is_zero_and_said() -> None:
    assert usage_from(None) == (Usage(), "no token usage")
    assert usage_from({"prompt_tokens": 3}) == (Usage(3, 0), "")


# --- streamed replies -----------------------------------------------------------------------


def test_replies_are_streamed_with_usage_from_the_last_chunk(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(
        responder=lambda body: {**answer(body), "usage": {"prompt_tokens": 111}},
    )
    result = analyzer(fake_openai).analyze(LONG, 1)
    assert result.usage.prompt_tokens == 111
    sent = fake_openai.requests[0]["body"]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


def test_a_server_that_does_not_stream_is_asked_plainly_from_then_on(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.script(responder=answer, reject_stream=True)
    subject = analyzer(fake_openai)
    subject.analyze(LONG, 1)
    subject.analyze(LONG, 1)
    assert [bool(r["body"].get("stream")) for r in fake_openai.requests] == [True, False, False]
    assert formats(fake_openai) == ["json_schema"] * 3
    assert any("does not stream" in n for n in subject.take_notices())


@pytest.mark.slow
def test_a_looping_model_is_stopped_by_the_reply_cap(fake_openai: FakeOpenAI) -> None:
    # Without max_tokens, a reply caught in a repetition ran on the server for 12 minutes.
    fake_openai.script(responder=answer)
    fake_openai.enqueue({"kind": "loop"})
    result = analyzer(fake_openai).analyze(LONG, 2)
    first = fake_openai.requests[0]
    assert first["generated"] == first["body"]["max_tokens"] == 2048 + 2 * 512
    assert len(result.scenes) == 2  # asked again in halves, never as it was
    assert result.usage.completion_tokens >= first["generated"]  # the loop's tokens counted


@pytest.mark.slow
def test_a_reply_past_the_timeout_is_closed_and_the_server_stops(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue({"kind": "loop", "token_delay": 0.02})
    started = time.monotonic()
    with pytest.raises(ProviderError, match="--timeout") as caught:
        analyzer(fake_openai, timeout=1.0).analyze(LONG, 1)
    assert caught.value.retryable
    assert time.monotonic() - started < 5
    record = fake_openai.requests[0]
    deadline = time.monotonic() + 5
    while "ended" not in record and time.monotonic() < deadline:
        time.sleep(0.02)
    assert record["disconnected"] is True
    assert record["generated"] < 200  # not the 2,560 it was allowed


@pytest.mark.slow
def test_work_given_up_closes_its_stream_at_once(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue({"kind": "loop", "token_delay": 0.02})
    token = cancel.Token()
    threading.Timer(0.5, token.set).start()
    outcome: list[BaseException] = []

    def work() -> None:
        cancel.bind(token)
        try:
            analyzer(fake_openai, timeout=60.0).analyze(LONG, 1)
        except BaseException as exc:  # the worker's own thread: any end is recorded
            outcome.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert outcome and isinstance(outcome[0], ProviderError)
    record = fake_openai.requests[0]
    deadline = time.monotonic() + 5
    while "ended" not in record and time.monotonic() < deadline:
        time.sleep(0.02)
    assert record["disconnected"] is True
    assert record["generated"] < 100


def test_a_context_size_given_sizes_the_first_request_too(fake_openai: FakeOpenAI) -> None:
    # An 8k server and the 12,000-token default chunk: the user did the arithmetic by hand.
    fake_openai.script(responder=answer, context_tokens=2000)
    subject = analyzer(fake_openai, context_tokens=2000)
    assert len(subject.analyze(LONG, 3).scenes) == 3
    assert {r["status"] for r in fake_openai.requests} == {200}
    assert subject.chunk_tokens(12_000) < 2000


def test_a_server_sending_no_usage_gets_estimated_counts(fake_openai: FakeOpenAI) -> None:
    # llama-cpp-python streams no usage at all: the run said "0 tokens" for thousands spent.
    answer_text = json.dumps({"scenes": [{"quote": PARAGRAPHS[0]}]})
    chunk = {
        "id": "x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": answer_text}, "finish_reason": "stop"}],
    }
    stream = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"
    fake_openai.enqueue(
        {"kind": "malformed", "status": 200, "content_type": "text/event-stream", "body": stream}
    )
    subject = analyzer(fake_openai)
    result = subject.analyze(LONG, 1)
    assert result.usage.prompt_tokens > 400 and result.usage.completion_tokens > 10
    assert subject.spent == result.usage
    assert any("sends no token usage; counts are estimated" in n for n in subject.take_notices())
