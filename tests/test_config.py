"""Settings files: precedence, merging, unknown keys, init and show."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from imaginize import config
from imaginize.cli.main import main
from imaginize.errors import ConfigError
from tests.fake_openai import FakeOpenAI
from tests.replies import answer
from tests.test_cli import CLEAN_ENV, SAMPLE


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A project folder (the cwd) and a user config folder, both empty; no provider env."""
    project = tmp_path / "project"
    project.mkdir()
    xdg = tmp_path / "xdg"
    monkeypatch.chdir(project)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL", "IMAGINIZE_TIER"):
        monkeypatch.delenv(name, raising=False)
    user = xdg / "imaginize" / "config.toml"
    user.parent.mkdir(parents=True)
    return project / config.PROJECT_FILE, user


def test_project_beats_user_and_tables_merge_key_by_key(places: tuple[Path, Path]) -> None:
    project, user = places
    user.write_text('[run]\nmax_attempts = 7\npages_per_image = 2\n[rate]\ntier = "free"\n')
    project.write_text("[run]\nmax_attempts = 4\n")
    layered = config.load()
    assert layered.values["run.max_attempts"] == 4
    assert layered.sources["run.max_attempts"] == str(project)
    assert layered.values["run.pages_per_image"] == 2.0  # int accepted for a float
    assert layered.sources["run.pages_per_image"] == str(user)
    assert layered.values["rate.tier"] == "free"


