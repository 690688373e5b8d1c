"""The `openai` provider: any OpenAI-compatible chat-completions server via the official client.

One request per chapter or chunk, with replies constrained as tightly as the server allows
(see `server`). What can go wrong with a reply, and what is done instead of asking again:
- invalid (no JSON, no usable scene): one repair request showing the model its reply and the
  reason; a repair that gets the same reply back is asked once more from scratch;
- cut off (`finish_reason == "length"`): the chunk is split in two and each half asked for;
- too long for the server's context (a 400 naming its size): the size is remembered, the chunk
  is split to fit, and later chunks of the run are cut to it;
- cut short because another request arrived (llama-cpp-python's interrupt_requests): every
  process on the server and key sends one request at a time from then on (the shared pace),
  and the request is asked again, once, at no attempt's cost.
The client's own retries are off: whether and when to try again is decided by the caller,
which knows about the other processes sharing the key.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import openai

from imaginize import cancel
from imaginize.analysis.openai import client as openai_client
from imaginize.analysis.openai.errors import StatusError, StreamCutShort, call, request_tokens
from imaginize.analysis.openai.prompt import chapter_messages, repair_messages
from imaginize.analysis.openai.quote_choices import quote_choices
from imaginize.analysis.openai.reply import ReplyError, parse_reply
from imaginize.analysis.openai.server import (
    context_limit,
    is_context_error,
    names_max_tokens,
    rejects_format,
    state_for,
)
from imaginize.errors import ProviderError
from imaginize.events import ServerLimitsText
from imaginize.model import Analysis, Chapter, Scene, Usage
from imaginize.pacing.pace import SharedPace
from imaginize.pacing.server_limits import StatedLimits, heed
from imaginize.reading.chunking import estimate_tokens, halve, share_scenes, split_chapter

# How often a chunk may be halved for a cut-off reply or a small context.
MAX_SPLITS = 4
# A reply's tokens: a fixed part for the elements, and one part per scene asked for.
OUTPUT_BASE_TOKENS = 2048
OUTPUT_TOKENS_PER_SCENE = 512
OUTPUT_TOKENS_CAP = 8192
# Chunks are never cut below this many tokens of chapter text to fit a small context.
MIN_CHUNK_TOKENS = 200


class _CutOff(Exception):
    """The reply stopped at a token limit; the tokens it spent are in `usage`."""

    def __init__(self, usage: Usage, reason: str) -> None:
        super().__init__(reason)
        self.usage = usage


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
        context_tokens: int | None = None,
        book_title: str = "",
        pacer: SharedPace | None = None,
        quote_choices: bool = False,
    ) -> None:
        self.model = model
        # Scenes' quotes limited to the chunk's own sentences, where the format has a schema.
        self._quote_choices = quote_choices
        self._client = openai_client.build(api_key, base_url, timeout)
        # Built on first use otherwise, which would happen inside the first pacer slot.
        self._completions = self._client.chat.completions
        self._max_output_tokens = max_output_tokens
        self._timeout = timeout
        self._book_title = book_title
        self._pacer = pacer
        self._server = base_url or "the OpenAI API"
        self._state = state_for(base_url, model)
        if context_tokens and not self._state.context_tokens:
            # What the user says of the server, until the server says otherwise.
            self._state.context_tokens = context_tokens
        self._notices: list[str] = []
        # The limits the server's last reply stated (x-ratelimit-*), not yet passed on.
        self._stated: StatedLimits | None = None
        self.spent = Usage()

    # --- the Analyzer protocol ----------------------------------------------------------

    def analyze(self, chunk: Chapter, scenes: int) -> Analysis:
        return self._analyze(chunk, scenes, splits=0)

    def chunk_tokens(self, configured: int) -> int:
        """The most chapter text one request may carry: `configured`, or less when the
        server's context is known to be smaller."""
        room = self._room_for_text()
        return configured if room is None else max(MIN_CHUNK_TOKENS, min(configured, room))

    def take_notices(self) -> list[str]:
        """Lines for the user gathered since the last call (formats, context size, usage),
        and the limits the server last stated, for the [PERF] lines."""
        notices, self._notices = self._notices, []
        if self._stated is not None:
            notices.append(ServerLimitsText(self._stated.text()))
            self._stated = None
        return notices

    # --- splitting -----------------------------------------------------------------------

    def _analyze(self, chunk: Chapter, scenes: int, splits: int) -> Analysis:
        parts = self._fitted(chunk)
        if len(parts) > 1:
            return self._in_parts(parts, scenes, splits, Usage())
        try:
            return self._ask(chunk, scenes)
        except _CutOff as cut:
            problem, spent = str(cut), cut.usage
        # Never the same request again: the chunk in parts that fit what was learned, else
        # in halves.
        parts = [] if splits >= MAX_SPLITS else self._fitted(chunk)
        if len(parts) == 1:
            parts = halve(chunk)
        if len(parts) < 2:
            raise ProviderError(problem)
        return self._in_parts(parts, scenes, splits + 1, spent)

    def _fitted(self, chunk: Chapter) -> list[Chapter]:
        """The chunk in parts that fit the server's known context (one part when it does)."""
        room = self._room_for_text()
        if room is None or estimate_tokens(chunk.text) <= room:
            return [chunk]
        return split_chapter(chunk, max(MIN_CHUNK_TOKENS, room))

    def _in_parts(self, parts: list[Chapter], scenes: int, splits: int, spent: Usage) -> Analysis:
        analyses = [
            self._analyze(part, wanted, splits)
            for part, wanted in zip(parts, share_scenes(scenes, parts), strict=True)
        ]
        kept = [scene for a in analyses for scene in a.scenes]
        return Analysis(
            tuple(_spread(kept, scenes)),
            tuple(e for a in analyses for e in a.elements),
            sum((a.usage for a in analyses), spent),
            sum(a.dropped_quotes for a in analyses),
            sum(a.dropped_items for a in analyses),
            sum(a.corrected_quotes for a in analyses),
        )

    # --- one chunk: ask, repair, start over ----------------------------------------------

    def _ask(self, chunk: Chapter, scenes: int) -> Analysis:
        messages = chapter_messages(chunk, scenes, self._book_title)
        cap = self._output_cap(scenes, messages)
        quotes = quote_choices(chunk.text) if self._quote_choices else ()
        reply, usage = self._complete(messages, cap, quotes=quotes, scenes=scenes)
        try:
            return parse_reply(reply, chunk.text, scenes, usage)
        except ReplyError as problem:
            first = str(problem)
        retry = repair_messages(messages, reply, first)
        again, more = self._complete(retry, cap, spent=usage, quotes=quotes, scenes=scenes)
        usage += more
        try:
            return parse_reply(again, chunk.text, scenes, usage)
        except ReplyError as problem:
            second = str(problem)
        if again.strip() == reply.strip():
            # The model repeats itself in that conversation: one fresh one, colder.
            fresh, more = self._complete(
                messages, cap, spent=usage, temperature=0.0, quotes=quotes, scenes=scenes
            )
            usage += more
            try:
                return parse_reply(fresh, chunk.text, scenes, usage)
            except ReplyError as problem:
                second = str(problem)
        reason = first if second == first else f"{first}; after a repair request: {second}"
        # Its tokens are in self.spent, which the worker records with the failure.
        raise ProviderError(f"unusable reply: {reason}")

    def _output_cap(self, scenes: int, messages: list[dict[str, str]]) -> int:
        cap = self._max_output_tokens or min(
            OUTPUT_TOKENS_CAP, OUTPUT_BASE_TOKENS + OUTPUT_TOKENS_PER_SCENE * max(scenes, 1)
        )
        context = self._state.context_tokens
        if context is not None and not self._max_output_tokens:
            prompt = sum(estimate_tokens(m["content"]) for m in messages)
            cap = max(256, min(cap, context - prompt - 64))
        return cap

    def _room_for_text(self) -> int | None:
        """Tokens of chapter text that fit the known context beside the prompt and reply."""
        context = self._state.context_tokens
        if context is None:
            return None
        empty = chapter_messages(Chapter(0, "", ""), 1, self._book_title)
        overhead = sum(estimate_tokens(m["content"]) for m in empty) + 64
        reply = min(self._max_output_tokens or OUTPUT_BASE_TOKENS, context // 3)
        # Estimates are a guess at the server's tokenizer: keep a tenth in hand.
        return int((context - overhead - reply) * 0.9)

    # --- one request ---------------------------------------------------------------------

    def _complete(
        self,
        messages: list[dict[str, str]],
        cap: int,
        *,
        spent: Usage | None = None,
        temperature: float | None = None,
        quotes: tuple[str, ...] = (),
        scenes: int = 0,
    ) -> tuple[str, Usage]:
        """The reply's text and usage. Raises _CutOff for a reply stopped at a limit (with
        the usage so far), ProviderError for what the server said."""
        while True:
            state = self._state
            params: dict[str, Any] = {"model": self.model, "messages": messages}
            params[state.max_tokens_field] = cap
            if temperature is not None:
                params["temperature"] = temperature
            response_format = state.format.response_format(quotes, scenes)
            if response_format is not None:
                params["response_format"] = response_format
            try:
                content, finish, usage = self._request(params)
            except StatusError as error:
                if not self._adapt(error, spent or Usage()):
                    raise
                continue
            if not state.confirmed:
                state.confirmed = True
                self._say(f"reply format: {state.format} ({self._server})")
            if finish == "length":
                raise _CutOff((spent or Usage()) + usage, self._cut_off_reason(usage, cap))
            return content, usage

    def _adapt(self, error: StatusError, spent: Usage) -> bool:
        """Learn from an error answer what to send instead; False when nothing would help."""
        state = self._state
        limit = context_limit(error)
        if limit is not None:
            if state.context_tokens != limit:
                state.context_tokens = limit
                self._say(
                    f"{self._server} holds {limit:,} tokens of context: chunks of at most "
                    f"{self.chunk_tokens(10**9):,} tokens from now on"
                )
            raise _CutOff(spent, f"the request exceeds the server's context ({limit} tokens)")
        if is_context_error(error):
            raise _CutOff(spent, "the request exceeds the server's context")
        if names_max_tokens(error) and state.max_tokens_field == "max_tokens":
            state.max_tokens_field = "max_completion_tokens"
            return True
        if rejects_format(error, state):
            before = state.format
            after = state.step_down()
            if after is not None:
                self._say(f"{self._server} refused {before} replies ({error}); trying {after}")
                return True
        return False

    def _cut_off_reason(self, usage: Usage, cap: int) -> str:
        context = self._state.context_tokens
        if usage.completion_tokens >= cap:
            return (
                f"the reply was cut off at the output token limit ({cap}; "
                "--max-output-tokens raises it)"
            )
        if context is not None and usage.total_tokens >= context - 16:
            return (
                f"the reply was cut off when the server's context ({context} tokens) filled; "
                "a smaller --max-chunk-tokens or a larger server context helps"
            )
        return (
            "the reply was cut off (the output token limit or the server's context size; "
            "--max-output-tokens, --max-chunk-tokens)"
        )

    def _request(self, params: dict[str, Any]) -> tuple[str, str, Usage]:
        """One request: streamed where the server streams, so that a reply given up on
        (timeout, stop, claim lost) closes its connection and the server stops generating."""
        state = self._state
        cut_short = 0
        while state.streaming:
            streamed = {**params, "stream": True}
            if state.stream_usage:
                streamed["stream_options"] = {"include_usage": True}
            try:
                content, finish, raw_usage = call(
                    self._pacer,
                    functools.partial(self._streamed, streamed),
                    tokens=request_tokens(params),
                    used=lambda reply: reply[2],
                )
                break
            except StreamCutShort:
                if self._pacer is None:
                    raise
                cut_short += 1
                if cut_short > 1:
                    # Cut again with everyone here one at a time: the other request is not
                    # ours, and waiting for our turn would not help.
                    raise StreamCutShort(
                        f"{self._server} ended a reply unfinished again though every "
                        "imaginize process on it sends one request at a time: something else "
                        "is using it; start it with --interrupt_requests False"
                    ) from None
                self._one_at_a_time()
            except StatusError as error:
                if error.status not in (400, 422, 501) or "stream" not in str(error).casefold():
                    raise
                if state.stream_usage and "stream_options" in str(error):
                    state.stream_usage = False
                else:
                    state.streaming = False
                    self._say(f"{self._server} does not stream replies ({error})")
        else:
            completion = call(
                self._pacer,
                functools.partial(self._whole_request, params),
                tokens=request_tokens(params),
                used=lambda reply: getattr(reply, "usage", None),
            )
            content, finish, raw_usage = _whole(completion)
        if not isinstance(content, str):
            raise ProviderError("malformed response: content is not text", retryable=True)
        usage, problem = usage_from(raw_usage)
        if raw_usage is None:
            # Tokens were spent all the same (llama-cpp-python streams no usage): estimated
            # as --estimate does, rather than a total of 0.
            prompt = sum(estimate_tokens(str(m.get("content", ""))) for m in params["messages"])
            usage = Usage(prompt, estimate_tokens(content))
            self._say(
                f"{self._server} sends no token usage; counts are estimated (~4 characters a token)"
            )
        elif problem:
            self._say(f"{self._server} reported {problem}; counted as 0")
        self.spent += usage
        return content, str(finish), usage

    def _streamed(self, params: dict[str, Any]) -> tuple[str, str, Any]:
        """Read a streamed reply to its end, within --timeout in all (the client's own
        timeout only bounds each read: a server looping on tokens would never hit it)."""
        deadline = time.monotonic() + self._timeout
        parts: list[str] = []
        finish: str = ""
        usage: Any = None
        with self._completions.create(**params) as stream:
            self._heed(stream.response.headers)
            try:
                for chunk in stream:
                    if time.monotonic() > deadline:
                        raise ProviderError(
                            f"no complete reply within {self._timeout:.0f} s (--timeout)",
                            retryable=True,
                        )
                    cancel.check()
                    usage = getattr(chunk, "usage", None) or usage
                    for choice in getattr(chunk, "choices", None) or ():
                        text = getattr(choice.delta, "content", None)
                        if isinstance(text, str):
                            parts.append(text)
                        finish = choice.finish_reason or finish
            except (openai.APIConnectionError, openai.APIStatusError):
                raise
            except openai.APIError as exc:  # an error event in the stream
                raise ProviderError(
                    f"the server broke off its reply: {exc}", retryable=True
                ) from None
        if not finish:
            # Ended without saying why: llama-cpp-python's server does this to a reply
            # whenever another request waits (its interrupt_requests, on by default).
            raise StreamCutShort(
                f"{self._server} ended a reply unfinished ({len(parts)} pieces, no "
                "finish_reason): llama-cpp-python does when another request waits; use -j 1 "
                "or start it with --interrupt_requests False"
            )
        return "".join(parts), finish, usage

    def _one_at_a_time(self) -> None:
        """After a reply cut short by another request: everyone on the key sends one request
        at a time from now on, the process that sent the other one too (the shared pace)."""
        if self._pacer is not None and self._pacer.cap_in_flight(1):
            self._say(
                f"{self._pacer.server} cuts a reply short when another request arrives: "
                "requests now go one at a time"
            )

    def _whole_request(self, params: dict[str, Any]) -> Any:
        """A reply sent whole, its headers read first."""
        raw = self._completions.with_raw_response.create(**params)
        self._heed(raw.headers)
        return raw.parse()

    def _heed(self, headers: Any) -> None:
        """The pace held to what a successful reply's headers say of the server's limits."""
        stated = StatedLimits.from_headers(headers)
        if stated is None:
            return
        self._stated = stated
        if self._pacer is not None:
            heed(self._pacer, stated)

    def _say(self, message: str) -> None:
        if message not in self._state.said:
            self._state.said.add(message)
            self._notices.append(message)


def _whole(completion: Any) -> tuple[Any, str, Any]:
    try:
        choice = completion.choices[0]
        content = choice.message.content or ""
        finish = choice.finish_reason or ""
    except (AttributeError, IndexError, TypeError):
        raise ProviderError("malformed response: no choices", retryable=True) from None
    return content, str(finish), getattr(completion, "usage", None)


def usage_from(raw: Any) -> tuple[Usage, str]:
    """Token counts from a reply's `usage`, and what was wrong with them (empty when
    nothing). Servers send negative, fractional or textual counts, or none: any count that is
    not a whole number of at least 0 is unknown, taken as 0, never trusted."""
    if raw is None:
        return Usage(), "no token usage"
    counts = []
    wrong = []
    for name in ("prompt_tokens", "completion_tokens"):
        value = raw.get(name) if isinstance(raw, dict) else getattr(raw, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            counts.append(value)
        else:
            counts.append(0)
            if value is not None:
                wrong.append(f"{name}={str(value)[:20]!r}")
    problem = f"invalid token usage ({', '.join(wrong)})" if wrong else ""
    return Usage(*counts), problem


def _spread(items: list[Scene], wanted: int) -> list[Scene]:
    """At most `wanted` items, spread evenly across the list (the parts of a split chunk
    each get a scene, which can make more than were asked for)."""
    if wanted <= 0 or len(items) <= wanted:
        return items
    step = len(items) / wanted
    return [items[int(i * step)] for i in range(wanted)]
