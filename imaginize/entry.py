"""The console script's entry: a Ctrl-C while the program is still loading ends quietly too."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from imaginize.cli import main as run
    except KeyboardInterrupt:
        print("imaginize: interrupted", file=sys.stderr)
        return 130
    return run()
