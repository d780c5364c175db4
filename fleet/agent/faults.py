"""Fault injection for tests: make one agent process fail the way real networks and hosts do.

Transient faults (503s, latency, connection resets, hangs) act on requests before
they reach the agent's handlers; `unhealthy` makes every health check fail, a
permanent failure. All are off unless switched on (`fleet agent serve --fault-*`,
or `PUT /v1/faults` at run time).
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["FaultMiddleware", "Faults", "ResettableH11Protocol"]


class Faults(BaseModel):
    """Which faults to inject, as rates between 0 and 1."""

    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(0.0, ge=0, le=1, description="Share of requests answered with 503.")
    reset_rate: float = Field(0.0, ge=0, le=1, description="Share of connections reset (RST).")
    hang_rate: float = Field(0.0, ge=0, le=1, description="Share of requests never answered.")
    latency_ms: float = Field(0.0, ge=0, description="Delay added before every request.")
    unhealthy: bool = Field(False, description="Every health check reports unhealthy.")
    seed: int | None = Field(None, description="Seed for reproducible fault sequences.")

    def active(self) -> bool:
        return bool(self.error_rate or self.reset_rate or self.hang_rate or self.latency_ms)


# Connections by peer address, so a request can reset its own TCP connection.
_TRANSPORTS: dict[tuple[str, int], asyncio.Transport] = {}


class ResettableH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, remembering each connection's transport by peer address."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        peer = transport.get_extra_info("peername")
        if peer:
            _TRANSPORTS[(peer[0], peer[1])] = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        if peer:
            _TRANSPORTS.pop((peer[0], peer[1]), None)
        super().connection_lost(exc)


class FaultMiddleware:
    """ASGI middleware that injects the transient faults of `state.faults`."""

    def __init__(self, app: Any, holder: Any) -> None:
        self.app = app
        self.holder = holder  # anything with a `.faults` attribute, read per request
        self._rng = random.Random()
        self._seeded: int | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        faults: Faults = self.holder.faults
        if scope["type"] != "http" or not faults.active() or scope["path"] == "/v1/faults":
            await self.app(scope, receive, send)
            return
        if faults.seed is not None and faults.seed != self._seeded:
            self._rng.seed(faults.seed)
            self._seeded = faults.seed
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        roll = self._rng.random()
        if roll < faults.reset_rate:
            await self._reset(scope)
            return
        roll -= faults.reset_rate
        if roll < faults.hang_rate:
            # Never answer; give up only when the client does.
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        roll -= faults.hang_rate
        if roll < faults.error_rate:
            body = b'{"error":"unavailable","detail":"Injected fault: service unavailable"}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    async def _reset(self, scope: dict[str, Any]) -> None:
        client = scope.get("client")
        transport = _TRANSPORTS.get((client[0], client[1])) if client else None
        if transport is None:
            raise RuntimeError("Injected reset: connection not found")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: close() sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        # Let uvicorn see the connection lost before this app returns, so it sends nothing.
        await asyncio.sleep(0.01)
