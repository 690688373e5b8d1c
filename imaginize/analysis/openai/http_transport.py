"""The HTTP transport under the `openai` client: httpx's own, with connections that abandoned
work can shut.

Work given up on (its chapter past `--chapter-timeout`, its claim taken over; see `cancel`)
runs on in its thread, blocked reading a reply that may take minutes. Each connection, when
a request is written on it, registers with that work (`cancel.guard`); cancelling the work
shuts the socket down, so the read returns at once, the server sees the connection closed
and stops working for nobody, and the connection is not reused.

Limits: httpx offers no public hook for this, so the pool's network backend is wrapped after
the transport is built (`_pool._network_backend`, stable across httpx releases; a transport
without them is returned unwrapped, and only loses the early shut). Requests through a proxy
from the environment use httpx's proxy transports and are not shut early either.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable
from contextlib import suppress
from typing import Any

import httpcore2
import httpx2
import openai

from imaginize import cancel


class _Stream(httpcore2.NetworkStream):
    def __init__(self, inner: httpcore2.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # Every request starts with a write, in the thread of the work it is for.
        cancel.guard(self.shut)
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    def shut(self) -> None:
        """From another thread: close() would neither wake a blocked read nor send a FIN
        (the read holds the socket open); shutdown does both. The plain socket's shutdown,
        not SSLSocket's, which also drops the TLS object under the reading thread."""
        sock = self._inner.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            with suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Backend(httpcore2.NetworkBackend):
    def __init__(self, inner: httpcore2.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        return _Stream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        return _Stream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def transport() -> httpx2.HTTPTransport:
    """httpx's transport with the `openai` SDK's connection limits, its connections shut when
    the work they carry a request for is cancelled."""
    built = httpx2.HTTPTransport(limits=openai.DEFAULT_CONNECTION_LIMITS)
    pool = getattr(built, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore2.NetworkBackend):
        pool._network_backend = _Backend(backend)  # type: ignore[union-attr]
    return built
