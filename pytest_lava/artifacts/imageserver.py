"""The harness's own HTTP server: serves prepared artifacts to boards, on 127.0.0.1 only.

Boards fetch what a deploy prepared (decompressed tarballs, a rebuilt hwpack, partition
contents) from ``http://<device.host_address>:<port>/<token>/<name>``. QEMU user networking maps
10.0.2.2 to the host's 127.0.0.1; a real lab sets ``host_address`` to the dispatcher's address
as the boards see it, and ``extra.image_server_bind`` / ``extra.image_server_port`` when the server
must listen elsewhere (the default is loopback, an ephemeral port).

Only files that were published are served, each under an unguessable token (never a directory
listing, never a path from the request). One server per process (an xdist worker), started on
first use, stopped at exit. Every connection has a socket timeout (:data:`CLIENT_TIMEOUT`): a
client that sends nothing, or stops reading, is disconnected instead of holding a thread.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

CLIENT_TIMEOUT = 60.0  # seconds a connection may stay silent (no request byte, no read progress)


@dataclass(frozen=True)
class Published:
    token: str
    name: str
    path: Path

    @property
    def url_path(self) -> str:
        return f"/{self.token}/{self.name}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server  # type: ignore[assignment]
    protocol_version = "HTTP/1.0"

    def setup(self) -> None:
        self.timeout = self.server.client_timeout  # StreamRequestHandler applies it to the socket
        super().setup()

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        item = self.server.files.get(path)
        if item is None or not item.path.is_file():
            self.send_error(404, "not published")
            return
        size = item.path.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if not body:
            return
        try:
            with open(item.path, "rb") as f:
                shutil.copyfileobj(f, self.wfile, 1 << 20)
            self.server.served[path] = self.server.served.get(path, 0) + 1
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the client went away or stopped reading

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base class name
        pass  # the board log shows the board's side; keep pytest's output clean


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], client_timeout: float = CLIENT_TIMEOUT) -> None:
        super().__init__(address, _Handler)
        self.client_timeout = client_timeout
        self.files: dict[str, Published] = {}
        self.served: dict[str, int] = {}


class ImageServer:
    """Publish files for boards to fetch over HTTP."""

    def __init__(self, bind: str = "127.0.0.1", port: int = 0, *, client_timeout: float = CLIENT_TIMEOUT) -> None:
        self._server = _Server((bind, port), client_timeout)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="lava-image-server", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def bind(self) -> str:
        return str(self._server.server_address[0])

    def publish(self, path: Path, name: str | None = None) -> Published:
        item = Published(secrets.token_hex(8), name or path.name, Path(path))
        self._server.files[item.url_path] = item
        return item

    def unpublish(self, item: Published) -> None:
        self._server.files.pop(item.url_path, None)

    def url(self, item: Published, host: str) -> str:
        return f"http://{host}:{self.port}{item.url_path}"

    def served(self, item: Published) -> int:
        """How many complete GETs of ``item`` were answered."""
        return self._server.served.get(item.url_path, 0)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


_lock = threading.Lock()
_servers: dict[tuple[str, int], ImageServer] = {}
_owner = os.getpid()


def image_server(bind: str = "127.0.0.1", port: int = 0) -> ImageServer:
    """The process's image server for ``(bind, port)`` (started on first use)."""
    global _owner
    with _lock:
        if _owner != os.getpid():  # forked: the parent's threads did not come along
            _servers.clear()
            _owner = os.getpid()
        server = _servers.get((bind, port))
        if server is None:
            server = _servers[(bind, port)] = ImageServer(bind, port)
        return server


def _stop_all() -> None:
    with _lock:
        for server in _servers.values():
            server.close()
        _servers.clear()


atexit.register(_stop_all)
