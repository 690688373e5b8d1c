"""Benchmarks that print figures; see benchmarks/README.md."""
