"""`--estimate`: what a run would send and cost, without sending anything.

Input tokens are counted with tiktoken when it is installed and has its encoding at hand,
otherwise estimated (4 characters a token, 1 per CJK character; see chunking.estimate_tokens).
Output tokens are a planning figure: about 200 tokens a scene plus 600 for the element list of
each request, the size replies to imaginize's prompt usually have. Wall time assumes every
request takes `latency` seconds and adds the waits the pacing limits impose.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from imaginize.analysis.openai.prompt import chapter_messages
from imaginize.analysis.pricing import cost
from imaginize.model import Chapter, Usage
from imaginize.pacing.pace import Limits
from imaginize.reading.chunking import estimate_tokens, scene_count, share_scenes, split_chapter

OUTPUT_PER_SCENE = 200
OUTPUT_PER_REQUEST = 600
# Per message framing in the chat format (role, separators), as OpenAI documents it.
TOKENS_PER_MESSAGE = 4
DEFAULT_LATENCY = 20.0


@dataclass(frozen=True)
class Estimate:
    chapters: int
    requests: int
    scenes: int
    input_tokens: int
    output_tokens: int
    cost: float | None
    wall_seconds: float
    workers: int
    tokenizer: str
    # Short requests sent to time a local server (the only ones --estimate sends).
    timing_requests: int = 0


def token_counter(model: str) -> tuple[Callable[[str], int], str]:
    """tiktoken's count for `model` when available, else the documented approximation."""
    try:
        import tiktoken

        try:
            encoding = tiktoken.encoding_for_model(model.rsplit("/", 1)[-1])
        except KeyError:
            encoding = tiktoken.get_encoding("o200k_base")
        encoding.encode("probe")  # fails here, not later, when the encoding cannot be loaded
    except Exception:
        return estimate_tokens, "approximation (~4 characters a token)"
    return (lambda text: len(encoding.encode(text))), f"tiktoken {encoding.name}"


def estimate(
    chapters: Iterable[Chapter],
    *,
    model: str,
    book_title: str,
    pages_per_image: float,
    max_chunk_tokens: int,
    limits: Limits | None,
    workers: int,
    latency: float = DEFAULT_LATENCY,
) -> Estimate:
    count, tokenizer = token_counter(model)
    requests = scenes = prompt = chapters_seen = 0
    for chapter in chapters:
        chapters_seen += 1
        chunks = split_chapter(chapter, max_chunk_tokens)
        shares = share_scenes(scene_count(chapter.text, pages_per_image), chunks)
        for chunk, wanted in zip(chunks, shares, strict=True):
            requests += 1
            scenes += wanted
            for message in chapter_messages(chunk, wanted, book_title):
                prompt += count(message["content"]) + TOKENS_PER_MESSAGE
    output = scenes * OUTPUT_PER_SCENE + requests * OUTPUT_PER_REQUEST
    return Estimate(
        chapters=chapters_seen,
        requests=requests,
        scenes=scenes,
        input_tokens=prompt,
        output_tokens=output,
        cost=cost(model, Usage(prompt, output)),
        wall_seconds=wall_time(requests, workers, latency, limits),
        workers=workers,
        tokenizer=tokenizer,
    )


def wall_time(requests: int, workers: int, latency: float, limits: Limits | None) -> float:
    """The slowest of: the workers' own pace, the in-flight cap, the batch gaps and the rpm."""
    if requests == 0:
        return 0.0
    parallel = max(1, workers)
    if limits is None:
        return math.ceil(requests / parallel) * latency
    if limits.max_in_flight is not None:
        parallel = min(parallel, limits.max_in_flight)
    bounds = [math.ceil(requests / parallel) * latency]
    batches = math.ceil(requests / limits.batch_size)
    last = requests - (batches - 1) * limits.batch_size
    if parallel == 1:
        # One at a time: the gap after a batch only costs what the last reply did not cover.
        bounds.append(requests * latency + (batches - 1) * max(0.0, limits.batch_delay - latency))
    else:
        per_batch = max(limits.batch_delay, math.ceil(limits.batch_size / parallel) * latency)
        bounds.append((batches - 1) * per_batch + math.ceil(last / parallel) * latency)
    if limits.rpm:
        bounds.append((requests - 1) * 60.0 / limits.rpm + latency)
    return max(bounds)
