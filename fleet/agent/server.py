"""Run the agent: bind the port, then serve the API with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import httpx
import uvicorn

from fleet.agent.errors import AgentConfigError
from fleet.agent.faults import Faults, ResettableH11Protocol
from fleet.agent.host import INSTANCES_DIR, AgentHost
from fleet.agent.installation import DEFAULT_KEEP, Installation
from fleet.agent.service import AgentState, create_app

__all__ = ["QuietServer", "read_token", "serve"]


class QuietServer(uvicorn.Server):
    """uvicorn's server, waking once a second when idle instead of ten times.

    uvicorn's main loop wakes every 0.1 s to refresh its `Date` header (once a
    second) and to notice a shutdown request. An agent is idle nearly all the
    time, and a host may run many: 200 idle agents used about a quarter of a
    core for those wake-ups alone. This loop wakes once a second, which keeps
    the header as fresh, and at once when a shutdown signal arrives.
    """

    tick_seconds = 1.0

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        # uvicorn refreshes the header when counter % 10 == 0: every tick here.
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick_seconds)
            should_exit = await self.on_tick(counter)


def read_token(path: Path) -> str:
    """The token in `path` (surrounding whitespace removed); it must not be empty."""
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise AgentConfigError(f"Cannot read token file {str(path)!r}: {exc.strerror}") from None
    if not token:
        raise AgentConfigError(f"Token file {str(path)!r} is empty")
    return token


def serve(
    *,
    root: Path,
    token: str,
    host: str = "127.0.0.1",
    port: int = 0,
    port_file: Path | None = None,
    keep: int = DEFAULT_KEEP,
    faults: Faults | None = None,
    component_delay: float = 0.0,
    multi_instance: bool = False,
    instances: Sequence[str] = (),
) -> None:
    """Serve the agent until interrupted: the installation under `root`, or with
    `multi_instance` the instances under `root/instances/` (`instances` created first)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # The download client is built now, not on the first apply: its TLS set-up costs ~150 ms.
    http = httpx.Client(timeout=30.0, follow_redirects=True)
    served: Installation | AgentHost
    if multi_instance:
        _check_root_kind(root, multi_instance=True)
        agent_host = AgentHost(root, keep=keep, component_delay=component_delay, http=http)
        created = agent_host.create_all(instances)
        agent_host.recover()
        served = agent_host
        what = f"{len(agent_host)} instances ({created} new) under {agent_host.instances_dir}"
    else:
        _check_root_kind(root, multi_instance=False)
        installation = Installation(root, keep=keep, component_delay=component_delay, http=http)
        installation.recover()
        served = installation
        what = str(installation.root)
    app = create_app(AgentState(served, token, faults))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then, and
    # without it every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise AgentConfigError(f"Cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(256)
    if port_file is not None:
        tmp = port_file.with_name(port_file.name + ".tmp")
        tmp.write_text(str(sock.getsockname()[1]))
        tmp.replace(port_file)
    config = uvicorn.Config(
        app,
        http=ResettableH11Protocol,
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    logging.getLogger("fleet.agent").info(
        "agent serving %s on %s:%s", what, host, sock.getsockname()[1]
    )
    QuietServer(config).run(sockets=[sock])


def _check_root_kind(root: Path, *, multi_instance: bool) -> None:
    """Refuse to serve a host's root as one installation, or an installation as a host:
    either would mix one customer's releases with another's directories."""
    if multi_instance and ((root / "current").is_symlink() or (root / "releases").is_dir()):
        raise AgentConfigError(
            f"{str(root)!r} holds a single installation: serve it without --multi-instance, "
            "or give the host another root"
        )
    if not multi_instance and (root / INSTANCES_DIR).is_dir():
        raise AgentConfigError(
            f"{str(root)!r} holds a many-instance host ({INSTANCES_DIR}/): serve it with "
            "--multi-instance"
        )
