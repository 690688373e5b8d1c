"""Which imaginize a benchmark measures: the working tree, or a git revision exported aside.

Other people edit imaginize/ while benchmarks run; `--snapshot REV` (e.g. HEAD) measures a
fixed revision instead: `git archive REV imaginize` is unpacked into a temp folder that goes
first on PYTHONPATH of every process the benchmark starts. The editable install does not get
in its way (its finder comes after every sys.path entry), but `python -m` and `python -c` put
the working folder ahead of PYTHONPATH: started from the repository root, a process imports
the working tree's imaginize whatever PYTHONPATH says. So every measured process is started
with `python()` (`-P`: no working folder on sys.path), and each benchmark checks which
imaginize its processes imported (`check`, `verify`) and stops if it is not the one meant.

What comes from where: `imaginize` from the export (or the working tree without
--snapshot); `tests` and `benchmarks` (book builder, fake server, instrumentation) always
from the working tree, through the repository's place on PYTHONPATH after the export.
"""

from __future__ import annotations

import compileall
import importlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# The imaginize/ folder the measured processes must import, for a process that checks itself.
EXPECT_ENV = "IMAGINIZE_BENCH_EXPECT"
_PROBE = "import imaginize; print(imaginize.__file__)"
# Modules as named before the package was laid out in sub-packages (d1edce9), for the
# snapshots of older revisions that `--before`/`--snapshot` measure.
_OLD_NAMES = {
    "imaginize.analysis.estimate": "imaginize.estimate",
    "imaginize.analysis.offline.analyzer": "imaginize.analysis.offline",
    "imaginize.analysis.offline.catalogue": "imaginize.analysis.catalogue",
    "imaginize.analysis.offline.describe": "imaginize.analysis.describe",
    "imaginize.analysis.offline.lexicon": "imaginize.analysis.lexicon",
    "imaginize.analysis.offline.names": "imaginize.analysis.names",
    "imaginize.analysis.offline.scenes": "imaginize.analysis.scenes",
    "imaginize.analysis.offline.text": "imaginize.analysis.text",
    "imaginize.analysis.openai.chat": "imaginize.analysis.openai_chat",
    "imaginize.analysis.openai.client": "imaginize.analysis.openai_client",
    "imaginize.analysis.openai.doctor": "imaginize.doctor",
    "imaginize.analysis.openai.errors": "imaginize.analysis.openai_errors",
    "imaginize.analysis.openai.http_transport": "imaginize.analysis.http_transport",
    "imaginize.analysis.openai.images": "imaginize.analysis.openai_images",
    "imaginize.analysis.openai.prompt": "imaginize.analysis.prompt",
    "imaginize.analysis.openai.reply": "imaginize.analysis.reply",
    "imaginize.analysis.openai.reply_schema": "imaginize.analysis.reply_schema",
    "imaginize.analysis.openai.server": "imaginize.analysis.server",
    "imaginize.analysis.pipeline": "imaginize.pipeline",
    "imaginize.analysis.pricing": "imaginize.pricing",
    "imaginize.analysis.providers": "imaginize.providers",
    "imaginize.cli.entry": "imaginize.entry",
    "imaginize.cli.live": "imaginize.live",
    "imaginize.cli.main": "imaginize.cli",
    "imaginize.cli.progress": "imaginize.progress",
    "imaginize.cli.status": "imaginize.status",
    "imaginize.coordination.atomic": "imaginize.atomic",
    "imaginize.coordination.claims": "imaginize.claims",
    "imaginize.coordination.journal": "imaginize.journal",
    "imaginize.coordination.locking": "imaginize.locking",
    "imaginize.coordination.manifest": "imaginize.manifest",
    "imaginize.coordination.store": "imaginize.store",
    "imaginize.coordination.watch": "imaginize.watch",
    "imaginize.guides.images": "imaginize.images",
    "imaginize.guides.merge": "imaginize.guides",
    "imaginize.guides.results": "imaginize.results",
    "imaginize.pacing.backoff": "imaginize.backoff",
    "imaginize.pacing.pace": "imaginize.pacing",
    "imaginize.pacing.redis_pace": "imaginize.pace_redis",
    "imaginize.reading.chunking": "imaginize.chunking",
    "imaginize.reading.epub": "imaginize.book",
    "imaginize.reading.xhtml": "imaginize.xhtml",
    "imaginize.workers.autoscale": "imaginize.autoscale",
    "imaginize.workers.forkserver": "imaginize.forkserver",
    "imaginize.workers.image_worker": "imaginize.image_worker",
    "imaginize.workers.launcher": "imaginize.launcher",
    "imaginize.workers.preload": "imaginize.preload",
    "imaginize.workers.preload_openai": "imaginize.preload_openai",
    "imaginize.workers.worker": "imaginize.worker",
}


