"""The console script's entry: starts the worker forkserver early for a run (its imports
overlap with the CLI's own), and a Ctrl-C while the program is still loading ends quietly."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

_NOT_A_RUN = {"status", "unlock", "config", "--help", "-h", "--version", "--estimate", "--dry-run"}


def main() -> int:
    try:
        args = sys.argv[1:]
        if args and _NOT_A_RUN.isdisjoint(args):
            from imaginize.workers.forkserver import warm_up

            warm_up(calls_server(args, os.environ))
        from imaginize.cli.main import main as run
    except KeyboardInterrupt:
        print("imaginize: interrupted", file=sys.stderr)
        return 130
    return run()


def calls_server(args: list[str], env: Mapping[str, str]) -> bool:
    """Whether the run will use a server rather than the offline analyzer, judged from what
    decides it (options, then the environment and settings files; see
    `providers.resolve_provider`) before the CLI has loaded. Only the workers' start-up time
    depends on it: a worker imports for itself whatever its forkserver did not preload."""
    kind = _option(args, "--provider")
    if kind in ("openai", "offline"):
        return kind == "openai"
    if _option(args, "--api-key") or _option(args, "--base-url"):
        return True
    from imaginize import config
    from imaginize.errors import ImaginizeError

    try:
        settings = config.load(env=env).values
    except ImaginizeError:
        return False  # the CLI stops on the same error before any worker starts
    if kind is None and settings.get("provider.kind") in ("openai", "offline"):
        return settings["provider.kind"] == "openai"
    return bool(
        settings.get("provider.api_key")
        or settings.get("provider.base_url")
        or env.get("OPENROUTER_API_KEY")
    )


def _option(args: list[str], name: str) -> str | None:
    """The last value given for a long option (`--name value` or `--name=value`)."""
    found = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == name and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith(name + "="):
            found = arg[len(name) + 1 :]
    return found
