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
# The Batch API's prices (--batch-api): half of the above for every model listed there.
BATCH_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.075, 0.30),
    "gpt-4o": (1.25, 5.00),
    "gpt-4.1": (1.00, 4.00),
    "gpt-4.1-mini": (0.20, 0.80),
    "gpt-4.1-nano": (0.05, 0.20),
    "gpt-5": (0.625, 5.00),
    "gpt-5-mini": (0.125, 1.00),
    "gpt-5-nano": (0.025, 0.20),
    "o3-mini": (0.55, 2.20),
    "o4-mini": (0.55, 2.20),
    "gpt-3.5-turbo": (0.25, 0.75),
}


def price(model: str, *, batch: bool = False) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens; `batch`: through the Batch API."""
    if model.endswith(":free"):
        return (0.0, 0.0)
    table = BATCH_PRICES if batch else PRICES
    name = model.rsplit("/", 1)[-1].lower()
    if name in table:
        return table[name]
    # Dated snapshots ("gpt-4o-mini-2024-07-18") cost what their family costs.
    for known in sorted(table, key=len, reverse=True):
        if name.startswith(known + "-20"):
            return table[known]
    return None


def cost(model: str, usage: Usage, *, batch: bool = False) -> float | None:
    rates = price(model, batch=batch)
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
