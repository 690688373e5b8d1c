"""imaginize: EPUB in, illustration guides out.

The library API is `imaginize.analyze_book` (see `imaginize.api`); the command line is a thin
layer over it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "analyze_book"]

if TYPE_CHECKING:
    from imaginize.api import analyze_book


def __getattr__(name: str) -> Any:
    # Imported on first use: `import imaginize` alone stays light.
    if name == "analyze_book":
        from imaginize.api import analyze_book

        return analyze_book
    raise AttributeError(name)
