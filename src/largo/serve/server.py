"""Running the app of `largo serve` with uvicorn: in the foreground (the command) or on a background thread (the
browser test, the README's screenshot script)."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator

import uvicorn

from largo.errors import LargoError

LOOPBACK = ("localhost",)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in LOOPBACK


def check_port(host: str, port: int) -> None:
    """A one-line LargoError when (host, port) cannot be bound (in use, or not an address of this machine)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise LargoError(f"--host {host!r} is not an address this machine can listen on ({e.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            in_use = e.errno == errno.EADDRINUSE
            why = "is in use; pick another with --port" if in_use else f"cannot be used ({e.strerror})"
            raise LargoError(f"port {port} on {host} {why}") from None


def _config(app, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")


def serve(app, host: str, port: int, log: Callable[[str], None] = print) -> None:
    """Serve until Ctrl-C."""
    check_port(host, port)
    shown = f"[{host}]" if ":" in host else host
    if not is_loopback(host):
        log(f"largo serve: listening on {host}: anyone who can reach this machine on port {port} can use it")
    log(f"largo serve: open http://{shown}:{port}/ (Ctrl-C stops)")
    uvicorn.Server(_config(app, host, port)).run()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def background(app, host: str = "127.0.0.1", port: int | None = None, timeout: float = 30) -> Iterator[str]:
    """Serve `app` on a thread for the duration of the block; yields its base URL."""
    port = port or free_port(host)
    server = uvicorn.Server(_config(app, host, port))
    thread = threading.Thread(target=server.run, name="largo-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
