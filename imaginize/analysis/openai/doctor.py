"""`imaginize doctor`: what a server supports, asked once per capability, and what a run on it
will use.

Each probe is one short request (a few hundred tokens; the context probe is refused before any
text is generated on the servers that check it), so a user sees in seconds whether their
llama.cpp, Ollama, vLLM or hosted server constrains replies to a schema, streams, and how much
context it holds, instead of learning it chapter by chapter.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imaginize.analysis.openai import client as openai_client
from imaginize.analysis.openai.errors import StatusError, call
from imaginize.analysis.openai.prompt import chapter_messages
from imaginize.analysis.openai.reply import ReplyError, find_answer
from imaginize.analysis.openai.reply_schema import ChapterReply
from imaginize.analysis.openai.server import LADDER, ReplyFormat, context_limit
from imaginize.analysis.providers import ProviderConfig
from imaginize.errors import ProviderError
from imaginize.model import Chapter

# The request a run sends, for a two-sentence chapter: a few hundred tokens each.
_PROBE = chapter_messages(
    Chapter(1, "Probe", "The lamp was lit. Wren climbed the stair with a tin lantern."), 1
)
# Far beyond any model's context: servers that check refuse it naming their size.
_HUGE = 10_000_000


@dataclass(frozen=True)
class Check:
    capability: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Report:
    server: str
    model: str
    checks: tuple[Check, ...]
    # What a run against this server will use.
    reply_format: ReplyFormat | None
    streaming: bool
    context_tokens: int | None
    latency: float | None
    # Requests it serves at once, as seen: 1 when two at once took twice as long, or one
    # was cut short; None when not measured.
    parallel: int | None = None

    @property
    def reachable(self) -> bool:
        return any(c.ok for c in self.checks)


def diagnose(config: ProviderConfig, timeout: float | None = None) -> Report:
    """Probe the server of `config` (an openai provider) and say what it supports."""
    client = openai_client.build(config.api_key, config.base_url, timeout or config.timeout)
    model = config.model
    checks: list[Check] = []

    def probe(capability: str, ask: Callable[[], tuple[bool, str]]) -> bool:
        try:
            ok, detail = ask()
        except (ProviderError, OSError) as exc:
            ok, detail = False, str(exc)
        checks.append(Check(capability, ok, " ".join(detail.split())[:160]))
        return ok

    def models() -> tuple[bool, str]:
        listed = [m.id for m in call(None, lambda: client.models.list()).data]
        if model in listed:
            return True, f"{len(listed)} listed, {model} among them"
        return True, f"{len(listed)} listed, not {model}: {', '.join(listed[:5])}"

    probe("models list", models)
    latency: list[float] = []
    chosen: ReplyFormat | None = None
    for reply_format in LADDER:

        def constrained(reply_format: ReplyFormat = reply_format) -> tuple[bool, str]:
            params: dict[str, Any] = {"model": model, "messages": _PROBE, "max_tokens": 600}
            if reply_format.response_format() is not None:
                params["response_format"] = reply_format.response_format()
            started = time.monotonic()
            completion = call(None, lambda: client.chat.completions.create(**params))
            latency.append(time.monotonic() - started)
            content = completion.choices[0].message.content or ""
            return True, _follows_schema(content)

        if probe(f"replies: {reply_format}", constrained) and chosen is None:
            chosen = reply_format
    streaming = probe("streaming", lambda: _stream(client, model))
    parallel: list[int] = []

    def two_at_once() -> tuple[bool, str]:
        seen, detail = _parallel(client, model)
        parallel.append(seen)
        return True, detail

    if streaming:
        probe("two requests at once", two_at_once)
    context: list[int] = []

    def context_size() -> tuple[bool, str]:
        try:
            call(
                None,
                lambda: client.chat.completions.create(
                    model=model, messages=_PROBE[1:], max_tokens=_HUGE
                ),
            )
        except StatusError as error:
            found = context_limit(error)
            if found is not None:
                context.append(found)
                return True, f"{found:,} tokens"
            return False, f"not said ({error})"
        return False, "not said (a request for 10,000,000 reply tokens was accepted)"

    probe("context size", context_size)
    return Report(
        server=config.base_url or "https://api.openai.com/v1",
        model=model,
        checks=tuple(checks),
        reply_format=chosen,
        streaming=streaming,
        context_tokens=context[0] if context else None,
        latency=min(latency) if latency else None,
        parallel=parallel[0] if parallel else None,
    )


def _follows_schema(content: str) -> str:
    try:
        answer = find_answer(content)
        ChapterReply.model_validate(answer)
    except (ReplyError, ValueError) as exc:
        return f"accepted, but the reply does not follow the schema ({str(exc)[:60]})"
    return "accepted; the reply follows the schema"


def _stream(client: Any, model: str) -> tuple[bool, str]:
    def read() -> tuple[int, bool]:
        stream = client.chat.completions.create(
            model=model,
            messages=_PROBE,
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        )
        with stream:
            chunks = list(stream)
        return len(chunks), any(getattr(c, "usage", None) for c in chunks)

    count, usage = call(None, read)
    return True, f"{count} chunks, usage {'in the last chunk' if usage else 'not sent'}"


def _parallel(client: Any, model: str) -> tuple[int, str]:
    """Two short streamed replies, one alone and then two at once: a server that answers in
    turn takes twice as long for the pair, and llama-cpp-python's cuts the first short."""

    def one() -> tuple[float, bool]:
        started = time.monotonic()
        finished = False
        stream = client.chat.completions.create(
            model=model, messages=_PROBE, max_tokens=24, stream=True
        )
        with stream:
            for chunk in stream:
                finished = finished or any(c.finish_reason for c in chunk.choices or ())
        return time.monotonic() - started, finished

    alone, _ = call(None, one)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        pair = [pool.submit(call, None, one) for _ in range(2)]
        results = [f.result() for f in pair]
    slowest = max(seconds for seconds, _ in results)
    if not all(done for _, done in results):
        return 1, (
            "a reply was cut short when another arrived (llama-cpp-python: start it with "
            "--interrupt_requests False, or run -j 1)"
        )
    if slowest > 1.7 * alone:
        return 1, f"answered in turn ({alone:.1f} s alone, {slowest:.1f} s two at once): -j 1"
    return 2, f"together ({alone:.1f} s alone, {slowest:.1f} s two at once)"


