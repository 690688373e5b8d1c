"""Settings files: precedence, merging, unknown keys, init and show."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from imaginize import config
from imaginize.cli import main
from imaginize.errors import ConfigError
from tests.test_cli import SAMPLE


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
