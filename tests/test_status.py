"""`imaginize status` and `imaginize unlock` (imaginize/cli/status.py), and what the command line
does with a hand-edited manifest."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imaginize.cli.status import break_stuck_lock, render_status, status_report
from imaginize.coordination.store import LOCK_NAME, MANIFEST_NAME, ManifestStore
from imaginize.guides.images import ImageStore
from tests.test_cli import SAMPLE, imaginize

IMAGE_LOCK = ImageStore.lock_name


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
@pytest.mark.slow
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
@pytest.mark.slow
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


# --- the locks: the chapters' and the images' ---------------------------------------------


def hold(path: Path, pid: int = 4321, host: str = "atlas") -> Path:
    """A lock file as filelock leaves it (pid, host, start token) whose holder is stuck."""
    path.write_text(f"{pid}\n{host}\n123456\n", encoding="utf-8")
    return path


def joined_store(out: Path) -> ManifestStore:
    store = ManifestStore(out)
    store.join(book_path="/books/b.epub", sha256="ab" * 32, title="B", chapters=[(1, "One")])
    return store


def test_status_shows_who_holds_each_lock(tmp_path: Path) -> None:
    joined_store(tmp_path)
    report = status_report(tmp_path, now=time.time())
    assert report.lock is None and report.image_lock is None
    assert "lock:" not in render_status(report)
    hold(tmp_path / IMAGE_LOCK)
    report = status_report(tmp_path, now=time.time() + 30)
    assert report.lock is None
    assert report.image_lock is not None and report.image_lock.pid == 4321
    text = render_status(report)
    assert "image lock: held by pid 4321 on atlas for 30s" in text.splitlines()
    assert not any(line.startswith("lock:") for line in text.splitlines())
    data = json.loads(render_status(report, as_json=True))
    assert data["lock"] is None and data["imageLock"]["pid"] == 4321
    hold(tmp_path / LOCK_NAME, pid=99)
    text = render_status(status_report(tmp_path))
    assert "lock: held by pid 99 on atlas" in text and "image lock: held by pid 4321" in text


def test_unlock_offers_each_held_lock_and_says_what_became_of_it(tmp_path: Path) -> None:
    chapters, images = hold(tmp_path / LOCK_NAME, pid=11), hold(tmp_path / IMAGE_LOCK, pid=22)
    asked: list[str] = []

    def only_images(description: str) -> bool:
        asked.append(description)
        return description.startswith(IMAGE_LOCK)

    message = break_stuck_lock(tmp_path, only_images)
    assert len(asked) == 2
    assert asked[0].startswith(f"{LOCK_NAME}, held by pid 11 on atlas")
    assert asked[1].startswith(f"{IMAGE_LOCK}, held by pid 22 on atlas")
    assert message.splitlines() == [f"{chapters}: left in place", f"{images}: removed"]
    assert chapters.exists() and not images.exists()
    # Asked again, only the lock still there is offered.
    asked.clear()
    message = break_stuck_lock(tmp_path, lambda d: asked.append(d) or True)
    assert [d.split(",")[0] for d in asked] == [LOCK_NAME]
    assert message.splitlines() == [f"{chapters}: removed", f"{images}: not locked"]
    assert break_stuck_lock(tmp_path, lambda d: pytest.fail("nothing to ask")).splitlines() == [
        f"{chapters}: not locked",
        f"{images}: not locked",
    ]


@pytest.mark.slow
def test_status_and_unlock_on_the_command_line(finished: Path, tmp_path: Path) -> None:
    out = copy_of(finished, tmp_path)
    chapters, images = hold(out / LOCK_NAME, pid=11), hold(out / IMAGE_LOCK, pid=22)
    shown = imaginize("status", SAMPLE, "-o", out)
    assert shown.returncode == 0, shown.stderr
    assert "lock: held by pid 11 on atlas" in shown.stdout
    assert "image lock: held by pid 22 on atlas" in shown.stdout
    removed = imaginize("unlock", SAMPLE, "-o", out, "--yes")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.splitlines() == [f"{chapters}: removed", f"{images}: removed"]
    assert not chapters.exists() and not images.exists()
