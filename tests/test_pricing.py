"""Cost from the price table."""

from __future__ import annotations

import pytest

from imaginize.analysis.pricing import cost, format_cost, price, total_cost
from imaginize.model import ChapterResult, Usage


def result(model: str, prompt: int, completion: int, provider: str = "openai") -> ChapterResult:
    return ChapterResult(1, "One", 100, provider, model, (), (), Usage(prompt, completion))


def test_known_models_openrouter_ids_snapshots_and_free_variants() -> None:
    assert price("gpt-4o-mini") == (0.15, 0.60)
    assert price("openai/gpt-4o-mini") == (0.15, 0.60)
    assert price("gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert price("gpt-4o-2024-08-06") == (2.50, 10.00)
    assert price("meta-llama/llama-3.3-70b-instruct:free") == (0.0, 0.0)
    assert price("my-local-model") is None


def test_cost_uses_input_and_output_rates() -> None:
    assert cost("gpt-4o-mini", Usage(1_000_000, 1_000_000)) == pytest.approx(0.75)
    assert cost("unknown", Usage(10, 10)) is None


def test_total_skips_offline_and_is_unknown_when_any_model_is() -> None:
    known = [result("gpt-4o-mini", 2_000_000, 0), result("heuristic", 0, 0, "offline")]
    assert total_cost(known) == pytest.approx(0.30)
    assert total_cost([*known, result("llama", 5, 5)]) is None


def test_format() -> None:
    assert format_cost(0.01234) == "$0.0123"
    assert format_cost(12.3) == "$12.30"
