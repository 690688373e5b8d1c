"""The `openai` provider: any OpenAI-compatible chat-completions server via the official client.

One request per chapter or chunk. A reply that is cut off (`finish_reason == "length"`) or
does not validate gets one repair request; after that the chunk fails with the reason, never
"completed with 0 scenes". The client's own retries are off: whether and when to try again
is decided by the caller, which knows about the other processes sharing the key.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import openai

from imaginize.analysis.prompt import chapter_messages, repair_messages
from imaginize.analysis.reply import ReplyError, parse_reply
from imaginize.backoff import backoff_delay, retry_after_seconds
from imaginize.errors import AuthenticationError, ProviderError
from imaginize.model import Analysis, Chapter, Usage
from imaginize.pacing import Pacer

_RETRYABLE_STATUS = {408, 409, 429}


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
        self._client = openai.OpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0
        )
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
        try:
            with self._pacer.slot() if self._pacer else nullcontext():
                completion = self._client.chat.completions.create(**params)
        except openai.AuthenticationError as exc:
            raise AuthenticationError(f"the API key was refused (401): {_detail(exc)}") from None
        except openai.APIStatusError as exc:
            problem = _status_error(exc)
            if exc.status_code == 429 and self._pacer:
                # Everyone sharing the key waits, not just this worker.
                wait = problem.retry_after
                self._pacer.pause(
                    wait if wait is not None else backoff_delay(1, base=2.0), str(problem)
                )
            raise problem from None
        except openai.APITimeoutError:
            raise ProviderError("request timed out", retryable=True) from None
        except openai.APIConnectionError as exc:
            raise ProviderError(f"connection failed: {exc}", retryable=True) from None
        except (openai.APIResponseValidationError, ValueError) as exc:
            # openai 3.x lets a 200 with a broken JSON body out as a bare JSONDecodeError.
            raise ProviderError(f"malformed response: {exc}", retryable=True) from None
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


class _StatusError(ProviderError):
    def __init__(self, message: str, status: int, **kwargs: Any) -> None:
        self.status = status
        super().__init__(message, **kwargs)


def _status_error(exc: openai.APIStatusError) -> ProviderError:
    status = exc.status_code
    retryable = status in _RETRYABLE_STATUS or status >= 500
    wait = retry_after_seconds(exc.response.headers) if retryable else None
    return _StatusError(
        f"HTTP {status}: {_detail(exc)}", status, retryable=retryable, retry_after=wait
    )


def _rejects_json_mode(exc: ProviderError) -> bool:
    # Servers without JSON mode answer 400/422, or (llama.cpp with json_schema) 500.
    return isinstance(exc, _StatusError) and exc.status in {400, 422, 500, 501}


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return exc.message
