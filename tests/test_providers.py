"""Choosing the provider from options and the environment."""

from __future__ import annotations

import pytest

from imaginize.analysis.providers import (
    DEFAULT_OPENAI_MODEL,
    DEFAULT_OPENROUTER_MODEL,
    OPENROUTER_BASE_URL,
    ProviderKind,
    resolve_provider,
)
from imaginize.config import Origin, Trust
from imaginize.errors import ConfigError

LOCAL = "http://127.0.0.1:8080/v1"


def test_auto_with_nothing_is_offline_with_a_reason() -> None:
    config = resolve_provider(env={})
    assert config.kind is ProviderKind.OFFLINE
    assert config.api_key == ""
    assert "OPENAI_API_KEY" in config.reason


def test_the_environment_defaults_to_nothing_not_os_environ(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-process")
    assert resolve_provider().kind is ProviderKind.OFFLINE


def test_offline_chosen_explicitly_even_with_a_key() -> None:
    config = resolve_provider(ProviderKind.OFFLINE, env={"OPENAI_API_KEY": "sk-env"})
    assert config.kind is ProviderKind.OFFLINE
    assert config.api_key == ""
    assert config.reason == "chosen"


def test_openai_key_from_the_environment_uses_openai_defaults() -> None:
    config = resolve_provider(env={"OPENAI_API_KEY": "sk-env"}, timeout=30.0)
    assert config.kind is ProviderKind.OPENAI
    assert config.api_key == "sk-env"
    assert config.base_url is None
    assert config.model == DEFAULT_OPENAI_MODEL
    assert config.timeout == 30.0
    assert config.reason == "OpenAI API"


def test_explicit_arguments_win_over_the_environment() -> None:
    env = {
        "OPENAI_API_KEY": "sk-env",
        "OPENAI_BASE_URL": "https://env.example/v1",
        "OPENAI_MODEL": "env-model",
    }
    config = resolve_provider(
        ProviderKind.OPENAI,
        model="flag-model",
        api_key="sk-flag",
        base_url="https://flag.example/v1",
        max_output_tokens=900,
        env=env,
    )
    assert (config.api_key, config.base_url, config.model) == (
        "sk-flag",
        "https://flag.example/v1",
        "flag-model",
    )
    assert config.max_output_tokens == 900
    assert "https://flag.example/v1" in config.reason


def test_environment_base_url_and_model_are_used_when_no_flags_are_given() -> None:
    env = {
        "OPENAI_API_KEY": "sk-env",
        "OPENAI_BASE_URL": "https://env.example/v1",
        "OPENAI_MODEL": "env-model",
    }
    config = resolve_provider(env=env)
    assert (config.api_key, config.base_url, config.model) == (
        "sk-env",
        "https://env.example/v1",
        "env-model",
    )


def test_openrouter_key_gives_openrouter_url_and_default_model() -> None:
    config = resolve_provider(env={"OPENROUTER_API_KEY": "sk-or"})
    assert config.kind is ProviderKind.OPENAI
    assert config.api_key == "sk-or"
    assert config.base_url == OPENROUTER_BASE_URL
    assert config.model == DEFAULT_OPENROUTER_MODEL


def test_openrouter_key_with_an_explicit_model() -> None:
    config = resolve_provider(model="anthropic/claude-3.5", env={"OPENROUTER_API_KEY": "sk-or"})
    assert config.model == "anthropic/claude-3.5"
    assert config.base_url == OPENROUTER_BASE_URL


def test_an_openai_key_wins_over_an_openrouter_key() -> None:
    config = resolve_provider(env={"OPENAI_API_KEY": "sk-oa", "OPENROUTER_API_KEY": "sk-or"})
    assert config.api_key == "sk-oa"
    assert config.base_url is None
    assert config.model == DEFAULT_OPENAI_MODEL


def test_an_explicit_key_wins_over_an_openrouter_key() -> None:
    config = resolve_provider(api_key="sk-flag", env={"OPENROUTER_API_KEY": "sk-or"})
    assert config.api_key == "sk-flag"
    assert config.base_url is None


def test_openrouter_key_with_openrouter_base_url_in_the_environment() -> None:
    env = {"OPENROUTER_API_KEY": "sk-or", "OPENAI_BASE_URL": "https://openrouter.ai/api/v1/"}
    config = resolve_provider(env=env)
    assert config.api_key == "sk-or"
    assert config.model == DEFAULT_OPENROUTER_MODEL


def test_base_url_without_key_is_a_local_server_with_a_placeholder_key() -> None:
    config = resolve_provider(base_url=LOCAL, env={})
    assert config.kind is ProviderKind.OPENAI
    assert config.base_url == LOCAL
    assert config.api_key  # the client refuses an empty key
    assert config.api_key == "not-needed"
    assert config.model == DEFAULT_OPENAI_MODEL
    assert LOCAL in config.reason


def test_environment_base_url_without_key_is_a_local_server() -> None:
    config = resolve_provider(ProviderKind.OPENAI, env={"OPENAI_BASE_URL": LOCAL})
    assert (config.base_url, config.api_key) == (LOCAL, "not-needed")


def test_a_local_base_url_is_not_sent_the_openrouter_key() -> None:
    config = resolve_provider(base_url=LOCAL, env={"OPENROUTER_API_KEY": "sk-or"})
    assert config.base_url == LOCAL
    assert config.api_key == "not-needed"
    assert config.model == DEFAULT_OPENAI_MODEL


def test_explicit_openai_without_key_or_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="API key"):
        resolve_provider(ProviderKind.OPENAI, env={})


