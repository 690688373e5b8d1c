"""Plain progress: one line per event, for terminals and logs alike."""

from __future__ import annotations

from typing import TextIO

from imaginize.events import (
    ChapterFailed,
    ChapterFinished,
    ChapterRetry,
    ChapterSkipped,
    ChapterStarted,
    Event,
    Notice,
    RunFinished,
    RunStarted,
)


class PlainProgress:
    def __init__(self, stream: TextIO, verbose: bool = True) -> None:
        self._out = stream
        self._verbose = verbose
        self._total = 0
        self._seen = 0

    def __call__(self, event: Event) -> None:
        line = self._line(event)
        quiet_ok = isinstance(event, Notice | ChapterFailed | RunFinished)
        if line is not None and (self._verbose or quiet_ok):
            print(line, file=self._out, flush=True)

    def _line(self, event: Event) -> str | None:
        match event:
            case RunStarted():
                self._total = event.selected
                if event.provider == "offline":
                    using = f"using the built-in offline analyzer ({event.provider_reason})"
                else:
                    using = f"using {event.provider} model {event.model} ({event.provider_reason})"
                counts = f"{event.selected} of {event.chapters} chapters"
                return f"imaginize: {using}\n{event.title}: {counts} -> {event.out_dir}"
            case Notice():
                return f"imaginize: warning: {event.message}"
            case ChapterStarted():
                return None
            case ChapterSkipped():
                self._seen += 1
                return f"[{self._seen}/{self._total}] chapter {event.number}: {event.reason}"
            case ChapterFinished():
                self._seen += 1
                r = event.result
                return (
                    f"[{self._seen}/{self._total}] chapter {r.chapter} {r.title!r}: "
                    f"{len(r.scenes)} scenes, {len(r.elements)} elements ({event.seconds:.1f}s)"
                )
            case ChapterRetry():
                return (
                    f"chapter {event.number}: attempt {event.attempt} failed ({event.reason}); "
                    f"retrying in {event.wait:.1f}s"
                )
            case ChapterFailed():
                self._seen += 1
                return f"[{self._seen}/{self._total}] chapter {event.number} FAILED: {event.reason}"
            case RunFinished():
                return _summary(event)
        return None


def _summary(event: RunFinished) -> str:
    done = f"{event.completed}/{event.total} chapters"
    lines = [f"Done: {done}, {event.tokens:,} tokens -> {event.out_dir}"]
    lines += [f"  {path.name}" for path in event.guides]
    for number, reason in sorted(event.failures.items()):
        lines.append(f"  chapter {number} failed: {reason}")
    return "\n".join(lines)
