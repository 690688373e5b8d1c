"""The Batch API (`--batch-api`): the test server's /v1/files and /v1/batches, the batch
files imaginize builds and ingests, and whole runs against the server over real HTTP."""

from __future__ import annotations

import json
import time
from typing import Any

import openai
import pytest

from tests.fake_openai import FakeOpenAI, error, reply

# --- the test server's Batch API ------------------------------------------------------------


def _line(custom_id: str, text: str = "hi", max_tokens: int = 10) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "fake-model",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens,
        },
    }


def _submit(client: openai.OpenAI, lines: list[dict[str, Any]]) -> Any:
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = client.files.create(file=("in.jsonl", data), purpose="batch")
    return client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )


def _until_ended(client: openai.OpenAI, batch_id: str, timeout: float = 5.0) -> tuple[Any, list]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if not seen or seen[-1] != batch.status:
            seen.append(batch.status)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch, seen
        time.sleep(0.01)
    raise TimeoutError(seen)


def _jsonl(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


@pytest.fixture
def client(fake_openai: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake_openai.url, api_key="test", max_retries=0)


def test_batch_states_advance_and_replies_come_from_the_chat_source(
    fake_openai: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake_openai.script(batch_timing=[0.1, 0.1, 0.1], responder=lambda body: "answer")
    fake_openai.enqueue(reply("first"))
    batch = _submit(client, [_line("a"), _line("b")])
    assert batch.status == "validating"
    ended, seen = _until_ended(client, batch.id)
    assert seen == ["validating", "in_progress", "finalizing", "completed"]
    assert ended.request_counts.completed == 2 and ended.error_file_id is None
    out = {line["custom_id"]: line for line in _jsonl(client, ended.output_file_id)}
    texts = {k: v["response"]["body"]["choices"][0]["message"]["content"] for k, v in out.items()}
    assert texts == {"a": "first", "b": "answer"}  # queue first, then the responder
    created = [r for r in fake_openai.requests if r["path"] == "/v1/batches"]
    assert created[0]["custom_ids"] == ["a", "b"]


def test_partial_failures_go_to_the_error_file(
    fake_openai: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake_openai.script(batch_timing=[0, 0, 0])
    fake_openai.enqueue(reply("ok"), error(500), reply("ok"))
    ended, _ = _until_ended(client, _submit(client, [_line(c) for c in "abc"]).id)
    assert ended.status == "completed"
    assert (ended.request_counts.completed, ended.request_counts.failed) == (2, 1)
    errors = _jsonl(client, ended.error_file_id)
    assert [e["custom_id"] for e in errors] == ["b"]
    assert errors[0]["response"]["status_code"] == 500


def test_an_expired_batch_answers_part_and_lists_the_rest(
    fake_openai: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake_openai.script(batch_timing=[0, 0, 0], batch_expire=1)
    ended, _ = _until_ended(client, _submit(client, [_line(c) for c in "abcd"]).id)
    assert ended.status == "expired"
    assert [o["custom_id"] for o in _jsonl(client, ended.output_file_id)] == ["a", "b"]
    errors = _jsonl(client, ended.error_file_id)
    assert [(e["custom_id"], e["error"]["code"]) for e in errors] == [
        ("c", "batch_expired"),
        ("d", "batch_expired"),
    ]
    again, _ = _until_ended(client, _submit(client, [_line("e")]).id)
    assert again.status == "completed"  # only the next one expired


def test_a_batch_past_the_enqueued_token_cap_fails_validation(
    fake_openai: FakeOpenAI, client: openai.OpenAI
) -> None:
    # Each line: ceil(2 / 4) = 1 prompt token + 10 of output cap = 11 tokens enqueued.
    fake_openai.script(batch_timing=[5, 5, 5], batch_token_cap=30)
    first = _submit(client, [_line("a"), _line("b")])
    assert first.status == "validating"
    second = _submit(client, [_line("c")])
    assert second.status == "failed"
    assert second.errors.data[0].code == "token_limit_exceeded"
    assert client.batches.cancel(first.id).status == "cancelled"
    assert _submit(client, [_line("c")]).status == "validating"  # room again


def test_a_server_without_the_batch_api_answers_404(
    fake_openai: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake_openai.script(batch_api=False)
    with pytest.raises(openai.NotFoundError):
        client.files.create(file=("in.jsonl", b"{}\n"), purpose="batch")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_x")
