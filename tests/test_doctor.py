"""`imaginize doctor` against the fake server's three kinds of structured output, its context
limit and its streaming, over real HTTP and through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from imaginize.analysis.openai.doctor import diagnose, render
from imaginize.analysis.openai.server import ReplyFormat
from imaginize.analysis.providers import resolve_provider
from tests.fake_openai import FakeOpenAI
from tests.replies import schema_bound
from tests.test_cli import CLEAN_ENV, ROOT


def report_for(server: FakeOpenAI):  # type: ignore[no-untyped-def]
    return diagnose(resolve_provider(base_url=server.url, model="fake-model"))


def test_a_server_with_schemas_streaming_and_a_context_size(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(responder=schema_bound, context_tokens=8192, context_style="llama.cpp")
    report = report_for(fake_openai)
    assert report.reply_format is ReplyFormat.JSON_SCHEMA
    assert report.streaming
    assert report.context_tokens == 8192
    checks = {c.capability: c for c in report.checks}
    assert checks["models list"].detail == "1 listed, fake-model among them"
    assert checks["replies: json_schema"].detail == "accepted; the reply follows the schema"
    # Without a schema, this small model answers any JSON it likes: the table says so.
    assert "does not follow the schema" in checks["replies: json_object"].detail
    assert "usage in the last chunk" in checks["streaming"].detail
    text = render(report)
    assert "reply format  json_schema" in text and "8,192 tokens" in text


def test_a_server_refusing_json_schema_with_500(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(
        responder=schema_bound, reject_response_format=500, rejected_formats=["json_schema"]
    )
    report = report_for(fake_openai)
    checks = {c.capability: c for c in report.checks}
    assert not checks["replies: json_schema"].ok
    assert "HTTP 500" in checks["replies: json_schema"].detail
    assert report.reply_format is ReplyFormat.JSON_OBJECT_SCHEMA
    assert report.context_tokens is None


def test_a_json_object_only_server_without_streaming(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(
        responder=schema_bound,
        reject_response_format=400,
        rejected_formats=["json_schema", "json_object+schema"],
        reject_stream=True,
    )
    report = report_for(fake_openai)
    assert report.reply_format is ReplyFormat.JSON_OBJECT
    assert not report.streaming


@pytest.mark.slow
def test_the_cli_prints_the_table_or_json_and_fails_on_a_dead_server(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.script(responder=schema_bound)
    run = [sys.executable, "-m", "imaginize", "doctor", "--base-url", fake_openai.url]
    shown = subprocess.run(run, capture_output=True, text=True, env=CLEAN_ENV, cwd=ROOT)
    assert shown.returncode == 0, shown.stderr
    assert "A run will use:" in shown.stdout
    as_json = subprocess.run(
        [*run, "--json"], capture_output=True, text=True, env=CLEAN_ENV, cwd=ROOT
    )
    assert json.loads(as_json.stdout)["replyFormat"] == "json_schema"
    dead = subprocess.run(
        [sys.executable, "-m", "imaginize", "doctor", "--base-url", "http://127.0.0.1:9/v1"],
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
        cwd=ROOT,
        timeout=120,
    )
    assert dead.returncode == 2
    assert "cannot use this server" in dead.stdout
    assert "Traceback" not in dead.stderr


@pytest.mark.slow
def test_a_one_slot_server_is_told_apart(fake_openai: FakeOpenAI) -> None:
    # llama.cpp with one slot: the second of two requests waits for the first.
    fake_openai.script(responder=lambda body: {**schema_bound(body), "delay": 0.5}, slots=1)
    report = report_for(fake_openai)
    assert report.parallel == 1
    assert "-j 1" in render(report)
    fake_openai.script(slots=None)
    assert report_for(fake_openai).parallel == 2
