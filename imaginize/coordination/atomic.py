"""The one way imaginize writes a file: all of it or none of it.

`write_atomic` writes to a uniquely named temp file in the destination folder, flushes and
fsyncs it, renames it over the destination with `os.replace` (atomic on POSIX and Windows for
paths on one filesystem) and fsyncs the folder so the rename itself survives a power cut.
A reader therefore sees the old file or the new one, never a torn one. A writer killed
mid-way leaves a temp file named `.<name>.<random>.tmp`; `sweep_temp_files` removes those
once they are old enough that no live writer can still own them.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; the guides are for people and other programs, so they get the
# mode an ordinary open() would give. Read once: os.umask can only be read by setting it.
_FILE_MODE = 0o666 & ~_current_umask()


def write_atomic(
    path: Path,
    data: bytes | str,
    *,
    durable: bool = True,
    sync_dir: bool = True,
    mode: int | None = None,
) -> None:
    """Replace `path` with `data`, all or nothing. `durable=False` skips the fsyncs: still
    never torn, but the last write may be lost in a power cut (for advisory files).
    `sync_dir=False` keeps the data fsync but leaves the folder's to a later rename of this
    file that syncs it (a staged result, published by `ManifestStore.publish`). `mode` replaces
    the umask's mode (e.g. 0o600 for a file that may hold a secret); it is set before any byte
    is written, so the data is never readable under a wider mode."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), _FILE_MODE if mode is None else mode)
            handle.write(payload)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable and sync_dir:
        fsync_dir(path.parent)


def write_json_atomic(
    path: Path, data: Any, *, indent: int | None = 2, durable: bool = True, sync_dir: bool = True
) -> None:
    # indent=None lets json use its C encoder: several times faster for the manifest.
    text = json.dumps(data, ensure_ascii=False, indent=indent)
    write_atomic(path, text + "\n", durable=durable, sync_dir=sync_dir)


def fsync_dir(folder: Path) -> None:
    # Directories cannot be opened for fsync on Windows; the rename is durable enough there.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_temp_files(folder: Path, older_than: float = 60.0, now: float | None = None) -> int:
    """Remove temp files left by crashed writers; returns how many were removed.

    Only files older than `older_than` seconds go: a younger one may belong to a live writer
    that is about to rename it.
    """
    now = time.time() if now is None else now
    removed = 0
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        try:
            if now - tmp.stat().st_mtime >= older_than:
                tmp.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed
