"""The console script's entry: starts the worker forkserver early for a run (its imports
overlap with the CLI's own), and a Ctrl-C while the program is still loading ends quietly."""

from __future__ import annotations

import sys

_NOT_A_RUN = {"status", "unlock", "config", "--help", "-h", "--version", "--estimate", "--dry-run"}


def main() -> int:
    try:
        args = sys.argv[1:]
        if args and _NOT_A_RUN.isdisjoint(args):
            from imaginize.forkserver import warm_up

            warm_up()
        from imaginize.cli import main as run
    except KeyboardInterrupt:
        print("imaginize: interrupted", file=sys.stderr)
        return 130
    return run()
