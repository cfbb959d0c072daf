"""The uvicorn side of the server: its limits, a header-read timeout, and ``serve``.

uvicorn closes idle keep-alive connections, but a client that connects and sends a partial
request head (or nothing) is held forever, and httptools does not bound the size of a head.
``GuardedHttpToolsProtocol`` closes a connection whose head is not complete within
``header_timeout_s`` and answers 431 to a head over ``max_header_bytes``; the body has its own
timeout in the app (408), where the request can still be answered.
"""
from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from toollat.budget import MemoryBudget
from toollat.core.settings import settings


@dataclass(frozen=True)
class ServerLimits:
    """What one request, and one connection, may cost the server (``conf/serving/default.yaml``'s
    ``limits``, whose values these defaults are)."""

    max_body_bytes: int = 16 * 1024 * 1024
    max_calls: int = 10_000           # calls in one predict request (413 beyond)
    max_observations: int = 10_000    # observations in one observe request (413 beyond)
    max_new_texts: int = 256          # calls per request whose text this server has not seen (each needs the embedding model)
    max_inflight: int = 32            # requests reading their body, waiting for or doing model work; beyond: 429
    model_threads: int = 2            # worker threads for parsing, validating and the model (off the event loop)
    inline_bytes: int = 4096          # a body this small is answered on the event loop while no thread works: a thread hop costs more than one call's prediction
    header_timeout_s: float = 10.0    # a request head must arrive within this
    body_timeout_s: float = 30.0      # and its body within this (408)
    max_header_bytes: int = 64 * 1024
    keep_alive_s: int = 5             # idle keep-alive connections are closed after this
    validate_chunk: int = 256         # list items validated per step (one pydantic call holds the GIL throughout)

    def __post_init__(self):
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"ServerLimits.{name} must be positive, got {value!r}")


@dataclass(frozen=True)
class ServingConfig:
    """A serving process's settings: the memory budget and the request limits."""

    memory: MemoryBudget
    limits: ServerLimits

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ServingConfig":
        d = dict(d or {})
        unknown = sorted(set(d) - {"memory", "limits"})
        if unknown:
            raise ValueError(f"unknown serving settings {unknown}; known: ['limits', 'memory']")
        return cls(MemoryBudget.from_dict(d.get("memory")), settings(ServerLimits, d.get("limits"), "serving limits"))

    @classmethod
    def load(cls, path: str | Path | None = None) -> "ServingConfig":
        """``path``, else the checkout's ``conf/serving/default.yaml``, else the defaults (the same values)."""
        from toollat.paths import REPO_ROOT, in_checkout

        if path is None and in_checkout():
            path = REPO_ROOT / "conf" / "serving" / "default.yaml"
        if path is None:
            return cls(MemoryBudget(), ServerLimits())
        from omegaconf import OmegaConf

        return cls.from_dict(OmegaConf.to_container(OmegaConf.load(Path(path)), resolve=True))


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """httptools with a deadline and a size bound on each request head."""

    limits = ServerLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._awaiting_head = False
        self._await_head()

    def _await_head(self) -> None:
        if getattr(self, "_awaiting_head", False):
            return  # the head that is arriving keeps its deadline and its byte count
        self._awaiting_head = True
        self._head_bytes = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timeout)

    def _head_done(self) -> None:
        self._awaiting_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._awaiting_head and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # on_headers_complete ran inside the parse if the head ended in this data
        if self._awaiting_head and self._head_bytes > self.limits.max_header_bytes and not self.transport.is_closing():
            self._head_done()
            msg = b"request head too large"
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(msg), msg))
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._await_head()  # the next request on a keep-alive connection gets the same deadline

    def on_headers_complete(self) -> None:
        self._head_done()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)


def protocol_for(limits: ServerLimits) -> type[GuardedHttpToolsProtocol]:
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


def server_config(app, host: str, port: int, limits: ServerLimits, log_level: str = "info",
                  loop: str = "auto") -> uvicorn.Config:
    """The uvicorn configuration ``serve`` uses (tests start the same one in a thread)."""
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, loop=loop,
                          http=protocol_for(limits), timeout_keep_alive=limits.keep_alive_s,
                          server_header=False, workers=1)


def run(app, host: str, port: int, limits: ServerLimits, log_level: str = "info") -> None:
    import gc

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Model work runs in threads; a shorter GIL switch interval lets the event loop answer sooner.
    sys.setswitchinterval(0.001)
    # What is loaded by now (the model, torch, MiniLM: ~130,000 tracked objects) lives as long as
    # the process, yet every full collection walked it all, ~110 ms holding the GIL, and /healthz
    # waited: frozen, a collection walks only what requests made.
    gc.collect()
    gc.freeze()
    uvicorn.Server(server_config(app, host, port, limits, log_level, loop="uvloop")).run()
