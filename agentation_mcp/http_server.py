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
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

log = logging.getLogger("agentation_mcp")


def display_url(host: str, port: int) -> str:
    shown = "localhost" if host in ("127.0.0.1", "::1", "localhost") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket; raises OSError with EADDRINUSE while another process has the port."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    family, _, _, _, address = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Reuse a port still in TIME_WAIT; this never lets two live listeners share it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


def _config() -> Config:
    config = Config()
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 0.5
    config.keep_alive_timeout = 5
    return config


async def serve_http(
    app: Any,
    host: str,
    port: int,
    *,
    retry_interval: float = 1.5,
    suffix: str = "",
    task_status: trio.TaskStatus[bool] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on host:port until cancelled, waiting for the port while another process has it.

    Reports `True` once listening, or `False` when the port was taken at the first try.
    """
    reported = False
    while True:
        try:
            sock = bind_socket(host, port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            if not reported:
                log.warning(
                    "[HTTP] Port %d already in use; MCP over stdio keeps working on the shared store, "
                    "and this process takes the port over once it is free",
                    port,
                )
                task_status.started(False)
                reported = True
            await trio.sleep(retry_interval)
            continue
        config = _config()
        sockets = Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(worker_serve, wrap_app(app, config.wsgi_max_body_size, "asgi"), config, sockets=sockets)
            )
            log.info("[HTTP] Agentation server listening on %s%s", display_url(host, port), suffix)
            if not reported:
                task_status.started(True)
                reported = True
