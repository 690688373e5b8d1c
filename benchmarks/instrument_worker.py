"""Imported by the launcher's forkserver (appended to `launcher.PRELOAD` by
`python -m benchmarks.instrument cli`): patches the worker side there, so every worker forked
from it records its timings. See benchmarks/instrument.py."""

from benchmarks.instrument import install_in_forkserver

install_in_forkserver()
