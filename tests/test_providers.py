"""Choosing the provider from options and the environment."""

from __future__ import annotations

import pytest

from imaginize.errors import ConfigError
from imaginize.providers import (
    DEFAULT_OPENAI_MODEL,
    DEFAULT_OPENROUTER_MODEL,
    OPENROUTER_BASE_URL,
    ProviderKind,
    resolve_provider,
)

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
