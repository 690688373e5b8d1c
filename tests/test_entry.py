"""Start-up follows the CLI's one provider decision (workers/startup.py): the forkserver is
started by a run, for the provider the run resolved, and by nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from imaginize.analysis.providers import ProviderKind, resolve_provider
from imaginize.cli import entry
from imaginize.cli import main as cli_module
from imaginize.errors import ConfigError, ExitCode
from imaginize.workers import forkserver, startup

ENV_NAMES = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL", "OPENROUTER_API_KEY")


class StoppedAtStartUp(ConfigError):
    """Raised by the fake warm-up: the run goes no further (exit 2), nothing is forked."""


@pytest.fixture
def warmed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What the forkserver was started for (True: workers that call a server), in an empty
    project folder with no user settings and no provider variables in the environment."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    calls: list[bool] = []

    def warm_up(server: bool = True) -> None:
        calls.append(server)
        raise StoppedAtStartUp("stopped at start-up")

    monkeypatch.setattr(forkserver, "warm_up", warm_up)
    return calls


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["book.epub"], {}, False),
        (["book.epub"], {"OPENAI_API_KEY": "sk-x"}, True),
        (["book.epub"], {"OPENAI_BASE_URL": "http://127.0.0.1:8080/v1"}, True),
        (["book.epub"], {"OPENROUTER_API_KEY": "or-x"}, True),
        (["book.epub", "--api-key", "sk-x"], {}, True),
        (["book.epub", "--base-url=http://127.0.0.1:8080/v1"], {}, True),
        (["book.epub", "--provider=offline"], {"OPENAI_API_KEY": "sk-x"}, False),
        (
            ["--provider", "offline", "book.epub", "--provider", "auto"],
            {"OPENAI_API_KEY": "k"},
            True,
        ),
        (["a.epub", "b.epub"], {"OPENAI_API_KEY": "sk-x"}, True),
    ],
)
def test_a_run_starts_workers_for_the_provider_it_resolved(
    warmed: list[bool], monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict, expected: bool
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli_module.main(args) == ExitCode.BAD_INPUT
    assert warmed == [expected]


@pytest.mark.parametrize(
    ("toml", "args", "expected"),
    [
        ('[provider]\napi_key = "sk-x"\n', ["book.epub"], True),
        ('[provider]\nbase_url = "http://127.0.0.1:8080/v1"\n', ["book.epub"], True),
        ('[provider]\nkind = "offline"\napi_key = "sk-x"\n', ["book.epub"], False),
        (
            '[provider]\nkind = "offline"\n',
            ["book.epub", "--provider", "openai", "--api-key", "k"],
            True,
        ),
        ("[run]\nconcurrent = 3\n", ["book.epub"], False),
    ],
)
def test_settings_files_decide_through_the_cli(
    warmed: list[bool], toml: str, args: list[str], expected: bool
) -> None:
    Path("imaginize.toml").write_text(toml, encoding="utf-8")
    assert cli_module.main(args) == ExitCode.BAD_INPUT
    assert warmed == [expected]


def test_nothing_starts_for_a_run_the_cli_refuses(
    warmed: list[bool], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The folder's settings file names a server for the user's key: refused before any
    worker could start, so no forkserver is started either (a guess made before the CLI
    started one preloading `openai`)."""
    Path("imaginize.toml").write_text('[provider]\nbase_url = "http://evil/v1"\n', "utf-8")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-users-own")
    monkeypatch.setattr(sys, "argv", ["imaginize", "book.epub"])
    assert entry.main() == ExitCode.BAD_INPUT
    assert "refusing to send the API key" in capsys.readouterr().err
    assert warmed == []


@pytest.mark.parametrize(
    "args",
    [
        ["doctor", "--base-url", "http://127.0.0.1:9/v1", "--timeout", "1"],
        ["status", "book.epub"],
        ["book.epub", "--estimate"],
        ["--help"],
    ],
)
def test_commands_that_run_no_workers_start_none(
    warmed: list[bool], monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["imaginize", *args])
    entry.main()
    assert warmed == []


def test_the_preload_follows_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen: list[bool] = []
    monkeypatch.setattr(forkserver, "warm_up", chosen.append)
    monkeypatch.setattr(forkserver, "context", lambda server: chosen.append(server))
    offline = resolve_provider(ProviderKind.OFFLINE)
    server = resolve_provider(ProviderKind.OPENAI, base_url="http://127.0.0.1:8080/v1")
    startup.begin(offline)
    startup.begin(server)
    startup.worker_context([offline, offline])
    startup.worker_context([offline, server])  # a library run: one pool for every book
    assert chosen == [False, True, False, True]
