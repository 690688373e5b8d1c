"""The `openai` provider: any OpenAI-compatible chat-completions server via the official client.

One request per chapter or chunk. A reply that is cut off (`finish_reason == "length"`) or
does not validate gets one repair request; after that the chunk fails with the reason, never
"completed with 0 scenes". The client's own retries are off: whether and when to try again
is decided by the caller, which knows about the other processes sharing the key.
"""

from __future__ import annotations

from typing import Any

from imaginize.analysis import openai_client
from imaginize.analysis.openai_errors import StatusError, call
from imaginize.analysis.prompt import chapter_messages, repair_messages
from imaginize.analysis.reply import ReplyError, parse_reply
from imaginize.errors import ProviderError
from imaginize.model import Analysis, Chapter, Usage
from imaginize.pacing import Pacer


class OpenAIAnalyzer:
    provider = "openai"

    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 120.0,
        max_output_tokens: int | None = None,
        book_title: str = "",
        pacer: Pacer | None = None,
    ) -> None:
        self.model = model
        self._client = openai_client.build(api_key, base_url, timeout)
        # Built on first use otherwise, which would happen inside the first pacer slot.
        self._completions = self._client.chat.completions
        self._max_output_tokens = max_output_tokens
        self._book_title = book_title
        self._pacer = pacer
        # Turned off for good once the server rejects response_format (llama.cpp does).
        self._json_mode = True

    def analyze(self, chunk: Chapter, scenes: int) -> Analysis:
        messages = chapter_messages(chunk, scenes, self._book_title)
        reply, finish, usage = self._complete(messages)
        try:
            return _checked(reply, finish, chunk.text, scenes, usage)
        except ReplyError as problem:
            retry = repair_messages(messages, reply, str(problem), finish == "length")
            reply, finish, more = self._complete(retry)
            try:
                return _checked(reply, finish, chunk.text, scenes, usage + more)
            except ReplyError as again:
                raise ProviderError(f"unusable reply after a repair request: {again}") from None

    def _complete(self, messages: list[dict[str, str]]) -> tuple[str, str, Usage]:
        params: dict[str, Any] = {"model": self.model, "messages": messages}
        if self._max_output_tokens:
            params["max_tokens"] = self._max_output_tokens
        if self._json_mode:
            try:
                return self._request({**params, "response_format": {"type": "json_object"}})
            except ProviderError as exc:
                if not _rejects_json_mode(exc):
                    raise
                self._json_mode = False
        return self._request(params)

    def _request(self, params: dict[str, Any]) -> tuple[str, str, Usage]:
        completion = call(self._pacer, lambda: self._completions.create(**params))
        try:
            choice = completion.choices[0]
            content = choice.message.content or ""
            finish = choice.finish_reason or ""
            usage = completion.usage
        except (AttributeError, IndexError, TypeError):
            raise ProviderError("malformed response: no choices", retryable=True) from None
        if usage is None:
            return content, finish, Usage()
        return content, finish, Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0)


def _checked(reply: str, finish: str, text: str, scenes: int, usage: Usage) -> Analysis:
    if finish == "length":
        raise ReplyError("the reply was cut off at the output token limit")
    return parse_reply(reply, text, scenes, usage)


def _rejects_json_mode(exc: ProviderError) -> bool:
    # Servers without JSON mode answer 400/422, or (llama.cpp with json_schema) 500.
    return isinstance(exc, StatusError) and exc.status in {400, 422, 500, 501}
