"""A stand-in for the old LAVA dashboard's XML-RPC API on 127.0.0.1, written from the API table in
``reference/bundle-format/README.md``. It stores bundles and answers each fault:

* HTTP 401 for an unknown user/token, before any XML-RPC is parsed;
* fault 404: the stream does not exist, or is private to someone else;
* fault 403: the caller may not upload to the stream (someone else's personal/team stream);
* fault 409: a bundle with the same content (SHA1) is already stored.

It can be made to misbehave: ``stub.hang = True`` (requests wait until released or stopped),
``stub.fail_next = N`` (the next N requests get HTTP 500). ``stop()`` closes the port (server
down); ``start()`` on the same port brings it back.

Run by hand: ``python tests/dashboard_stub.py --port 8123 --user alice:TOKEN --stream /anonymous/x/``.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import xmlrpc.client
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Stream:
    pathname: str
    owner: str | None = None  # None: anonymous (anyone may upload)
    team: set[str] = field(default_factory=set)
    private: bool = False

    def may_see(self, user: str | None) -> bool:
        return not self.private or user == self.owner or user in self.team

    def may_upload(self, user: str | None) -> bool:
        return self.owner is None and not self.team or user == self.owner or user in self.team


class DashboardStub:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.users: dict[str, str] = {}
        self.streams: dict[str, Stream] = {"/anonymous/": Stream("/anonymous/")}
        self.bundles: dict[str, dict] = {}
        self.requests: list[dict] = []  # method, user, authorization header
        self.hang = False
        self.fail_next = 0
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- control ----------------------------------------------------------------------------
    def add_user(self, user: str, token: str) -> None:
        self.users[user] = token

    def add_stream(self, pathname: str, owner: str | None = None, *, private: bool = False,
                   team: set[str] | None = None) -> None:
        self.streams[pathname] = Stream(pathname, owner, set(team or ()), private)

    def url(self, user: str | None = None) -> str:
        return f"http://{user + '@' if user else ''}127.0.0.1:{self.port}/RPC2/"

    def start(self) -> DashboardStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                stub._handle(self)

        self._release.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> DashboardStub:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the API ----------------------------------------------------------------------------
    def _reply(self, handler: BaseHTTPRequestHandler, code: int, body: bytes,
               ctype: str = "text/xml") -> None:
        handler.send_response(code)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", "0"))
        body = handler.rfile.read(length)
        header = handler.headers.get("Authorization", "")
        with self._lock:
            self.requests.append({"authorization": header, "path": handler.path})
            failing = self.fail_next > 0
            if failing:
                self.fail_next -= 1
        if self.hang:
            self._release.wait(60)
            return
        if failing:
            return self._reply(handler, 500, b"Internal Server Error", "text/plain")
        user = None
        if header:
            try:
                scheme, value = header.split(" ", 1)
                name, token = base64.b64decode(value).decode().split(":", 1)
            except ValueError:
                return self._reply(handler, 401, b"bad Authorization header", "text/plain")
            if scheme != "Basic" or self.users.get(name) != token:
                return self._reply(handler, 401, b"Unauthorized", "text/plain")
            user = name
        try:
            params, method = xmlrpc.client.loads(body)
            result = self._call(method or "", params, user)
            out = xmlrpc.client.dumps((result,), methodresponse=True, allow_none=True)
        except xmlrpc.client.Fault as fault:
            out = xmlrpc.client.dumps(fault, methodresponse=True)
        except Exception as exc:  # a malformed call is a client error in XML-RPC terms
            out = xmlrpc.client.dumps(xmlrpc.client.Fault(400, f"bad request: {exc}"), methodresponse=True)
        with self._lock:
            self.requests[-1]["method"] = method
            self.requests[-1]["user"] = user
        self._reply(handler, 200, out.encode())

    def _stream(self, pathname: str, user: str | None) -> Stream:
        stream = self.streams.get(pathname)
        if stream is None or not stream.may_see(user):
            raise xmlrpc.client.Fault(404, f"Bundle stream {pathname} not found")
        return stream

    def _call(self, method: str, params: tuple, user: str | None) -> object:
        name = method.removeprefix("dashboard.")
        if name == "version":
            return "0.29-stub"
        if name in ("put", "put_ex"):
            content, filename, pathname = params
            stream = self._stream(pathname, user)
            if not stream.may_upload(user):
                raise xmlrpc.client.Fault(403, "You cannot upload to this stream")
            sha1 = hashlib.sha1(content.encode()).hexdigest()
            with self._lock:
                if sha1 in self.bundles:
                    raise xmlrpc.client.Fault(409, f"Duplicate bundle detected: {sha1}")
                self.bundles[sha1] = {"content": content, "content_filename": filename, "stream": pathname,
                                      "uploaded_on": datetime.now(UTC).isoformat(), "user": user}
            if name == "put":
                return sha1
            return f"http://127.0.0.1:{self.port}/dashboard/permalink/bundle/{sha1}/"
        if name == "streams":
            return [{"pathname": s.pathname, "name": "", "user": s.owner or "", "group": "",
                     "bundle_count": sum(b["stream"] == s.pathname for b in self.bundles.values())}
                    for s in self.streams.values() if s.may_see(user)]
        if name == "bundles":
            (pathname,) = params
            self._stream(pathname, user)
            return [{"content_sha1": k, "content_filename": b["content_filename"],
                     "uploaded_on": b["uploaded_on"], "is_deserialized": False}
                    for k, b in self.bundles.items() if b["stream"] == pathname]
        if name == "get":
            (sha1,) = params
            if sha1 not in self.bundles:
                raise xmlrpc.client.Fault(404, f"Bundle {sha1} not found")
            bundle = self.bundles[sha1]
            return {"content": bundle["content"], "content_filename": bundle["content_filename"]}
        if name == "make_stream":
            pathname, _name = params
            if pathname in self.streams:
                raise xmlrpc.client.Fault(409, f"Stream {pathname} already exists")
            parts = pathname.strip("/").split("/")
            if parts[0] == "anonymous":
                self.add_stream(pathname)
            elif len(parts) >= 3 and parts[1] == "personal" and parts[2] == user:
                self.add_stream(pathname, user, private=parts[0] == "private")
            else:
                raise xmlrpc.client.Fault(403, f"You cannot create {pathname}")
            return pathname
        raise xmlrpc.client.Fault(1, f"method {method!r} is not supported")


if __name__ == "__main__":
    import argparse
    import time

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--user", action="append", default=[], help="user:token")
    parser.add_argument("--stream", action="append", default=[])
    ns = parser.parse_args()
    stub = DashboardStub(ns.port)
    for pair in ns.user:
        stub.add_user(*pair.split(":", 1))
    for pathname in ns.stream:
        stub.add_stream(pathname)
    stub.start()
    print(f"dashboard stub on {stub.url()}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stub.stop()