def render(report: Report) -> str:
    width = max(len(c.capability) for c in report.checks)
    lines = [f"{report.server} ({report.model})"]
    for check in report.checks:
        mark = "yes" if check.ok else "no "
        lines.append(f"  {check.capability:<{width}}  {mark}  {check.detail}")
    if not report.reachable:
        lines.append("imaginize cannot use this server: nothing it was asked succeeded.")
        return "\n".join(lines)
    lines.append("A run will use:")
    lines.append(f"  reply format  {report.reply_format or 'none worked'}")
    lines.append(f"  streaming     {'yes' if report.streaming else 'no'}")
    if report.context_tokens:
        lines.append(f"  context       {report.context_tokens:,} tokens (chunks sized to fit)")
    else:
        lines.append("  context       unknown until a request is refused for its length")
    if report.latency is not None:
        lines.append(f"  a short reply {report.latency:.1f} s")
    if report.parallel == 1:
        lines.append("  workers       -j 1 (more only queue, or are cut short)")
    return "\n".join(lines)


def to_json(report: Report) -> str:
    return json.dumps(
        {
            "server": report.server,
            "model": report.model,
            "checks": [c.__dict__ for c in report.checks],
            "replyFormat": report.reply_format.value if report.reply_format else None,
            "streaming": report.streaming,
            "contextTokens": report.context_tokens,
            "latencySeconds": report.latency,
            "parallel": report.parallel,
        },
        indent=2,
    )


@dataclass(frozen=True)
class Speed:
    """How fast a server reads a prompt and writes a reply, from one streamed request."""

    prompt_tokens: int
    first_token: float  # seconds until the first reply token: mostly reading the prompt
    tokens_per_second: float  # writing the reply, after its first token

    def seconds_for(self, prompt_tokens: int, output_tokens: int) -> float:
        reading = self.first_token * prompt_tokens / max(1, self.prompt_tokens)
        return reading + output_tokens / max(self.tokens_per_second, 0.01)


def measure_speed(config: ProviderConfig, messages: list[dict[str, str]]) -> Speed:
    """Send `messages` once, streamed, for a short reply (48 tokens), and time it. Raises
    ProviderError when the server cannot be asked."""
    client = openai_client.build(config.api_key, config.base_url, config.timeout)

    def read() -> Speed:
        started = time.monotonic()
        first: float | None = None
        pieces = 0
        usage: Any = None
        stream = client.chat.completions.create(
            model=config.model,
            messages=messages,
            max_tokens=48,
            stream=True,
            stream_options={"include_usage": True},
        )
        with stream:
            for chunk in stream:
                usage = getattr(chunk, "usage", None) or usage
                if any(getattr(c.delta, "content", None) for c in chunk.choices or ()):
                    pieces += 1
                    first = first if first is not None else time.monotonic()
        ended = time.monotonic()
        if first is None:
            raise ProviderError("the server sent no reply tokens", retryable=True)
        written = getattr(usage, "completion_tokens", None)
        written = written if isinstance(written, int) and written > 0 else pieces
        read_tokens = getattr(usage, "prompt_tokens", None)
        if not isinstance(read_tokens, int) or read_tokens <= 0:
            read_tokens = sum(len(m["content"]) for m in messages) // 4
        rate = max(1, written - 1) / max(ended - first, 1e-3)
        return Speed(read_tokens, first - started, rate)

    return call(None, read)
