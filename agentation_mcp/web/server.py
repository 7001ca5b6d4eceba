"""Serving the HTTP API on its port, and taking the port over when its owner leaves.

Several server processes share one store, but only one can own the port.
The others log that the port is taken, keep serving MCP over stdio on the
shared store, and try to bind again every `retry_interval` seconds; when
the owner exits, one of them binds within that interval. No state is
handed over: it is all in the store.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from functools import partial

import trio

from ..config import display_url
from .wire import Handler, HttpLimits, serve_connection

log = logging.getLogger("agentation_mcp")

MAX_CONNECTIONS = 1024
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b'content-length: 44\r\n\r\n{"error":"Too many connections; retry soon"}'
)


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket; raises OSError with EADDRINUSE while another process has the port."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    family, _, _, _, address = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Reuse a port still in TIME_WAIT; this never lets two live listeners share it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


class _Connections:
    """Serves each accepted connection, up to `limit` at once; past that, a 503 and close."""

    def __init__(self, handler: Handler, limits: HttpLimits, limit: int) -> None:
        self.handler = handler
        self.limits = limits
        self.limit = limit
        self.open = 0

    async def __call__(self, stream: trio.SocketStream) -> None:
        if self.open >= self.limit:
            with trio.move_on_after(1):
                try:
                    await stream.send_all(_BUSY)
                except trio.BrokenResourceError:
                    pass
            await trio.aclose_forcefully(stream)
            return
        self.open += 1
        try:
            await serve_connection(stream, self.handler, self.limits)
        finally:
            self.open -= 1


async def serve_http(
    handler: Handler,
    host: str,
    port: int,
    *,
    limits: HttpLimits | None = None,
    max_connections: int = MAX_CONNECTIONS,
    retry_interval: float = 1.5,
    suffix: str = "",
    owner: Callable[[bool, int | None], None] | None = None,
    task_status: trio.TaskStatus[int | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `handler` on host:port until cancelled, waiting for the port while another process has it.

    Reports the port it listens on (useful with port 0), or None when the
    first try failed: the port was taken, or the address cannot be bound
    (not on this machine, a name that does not resolve, a port the process
    may not use). Either way it logs one line and keeps trying. `owner` is
    told when this process starts listening (True and the port) and stops.
    """
    reported = False
    while True:
        try:
            sock = bind_socket(host, port)
        except OSError as exc:
            if not reported:
                if exc.errno == errno.EADDRINUSE:
                    log.warning(
                        "[HTTP] Port %d already in use; MCP over stdio keeps working on the shared store, "
                        "and this process takes the port over once it is free",
                        port,
                    )
                else:
                    log.error(
                        "[HTTP] Cannot serve HTTP on %s port %d (%s); MCP over stdio keeps working, "
                        "and this process tries again every %g s",
                        host,
                        port,
                        exc.strerror or exc,
                        retry_interval,
                    )
                task_status.started(None)
                reported = True
            await trio.sleep(retry_interval)
            continue
        bound: int = sock.getsockname()[1]
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        connections = _Connections(handler, limits or HttpLimits(), max_connections)
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(trio.serve_listeners, connections, [listener]))
            log.info("[HTTP] Agentation server listening on %s%s", display_url(host, bound), suffix)
            if owner is not None:
                owner(True, bound)
            if not reported:
                task_status.started(bound)
                reported = True