@contextmanager
def exported(rev: str | None) -> Iterator[Path | None]:
    """A temp folder holding `imaginize/` at `rev` (None: no export, the working tree), its
    modules compiled (`compiled`)."""
    if rev is None:
        compiled(None)
        yield None
        return
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", rev, "imaginize"], check=True, capture_output=True
    ).stdout
    with tempfile.TemporaryDirectory(prefix="imaginize-src-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        compiled(Path(tmp))
        yield Path(tmp)


@contextmanager
def workspace(rev: str | None, prefix: str, who: str) -> Iterator[tuple[Path, Path | None, Path]]:
    """A temp folder, the export to measure (`exported`; None: the working tree), and the
    imaginize/ an interpreter started as the measured processes are (`who`) imports: checked
    by `verify`, and said on stderr."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, exported(rev) as src:
        root = Path(tmp)
        imported = verify(root, environ(src), who)
        print(f"imaginize imported from {imported}", file=sys.stderr, flush=True)
        yield root, src, imported


def compiled(source: Path | None) -> None:
    """Write the measured imaginize/'s bytecode, as an installed package has it: pip compiles
    at install, and an editable install writes it on the first import, unless
    PYTHONDONTWRITEBYTECODE is set, as it is on the machine these figures come from. Without
    it every process compiles imaginize's ~50 modules again: ~0.15 s in the CLI and ~0.1-0.2 s
    in the forkserver's preload (2026-11-23 03:25), which no user pays."""
    compileall.compile_dir(package_dir(source), quiet=1)


def pythonpath(source: Path | None) -> str:
    """PYTHONPATH for child processes: the export (if any), the repo (tests, benchmarks), and
    whatever was there."""
    parts = [str(source) if source else "", str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)


def python() -> list[str]:
    """The interpreter for a process that imports imaginize from PYTHONPATH: `-P` keeps its
    working folder (the repository, when that is where it starts) off sys.path. Its
    multiprocessing children (spawn, forkserver) get the flag and the same sys.path."""
    return [sys.executable, "-P"]


def environ(source: Path | None, **extra: str) -> dict[str, str]:
    """The environment of a measured process: PYTHONPATH, and where imaginize must come from."""
    return {
        **os.environ,
        "PYTHONPATH": pythonpath(source),
        EXPECT_ENV: str(package_dir(source)),
        **extra,
    }


def child_json(
    root: Path,
    source: Path | None,
    code: str,
    args: Sequence[object],
    env: Mapping[str, str] | None = None,
) -> Any:
    """What `code`, run with `args` in a process importing the measured imaginize from `root`,
    prints as JSON; SystemExit with its stderr when it fails."""
    done = subprocess.run(
        [*python(), "-c", code, *(str(a) for a in args)],
        cwd=root,
        env=dict(env) if env is not None else environ(source),
        capture_output=True,
        text=True,
    )
    if done.returncode:
        sys.exit(f"the measuring process failed:\n{done.stderr}")
    return json.loads(done.stdout)


def package_dir(source: Path | None) -> Path:
    """The imaginize/ folder that processes started with `python()` and `environ(source)`
    must import: the export's, or the working tree's."""
    return ((source or REPO_ROOT) / "imaginize").resolve()


def expected() -> Path:
    """In a measured process: the imaginize/ folder it must import (the working tree's when
    no benchmark set it)."""
    meant = os.environ.get(EXPECT_ENV)
    return Path(meant).resolve() if meant else package_dir(None)


def check(file: str | None, meant: Path, who: str) -> Path:
    """`file` (a module's __file__) if it lies in the imaginize/ folder `meant`; otherwise
    stop the benchmark: its figures would be of other code."""
    found = Path(file).resolve() if file else None
    if found is None or not found.is_relative_to(meant):
        raise SystemExit(
            f"benchmark stopped: {who} imported imaginize from {found}, not from {meant}; "
            "its figures would not be of the code meant"
        )
    return found.parent if found.name == "__init__.py" else found


def verify(cwd: Path, env: Mapping[str, str], who: str) -> Path:
    """Start an interpreter as the measured processes are started (`python()`, same folder and
    environment), have it import imaginize, and `check` where from. With `-P`, sys.path is the
    same whether a process runs `-m imaginize`, `-m benchmarks...` or `-c`."""
    probe = subprocess.run(
        [*python(), "-c", _PROBE], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    meant = Path(env[EXPECT_ENV]) if EXPECT_ENV in env else package_dir(None)
    return check(probe.stdout.strip(), meant, who)


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


def module(name: str) -> ModuleType:
    """The imaginize module `name` of the revision this process imports: by its name today,
    or by the one it had before the sub-packages (an older snapshot)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        if name not in _OLD_NAMES:
            raise
        return importlib.import_module(_OLD_NAMES[name])
