"""Listening sockets. With several workers each binds its own socket to the same port (SO_REUSEPORT): the
kernel spreads new connections over them, instead of one busy worker winning every accept on a shared socket."""

from __future__ import annotations

import socket


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def bound_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A socket bound to (host, port), not listening yet (the server calls listen once the app is ready)."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def claim_port(host: str, port: int) -> socket.socket:
    """Fail now if anything else holds the port, then keep it for the workers' sockets.

    The first bind is exclusive (no SO_REUSEPORT), so a port already used by another server, even one that
    also uses SO_REUSEPORT, is an error here rather than connections silently split between two servers.
    The socket returned joins the workers' group but never listens, so no connection is queued on it.
    """
    bound_socket(host, port, reuse_port=False).close()
    return bound_socket(host, port, reuse_port=True)
