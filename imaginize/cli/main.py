"""The command line: parses options, calls the library, maps errors to exit codes.

Exit codes (one table, `errors.ExitCode`): 0 done, 1 some chapters failed, 2 bad input or
usage, 3 incomplete, 4 lock not taken, 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from imaginize import __version__, config
from imaginize.analysis.estimate import DEFAULT_LATENCY
from imaginize.analysis.providers import ProviderKind, limits_for, resolve_provider
from imaginize.cli.batch_commands import batch as batch_group
from imaginize.cli.batch_commands import (
    batch_options,
    batch_run_options,
    batch_status_lines,
    render_batch_estimate,
    run_batch,
)
from imaginize.cli.progress import PlainProgress, render_estimate
from imaginize.cli.queue_commands import queue_commands, queue_report
from imaginize.cli.status import break_stuck_lock, render_status, status_report
from imaginize.errors import ConfigError, ExitCode, ImaginizeError, Incomplete
from imaginize.events import RunFinished
from imaginize.guides.images import ImageOptions
from imaginize.pacing.pace import Tier
from imaginize.run import (
    RunOptions,
    default_out_dir,
    estimate_book,
    expand_books,
    run_book,
    run_books,
)
from imaginize.safetext import for_terminal, remember_secret
from imaginize.settings import (
    DEFAULT_HEARTBEAT,
    DEFAULT_IMAGE_MODEL,
    DEFAULT_LEASE,
    DEFAULT_LOCK_LIFETIME,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_CHUNK_TOKENS,
    DEFAULT_MAX_WAIT,
    DEFAULT_MAX_WORKERS,
    DEFAULT_PAGES_PER_IMAGE,
    ClaimPolicy,
    RunSettings,
)

if TYPE_CHECKING:
    from imaginize.cli.live import LiveProgress


class _DefaultGroup(click.Group):
    """`imaginize book.epub` means `imaginize run book.epub`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "--version"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


class _Concurrency(click.ParamType):
    """A worker count, or 'auto' (returned as None)."""

    name = "N|auto"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None):
        if value is None or value == "auto":
            return None
        try:
            number = int(str(value))
        except ValueError:
            number = 0
        if number < 1:
            self.fail(f"{value!r} is not a positive number or 'auto'", param, ctx)
        return number


