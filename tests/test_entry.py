"""The console entry's early guess of the analyzer, which picks what the forkserver preloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from imaginize.cli.entry import calls_server


@pytest.fixture
def settings_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder and user config folder, so no real settings file is read."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    return project


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["book.epub"], {}, False),
        (["book.epub"], {"OPENAI_API_KEY": "sk-x"}, True),
        (["book.epub"], {"OPENAI_BASE_URL": "http://127.0.0.1:8080/v1"}, True),
        (["book.epub"], {"OPENROUTER_API_KEY": "or-x"}, True),
        (["book.epub", "--api-key", "sk-x"], {}, True),
        (["book.epub", "--base-url=http://127.0.0.1:8080/v1"], {}, True),
        (["book.epub", "--provider", "openai"], {}, True),
        (["book.epub", "--provider=offline"], {"OPENAI_API_KEY": "sk-x"}, False),
        # The last one given counts, as with click.
        (["--provider", "offline", "book.epub", "--provider", "openai"], {}, True),
        (["book.epub", "--provider", "auto"], {"OPENAI_API_KEY": "sk-x"}, True),
        (["book.epub", "--", "--api-key"], {}, False),
    ],
)
def test_options_and_environment(
    settings_home: Path, tmp_path: Path, args: list[str], env: dict[str, str], expected: bool
) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), **env}
    assert calls_server(args, env) is expected


@pytest.mark.parametrize(
    ("toml", "args", "expected"),
    [
        ('[provider]\napi_key = "sk-x"\n', ["book.epub"], True),
        ('[provider]\nbase_url = "http://127.0.0.1:8080/v1"\n', ["book.epub"], True),
        ('[provider]\nkind = "openai"\nbase_url = "http://h/v1"\n', ["book.epub"], True),
        ('[provider]\nkind = "offline"\napi_key = "sk-x"\n', ["book.epub"], False),
        # An option beats the file.
        ('[provider]\nkind = "offline"\n', ["book.epub", "--provider", "openai"], True),
        ('[provider]\nkind = "offline"\napi_key = "k"\n', ["b.epub", "--provider", "auto"], True),
        ("[run]\nconcurrent = 3\n", ["book.epub"], False),
        # A settings file the CLI will refuse: no worker starts, so any answer is fine, but
        # the guess itself must not fail.
        ("[provider\n", ["book.epub"], False),
    ],
)
def test_settings_files(
    settings_home: Path, tmp_path: Path, toml: str, args: list[str], expected: bool
) -> None:
    (settings_home / "imaginize.toml").write_text(toml, encoding="utf-8")
    assert calls_server(args, {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}) is expected
