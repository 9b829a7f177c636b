"""Bind the dashboard's socket and serve the app with uvicorn.

The socket is bound before uvicorn starts, so ``--port 0`` has a real port to print and a
port in use is one line, not a traceback from inside the server.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any


class BindError(Exception):
    """The address cannot be listened on; the message says why and what to do."""


def bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise BindError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == 98:  # EADDRINUSE
            raise BindError(
                f"port {port} on {host} is in use; pick another with --port (0 picks a free one)"
            ) from None
        raise BindError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def is_loopback(sock: socket.socket) -> bool:
    return ipaddress.ip_address(sock.getsockname()[0]).is_loopback


def url(sock: socket.socket, token: str) -> str:
    """The address to open: a wildcard bind is reached here as 127.0.0.1."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/?token={token}"


def serve(app: Any, sock: socket.socket) -> None:
    """Serve until Ctrl-C (uvicorn handles SIGINT/SIGTERM and shuts down gracefully)."""
    make_server(app).run(sockets=[sock])


def make_server(app: Any) -> Any:  # -> uvicorn.Server
    import uvicorn

    config = uvicorn.Config(
        app,
        http="h11",
        ws="none",
        loop="asyncio",
        lifespan="on",
        log_level="warning",
        access_log=False,  # request lines carry the token in event-stream URLs
        timeout_graceful_shutdown=2,  # open event streams would hold a shutdown forever
    )
    return uvicorn.Server(config)
