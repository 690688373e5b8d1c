"""`imaginize status` and `imaginize unlock` (imaginize/status.py), and what the command line
does with a hand-edited manifest."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from imaginize.store import MANIFEST_NAME
from tests.test_cli import SAMPLE, imaginize


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample book run once offline: a real manifest to copy and corrupt."""
    out = tmp_path_factory.mktemp("finished")
    done = imaginize(SAMPLE, "-o", out, "-q")
    assert done.returncode == 0, done.stderr
    assert (out / MANIFEST_NAME).exists()
    return out


def copy_of(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    return out


def edit_manifest(out: Path, change: Callable[[dict], None]) -> Path:
    path = out / MANIFEST_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def running_with_a_text_heartbeat(data: dict) -> None:
    # The review's case: a chapter in progress whose heartbeat is not a number.
    first = data["chapters"][0]
    first.update(status="in_progress", owner="elsewhere:1:w1", heartbeatAt="x")


def unknown_status(data: dict) -> None:
    data["chapters"][2]["status"] = "paused"


def numbered_twice(data: dict) -> None:
    data["chapters"][1]["number"] = data["chapters"][0]["number"]


CORRUPTIONS = {
    "heartbeatAt": running_with_a_text_heartbeat,
    "status": unknown_status,
    "appears twice": numbered_twice,
}


def error_line(result: subprocess.CompletedProcess[str], manifest: Path) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("imaginize: error:")]
    assert errors == [lines[-1]], result.stderr
    assert errors[0].startswith(f"imaginize: error: {manifest}: invalid manifest (")
    return errors[0]


@pytest.mark.parametrize("field", list(CORRUPTIONS))
def test_status_reports_an_invalid_manifest_in_one_line(
    finished: Path, tmp_path: Path, field: str
) -> None:
    out = copy_of(finished, tmp_path)
    manifest = edit_manifest(out, CORRUPTIONS[field])
    result = imaginize("status", SAMPLE, "-o", out)
    line = error_line(result, manifest)
    assert len(result.stderr.strip().splitlines()) == 1
    assert field in line
    assert result.stdout == ""


@pytest.mark.parametrize("field", list(CORRUPTIONS))
def test_run_reports_an_invalid_manifest_and_leaves_it_alone(
    finished: Path, tmp_path: Path, field: str
) -> None:
    out = copy_of(finished, tmp_path)
    manifest = edit_manifest(out, CORRUPTIONS[field])
    (out / "chapters" / "001.json").unlink()  # work to do, so workers would start
    before = manifest.read_bytes()
    quiet = imaginize(SAMPLE, "-o", out, "-q")
    assert len(quiet.stderr.strip().splitlines()) == 1, quiet.stderr
    assert field in error_line(quiet, manifest)
    if field == "heartbeatAt":
        # Without -q the provider notice and the book's banner come first; still one error.
        assert field in error_line(imaginize(SAMPLE, "-o", out), manifest)
    assert manifest.read_bytes() == before