@click.group(cls=_DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imaginize")
def cli() -> None:
    """Read an EPUB and write illustration guides: scenes worth drawing, with quotes, and
    the book's characters, creatures, places and items.

    Usage: imaginize BOOK.epub [OPTIONS]   (see `imaginize run --help`)
    """


@cli.command()
@click.argument(
    "books", metavar="BOOK...", nargs=-1, required=True, type=click.Path(path_type=Path)
)
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(path_type=Path),
    help="Where to write the guides [default: imaginize_<book>/ beside the book].",
)
@click.option("--chapters", metavar="SPEC", help="Story chapters to do, e.g. 1-3,7.")
@click.option("--force", is_flag=True, help="Redo chapters that are already done.")
@click.option(
    "--pages-per-image",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_PAGES_PER_IMAGE,
    show_default=True,
    help="One scene per this many pages (300 words a page).",
)
@click.option(
    "--max-chunk-tokens",
    type=click.IntRange(min=500),
    default=DEFAULT_MAX_CHUNK_TOKENS,
    show_default=True,
    help="Longer chapters are split so no request exceeds this.",
)
@click.option(
    "--provider",
    type=click.Choice([k.value for k in ProviderKind]),
    default=ProviderKind.AUTO.value,
    show_default=True,
    help="auto: openai when a key or base URL is set, else offline.",
)
@click.option("--model", envvar="OPENAI_MODEL", help="Model name [env OPENAI_MODEL].")
@click.option("--api-key", envvar="OPENAI_API_KEY", help="API key [env OPENAI_API_KEY].")
@click.option(
    "--base-url",
    envvar="OPENAI_BASE_URL",
    help="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1 [env OPENAI_BASE_URL].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    help="Seconds to wait for one API reply [default: 120; 600 for a server on this "
    "machine or network].",
)
@click.option(
    "--max-output-tokens",
    type=click.IntRange(min=1),
    help="Cap on tokens in a reply [default: 2048 + 512 per scene asked for, at most 8192, "
    "within the server's context].",
)
@click.option(
    "--context-size",
    type=click.IntRange(min=1024),
    help="Tokens of context the server holds (llama-server -c, Ollama num_ctx): chunks and "
    "reply caps are sized to fit [default: learned from the server's first refusal].",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_ATTEMPTS,
    show_default=True,
    help="Tries per chapter before it is marked failed.",
)
@click.option("--retry-failed", is_flag=True, help="Queue failed chapters again.")
@click.option(
    "-j",
    "--concurrent",
    type=_Concurrency(),
    default="1",
    show_default=True,
    help="Worker processes, or 'auto' to size the pool from the server's latency. "
    "Other runs on the same book join in as well.",
)
@click.option(
    "--max-workers",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_WORKERS,
    show_default=True,
    help="Upper bound for --concurrent auto.",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_LEASE,
    show_default=True,
    help="Seconds without a heartbeat before a claim is taken over.",
)
@click.option(
    "--heartbeat",
    type=click.FloatRange(min=0.05),
    default=DEFAULT_HEARTBEAT,
    show_default=True,
    help="Seconds between a worker's heartbeats.",
)
@click.option(
    "--lock-lifetime",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_LOCK_LIFETIME,
    show_default=True,
    help="Age after which a lock file is broken whoever holds it.",
)
@click.option(
    "--tier",
    type=click.Choice([t.value for t in Tier]),
    envvar="IMAGINIZE_TIER",
    help="API rate tier: free = batches of 3, 60 s apart, one request at a time; "
    "paid = batches of 5 in parallel, 2 s apart [default: free for ':free' models, "
    "else paid; env IMAGINIZE_TIER]. Limits hold for all processes on the book.",
)
@click.option("--batch-size", type=click.IntRange(min=1), help="Requests per batch.")
@click.option("--batch-delay", type=click.FloatRange(min=0), help="Seconds between batches.")
@click.option("--rpm", type=click.FloatRange(min=0.1), help="Requests per minute, at most.")
@click.option(
    "--tpm",
    type=click.FloatRange(min=1),
    help="Tokens per minute, at most: each request reserves its prompt and output cap, and "
    "gives back what the reply did not use.",
)
@click.option(
    "--redis",
    "redis_url",
    envvar="IMAGINIZE_REDIS_URL",
    metavar="URL",
    help="Keep the shared pace in this Redis (redis://host:6379/0), so processes on every "
    "machine using it share one budget per API key [env IMAGINIZE_REDIS_URL; needs "
    "pip install 'imaginize[redis]'].",
)
@click.option(
    "--chapter-timeout",
    type=click.FloatRange(min=1),
    help="Seconds before a chapter is given up as timed out [default: 300, or two "
    "--timeout replies and a minute when that is longer].",
)
@click.option(
    "--max-wait",
    type=click.FloatRange(min=0),
    default=DEFAULT_MAX_WAIT,
    show_default=True,
    help="Longest wait a server may ask for (a 429's Retry-After) that the run sits out; "
    "a longer one stops it (exit 3, no chapter failed): re-run after the time it names.",
)
@click.option(
    "--images",
    is_flag=True,
    help="Also make an illustration of every scene (images API; offline: prompts only).",
)
@click.option(
    "--image-model",
    default=DEFAULT_IMAGE_MODEL,
    show_default=True,
    help="gpt-image-1, dall-e-3 or dall-e-2.",
)
@click.option("--image-size", help="e.g. 1024x1024, 1536x1024 [default: 1024x1024].")
@click.option(
    "--image-quality", help="e.g. low, medium, high (gpt-image-1); standard, hd (dall-e-3)."
)
@click.option(
    "--estimate",
    "--dry-run",
    "estimate_only",
    is_flag=True,
    help="Print requests, tokens, cost and time this run would take; send nothing.",
)
@click.option(
    "--assume-latency",
    type=click.FloatRange(min=0.1),
    help=f"Seconds a request takes, for --estimate's wall time [default: measured with one "
    f"short request on a local server, else {DEFAULT_LATENCY:g}].",
)
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the summary.")
@batch_run_options
def run(
    books: tuple[Path, ...],
    output_dir: Path | None,
    chapters: str | None,
    force: bool,
    pages_per_image: float,
    max_chunk_tokens: int,
    provider: str,
    model: str | None,
    api_key: str | None,
    base_url: str | None,
    timeout: float | None,
    max_output_tokens: int | None,
    context_size: int | None,
    max_attempts: int,
    retry_failed: bool,
    concurrent: int | None,
    max_workers: int,
    lease: float,
    heartbeat: float,
    lock_lifetime: float,
    tier: str | None,
    batch_size: int | None,
    batch_delay: float | None,
    rpm: float | None,
    tpm: float | None,
    redis_url: str | None,
    chapter_timeout: float | None,
    max_wait: float,
    images: bool,
    image_model: str,
    image_size: str | None,
    image_quality: str | None,
    estimate_only: bool,
    assume_latency: float | None,
    quiet: bool,
    **batch_flags: Any,
) -> None:
    """Analyse BOOK and write Contents.md, Chapters.md, Elements.md and chapters/*.json."""
    # A server may quote the key back in an error: masked wherever this process shows one.
    remember_secret(api_key)
    config = resolve_provider(
        ProviderKind(provider),
        model=model,
        api_key=api_key,
        base_url=base_url,
        timeout=timeout,
        max_output_tokens=max_output_tokens,
        context_tokens=context_size,
        env=os.environ,
        api_key_from=_origin("api_key", "provider.api_key"),
        base_url_from=_origin("base_url", "provider.base_url"),
    )
    settings = RunSettings(
        provider=config,
        limits=limits_for(
            config, tier, batch_size=batch_size, batch_delay=batch_delay, rpm=rpm, tpm=tpm
        ),
        claims=ClaimPolicy(
            lease=lease,
            heartbeat=heartbeat,
            max_attempts=max_attempts,
            lock_lifetime=lock_lifetime,
        ),
        images=ImageOptions(image_model, image_size, image_quality) if images else None,
        pages_per_image=pages_per_image,
        max_chunk_tokens=max_chunk_tokens,
        chapter_timeout=chapter_timeout,
        max_wait=max_wait,
        redis_url=_redis_url(redis_url, config.key_from),
    )
    options = RunOptions(
        settings=settings,
        out_dir=output_dir,
        chapters=chapters,
        force=force,
        retry_failed=retry_failed,
        concurrent=concurrent or 1,
        auto_scale=concurrent is None,
        max_workers=max_workers,
    )
    single = len(books) == 1 and not books[0].is_dir()
    batch = batch_options(batch_flags)
    if estimate_only:
        for path in books if single else expand_books(list(books)):
            parsed, plan, latency = estimate_book(path, options, assume_latency)
            click.echo(for_terminal(render_estimate(parsed.title, options, plan, latency)))
            if batch is not None:
                click.echo(render_batch_estimate(plan, config.model, batch.token_cap))
        return
    view: PlainProgress | LiveProgress
    live: LiveProgress | None = None
    if sys.stderr.isatty() and not quiet:
        from imaginize.cli.live import (
            LiveProgress,  # rich: ~45 ms to load, wanted on a terminal only
        )

        view = live = LiveProgress(sys.stderr)
    else:
        view = PlainProgress(sys.stderr, verbose=not quiet)
    try:
        if batch is not None:
            summaries, skipped = run_batch(books, options, view, batch)
        elif single:
            summaries: tuple[RunFinished, ...] = (run_book(books[0], options, view),)
            skipped: dict[Path, str] = {}
        else:
            library = run_books(list(books), options, view)
            summaries, skipped = library.books, library.skipped
    finally:
        if live is not None:
            live.close()
    if any(done.failures or done.image_failures for done in summaries):
        raise SystemExit(ExitCode.CHAPTERS_FAILED)
    if skipped:
        names = ", ".join(str(path) for path in skipped)
        raise ImaginizeError(
            f"{len(skipped)} book(s) could not be read or joined and were skipped: {names}"
        )
    unfinished = sum(done.unfinished + done.unfinished_images for done in summaries)
    if unfinished:
        # E.g. every worker crashed past the restart cap: say so, never exit 0 on half a book.
        raise Incomplete(f"{unfinished} chapters or images were left unfinished; re-run to resume")


def _out_dir(book: Path, output_dir: Path | None) -> Path:
    return output_dir or default_out_dir(book)


cli.add_command(batch_group)
for _command in queue_commands(run):
    cli.add_command(_command)


@cli.command()
@click.argument("book", type=click.Path(path_type=Path), required=False)
@click.option("-o", "--output-dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--redis", "redis_url", metavar="URL", help="Instead: the books on this queue.")
@click.option("--queue", "queue_name", default="imaginize", help="The queue (with --redis).")
def status(
    book: Path | None,
    output_dir: Path | None,
    as_json: bool,
    redis_url: str | None,
    queue_name: str,
) -> None:
    """Show the state of every chapter of BOOK from its manifest, or (--redis) every book
    on the queue with the host that ran it."""
    if book is None:
        if not redis_url:
            raise click.UsageError("give a BOOK, or --redis URL for the queue")
        click.echo(queue_report(redis_url, queue_name, as_json))
        return
    report = status_report(_out_dir(book, output_dir))
    click.echo(render_status(report, as_json=as_json))
    if not as_json and batch_status_lines(report.manifest):
        click.echo(batch_status_lines(report.manifest))


@cli.command()
@click.option("--base-url", envvar="OPENAI_BASE_URL", help="The server [env OPENAI_BASE_URL].")
@click.option("--model", envvar="OPENAI_MODEL", help="Model name [env OPENAI_MODEL].")
@click.option("--api-key", envvar="OPENAI_API_KEY", help="API key [env OPENAI_API_KEY].")
@click.option("--timeout", type=click.FloatRange(min=1), help="Seconds to wait for each probe.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(
    base_url: str | None,
    model: str | None,
    api_key: str | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Ask a server what it supports (one short request each) and show what a run will use."""
    from imaginize.analysis.openai.doctor import diagnose, render, to_json

    remember_secret(api_key)
    provider = resolve_provider(
        ProviderKind.OPENAI,
        model=model,
        api_key=api_key,
        base_url=base_url,
        env=os.environ,
        api_key_from=_origin("api_key", "provider.api_key"),
        base_url_from=_origin("base_url", "provider.base_url"),
    )
    report = diagnose(provider, timeout)
    click.echo(for_terminal(to_json(report) if as_json else render(report)))
    if not report.reachable:
        raise SystemExit(ExitCode.BAD_INPUT)


@cli.command()
@click.argument("book", type=click.Path(path_type=Path))
@click.option("-o", "--output-dir", type=click.Path(path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def unlock(book: Path, output_dir: Path | None, yes: bool) -> None:
    """Remove a stuck lock of BOOK (manifest or images; only when nothing runs on it)."""
    out_dir = _out_dir(book, output_dir)

    def confirm(description: str) -> bool:
        return yes or click.confirm(f"The lock is {description}. Remove it?", default=False)

    click.echo(break_stuck_lock(out_dir, confirm))


def _settings() -> config.Layered:
    """The settings `main` loaded (passed as the context object), else loaded now."""
    found = click.get_current_context().find_object(config.Layered)
    return found if found is not None else config.load()


def _redis_url(url: str | None, key_from: str) -> str | None:
    """The --redis URL, refused when this folder's settings file named it for a key from
    elsewhere: that file must not choose where a user's key's usage is shared."""
    origin = _origin("redis_url", "pace.redis_url")
    if url and origin and origin.trust is config.Trust.PROJECT_FILE and key_from != origin.name:
        raise ConfigError(
            f"{origin.name}: refusing to share the pace of the API key from {key_from or 'none'} "
            f"through redis_url set by this folder's settings file; give --redis to use it"
        )
    return url or None


def _origin(param: str, key: str) -> config.Origin | None:
    """Where click took a `run` parameter's value from, as a trust and a name."""
    source = click.get_current_context().get_parameter_source(param)
    if source is ParameterSource.COMMANDLINE:
        return config.Origin(config.Trust.USER, "--" + param.replace("_", "-"))
    if source is ParameterSource.ENVIRONMENT:
        return config.Origin(config.Trust.USER, f"env {config.BY_KEY[key].env}")
    if source is ParameterSource.DEFAULT_MAP:
        return _settings().origins.get(key)
    return None


@cli.group("config")
def config_group() -> None:
    """Settings files: imaginize.toml here, ~/.config/imaginize/config.toml for you."""


@config_group.command("init")
@click.option("--user", is_flag=True, help="Write the user file instead of ./imaginize.toml.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def config_init(user: bool, force: bool) -> None:
    """Write a commented example settings file."""
    path = config.user_file() if user else Path(config.PROJECT_FILE)
    if path.exists() and not force:
        raise ConfigError(f"{path}: already exists (--force to overwrite)")
    config.write_example(path)
    click.echo(f"wrote {path} (readable by you only: it may hold an API key)")


@config_group.command("show")
def config_show() -> None:
    """Print the effective settings and where each comes from (API keys masked)."""
    # Parameters without a default carry click's UNSET sentinel; show them as empty.
    defaults = {p.name: p.default for p in run.params if isinstance(p.default, str | int | float)}
    settings = _settings()
    # A project file's values are anyone's text: escaped like every other shown value.
    click.echo(for_terminal(config.render_show(settings, defaults)))
    click.echo(for_terminal(_key_destination(settings)))


def _key_destination(settings: config.Layered) -> str:
    """Where a run with these settings (and no flags) would send the API key, or why not."""
    values, origins = settings.values, settings.origins
    try:
        provider = resolve_provider(
            ProviderKind(values.get("provider.kind", ProviderKind.AUTO)),
            api_key=values.get("provider.api_key"),
            base_url=values.get("provider.base_url"),
            env=os.environ,
            api_key_from=origins.get("provider.api_key"),
            base_url_from=origins.get("provider.base_url"),
        )
    except ValueError:  # an unknown provider.kind: `run` names it
        return "API key: none is sent (provider.kind is not auto, openai or offline)"
    except ConfigError as exc:
        return f"API key: a run stops: {exc}"
    if not provider.key_from:
        return "API key: none is sent"
    return f"API key: from {provider.key_from}, sent to {provider.base_url or 'the OpenAI API'}"


def main(argv: list[str] | None = None) -> int:
    """Entry point: the only place that turns errors into exit codes and one-line messages."""
    try:
        settings = config.load()
        for warning in settings.warnings:
            click.echo(f"imaginize: warning: {warning}", err=True)
        cli.main(
            args=argv,
            prog_name="imaginize",
            standalone_mode=False,
            default_map={"run": settings.default_map()},
            obj=settings,
        )
    except ImaginizeError as exc:
        # Errors quote file names, titles and servers: shown without their controls or keys.
        click.echo(for_terminal(f"imaginize: error: {exc}"), err=True)
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("imaginize: interrupted", err=True)
        return ExitCode.INTERRUPTED
    except OSError as exc:
        # The output folder is a file, read-only, full...: the OS's reason, on one line.
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(for_terminal(f"imaginize: error: {where}{exc.strerror or exc}"), err=True)
        return ExitCode.BAD_INPUT
    except click.ClickException as exc:
        exc.show()
        return ExitCode.BAD_INPUT
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else ExitCode.BAD_INPUT
    return ExitCode.OK