def test_environment_beats_files(
    places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _ = places
    project.write_text('[provider]\nmodel = "from-file"\n')
    monkeypatch.setenv("OPENAI_MODEL", "from-env")
    layered = config.load()
    assert layered.values["provider.model"] == "from-env"
    assert layered.sources["provider.model"] == "env OPENAI_MODEL"
    assert "model" not in layered.default_map()  # click reads the environment itself


def test_unknown_key_names_the_key_and_the_file(
    places: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    project, _ = places
    project.write_text("[run]\nmax_attemps = 3\n")
    with pytest.raises(ConfigError, match=r"imaginize.toml: unknown setting 'run.max_attemps'"):
        config.load()
    assert main(["config", "show"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run.max_attemps" in err[0] and str(project) in err[0]


@pytest.mark.parametrize(
    "text, message",
    [("[run]\nmax_attempts = 'three'\n", "must be an integer"), ("[run\n", "not valid TOML")],
)
def test_bad_values_and_bad_toml(places: tuple[Path, Path], text: str, message: str) -> None:
    project, _ = places
    project.write_text(text)
    with pytest.raises(ConfigError, match=message):
        config.load()


@pytest.mark.slow
def test_files_feed_the_run_and_flags_beat_them(
    places: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    project, _ = places
    out = project.parent / "out"
    # The file asks for the openai provider with no key and no server: that must fail...
    project.write_text('[provider]\nkind = "openai"\n')
    assert main([str(SAMPLE), "-o", str(out), "--chapters", "1"]) == 2
    assert "needs an API key" in capsys.readouterr().err
    # ...unless a flag overrides it.
    code = main([str(SAMPLE), "-o", str(out), "--chapters", "1", "--provider", "offline", "-q"])
    assert code == 0


def test_init_writes_a_commented_example_that_parses(places: tuple[Path, Path]) -> None:
    project, _ = places
    assert main(["config", "init"]) == 0
    assert tomllib.loads(project.read_text()) == {
        "provider": {},
        "run": {},
        "rate": {},
        "pace": {},
        "coordination": {},
        "images": {},
    }
    assert main(["config", "init"]) == 2  # no silent overwrite
    assert main(["config", "init", "--force"]) == 0
    # Every example key, uncommented, is a known setting.
    for line in project.read_text().splitlines():
        if line.startswith("# ") and " = " in line and not line.startswith("# imaginize"):
            key = line[2:].split(" = ")[0].strip()
            assert any(s.key.endswith("." + key) for s in config.SETTINGS), key


def test_show_masks_keys_and_names_sources(
    places: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    project, _ = places
    project.write_text('[provider]\napi_key = "sk-verysecretvalue1234"\n')
    assert main(["config", "show"]) == 0
    shown = capsys.readouterr().out
    assert "sk-verysecretvalue1234" not in shown
    assert "1234" in shown and str(project) in shown
    assert "run.max_attempts" in shown and "(default)" in shown


def test_show_hides_url_passwords_and_escapes_a_project_files_text(
    places: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # A Redis URL's password was printed in full, and a project file's values went to the
    # terminal as they were (escape sequences included).
    project, _ = places
    project.write_text(
        '[pace]\nredis_url = "redis://:hunter2pass@cache:6379/0"\n'
        '[provider]\nmodel = "m\\u001b[2Jx"\n'
    )
    assert main(["config", "show"]) == 0
    shown = capsys.readouterr().out
    assert "hunter2pass" not in shown and "redis://:***@cache:6379/0" in shown
    assert "\x1b" not in shown and "m\\x1b[2Jx" in shown


def run_in(
    folder: Path, env: dict[str, str], *args: str | Path
) -> subprocess.CompletedProcess[str]:
    """The CLI as a real process started in `folder`, with `env` over a clean environment."""
    return subprocess.run(
        [sys.executable, "-m", "imaginize", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**CLEAN_ENV, "XDG_CONFIG_HOME": str(folder.parent / "xdg"), **env},
        cwd=folder,
    )


def keys_received(server: FakeOpenAI) -> set[str]:
    return {r["headers"].get("authorization", "") for r in server.requests}


@pytest.mark.slow
def test_a_project_file_base_url_is_not_sent_the_users_key(
    places: tuple[Path, Path], fake_openai: FakeOpenAI
) -> None:
    """A cloned folder's imaginize.toml names a server; the key in the environment stays home."""
    project, user = places
    fake_openai.script(responder=answer)
    project.write_text(f'[provider]\nbase_url = "{fake_openai.url}"\n')
    out = project.parent.parent / "out"
    run = (SAMPLE, "-o", out, "--chapters", "1", "-q")
    secret = {"OPENAI_API_KEY": "sk-users-own-secret-1234"}

    refused = run_in(project.parent, secret, *run)
    assert refused.returncode == 2, refused.stderr
    assert fake_openai.requests == []
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"imaginize: error: {project}: "), lines
    assert "env OPENAI_API_KEY" in lines[0] and "--base-url" in lines[0]
    assert "sk-users-own-secret-1234" not in refused.stderr

    # The user's key in the user file is the user's too.
    user.write_text('[provider]\napi_key = "sk-from-user-file-5678"\n')
    also_refused = run_in(project.parent, {}, *run)
    assert also_refused.returncode == 2 and str(user) in also_refused.stderr
    assert fake_openai.requests == []

    # Naming the server on the command line is the user's own choice.
    chosen = run_in(project.parent, secret, *run, "--base-url", fake_openai.url)
    assert chosen.returncode == 0, chosen.stderr
    assert keys_received(fake_openai) == {"Bearer sk-users-own-secret-1234"}


@pytest.mark.slow
def test_a_project_file_may_send_its_own_key_to_its_own_server(
    places: tuple[Path, Path], fake_openai: FakeOpenAI
) -> None:
    project, _ = places
    fake_openai.script(responder=answer)
    project.write_text(
        f'[provider]\nbase_url = "{fake_openai.url}"\napi_key = "sk-the-projects-key"\n'
    )
    project.chmod(0o600)
    out = project.parent.parent / "out"
    result = run_in(project.parent, {}, SAMPLE, "-o", out, "--chapters", "1", "-q")
    assert result.returncode == 0, result.stderr
    assert keys_received(fake_openai) == {"Bearer sk-the-projects-key"}
    # A key from the environment would win over the file's: then it is the user's key.
    result = run_in(project.parent, {"OPENAI_API_KEY": "sk-env"}, SAMPLE, "-o", out, "--force")
    assert result.returncode == 2 and "env OPENAI_API_KEY" in result.stderr
    assert keys_received(fake_openai) == {"Bearer sk-the-projects-key"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.name != "posix", reason="mode bits")
def test_init_writes_files_only_their_owner_can_read(places: tuple[Path, Path]) -> None:
    project, user = places
    old = os.umask(0o022)  # the usual umask, which gives a plain open() 0644
    try:
        assert main(["config", "init"]) == 0
        assert mode(project) == 0o600
        user.write_text("")
        user.chmod(0o644)
        assert main(["config", "init", "--user", "--force"]) == 0
        assert mode(user) == 0o600  # replaced, not kept at the old file's mode
    finally:
        os.umask(old)


@pytest.mark.skipif(os.name != "posix", reason="mode bits")
def test_a_key_in_a_file_others_can_read_is_warned_about_once(
    places: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    project, user = places
    user.write_text('[provider]\napi_key = "sk-in-a-shared-file"\n')
    project.write_text("[run]\nmax_attempts = 4\n")  # no key: its mode is nobody's business
    for path in (user, project):
        path.chmod(0o644)
    assert main(["config", "show"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"imaginize: warning: {user}: holds an API key and others can read it; run chmod 600 {user}"
    ]
    user.chmod(0o640)  # group-readable is readable by others too
    assert main(["config", "show"]) == 0
    assert f"chmod 600 {user}" in capsys.readouterr().err
    user.chmod(0o600)
    assert main(["config", "show"]) == 0
    assert capsys.readouterr().err == ""


def test_show_says_where_the_key_goes_or_why_a_run_stops(
    places: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _ = places
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    assert main(["config", "show"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "API key: none is sent"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    assert main(["config", "show"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == "API key: from env OPENAI_API_KEY, sent to the OpenAI API"
    project.write_text('[provider]\nbase_url = "http://127.0.0.1:9/v1"\n')
    assert main(["config", "show"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(f"API key: a run stops: {project}: refusing to send the API key")
    assert "sk-from-the-environment" not in last
