"""`imaginize enqueue` and `imaginize worker`: a library spread over machines through an RQ
queue in Redis (`imaginize.workers.book_queue`), and the queue's view for `status --redis`.

A queued book carries the `run` options given on `enqueue`'s command line; a worker runs it
with `imaginize run`'s own command, so the options mean exactly what they mean there. The
API key never travels: each worker uses its own (flags, environment, settings files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from imaginize.errors import ConfigError, ExitCode, ImaginizeError
from imaginize.run import expand_books, library_out_dirs
from imaginize.safetext import for_terminal
from imaginize.workers import book_queue
from imaginize.workers.book_queue import QueuedBook

# `run` options that do not travel with a book: the key stays on each worker, the pace's
# Redis is the worker's, and the rest are about this terminal.
_LOCAL = {"books", "output_dir", "api_key", "redis_url", "estimate_only", "assume_latency", "quiet"}

_REDIS_HELP = "The Redis holding the queue and the shared pace (redis://host:6379/0)."


def _redis_option() -> Any:
    return click.option(
        "--redis",
        "redis_url",
        envvar="IMAGINIZE_REDIS_URL",
        metavar="URL",
        required=True,
        help=_REDIS_HELP + " [env IMAGINIZE_REDIS_URL]",
    )


def _queue_option() -> Any:
    return click.option(
        "--queue",
        "queue_name",
        default=book_queue.QUEUE_NAME,
        show_default=True,
        help="Name of the RQ queue.",
    )


def queue_commands(run: click.Command) -> list[click.Command]:
    """`enqueue` (with `run`'s options) and `worker`, for the CLI group."""
    travelling = [p for p in run.params if p.name not in _LOCAL]

    @click.command(params=list(travelling))
    @click.argument(
        "books", metavar="BOOK...", nargs=-1, required=True, type=click.Path(path_type=Path)
    )
    @click.option(
        "-o",
        "--output-dir",
        type=click.Path(path_type=Path),
        help="Folder, on each worker's host, for the books' imaginize_<book>/ folders "
        "[default: the worker's --output-dir, else beside the book].",
    )
    @_redis_option()
    @_queue_option()
    @click.option(
        "--tries",
        type=click.IntRange(min=1),
        default=book_queue.DEFAULT_TRIES,
        show_default=True,
        help="Runs of a book (a worker killed, a run stopped) before it is left failed.",
    )
    def enqueue(
        books: tuple[Path, ...],
        output_dir: Path | None,
        redis_url: str,
        queue_name: str,
        tries: int,
        **options: Any,
    ) -> None:
        """Put one job per BOOK (or per EPUB in a folder) on the queue, for `imaginize
        worker`s on any machine. Book paths must be valid on the workers' hosts."""
        ctx = click.get_current_context()
        given = {
            name: _plain(value)
            for name, value in options.items()
            if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
        }
        paths = expand_books(list(books))
        for path in paths:
            if not path.is_file():
                raise ConfigError(f"{path}: no such file")
        folders = [p.name for p in library_out_dirs(paths, output_dir or Path("."))]
        connection = book_queue.connect(redis_url)
        added = book_queue.enqueue_books(
            connection,
            zip(paths, folders, strict=True),
            output_dir.resolve() if output_dir else None,
            given,
            queue_name=queue_name,
            tries=tries,
        )
        for book, new in added:
            click.echo(for_terminal(f"{'queued' if new else 'already queued'}: {book}"))

    @click.command()
    @_redis_option()
    @_queue_option()
    @click.option(
        "-j",
        "--concurrent",
        type=click.IntRange(min=1),
        help="Worker processes for each book [default: as enqueued, else 1].",
    )
    @click.option(
        "-o",
        "--output-dir",
        type=click.Path(path_type=Path),
        help="Folder for the books' imaginize_<book>/ folders on this host [default: as "
        "enqueued, else beside the book]. Shared storage lets another worker resume a book.",
    )
    @click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
    @click.option(
        "--requeue-after",
        type=click.FloatRange(min=2),
        default=book_queue.DEFAULT_REQUEUE_AFTER,
        show_default=True,
        help="Seconds after a worker dies before its book goes back on the queue.",
    )
    @click.option("-q", "--quiet", is_flag=True, help="Only errors and each book's summary.")
    def worker(
        redis_url: str,
        queue_name: str,
        concurrent: int | None,
        output_dir: Path | None,
        burst: bool,
        requeue_after: float,
        quiet: bool,
    ) -> None:
        """Take books off the queue and run each like `imaginize run`, the pace in Redis."""
        connection = book_queue.connect(redis_url)
        ctx = click.get_current_context()
        run_one = _runner(ctx, run, redis_url, concurrent, quiet)
        book_queue.work(
            connection,
            run_one,
            queue_name=queue_name,
            out_base=output_dir.resolve() if output_dir else None,
            burst=burst,
            requeue_after=requeue_after,
        )

    return [enqueue, worker]


def _plain(value: Any) -> Any:
    """A parsed option value as JSON: `-j auto` parses to None."""
    if value is None:
        return "auto"
    return value if isinstance(value, str | int | float | bool) else str(value)


def _as_args(run: click.Command, options: dict[str, Any]) -> list[str]:
    """Enqueued options back into `run`'s command line (unknown names are skipped: a queue
    filled by another version of imaginize)."""
    by_name = {p.name: p for p in run.params if isinstance(p, click.Option)}
    args: list[str] = []
    for name, value in options.items():
        param = by_name.get(name)
        if param is None:
            continue
        if param.is_flag:
            args += [param.opts[0]] if value else []
        else:
            args += [param.opts[-1], str(value)]
    return args


def _runner(
    ctx: click.Context, run: click.Command, redis_url: str, jobs: int | None, quiet: bool
) -> book_queue.Runner:
    settings = ctx.find_root().obj
    defaults = (ctx.find_root().default_map or {}).get("run")

    def run_one(book: Path, out_dir: Path, options: dict[str, Any]) -> tuple[int, str]:
        args = [str(book), "-o", str(out_dir), *_as_args(run, options), "--redis", redis_url]
        args += ["-j", str(jobs)] if jobs else []
        args += ["-q"] if quiet else []
        click.echo(for_terminal(f"imaginize worker: {book} -> {out_dir}"), err=True)
        try:
            run.main(
                args=args,
                prog_name="imaginize run",
                standalone_mode=False,
                default_map=defaults,
                obj=settings,
            )
        except ImaginizeError as exc:
            click.echo(for_terminal(f"imaginize: error: {exc}"), err=True)
            return exc.exit_code, str(exc)
        except click.ClickException as exc:
            click.echo(for_terminal(f"imaginize: error: {exc.format_message()}"), err=True)
            return ExitCode.BAD_INPUT, exc.format_message()
        except (click.exceptions.Abort, KeyboardInterrupt):
            return ExitCode.INTERRUPTED, "interrupted"
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else ExitCode.BAD_INPUT
            return code, "some chapters failed" if code == ExitCode.CHAPTERS_FAILED else ""
        except OSError as exc:
            return ExitCode.BAD_INPUT, f"{exc.filename or ''}: {exc.strerror or exc}"
        return ExitCode.OK, "done"

    return run_one


def queue_report(redis_url: str, queue_name: str, as_json: bool) -> str:
    """`status --redis`: every book on the queue, by state, with the host that ran it."""
    books = book_queue.queue_status(book_queue.connect(redis_url), queue_name)
    if as_json:
        return json.dumps([b.to_json() for b in books], indent=2)
    return render_queue(books)


def render_queue(books: list[QueuedBook]) -> str:
    if not books:
        return "the queue is empty"
    counts = {s: sum(1 for b in books if b.state == s) for s in ("queued", "running")}
    counts |= {s: sum(1 for b in books if b.state == s) for s in ("finished", "failed")}
    lines = [", ".join(f"{n} {state}" for state, n in counts.items())]
    width = max(len(b.host) for b in books) or 1
    for b in books:
        extra = f"  {b.detail}" if b.detail else ""
        lines.append(f"{b.state:<8}  {b.host or '-':<{width}}  {b.book}{extra}")
    return for_terminal("\n".join(lines))
