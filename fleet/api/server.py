"""Serving the API: one uvicorn process, or several sharing the port.

uvicorn's own `workers` share one listening socket, and whichever worker
wakes first accepts every connection waiting: 16 clients connecting at
once could all land on one process while the other idled. Here each worker
gets its own socket bound with `SO_REUSEPORT`, and the kernel spreads new
connections over them. The sockets listen before the workers start, so
connections made while a worker starts wait in its queue.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
from types import FrameType

import uvicorn

__all__ = ["serve"]

APP = "fleet.api:create_app"


def serve(host: str, port: int, *, workers: int = 1, log_level: str = "info") -> int:
    """Serve until stopped (SIGINT or SIGTERM); returns the exit status."""
    if workers == 1:
        uvicorn.run(APP, factory=True, host=host, port=port, log_level=log_level)
        return 0
    context = multiprocessing.get_context("spawn")
    sockets = [_listening(host, port) for _ in range(workers)]
    processes = [
        context.Process(target=_worker, args=(sock, log_level), name=f"fleet-api-{n}")
        for n, sock in enumerate(sockets)
    ]
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.is_alive():
                process.terminate()  # uvicorn shuts down gracefully on SIGTERM

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for process in processes:
            process.start()
        status = 0
        for process in processes:
            process.join()
            if process.exitcode and not stopping:
                status = 1  # one worker failed (a port in use, say): stop the rest
                stop(signal.SIGTERM, None)
        return status
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for sock in sockets:
            sock.close()


def _listening(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _worker(sock: socket.socket, log_level: str) -> None:
    config = uvicorn.Config(APP, factory=True, log_level=log_level)
    uvicorn.Server(config).run(sockets=[sock])
