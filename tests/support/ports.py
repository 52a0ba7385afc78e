"""A free loopback port for a server a test starts in another process."""

from __future__ import annotations

import socket


def free_port() -> int:
    """Bound and released at once: a child process can bind it right after (a small race, fine on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
