"""Ports on loopback: is one free for a server, and which to use when it is not.

"Free" means free *for a server*: a port is tested by binding it with
``SO_REUSEADDR``, as Mosquitto, PostgreSQL and uvicorn bind their listeners, and
never by connecting.  On Linux a socket with ``SO_REUSEADDR`` may bind a port that
only old connections still use (``TIME_WAIT``, left for a minute by every
connection the server closed), and is refused only while another socket listens
there (socket(7)).  Without it, every restart would find its own port "taken" for
a minute and move, and devices configured with the old port could not come back.
"""

from __future__ import annotations

import socket


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` now (nobody else listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """``preferred`` when nobody listens there, else a port the kernel picks."""
    if preferred and port_is_free(preferred, host):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
