"""How a run's workers start: the one place where the provider the run resolved decides it.

Workers are forked from a multiprocessing forkserver that has imported what they need once
(`forkserver.py`, `preload*.py`), so a new worker is ready in milliseconds rather than after a
second of imports. What it imports depends on the analyzer: `openai` alone takes about a
second, which a run of the offline analyzer never needs. So the choice follows the provider
the CLI (or a library caller) resolved, never a guess made before it: `begin` starts the
forkserver for that provider as soon as it is known, before the book is read, so that its
imports overlap with the reading; `worker_context` gives the launcher the same choice.

The first call in a process decides: a forkserver's preload cannot change once it runs. A
worker that finds a module missing imports it itself (slower, never wrong).
"""

from __future__ import annotations

from collections.abc import Iterable
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING

from imaginize.analysis.providers import ProviderKind
from imaginize.workers import forkserver

if TYPE_CHECKING:
    from imaginize.analysis.providers import ProviderConfig


def calls_server(providers: Iterable[ProviderConfig]) -> bool:
    """Whether any of the run's workers will call a server (and want `openai` preloaded)."""
    return any(p.kind is ProviderKind.OPENAI for p in providers)


def begin(provider: ProviderConfig) -> None:
    """Start the forkserver for a run with this provider, now."""
    forkserver.warm_up(calls_server([provider]))


def worker_context(providers: Iterable[ProviderConfig]) -> BaseContext:
    """The start method for the workers of a run with these providers (one per book)."""
    return forkserver.context(calls_server(providers))