def test_explicit_openai_with_only_a_model_is_still_a_config_error() -> None:
    with pytest.raises(ConfigError):
        resolve_provider(ProviderKind.OPENAI, model="gpt-4o", env={"OPENAI_MODEL": "x"})


PROJECT = Origin(Trust.PROJECT_FILE, "/clone/imaginize.toml")
USER_FILE = Origin(Trust.USER, "/home/me/.config/imaginize/config.toml")


@pytest.mark.parametrize(
    "api_key, api_key_from, env, key_name",
    [
        (None, None, {"OPENAI_API_KEY": "sk-env"}, "env OPENAI_API_KEY"),
        ("sk-flag", Origin(Trust.USER, "--api-key"), {}, "--api-key"),
        ("sk-user", USER_FILE, {}, USER_FILE.name),
        ("sk-lib", None, {}, "the api_key argument"),
    ],
)
def test_a_project_file_base_url_is_refused_a_key_from_elsewhere(
    api_key: str | None, api_key_from: Origin | None, env: dict[str, str], key_name: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        resolve_provider(
            api_key=api_key,
            api_key_from=api_key_from,
            base_url=LOCAL,
            base_url_from=PROJECT,
            env=env,
        )
    message = str(raised.value)
    assert message.startswith(f"{PROJECT.name}: ") and key_name in message
    assert "--base-url" in message and "\n" not in message
    assert "sk-" not in message  # names where the key came from, never the key


def test_the_openrouter_key_is_not_sent_to_a_project_files_openrouter_url() -> None:
    env = {"OPENROUTER_API_KEY": "sk-or"}
    with pytest.raises(ConfigError, match="env OPENROUTER_API_KEY"):
        resolve_provider(base_url=OPENROUTER_BASE_URL, base_url_from=PROJECT, env=env)
    # OpenRouter's own URL, chosen with its key, is the user's: allowed.
    config = resolve_provider(env=env)
    assert (config.base_url, config.key_from) == (OPENROUTER_BASE_URL, "env OPENROUTER_API_KEY")


def test_a_project_file_base_url_may_have_its_own_key_or_none() -> None:
    own = resolve_provider(
        api_key="sk-p", api_key_from=PROJECT, base_url=LOCAL, base_url_from=PROJECT
    )
    assert (own.api_key, own.base_url, own.key_from) == ("sk-p", LOCAL, PROJECT.name)
    # No key at all: a local server, sent the placeholder (and not the OpenRouter key).
    none = resolve_provider(base_url=LOCAL, base_url_from=PROJECT, env={"OPENROUTER_API_KEY": "x"})
    assert (none.api_key, none.key_from) == ("not-needed", "")
    # Offline sends nothing anywhere, so nothing to refuse.
    offline = resolve_provider(
        ProviderKind.OFFLINE, base_url=LOCAL, base_url_from=PROJECT, env={"OPENAI_API_KEY": "k"}
    )
    assert offline.kind is ProviderKind.OFFLINE


@pytest.mark.parametrize("url_from", [USER_FILE, Origin(Trust.USER, "env OPENAI_BASE_URL"), None])
def test_the_users_own_base_url_gets_the_users_key(url_from: Origin | None) -> None:
    config = resolve_provider(
        base_url=LOCAL, base_url_from=url_from, env={"OPENAI_API_KEY": "sk-env"}
    )
    assert (config.api_key, config.base_url) == ("sk-env", LOCAL)
    # The project's key may go to the user's server: it is no secret of the user's.
    config = resolve_provider(
        api_key="sk-p", api_key_from=PROJECT, base_url=LOCAL, base_url_from=url_from
    )
    assert config.api_key == "sk-p"


@pytest.mark.parametrize(
    ("url", "timeout"),
    [
        ("http://127.0.0.1:8080/v1", 600.0),
        ("http://localhost:11434/v1", 600.0),
        ("http://192.168.1.20:8000/v1", 600.0),
        ("http://gpu-box.local:8000/v1", 600.0),
        ("https://openrouter.ai/api/v1", 120.0),
        ("https://api.example.com/v1", 120.0),
    ],
)
def test_a_local_server_gets_minutes_for_a_reply(url: str, timeout: float) -> None:
    # A slow local model answered after 2-5 minutes; the 120 s default gave up on it first.
    assert resolve_provider(base_url=url, api_key="k" if "https" in url else None).timeout == (
        timeout
    )
    assert resolve_provider(base_url=url, timeout=30).timeout == 30


def test_the_chapter_limit_never_cuts_a_reply_short() -> None:
    from imaginize.run import chapter_timeout_for

    local = resolve_provider(base_url="http://127.0.0.1:8080/v1")
    assert chapter_timeout_for(local) >= 2 * local.timeout
    hosted = resolve_provider(api_key="sk-test")
    assert chapter_timeout_for(hosted) == 300
    assert chapter_timeout_for(resolve_provider()) == 300  # offline
