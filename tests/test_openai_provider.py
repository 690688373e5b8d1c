"""The openai provider over real HTTP against the local fake server."""

from __future__ import annotations

import json
from unittest.mock import ANY

import pytest

from imaginize.analysis.openai.chat import OpenAIAnalyzer
from imaginize.analysis.openai.reply_schema import SCHEMA_NAME, reply_schema
from imaginize.errors import AuthenticationError, ProviderError
from imaginize.model import Chapter
from tests.fake_openai import (
    FakeOpenAI,
    error,
    hang,
    malformed,
    rate_limited,
    reply,
    truncated,
)
from tests.replies import answer, reply_json

TEXT = (
    "The lighthouse stood black against a copper sky. Wren climbed the spiral stair with "
    "the tin lantern swinging in her hand.\n\n"
    "At the top the great lens waited, cold and clouded. She wiped it with her sleeve until "
    "a thin blue light shivered in the glass."
)
CHAPTER = Chapter(1, "The Lamp Room", TEXT)


def analyzer(server: FakeOpenAI, timeout: float = 5.0) -> OpenAIAnalyzer:
    return OpenAIAnalyzer(model="fake-model", api_key="test", base_url=server.url, timeout=timeout)


def good(**extra: object) -> dict:
    body = {"messages": [{"role": "user", "content": _prompt()}]}
    return reply(reply_json(body), **extra)


def _prompt() -> str:
    from imaginize.analysis.openai.prompt import chapter_messages

    return "\n".join(m["content"] for m in chapter_messages(CHAPTER, 2))


def test_valid_reply_gives_verified_scenes_and_api_usage(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(good(usage={"prompt_tokens": 321, "completion_tokens": 45}))
    result = analyzer(fake_openai).analyze(CHAPTER, 2)
    assert len(result.scenes) == 2
    assert all(scene.quote in TEXT for scene in result.scenes)
    assert result.usage.prompt_tokens == 321
    assert result.usage.completion_tokens == 45
    request = fake_openai.requests[0]
    assert request["body"]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": reply_schema()},
    }
    assert request["body"]["max_tokens"] == 2048 + 2 * 512  # sized to the scenes asked for
    assert request["headers"]["authorization"] == "Bearer test"


def test_fenced_chatty_reply_is_extracted(fake_openai: FakeOpenAI) -> None:
    body = json.dumps({"scenes": [{"quote": "The lighthouse stood black against a copper sky."}]})
    fake_openai.enqueue(reply(f"Sure! Here it is:\n```json\n{body}\n```\nEnjoy."))
    result = analyzer(fake_openai).analyze(CHAPTER, 1)
    assert result.scenes[0].quote == "The lighthouse stood black against a copper sky."


def test_invented_quotes_are_dropped_and_counted(fake_openai: FakeOpenAI) -> None:
    body = {
        "scenes": [
            {"quote": "The lighthouse stood black against a copper sky."},
            {"quote": "A dragon landed on the roof and sang."},
        ]
    }
    fake_openai.enqueue(reply(json.dumps(body)))
    result = analyzer(fake_openai).analyze(CHAPTER, 2)
    assert [s.quote for s in result.scenes] == ["The lighthouse stood black against a copper sky."]
    assert result.dropped_quotes == 1


