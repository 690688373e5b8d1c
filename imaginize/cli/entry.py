"""The console script's entry: a Ctrl-C while the program is still loading ends quietly.

It decides nothing about the run: the CLI resolves the provider once, and the workers'
start-up follows from that decision (`workers/startup.py`)."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from imaginize.cli.main import main as run
    except KeyboardInterrupt:
        print("imaginize: interrupted", file=sys.stderr)
        return 130
    return run()
