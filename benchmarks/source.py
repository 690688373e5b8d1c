"""Which imaginize a benchmark measures: the working tree, or a git revision exported aside.

Other people edit imaginize/ while benchmarks run; `--snapshot REV` (e.g. HEAD) measures a
fixed revision instead: `git archive REV imaginize` is unpacked into a temp folder that goes
first on PYTHONPATH of every process the benchmark starts (it wins over the editable install).
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def exported(rev: str | None) -> Iterator[Path | None]:
    """A temp folder holding `imaginize/` at `rev` (None: no export, the working tree)."""
    if rev is None:
        yield None
        return
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", rev, "imaginize"], check=True, capture_output=True
    ).stdout
    with tempfile.TemporaryDirectory(prefix="imaginize-src-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)


def pythonpath(source: Path | None) -> str:
    """PYTHONPATH for child processes: the export (if any), the repo (tests, benchmarks), and
    whatever was there."""
    parts = [str(source) if source else "", str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)


def describe(rev: str | None) -> str:
    if rev is not None:
        return f"imaginize at {_git('rev-parse', '--short', rev).strip()} (snapshot of {rev})"
    head = _git("rev-parse", "--short", "HEAD").strip()
    dirty = _git("status", "--porcelain", "--", "imaginize").strip()
    return f"imaginize from the working tree (HEAD {head}{', with local changes' if dirty else ''})"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], check=True, capture_output=True, text=True
    ).stdout