def test_cut_off_reply_is_asked_again_in_halves_never_as_it_was(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.script(responder=answer)
    fake_openai.enqueue(
        reply(
            '{"scenes": [{"quote": "The light',
            finish_reason="length",
            usage={"prompt_tokens": 100, "completion_tokens": 50},
        )
    )
    result = analyzer(fake_openai).analyze(CHAPTER, 2)
    first, second = (p.split("\n\n") for p in TEXT.split("\n\n", 1))
    assert [s.quote for s in result.scenes] == [
        "The lighthouse stood black against a copper sky.",
        "At the top the great lens waited, cold and clouded.",
    ]
    prompts = [r["body"]["messages"][-1]["content"] for r in fake_openai.requests]
    assert len(prompts) == 3
    assert TEXT in prompts[0]
    assert first[0] in prompts[1] and second[0] not in prompts[1]
    assert second[0] in prompts[2] and first[0] not in prompts[2]
    assert result.usage.prompt_tokens > 100  # the cut-off reply's tokens are counted too


def test_a_cut_off_reply_that_cannot_be_split_names_the_setting(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(default=reply('{"scenes": [', finish_reason="length"))
    one_sentence = Chapter(1, "Short", "The lighthouse stood black against a copper sky")
    with pytest.raises(ProviderError, match="--max-output-tokens"):
        analyzer(fake_openai).analyze(one_sentence, 1)
    assert len(fake_openai.requests) == 1


def test_invalid_twice_fails_the_chapter_with_both_reasons(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(reply("I cannot help with that."), reply('{"scenes": []}'))
    with pytest.raises(ProviderError) as caught:
        analyzer(fake_openai).analyze(CHAPTER, 2)
    assert not caught.value.retryable
    message = str(caught.value)
    assert "no complete JSON object" in message  # the first reply's reason is kept
    assert "no scenes" in message
    assert len(fake_openai.requests) == 2


def test_a_repair_answered_with_the_same_reply_is_asked_afresh_colder(
    fake_openai: FakeOpenAI,
) -> None:
    same = reply('{"scenes": [{"quote": "Nothing like this."}]}')
    fake_openai.enqueue(same, same, good())
    result = analyzer(fake_openai).analyze(CHAPTER, 2)
    assert len(result.scenes) == 2
    third = fake_openai.requests[2]["body"]
    assert len(third["messages"]) == 2  # a fresh conversation, not the repair's
    assert third["temperature"] == 0.0


def test_all_quotes_invented_is_repaired_not_completed_empty(fake_openai: FakeOpenAI) -> None:
    invented = json.dumps({"scenes": [{"quote": "Nothing like this is in the chapter."}]})
    fake_openai.enqueue(reply(invented), reply(invented))
    with pytest.raises(ProviderError, match="quotes"):
        analyzer(fake_openai).analyze(CHAPTER, 1)


def test_429_is_retryable_with_the_servers_wait(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(rate_limited(2))
    with pytest.raises(ProviderError) as caught:
        analyzer(fake_openai).analyze(CHAPTER, 1)
    assert caught.value.retryable
    assert caught.value.retry_after == pytest.approx(2.0)
    assert len(fake_openai.requests) == 1  # the client's own retries are off


@pytest.mark.parametrize("status", [500, 502, 503, 408, 409])
def test_server_errors_are_retryable(fake_openai: FakeOpenAI, status: int) -> None:
    fake_openai.script(reject_response_format=None)
    fake_openai.enqueue(error(status), error(status))
    with pytest.raises(ProviderError) as caught:
        analyzer(fake_openai).analyze(CHAPTER, 1)
    assert caught.value.retryable


@pytest.mark.parametrize("status", [403, 404])
def test_client_errors_fail_at_once(fake_openai: FakeOpenAI, status: int) -> None:
    fake_openai.enqueue(error(status, "nope"), error(status, "nope"))
    with pytest.raises(ProviderError) as caught:
        analyzer(fake_openai).analyze(CHAPTER, 1)
    assert not caught.value.retryable
    assert "nope" in str(caught.value)
    assert len(fake_openai.requests) == 1


def test_a_422_to_every_format_fails_with_the_servers_reason(fake_openai: FakeOpenAI) -> None:
    # Some servers answer an unknown response_format with a bare 422: each format is tried
    # once (never the same request twice), then the reason is the server's.
    fake_openai.script(default=error(422, "nope"))
    with pytest.raises(ProviderError) as caught:
        analyzer(fake_openai).analyze(CHAPTER, 1)
    assert not caught.value.retryable
    assert "nope" in str(caught.value)
    formats = [(r["body"].get("response_format") or {}).get("type") for r in fake_openai.requests]
    assert formats == ["json_schema", "json_object", "json_object", None]


def test_401_is_an_authentication_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(api_key="the-right-key")
    with pytest.raises(AuthenticationError, match="API key"):
        analyzer(fake_openai).analyze(CHAPTER, 1)


def test_server_without_json_mode_falls_back_once_and_remembers(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(reject_response_format=500, responder=answer)
    subject = analyzer(fake_openai)
    subject.analyze(CHAPTER, 1)
    subject.analyze(CHAPTER, 1)
    formats = [r["body"].get("response_format") for r in fake_openai.requests]
    assert formats == [
        {"type": "json_schema", "json_schema": ANY},
        {"type": "json_object", "schema": reply_schema(string_bounds=True, scenes=1)},
        {"type": "json_object"},
        None,
        None,
    ]
    assert subject.take_notices() == [
        f"{fake_openai.url} refused json_schema replies (HTTP 500: response_format type "
        "'json_schema' is not supported by this server); trying json_object+schema",
        f"{fake_openai.url} refused json_object+schema replies (HTTP 500: response_format type "
        "'json_object+schema' is not supported by this server); trying json_object",
        f"{fake_openai.url} refused json_object replies (HTTP 500: response_format type "
        "'json_object' is not supported by this server); trying plain prompting",
        f"reply format: plain prompting ({fake_openai.url})",
    ]


@pytest.mark.parametrize("step", [malformed(), truncated()], ids=["malformed", "truncated"])
def test_broken_bodies_are_retryable(fake_openai: FakeOpenAI, step: dict) -> None:
    fake_openai.enqueue(step)
    with pytest.raises(ProviderError) as caught:
        analyzer(fake_openai).analyze(CHAPTER, 1)
    assert caught.value.retryable


@pytest.mark.slow
def test_a_hanging_server_times_out(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(hang())
    with pytest.raises(ProviderError, match=r"no reply from .* in time") as caught:
        analyzer(fake_openai, timeout=0.5).analyze(CHAPTER, 1)
    assert caught.value.retryable
