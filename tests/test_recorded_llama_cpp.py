"""imaginize against replies recorded from a real llama-cpp-python server (see
tests/data/recorded/llama_cpp_python/README.md), replayed by the fake server: what each
response format really gets, a real context refusal, a real cut-off."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from imaginize.analysis.openai.chat import OpenAIAnalyzer
from imaginize.errors import ProviderError
from imaginize.reading.epub import read_book
from tests.fake_openai import FakeOpenAI
from tests.test_cli import SAMPLE

RECORDED = Path(__file__).parent / "data" / "recorded" / "llama_cpp_python"


def recorded(case: str) -> dict[str, Any]:
    return json.loads((RECORDED / f"{case}.json").read_text(encoding="utf-8"))


def replayed(case: str) -> dict[str, Any]:
    """The recorded answer as a fake-server step: an error verbatim, a reply's content,
    finish reason and usage (streamed by the fake server as a real server streams)."""
    found = recorded(case)
    if found["status"] >= 400:
        body = json.dumps(found["body"])
        return {"kind": "error", "status": found["status"], "body": body,
                "content_type": "application/json"}  # fmt: skip
    choice = found["body"]["choices"][0]
    return {
        "kind": "reply",
        "content": choice["message"]["content"],
        "finish_reason": choice["finish_reason"],
        "usage": found["body"]["usage"],
    }


def llama_cpp_python(body: Mapping[str, Any] | None) -> dict[str, Any]:
    """What llama-cpp-python 0.3.36 with Gemma 3 270M answered to each response format."""
    wanted = (body or {}).get("response_format") or {}
    if wanted.get("type") == "json_schema":
        return replayed("json_schema")
    if wanted.get("type") == "json_object":
        return replayed("json_object_schema" if "schema" in wanted else "json_object")
    return replayed("plain")


@pytest.fixture
def chapter_one() -> Any:
    return read_book(SAMPLE).chapters[0]


def test_its_500_on_json_schema_moves_to_its_own_schema_form(
    fake_openai: FakeOpenAI, chapter_one: Any
) -> None:
    fake_openai.script(responder=llama_cpp_python)
    subject = OpenAIAnalyzer(model="gemma-3-270m-q4_k_m", api_key="x", base_url=fake_openai.url)
    with pytest.raises(ProviderError) as caught:
        subject.analyze(chapter_one, 2)
    kinds = []
    for record in fake_openai.requests:
        wanted = record["body"].get("response_format") or {}
        kinds.append(wanted.get("type", "") + ("+schema" if "schema" in wanted else ""))
    # The real 500 names response_format: one request, then llama-cpp-python's own form for
    # the request, its repair and one fresh try. Nothing sent twice as it was.
    assert kinds == [
        "json_schema",
        "json_object+schema",
        "json_object+schema",
        "json_object+schema",
    ]
    # The base 270M model fills the grammar with nothing: said plainly, not "Field required".
    assert "lists no scenes" in str(caught.value)
    assert any("refused json_schema" in n for n in subject.take_notices())


def test_its_real_context_refusal_is_learned(fake_openai: FakeOpenAI, chapter_one: Any) -> None:
    fake_openai.script(responder=lambda body: {"kind": "reply", "content": "{}"})
    fake_openai.enqueue(replayed("context_exceeded"))
    subject = OpenAIAnalyzer(model="gemma-3-270m-q4_k_m", api_key="x", base_url=fake_openai.url)
    with pytest.raises(ProviderError):
        subject.analyze(chapter_one, 2)
    assert subject.chunk_tokens(12_000) < 8192
    assert any("8,192 tokens of context" in n for n in subject.take_notices())


@pytest.mark.slow
def test_its_real_cut_off_is_asked_again_in_halves(
    fake_openai: FakeOpenAI, chapter_one: Any
) -> None:
    fake_openai.script(responder=lambda body: {"kind": "reply", "content": "{}"})
    fake_openai.enqueue(replayed("max_tokens_20"))
    subject = OpenAIAnalyzer(model="gemma-3-270m-q4_k_m", api_key="x", base_url=fake_openai.url)
    with pytest.raises(ProviderError):
        subject.analyze(chapter_one, 2)
    first, second = (r["body"]["messages"][-1]["content"] for r in fake_openai.requests[:2])
    assert len(second) < len(first)  # half the chapter, not the same request again


def test_its_interrupted_stream_is_named_with_the_fix(fake_openai: FakeOpenAI) -> None:
    # With -j 2, every chapter failed "malformed response: an empty stream".
    sse = recorded("stream_interrupted")["sse"]
    body = "\n".join(sse) + "\n"
    fake_openai.enqueue(
        {"kind": "malformed", "status": 200, "body": body, "content_type": "text/event-stream"}
    )
    subject = OpenAIAnalyzer(model="gemma-3-270m-q4_k_m", api_key="x", base_url=fake_openai.url)
    with pytest.raises(ProviderError) as caught:
        subject.analyze(read_book(SAMPLE).chapters[0], 2)
    assert caught.value.retryable
    assert "ended a reply unfinished" in str(caught.value)
    assert "-j 1" in str(caught.value) and "--interrupt_requests False" in str(caught.value)
