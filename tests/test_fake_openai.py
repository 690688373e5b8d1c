"""The fake OpenAI server itself, checked with the official client and raw HTTP."""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.fake_openai import (
    FakeOpenAI,
    FakeOpenAIProcess,
    error,
    hang,
    image,
    make_jpeg,
    make_png,
    malformed,
    prompt_text,
    rate_limited,
    read_log,
    reply,
    truncated,
)

MESSAGES: list[Any] = [
    {"role": "system", "content": "You read books."},
    {"role": "user", "content": "Chapter 1. It was a dark night."},
]


def client(server: FakeOpenAI, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="test", max_retries=0, **kwargs)


def chat(server: FakeOpenAI, **kwargs: Any) -> Any:
    with client(server, timeout=kwargs.pop("timeout", 10)) as c:
        return c.chat.completions.create(model="test-model", messages=MESSAGES, **kwargs)


def raw_request(
    server: FakeOpenAI, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.mark.slow
def test_default_reply_has_openai_shape_and_deterministic_usage(fake_openai: FakeOpenAI) -> None:
    completion = chat(fake_openai)
    assert completion.object == "chat.completion"
    assert completion.model == "test-model"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "ok"
    assert completion.choices[0].finish_reason == "stop"
    prompt_tokens = (len(prompt_text({"messages": MESSAGES})) + 3) // 4
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == prompt_tokens
    assert completion.usage.completion_tokens == 1
    assert completion.usage.total_tokens == prompt_tokens + 1


@pytest.mark.slow
def test_request_log_records_time_headers_body_and_status(fake_openai: FakeOpenAI) -> None:
    before_mono, before_wall = time.monotonic(), time.time()
    chat(fake_openai, temperature=0.2)
    (record,) = fake_openai.requests
    assert before_mono <= record["t_mono"] <= time.monotonic()
    assert before_wall <= record["t_wall"] <= time.time()
    assert record["method"] == "POST"
    assert record["path"] == "/v1/chat/completions"
    assert record["endpoint"] == "chat"
    assert record["headers"]["authorization"] == "Bearer test"
    assert record["body"]["messages"] == MESSAGES
    assert record["body"]["temperature"] == 0.2
    assert (record["status"], record["kind"], record["source"], record["seq"]) == (
        200,
        "reply",
        "default",
        0,
    )


@pytest.mark.slow
def test_scripted_content_finish_reason_and_usage(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(
        reply({"scenes": []}, finish_reason="length", usage={"completion_tokens": 4096}),
        "plain text",
    )
    first = chat(fake_openai)
    assert json.loads(first.choices[0].message.content) == {"scenes": []}
    assert first.choices[0].finish_reason == "length"
    assert first.usage.completion_tokens == 4096
    assert first.usage.total_tokens == first.usage.prompt_tokens + 4096
    assert chat(fake_openai).choices[0].message.content == "plain text"
    assert chat(fake_openai).choices[0].message.content == "ok"  # queue empty: the default
    assert [r["source"] for r in fake_openai.requests] == ["queue", "queue", "default"]


def test_rate_limited_step_exposes_retry_after_headers(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(rate_limited(7, retry_after_ms=6500))
    with pytest.raises(openai.RateLimitError) as caught:
        chat(fake_openai)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.response.headers["retry-after-ms"] == "6500"
    assert caught.value.code == "rate_limit_exceeded"
    assert fake_openai.requests[0]["status"] == 429


@pytest.mark.slow
def test_client_retry_honours_retry_after_ms(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(rate_limited(None, retry_after_ms=50), reply("after retry"))
    with openai.OpenAI(base_url=fake_openai.url, api_key="test", max_retries=1) as c:
        answer = c.chat.completions.create(model="m", messages=MESSAGES)
    assert answer.choices[0].message.content == "after retry"
    first, second = fake_openai.requests
    assert first["status"] == 429 and second["status"] == 200
    assert second["headers"]["x-stainless-retry-count"] == "1"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors(fake_openai: FakeOpenAI, status: int) -> None:
    fake_openai.enqueue({"status": status})
    with pytest.raises(openai.InternalServerError) as caught:
        chat(fake_openai)
    assert caught.value.status_code == status


@pytest.mark.slow
def test_proxy_error_with_html_body(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(error(502, body="<html>Bad Gateway</html>", retry_after=3))
    with pytest.raises(openai.InternalServerError) as caught:
        chat(fake_openai)
    assert caught.value.response.headers["content-type"] == "text/html"
    assert caught.value.response.headers["retry-after"] == "3"
    assert "Bad Gateway" in caught.value.response.text


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
    ],
)
def test_client_errors_carry_openai_error_body(
    fake_openai: FakeOpenAI, status: int, exc_type: type[openai.APIStatusError]
) -> None:
    fake_openai.enqueue(error(status, "scripted failure", error_type="custom_type", code="c1"))
    with pytest.raises(exc_type) as caught:
        chat(fake_openai)
    assert caught.value.status_code == status
    assert caught.value.body == {
        "message": "scripted failure",
        "type": "custom_type",
        "param": None,
        "code": "c1",
    }


def test_malformed_json_body_escapes_the_client_as_json_error(fake_openai: FakeOpenAI) -> None:
    # openai 3.x does not wrap this: a 200 with a broken JSON body raises json.JSONDecodeError,
    # which callers must handle themselves.
    fake_openai.enqueue(malformed())
    with pytest.raises(json.JSONDecodeError):
        chat(fake_openai)
    assert fake_openai.requests[0]["kind"] == "malformed"


@pytest.mark.slow
def test_truncated_body_is_a_connection_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(truncated())
    with pytest.raises(openai.APIConnectionError) as caught:
        chat(fake_openai)
    assert not isinstance(caught.value, openai.APITimeoutError)
    assert chat(fake_openai).choices[0].message.content == "ok"  # the server carries on


@pytest.mark.slow
def test_hang_times_out_and_delay_is_latency(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(hang(), reply("late", delay=0.3))
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        chat(fake_openai, timeout=0.3)
    assert time.monotonic() - start < 2
    start = time.monotonic()
    assert chat(fake_openai).choices[0].message.content == "late"
    assert time.monotonic() - start >= 0.3
    assert fake_openai.requests[0]["status"] is None


@pytest.mark.slow
def test_stop_is_quick_with_a_hanging_request_and_idle_connections() -> None:
    threads_before = set(threading.enumerate())
    server = FakeOpenAI().start()
    server.enqueue(hang())
    idle = client(server)
    idle.models.list()  # leaves a keep-alive connection open on the server
    failures: list[BaseException] = []

    def call() -> None:
        try:
            chat(server, timeout=30)
        except BaseException as exc:
            failures.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    server.wait_for_requests(2)
    start = time.monotonic()
    server.stop()
    assert time.monotonic() - start < 2
    caller.join(timeout=5)
    idle.close()
    assert len(failures) == 1 and isinstance(failures[0], openai.APIConnectionError)
    assert set(threading.enumerate()) <= threads_before


@pytest.mark.slow
def test_responder_answers_from_the_prompt(fake_openai: FakeOpenAI) -> None:
    def responder(body: dict[str, Any]) -> Any:
        text = prompt_text(body)
        if "Chapter 2" in text:
            return {"status": 503}
        return reply(f"{len(text)} chars") if "Chapter 1" in text else None

    fake_openai.script(responder=responder)
    assert chat(fake_openai).choices[0].message.content.endswith(" chars")
    with client(fake_openai) as c:
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "Chapter 2"}]
            )
        other = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert other.choices[0].message.content == "ok"  # None falls through to the default
    assert [r["source"] for r in fake_openai.requests] == ["responder", "responder", "default"]


def test_responder_exception_is_a_500_with_logged_traceback(fake_openai: FakeOpenAI) -> None:
    def broken(body: dict[str, Any]) -> Any:
        raise KeyError("oops")

    fake_openai.script(responder=broken)
    with pytest.raises(openai.InternalServerError):
        chat(fake_openai)
    assert "KeyError" in fake_openai.requests[0]["error"]


@pytest.mark.slow
def test_script_times_queue_and_defaults(fake_openai: FakeOpenAI) -> None:
    fake_openai.script({"chat": [{"status": 500, "times": 2}, "third"], "default": "fallback"})
    assert fake_openai.pending() == 3
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            chat(fake_openai)
    assert [chat(fake_openai).choices[0].message.content for _ in range(2)] == [
        "third",
        "fallback",
    ]
    with pytest.raises(ValueError, match="unknown script keys"):
        fake_openai.script({"chats": []})
    with pytest.raises(ValueError, match="unknown step kind"):
        fake_openai.enqueue({"kind": "explode"})


@pytest.mark.slow
def test_rpm_sliding_window(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(rpm=2, rate_window=0.5)
    chat(fake_openai)
    chat(fake_openai)
    with pytest.raises(openai.RateLimitError) as caught:
        chat(fake_openai)
    assert caught.value.response.headers["retry-after"] == "1"
    assert 0 < int(caught.value.response.headers["retry-after-ms"]) <= 500
    time.sleep(0.55)
    chat(fake_openai)
    assert [r["status"] for r in fake_openai.requests] == [200, 200, 429, 200]
    assert fake_openai.requests[2]["source"] == "rate_limit"


@pytest.mark.slow
def test_reject_response_format_like_llama_cpp(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(chat=["queued"], reject_response_format=400)
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    for response_format in (schema, {"type": "json_object"}):
        with pytest.raises(openai.BadRequestError, match="response_format"):
            chat(fake_openai, response_format=response_format)
    assert chat(fake_openai).choices[0].message.content == "queued"  # the queue was untouched
    fake_openai.script(reject_response_format=500)
    with pytest.raises(openai.InternalServerError):
        chat(fake_openai, response_format={"type": "json_object"})


def test_api_key_is_checked_when_set(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(api_key="right")
    with pytest.raises(openai.AuthenticationError):
        chat(fake_openai)
    assert fake_openai.requests[0]["source"] == "auth"


def test_images_png_and_jpeg(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(image("jpeg", width=16, height=8), endpoint="images")
    with client(fake_openai) as c:
        jpeg = c.images.generate(model="img", prompt="a castle", size="1024x1024")
        png = c.images.generate(model="img", prompt="a castle", size="256x128", n=2)
    assert jpeg.data is not None and png.data is not None
    jpeg_bytes = base64.b64decode(jpeg.data[0].b64_json or "")
    assert jpeg_bytes == make_jpeg(16, 8)
    assert jpeg_bytes.startswith(b"\xff\xd8") and jpeg_bytes.endswith(b"\xff\xd9")
    assert len(png.data) == 2
    png_bytes = base64.b64decode(png.data[0].b64_json or "")
    assert png_bytes == make_png(256, 128)
    assert png_bytes.startswith(b"\x89PNG\r\n\x1a\n")
    assert int.from_bytes(png_bytes[16:20]) == 256 and int.from_bytes(png_bytes[20:24]) == 128
    assert [r["endpoint"] for r in fake_openai.requests] == ["images", "images"]


def test_models_list(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(model_ids=["a", "b"])
    with client(fake_openai) as c:
        assert [m.id for m in c.models.list()] == ["a", "b"]


def test_raw_http_routing_and_bad_bodies(fake_openai: FakeOpenAI) -> None:
    status, headers, body = raw_request(fake_openai, "POST", "/v1/completions", b"{}")
    assert status == 404 and json.loads(body)["error"]["code"] == "unknown_url"
    status, _, body = raw_request(fake_openai, "POST", "/v1/chat/completions", b"{not json")
    assert status == 400 and "parse" in json.loads(body)["error"]["message"]
    status, _, _ = raw_request(fake_openai, "GET", "/v1/chat/completions")
    assert status == 405
    fake_openai.script(reject_stream=True)
    status, _, _ = raw_request(fake_openai, "POST", "/v1/chat/completions", b'{"stream": true}')
    assert status == 400
    fake_openai.script(reject_stream=False)
    # Without the /v1 prefix too, as some clients send it.
    status, headers, body = raw_request(fake_openai, "POST", "/chat/completions", b"{}")
    assert status == 200 and headers["content-length"] == str(len(body))
    assert json.loads(body)["choices"][0]["message"]["content"] == "ok"
    assert fake_openai.requests[1]["body"] == "{not json"


@pytest.mark.slow
def test_concurrent_requests_are_all_logged_to_file(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    with FakeOpenAI(log_path=log, default=reply("x", delay=0.05)) as server:
        threads = [threading.Thread(target=chat, args=(server,)) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        in_process = server.requests
    from_file = read_log(log)
    assert from_file == in_process
    assert sorted(r["seq"] for r in from_file) == list(range(16))
    assert {r["status"] for r in from_file} == {200}


@pytest.mark.slow
def test_subprocess_mode(tmp_path: Path) -> None:
    script = {
        "chat": [rate_limited(2)],
        "responder": "tests.fake_openai:prompt_text",  # echoes the prompt back
    }
    with FakeOpenAIProcess(script, workdir=tmp_path) as proc:
        assert proc.url.startswith("http://127.0.0.1:") and proc.url.endswith("/v1")
        with openai.OpenAI(base_url=proc.url, api_key="k", max_retries=0, timeout=5) as c:
            with pytest.raises(openai.RateLimitError):
                c.chat.completions.create(model="m", messages=MESSAGES)
            answer = c.chat.completions.create(model="m", messages=MESSAGES)
        assert answer.choices[0].message.content == prompt_text({"messages": MESSAGES})
        records = proc.requests()
    assert proc.proc is not None and proc.proc.returncode is not None  # stopped
    assert [(r["status"], r["source"]) for r in records] == [(429, "queue"), (200, "responder")]
    assert records[1]["headers"]["authorization"] == "Bearer k"
    assert records[1]["body"]["messages"] == MESSAGES
    assert records[0]["t_mono"] <= records[1]["t_mono"]


def test_streamed_reply_with_usage_in_the_last_chunk(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(reply('{"scenes": []}', usage={"prompt_tokens": 7}))
    client = openai.OpenAI(base_url=fake_openai.url, api_key="test", max_retries=0)
    stream = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == '{"scenes": []}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 7


@pytest.mark.slow
def test_a_looping_reply_stops_at_max_tokens_or_when_the_client_leaves(
    fake_openai: FakeOpenAI,
) -> None:
    client = openai.OpenAI(base_url=fake_openai.url, api_key="test", max_retries=0)
    fake_openai.enqueue({"kind": "loop"})
    capped = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert capped.choices[0].finish_reason == "length"
    assert fake_openai.requests[0]["generated"] == 5
    fake_openai.enqueue({"kind": "loop", "token_delay": 0.01})
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    for count, _ in enumerate(stream):
        if count == 3:
            break
    stream.close()
    deadline = time.monotonic() + 5
    while "ended" not in fake_openai.requests[1] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_openai.requests[1]["disconnected"] is True
    assert fake_openai.requests[1]["generated"] < 100
