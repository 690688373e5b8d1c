"""What tokens cost, for the models whose prices are known. The one place prices live.

Prices are US dollars per million tokens (input, output), from the providers' public price
lists; a model not listed has no cost shown rather than a guessed one. OpenRouter ids
("openai/gpt-4o-mini") are looked up by their model part; ":free" variants cost nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from imaginize.model import ChapterResult, Usage

# (input, output) USD per 1M tokens.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "gpt-3.5-turbo": (0.50, 1.50),
}


def price(model: str) -> tuple[float, float] | None:
    if model.endswith(":free"):
        return (0.0, 0.0)
    name = model.rsplit("/", 1)[-1].lower()
    if name in PRICES:
        return PRICES[name]
    # Dated snapshots ("gpt-4o-mini-2024-07-18") cost what their family costs.
    for known in sorted(PRICES, key=len, reverse=True):
        if name.startswith(known + "-20"):
            return PRICES[known]
    return None


def cost(model: str, usage: Usage) -> float | None:
    rates = price(model)
    if rates is None:
        return None
    return (usage.prompt_tokens * rates[0] + usage.completion_tokens * rates[1]) / 1_000_000


def total_cost(results: Iterable[ChapterResult]) -> float | None:
    """The cost of these results, or None when any model's price is unknown."""
    total = 0.0
    for result in results:
        if result.provider == "offline":
            continue
        part = cost(result.model, result.usage)
        if part is None:
            return None
        total += part
    return total


def format_cost(dollars: float) -> str:
    return f"${dollars:,.4f}" if dollars < 1 else f"${dollars:,.2f}"
