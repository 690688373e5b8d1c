"""The library entry point: what other programs call to embed imaginize.

    from imaginize import analyze_book

    def show(event):
        print(type(event).__name__, event)

    if __name__ == "__main__":  # worker processes import the main module again
        finished = analyze_book("book.epub", output_dir="guides", concurrent=2, on_event=show)
        print(finished.completed, "of", finished.total, "chapters;", finished.tokens, "tokens")

`on_event` receives the structured events of `imaginize.events` (RunStarted, ChapterStarted,
ChapterFinished with the chapter's result, ChapterRetry, ChapterFailed, BookProgress with
totals, rate and ETA, Notice, RunFinished) from the process that calls it. Errors are raised
as `imaginize.errors.ImaginizeError` subclasses; nothing is printed and nothing exits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from imaginize.analysis.providers import ProviderKind, limits_for, resolve_provider
from imaginize.events import EventSink, RunFinished, ignore
from imaginize.run import RunOptions, run_book


def analyze_book(
    book: str | Path,
    *,
    output_dir: str | Path | None = None,
    provider: str = "auto",
    model: str | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    concurrent: int | str = 1,
    tier: str | None = None,
    on_event: EventSink = ignore,
    use_environment: bool = True,
    **options: Any,
) -> RunFinished:
    """Analyse `book` and write its guides; returns the run's summary.

    Provider settings follow the CLI's rules (explicit arguments, then OPENAI_API_KEY and
    friends when `use_environment`); `concurrent="auto"` sizes the worker pool itself. Any
    other run option (chapters="1-3", force=True, pages_per_image=2, lease=60, ...: a field
    of `RunOptions`, `settings.RunSettings` or `settings.ClaimPolicy`) may be given by name.
    """
    config = resolve_provider(
        ProviderKind(provider),
        model=model,
        api_key=api_key,
        base_url=base_url,
        env=os.environ if use_environment else {},
    )
    auto = concurrent == "auto"
    run_options = RunOptions.of(
        out_dir=Path(output_dir) if output_dir else None,
        provider=config,
        concurrent=1 if auto else int(concurrent),
        auto_scale=auto,
        limits=limits_for(config, tier),
        **options,
    )
    return run_book(book, run_options, on_event)
