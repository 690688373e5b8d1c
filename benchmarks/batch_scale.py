"""--batch-api at library scale: how many requests go in one batch file, and how long building
the files and ingesting the replies take for 10,000 chapters (issue 13: seconds, not minutes).

    python -m benchmarks.batch_scale [--chapters 10000] [--words 300] [--token-cap 1800000]

One book of CHAPTERS chapters of WORDS words each (distinct sentences, so quotes can be
checked), run through `BatchRun` against the test server (tests/fake_openai.py, in this
process, batches complete at once, replies from `tests.replies:answer`). Timed separately:

- build: the first round up to the upload: every chapter played over no replies (its request
  built with live mode's prompt and chunking), the files split, the chapters recorded as
  batched under the lock, the local files written;
- upload + create: the files sent and the batches created (the test server's work included);
- ingest: the output files downloaded and parsed, the replies filed, and every chapter played
  again over them (validation, quote checks) and published (one transaction a round).

The test server is on 127.0.0.1, but batch requests are built as for api.openai.com (no
quote choices: those are for local servers' grammars), as a real --batch-api run sends them.

The split is also shown for the default --batch-token-cap: a chapter's request enqueues its
prompt and its reply cap (2048 + 512 per scene), so the token cap, not the 50,000-request or
200 MB limits, is what fills a file for gpt-4o-mini.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from imaginize.analysis.openai.batch import DEFAULT_TOKEN_CAP
from imaginize.analysis.providers import ProviderConfig, ProviderKind
from imaginize.coordination.store import ManifestStore
from imaginize.events import Notice
from imaginize.model import Book, Chapter
from imaginize.run import RunOptions, _Prepared
from imaginize.workers.batch_run import BatchOptions, BatchRun
from tests.fake_openai import FakeOpenAI
from tests.replies import answer

WORDS = ("lantern", "harbour", "orchard", "kite", "gull", "tide", "mossback", "wren", "fog")


def chapter_text(number: int, words: int) -> str:
    """Paragraphs of distinct sentences of about ten words."""
    sentences = []
    for i in range(max(1, words // 10)):
        picked = " ".join(WORDS[(number + i + k) % len(WORDS)] for k in range(7))
        sentences.append(f"In chapter {number} line {i} the {picked} shone.")
    return "\n\n".join(" ".join(sentences[i : i + 4]) for i in range(0, len(sentences), 4))


def _timed(flow: BatchRun, name: str, spent: dict[str, float]) -> None:
    """Add the seconds `flow.<name>` takes to spent[name] (nested calls count in both)."""
    method = getattr(flow, name)

    def timed(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args)
        finally:
            spent[name] += time.perf_counter() - start

    setattr(flow, name, timed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapters", type=int, default=10_000)
    parser.add_argument("--words", type=int, default=300)
    parser.add_argument("--token-cap", type=int, default=DEFAULT_TOKEN_CAP)
    args = parser.parse_args(argv)

    chapters = tuple(
        Chapter(n, f"Chapter {n}", chapter_text(n, args.words)) for n in range(1, args.chapters + 1)
    )
    with tempfile.TemporaryDirectory() as folder, FakeOpenAI(responder=answer) as server:
        server.script(batch_timing=[0, 0, 0])
        out = Path(folder) / "out"
        book = Book(out / "book.epub", "Scale", "Bench", "en", chapters)
        store = ManifestStore(out)
        store.join(
            book_path=str(book.path),
            sha256="5c" * 32,
            title=book.title,
            chapters=[(c.number, c.title) for c in chapters],
        )
        provider = ProviderConfig(
            ProviderKind.OPENAI, "gpt-4o-mini", api_key="test", base_url=server.url
        )
        options = RunOptions.of(out_dir=out, provider=provider)
        job: Any = _Prepared(book.path, book, out, [c.number for c in chapters], store, None)
        lines: list[str] = []
        flow = BatchRun(
            [job],
            options,
            BatchOptions(poll=0.0, token_cap=args.token_cap),
            lambda e: lines.append(e.message) if isinstance(e, Notice) else None,
        )
        spent = {"_send": 0.0, "_submit": 0.0, "_play": 0.0, "_poll": 0.0}
        for name in spent:
            _timed(flow, name, spent)
        start = time.perf_counter()
        while flow.step():
            pass
        wall = time.perf_counter() - start
        current = store.read()
        assert current is not None
        done = sum(1 for e in current.chapters if e.status.value == "completed")
        sizes = [r.requests for r in current.batches]
        tokens = [r.tokens for r in current.batches]
        files = [
            len(f["data"])
            for f in server.batches.files.values()
            if f["object"]["purpose"] == "batch"
        ]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{args.chapters:,} chapters of {args.words} words, --batch-token-cap {args.token_cap:,}")
    print(f"  machine            {os.cpu_count()} cores, load average {load} at the end")
    print(f"  batch files        {len(sizes)}")
    print(f"  requests per file  {', '.join(f'{n:,}' for n in sizes)}")
    print(f"  tokens per file    {', '.join(f'{n:,}' for n in tokens)}")
    print(f"  MB per file        {', '.join(f'{n / 1e6:.1f}' for n in files)}")
    print(f"  rounds             {len(sizes)} (the cap lets one file be open at a time)")
    print(f"  play + publish     {spent['_play']:.1f} s (requests built; replies checked; results)")
    print(f"  files + records    {spent['_submit'] - spent['_send']:.1f} s (split, under the lock)")
    print(f"  upload + create    {spent['_send']:.1f} s (test server in this process)")
    print(f"  poll + ingest      {spent['_poll']:.1f} s (download, parse, file the replies)")
    print(f"  wall               {wall:.1f} s, {done:,} of {args.chapters:,} chapters completed")


if __name__ == "__main__":
    main()
