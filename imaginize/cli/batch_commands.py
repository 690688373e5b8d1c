"""The click side of --batch-api: the run command's batch options, `imaginize batch cancel`,
the batch lines of `imaginize status` and of `--estimate`. The flow itself is
`imaginize.workers.batch_run`."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from imaginize.analysis.estimate import Estimate
from imaginize.analysis.pricing import format_cost, price
from imaginize.analysis.providers import ProviderKind, resolve_provider
from imaginize.coordination import manifest as mf
from imaginize.events import EventSink, RunFinished
from imaginize.safetext import one_line
from imaginize.settings import DEFAULT_BATCH_TOKEN_CAP

if TYPE_CHECKING:
    # The batch flow imports openai (~1 s): loaded by the commands that use it, so that the
    # CLI of every other run starts without it.
    from imaginize.workers.batch_run import BatchOptions

F = Callable[..., Any]


def batch_run_options(command: F) -> F:
    """The run command's --batch-api options (passed to it as keyword arguments)."""
    options = [
        click.option(
            "--batch-api",
            is_flag=True,
            help="Send the requests through OpenAI's Batch API: half the price, within 24 h.",
        ),
        click.option(
            "--no-wait", is_flag=True, help="With --batch-api: return once the batches are sent."
        ),
        click.option(
            "--batch-token-cap",
            type=click.IntRange(min=1000),
            default=DEFAULT_BATCH_TOKEN_CAP,
            show_default=True,
            help="Enqueued tokens (prompt + max output) the open batches may hold.",
        ),
        click.option(
            "--batch-api-then-live",
            is_flag=True,
            help="With --batch-api: chapters needing a second round are done live.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def batch_options(flags: dict[str, Any]) -> BatchOptions | None:
    """None unless --batch-api (or --batch-api-then-live) was given."""
    if not (flags.get("batch_api") or flags.get("batch_api_then_live")):
        return None
    from imaginize.workers.batch_run import BatchOptions

    poll = float(os.environ.get("IMAGINIZE_BATCH_POLL", "30"))
    return BatchOptions(
        wait=not flags.get("no_wait"),
        token_cap=int(flags.get("batch_token_cap") or DEFAULT_BATCH_TOKEN_CAP),
        then_live=bool(flags.get("batch_api_then_live")),
        poll=poll,
    )


def run_batch(
    books: tuple[Path, ...], options: Any, sink: EventSink, batch: BatchOptions
) -> tuple[tuple[RunFinished, ...], dict[Path, str]]:
    from imaginize.workers.batch_run import run_batch_books

    library = run_batch_books(list(books), options, batch, sink)
    return library.books, library.skipped


def render_batch_estimate(plan: Estimate, model: str, token_cap: int) -> str:
    """--estimate --batch-api: what the first round would send, and what it costs."""
    from imaginize.analysis.openai.batch import MAX_REQUESTS
    from imaginize.analysis.openai.chat import (
        OUTPUT_BASE_TOKENS,
        OUTPUT_TOKENS_CAP,
        OUTPUT_TOKENS_PER_SCENE,
    )

    caps = min(
        plan.requests * OUTPUT_TOKENS_CAP,
        plan.requests * OUTPUT_BASE_TOKENS + plan.scenes * OUTPUT_TOKENS_PER_SCENE,
    )
    enqueued = plan.input_tokens + caps
    files = max(math.ceil(plan.requests / MAX_REQUESTS), math.ceil(enqueued / token_cap), 1)
    rates = price(model, batch=True)
    dollars = (
        f"unknown for {one_line(model)}"
        if rates is None
        else format_cost((plan.input_tokens * rates[0] + plan.output_tokens * rates[1]) / 1e6)
    )
    rows = [
        ("batch requests", f"{plan.requests} (a repair or retry adds a round)"),
        ("enqueued tokens", f"~{enqueued:,} (prompts + output caps; cap {token_cap:,})"),
        ("batch files", f"{files}"),
        ("batch cost", dollars),
        ("batch time", "up to 24 h a round (OpenAI's completion window)"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def batch_status_lines(manifest: mf.Manifest) -> str:
    """`imaginize status`: one line per batch file of the book (empty without any)."""
    lines = []
    for record in manifest.batches:
        state = record.status + (", ingested" if record.ingested else "")
        done = f"{record.completed + record.failed}/{record.requests} done"
        failed = f", {record.failed} failed" if record.failed else ""
        error = f": {one_line(record.error)}" if record.error else ""
        lines.append(
            f"  batch {record.id or record.ref + ' (not sent)'}  {state}  {done}{failed}{error}"
        )
    batched = sum(1 for e in manifest.chapters if e.status is mf.Status.BATCHED)
    if not lines:
        return ""
    head = f"Batches ({batched} chapter{'s' if batched != 1 else ''} in open batches):"
    return "\n".join([head, *lines])


@click.group()
def batch() -> None:
    """The Batch API batches of books run with --batch-api."""


@batch.command()
@click.argument("books", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output-dir", type=click.Path(path_type=Path))
@click.option("--base-url", envvar="OPENAI_BASE_URL", help="The server [env OPENAI_BASE_URL].")
@click.option("--api-key", envvar="OPENAI_API_KEY", help="API key [env OPENAI_API_KEY].")
def cancel(
    books: tuple[Path, ...], output_dir: Path | None, base_url: str | None, api_key: str | None
) -> None:
    """Cancel the open batches of BOOK (or of every book in a folder); their chapters go
    back to pending."""
    from imaginize.workers.batch_run import cancel_batches

    config = resolve_provider(
        ProviderKind.OPENAI, api_key=api_key, base_url=base_url, env=os.environ
    )
    for out_dir, (cancelled, returned) in cancel_batches(list(books), output_dir, config):
        click.echo(
            f"{out_dir}: {cancelled} batch{'es' if cancelled != 1 else ''} cancelled, "
            f"{returned} chapter{'s' if returned != 1 else ''} back to pending"
        )
