"""Serving a stand-in's ASGI app over real HTTP on loopback, in a background thread.

One place for what every stand-in needs: a socket bound before serving (so the
port is known up front), TCP_NODELAY (asyncio sets it only on sockets created
with ``IPPROTO_TCP``; without it every answer waits ~40 ms for a delayed ACK),
h11 (whose dropped connections emulate lost responses), and a clean stop.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, ClassVar, Self

import uvicorn

__all__ = ["BackgroundServer", "ServedStandIn"]


class BackgroundServer:
    """An ASGI app served by uvicorn on ``host:port`` (0: any free port)."""

    def __init__(
        self,
        app: Any,
        *,
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        graceful: float = 2.0,
    ) -> None:
        self.app = app
        self.name = name
        self.host = host
        self.port = port
        self.graceful = graceful
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> int:
        """Serve until :meth:`stop`; returns the port."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            self.app,
            log_level="critical",  # a lost response is an "exception" uvicorn would log
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
            timeout_graceful_shutdown=int(max(1, self.graceful)),
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=self.name, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {self.name} did not start")
            time.sleep(0.01)
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = None
        self._thread = None
        self._socket = None


class ServedStandIn:
    """What every stand-in served by a :class:`BackgroundServer` shares.

    A subclass sets ``host``, ``_served`` and ``_port = None`` in its constructor.
    """

    #: What follows the server's address in :attr:`url` (Harvest's ``/v2``).
    url_path: ClassVar[str] = ""
    host: str
    _served: BackgroundServer
    _port: int | None

    def start(self) -> Self:
        self._port = self._served.start()
        return self

    def stop(self) -> None:
        self._served.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The API base to give a client, where the vendor's own host would go."""
        if self._port is None:
            raise RuntimeError(f"the {self._served.name} is not started")
        return f"http://{self.host}:{self._port}{self.url_path}"
