"""imaginize: EPUB in, illustration guides out."""

__version__ = "0.1.0"
