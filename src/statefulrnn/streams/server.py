"""How `statefulrnn serve` runs its ASGI app: under uvicorn (`uvicorn_config(app, ...)`, the
default) or granian (`run_granian(app, ...)`, `serve --server granian`).

Two settings come from profiling the server under 1,000 one-step HTTP clients (docs/serve.md):

- uvicorn's httptools protocol writes a response's head and its body with two
  `transport.write` calls: two `send` system calls, and two TCP segments that wake the client
  twice. `OneWriteHttpToolsProtocol` hands it a transport that joins every write of one event
  loop turn into one (flushed by `call_soon`, before any close or EOF): one system call per
  response. The client's CPU per request fell from 26 to 16 us with it.
- no `X-Forwarded-*` rewriting (`proxy_headers=False`): nothing here reads the client's
  address, and that middleware cost ~10% of the server's CPU per one-step request.

The subclass uses uvicorn's `HttpToolsProtocol.connection_made` only; if uvicorn, httptools
or that class are not there, uvicorn's own choice ("auto") is used unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast


class OneWriteTransport:
    """A transport whose writes within one event-loop turn reach the socket as one write."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport, self._loop = transport, loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def writelines(self, lines) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # everything else: the real transport's
        return getattr(self._transport, name)


def one_write_protocol() -> type | str:
    """uvicorn's httptools protocol writing once per response, or "auto" without it."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools: uvicorn picks its h11 protocol
        return "auto"

    class OneWriteHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport) -> None:
            # duck-typed: every Transport method it lacks is the real transport's
            one_write = cast(asyncio.Transport, OneWriteTransport(transport, self.loop))
            super().connection_made(one_write)

    return OneWriteHttpToolsProtocol


def uvicorn_config(app, *, host: str, port: int, max_body: int, **kw):
    """The uvicorn.Config `serve` runs (see the module docstring)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=one_write_protocol(),
        log_level="warning",
        access_log=False,
        lifespan="on",
        ws_max_size=max_body,
        proxy_headers=False,
        **kw,
    )


# ----------------------------------------------------------------- granian
# requests granian hands to the app at once (its "backpressure"); the rest wait in its Rust
# side. Above --max-batch and the streams a server holds in flight, so batches are not capped
# by it; each waiting request costs the app a future and a few hundred bytes.
GRANIAN_CONCURRENCY = 16_384
LISTEN_BACKLOG = 2048  # uvicorn's default; 1,000 clients connecting at once fit


def run_granian(app, *, host: str, port: int, max_body: int) -> None:
    """Serve `app` (ASGI, with lifespan) with granian's embedded server in this process.

    Why offer granian: its HTTP/1.1 and WebSocket I/O and parsing run in Rust threads outside
    the GIL, so the Python thread runs only the app; under uvicorn the one Python thread also
    does every socket read, parse and write. Measured (docs/serve.md): one-step HTTP requests
    from 1,000 clients 7-27% faster, but one-step WebSocket messages 1.6-2.7x slower (each
    `send` is awaited across threads, one message at a time per connection: our reading)
    and a lone request's latency +0.1-0.3 ms, so uvicorn stays the default. Embedded, not
    granian's worker processes: the app (model, SQLite store and its lock) lives in the
    process `serve` started, so a SIGKILL of it ends everything at once (no orphan worker
    holding the store's lock) and the store's one-writer rule holds. SIGINT and SIGTERM stop
    it gracefully (the lifespan closes the store). `max_body` is enforced by the app per body
    and per WebSocket message.
    """
    import signal

    from granian.constants import HTTPModes, Interfaces
    from granian.server.embed import Server

    del max_body  # enforced by the app (read_body, and each WebSocket message)
    # granian's own log lines (only errors: the embedded server warns at each start that it
    # is "experimental") go to stderr, beside ours; stdout stays free
    log_config = {
        "handlers": {
            "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
            "access": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
        }
    }

    async def main() -> None:
        server = Server(
            app,
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            http=HTTPModes.http1,
            websockets=True,
            backlog=LISTEN_BACKLOG,
            backpressure=GRANIAN_CONCURRENCY,
            log_level="error",  # type: ignore[arg-type]  # a LogLevels value
            log_dictconfig=log_config,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.stop)
        await server.serve()

    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows: the plain loop
        asyncio.run(main())
    else:
        uvloop.run(main())
