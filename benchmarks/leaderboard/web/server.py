"""Serving the app with uvicorn, with a deadline for each request's line and headers.

uvicorn arms no timer on a new connection, and its keep-alive timer restarts on every byte, so a
client that sends its headers a byte at a time (or nothing) holds a connection, and a slot of the
server, for ever. `HeaderDeadlineProtocol` closes a connection whose request headers are not all in
within `WebSettings.header_deadline_s` of its opening or of the previous response, answering 408.
The body that follows is bounded by the request timeout (`limits.TimeoutMiddleware`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from benchmarks.leaderboard.settings import WebSettings

_TIMEOUT_BODY = b"request headers not received in time\n"
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\nconnection: close\r\n\r\n" + _TIMEOUT_BODY
)


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for the headers of each request on a connection."""

    header_deadline_s: float = WebSettings().header_deadline_s

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._awaiting_headers():
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._awaiting_headers():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _awaiting_headers(self) -> bool:
        return self.conn.their_state is h11.IDLE and not self.transport.is_closing()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_deadline_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self._awaiting_headers():
            return
        self.logger.info(
            "closing a connection whose request headers took over %.1f s", self.header_deadline_s
        )
        if self.conn.our_state is h11.IDLE:
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def header_deadline_protocol(seconds: float) -> type[HeaderDeadlineProtocol]:
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_deadline_s": float(seconds)})


def server_config(app: Any, settings: WebSettings, *, host: str = "127.0.0.1", port: int = 8000,
                  log_level: str = "info") -> uvicorn.Config:  # fmt: skip
    """The uvicorn configuration of `leaderboard serve` (and of the tests' live server)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=header_deadline_protocol(settings.header_deadline_s),
    )
