"""The old dashboard's XML-RPC API over ``requests``: ``dashboard.put_ex(content, job_name, stream)``.

The user name comes from the server URL (``http://alice@host/RPC2/``) and is removed from the
URL; with a token it becomes HTTP basic ``alice:token`` on every call. An endpoint ending in
``/xml-rpc/`` is the deprecated Launch Control one, whose methods have no ``dashboard.`` prefix.
Calls go through `http_post`: no redirect is followed, at most `MAX_RESPONSE` bytes are read.
"""

from __future__ import annotations

import xmlrpc.client
from typing import Any
from urllib.parse import urlsplit

from . import SubmitError, SubmitTarget, http_post, server_text

FAULT_WORDS = {
    401: ("auth", "authentication failed"),
    100: ("auth", "authentication failed"),
    101: ("auth", "the account is blocked"),
    403: ("forbidden", "this user may not upload to the stream"),
    404: ("not-found", "the stream does not exist or is not visible to this user"),
    409: ("duplicate", "the server already has a bundle with identical content"),
}


def split_server(server: str) -> tuple[str, str | None]:
    """``(endpoint URL without user info, user)``; adds the trailing ``/``."""
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https"):
        raise SubmitError(f"server {server!r} is not an http(s) URL", status="rejected")
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return parts._replace(netloc=netloc, path=path).geturl(), parts.username


def call(
    endpoint: str, method: str, params: tuple, *, user: str | None, token: str | None, timeout: float
) -> Any:
    """One XML-RPC call; every failure becomes a classified `SubmitError`."""
    body = xmlrpc.client.dumps(params, methodname=method, allow_none=False).encode("utf-8")
    auth = (user, token) if user and token else None
    code, content = http_post(endpoint, data=body, auth=auth, timeout=timeout, where=endpoint,
                              headers={"Content-Type": "text/xml", "User-Agent": "pytest-lava"})
    who = f"user {user!r}" if user else "an anonymous user (no user@ in the server URL)"
    if code == 401:
        raise SubmitError(f"HTTP 401: the server rejected the token of {who}", status="auth")
    if code >= 500:
        raise SubmitError(f"HTTP {code} from the server", status="server-error", retryable=True, maybe_stored=True)
    if code != 200:
        raise SubmitError(f"HTTP {code} from {endpoint}", status="rejected")
    try:
        (result,), _ = xmlrpc.client.loads(content)
    except xmlrpc.client.Fault as fault:
        status, words = FAULT_WORDS.get(fault.faultCode, ("rejected", "the server refused the call"))
        retry = fault.faultCode >= 500
        raise SubmitError(f"fault {fault.faultCode}: {words} ({server_text(str(fault.faultString))}; {who})",
                          status="server-error" if retry else status, retryable=retry, maybe_stored=retry)
    except Exception as exc:  # not XML-RPC at all
        raise SubmitError(f"the answer is not XML-RPC ({type(exc).__name__}: {server_text(str(exc))})",
                          status="server-error", retryable=True, maybe_stored=True)
    return result


def send(content: bytes, target: SubmitTarget, job_name: str, timeout: float) -> str:
    """``put_ex`` the bundle; returns the permalink URL the server answers."""
    endpoint, user = split_server(target.server)
    if not target.stream:
        raise SubmitError("no stream given (e.g. /anonymous/<name>/)", status="rejected")
    method = "put_ex" if endpoint.endswith("/xml-rpc/") else "dashboard.put_ex"
    return str(call(endpoint, method, (content.decode("utf-8"), job_name or "LAVA Results", target.stream),
                    user=user, token=target.token, timeout=timeout))
