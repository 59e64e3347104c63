"""Sending a bundle to a results server, without ever losing it.

Two sinks, chosen by the URL scheme of ``server`` (or an explicit ``kind``):

* ``http(s)://[user@]host/RPC2/`` — the old dashboard, XML-RPC ``dashboard.put_ex`` (`xmlrpc`);
* ``squad+http(s)://host/<group>/<project>[/<build>[/<environment>]]`` — SQUAD (`squad`).

`submit_bundle` retries connection errors, timeouts and 5xx answers with back-off, all within the
caller's ``timeout``; it raises nothing for expected failures and returns a `SubmitOutcome`. A bundle
that was not delivered is copied into the spool (`spool`) with its target minus the token, for
``python -m pytest_lava resubmit DIR``. Every message is masked: the token never reaches a log.

Both sinks send through `http_post`, which never follows a redirect (a ``3xx`` is a failed
submit: following it would report "delivered" when the server stored nothing, and would carry
the token to whatever host the answer names) and reads at most `MAX_RESPONSE` bytes of an answer.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from ..core.errors import LavaError
from ..core.secrets import Masker

TOKEN_ENV = "LAVA_TOKEN"
KINDS = ("xmlrpc", "squad")
MAX_RESPONSE = 1 << 20  # bytes of a server's answer that are read; a bigger answer is a failed submit
_CHUNK = 64 * 1024


class SubmitError(LavaError):
    """One failed delivery attempt, classified."""

    kind = "infrastructure"

    def __init__(
        self, message: str, *, status: str, retryable: bool = False, maybe_stored: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status  # unreachable | timeout | server-error | auth | forbidden | not-found
        #                       | duplicate | rejected | redirected
        self.retryable = retryable
        self.maybe_stored = maybe_stored  # the server may have stored it before failing


@dataclass
class SubmitTarget:
    server: str
    stream: str | None = None
    token: str | None = None
    kind: str | None = None  # xmlrpc | squad; None: from the URL scheme
    build: str | None = None  # SQUAD only: overrides the URL / the job name
    environment: str | None = None  # SQUAD only: overrides the URL / the device type

    def __post_init__(self) -> None:
        if self.kind is None:
            self.kind = "squad" if urlsplit(self.server).scheme.startswith("squad+") else "xmlrpc"
        if self.kind not in KINDS:
            raise ValueError(f"unknown submit kind {self.kind!r} (known: {', '.join(KINDS)})")
        parts = urlsplit(self.server)
        if parts.password:  # a token written into the URL: take it out of the URL
            self.token = self.token or parts.password
            netloc = f"{parts.username}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
            self.server = parts._replace(netloc=netloc).geturl()

    def public(self) -> dict:
        """The target without its token (what the spool and the logs may hold)."""
        return {
            "server": self.server,
            "stream": self.stream,
            "kind": self.kind,
            "build": self.build,
            "environment": self.environment,
        }


@dataclass
class SubmitOutcome:
    ok: bool
    status: str  # delivered | duplicate | <SubmitError.status>
    message: str
    url: str | None = None
    spooled: Path | None = None
    attempts: int = 0

    def __str__(self) -> str:
        return self.message


def resolve_token(
    job_token: str | None,
    option_token: str | None,
    env_var: str = TOKEN_ENV,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The token to use: the command-line option, else the job's ``token`` parameter, else the
    environment variable. When a user's option overrides the job's *server*, the plugin should
    pass ``job_token=None`` so a job's token is never sent to another server."""
    environ = os.environ if environ is None else environ
    for candidate in (option_token, job_token, environ.get(env_var)):
        if candidate:
            return candidate.strip()
    return None


def http_post(url: str, *, timeout: float, where: str, **kwargs: Any) -> tuple[int, bytes]:
    """POST ``url`` (``kwargs`` go to ``requests.post``); returns ``(status code, body)``.

    Never follows a redirect: a ``3xx`` raises a `SubmitError` (status ``redirected``) naming the
    host the answer points to, never its user info, path or query. The body is read in chunks, at
    most `MAX_RESPONSE` bytes, and within ``timeout`` seconds in all (a server that trickles its
    answer cannot hold the submit). ``where`` names the server in messages."""
    import requests

    deadline = time.monotonic() + timeout
    headers = dict(kwargs.pop("headers", None) or {})
    headers.setdefault("Accept-Encoding", "identity")  # the cap counts the bytes that are kept
    try:
        response = requests.post(url, headers=headers, timeout=(timeout, timeout), allow_redirects=False,
                                 stream=True, **kwargs)
    except requests.Timeout as exc:
        raise SubmitError(f"no answer within {timeout:.1f}s ({type(exc).__name__})", status="timeout",
                          retryable=True, maybe_stored=True) from None
    except requests.ConnectionError as exc:
        raise SubmitError(f"cannot connect to {where} ({_reason(exc)})", status="unreachable",
                          retryable=True) from None
    except requests.RequestException as exc:
        raise SubmitError(f"HTTP request to {where} failed ({type(exc).__name__})", status="unreachable",
                          retryable=True) from None
    with response:
        code = response.status_code
        if 300 <= code < 400:
            raise SubmitError(
                f"HTTP {code}: {where} redirects to {_location_host(url, response.headers.get('Location'))}; "
                "a redirect is never followed (the bundle would not be stored, and the token could go to "
                "another server): give the server's final URL", status="redirected")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_RESPONSE:
            raise _too_big(code, where)
        body = bytearray()
        try:
            for chunk in response.iter_content(_CHUNK):
                body += chunk
                if len(body) > MAX_RESPONSE:
                    raise _too_big(code, where)
                if time.monotonic() > deadline:
                    raise SubmitError(f"the answer of {where} did not end within {timeout:.1f}s",
                                      status="timeout", retryable=True, maybe_stored=True)
        except requests.RequestException as exc:
            raise SubmitError(f"the answer of {where} broke off ({type(exc).__name__})", status="timeout",
                              retryable=True, maybe_stored=True) from None
    return code, bytes(body)


def server_text(text: str | bytes, limit: int = 300) -> str:
    """Text a server sent, for a message: at most ``limit`` characters, control characters (a
    terminal escape, a fake log line) shown as ``?``."""
    if isinstance(text, bytes):
        text = text[: limit * 4].decode("utf-8", "replace")
    text = text.strip()[:limit]
    return "".join(c if c.isprintable() else "?" for c in text)


def _too_big(code: int, where: str) -> SubmitError:
    # the server may have stored the bundle before answering like this: never retried, spooled
    return SubmitError(f"HTTP {code}: the answer of {where} is larger than {MAX_RESPONSE // 1024} KiB; "
                       "not read (is this the results server?)", status="server-error", maybe_stored=True)


_HOST_SHOWN = re.compile(r"[^A-Za-z0-9.:\[\]_-]")


def _location_host(url: str, location: str | None) -> str:
    """The host (and port) a redirect points to, for a message: no user info, path or query."""
    if not location:
        return "nowhere (no Location header)"
    try:
        parts = urlsplit(urljoin(url, location.strip()))
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "an invalid Location"
    if not host:
        return "an invalid Location"
    shown = _HOST_SHOWN.sub("?", host)[:100] + (f":{port}" if port else "")
    same = urlsplit(url)
    if (host, port) == (same.hostname, same.port):
        shown += f" (the same host, {parts.scheme or 'same scheme'})"
    return shown


def _reason(exc: Exception) -> str:
    text = str(exc)
    for word in ("Connection refused", "Name or service not known", "timed out", "reset"):
        if word in text:
            return word
    return type(exc).__name__


def _sayer(log: Callable[[str], None], mask: Masker, masker: Masker | None) -> Callable[[str], None]:
    def say(text: str) -> None:
        log(mask.mask(masker.mask(text) if masker else text))

    return say


Sender = Callable[[bytes, SubmitTarget, str, float], str]


def _sender(kind: str) -> Sender:
    if kind == "squad":
        from .squad import send
    else:
        from .xmlrpc import send
    return send


def deliver(
    content: bytes,
    target: SubmitTarget,
    *,
    job_name: str,
    timeout: float,
    retries: int = 3,
    log: Callable[[str], None] = print,
    masker: Masker | None = None,
    backoff: float = 1.0,
) -> SubmitOutcome:
    """Try to deliver ``content``; no spooling. All attempts end before ``timeout`` seconds."""
    mask = Masker([target.token])
    say = _sayer(log, mask, masker)
    send = _sender(str(target.kind))
    deadline = time.monotonic() + timeout
    attempts, ambiguous, delay = 0, False, backoff
    where = f"{target.server}" + (f" stream {target.stream}" if target.stream else "")
    while True:
        attempts += 1
        remaining = deadline - time.monotonic()
        try:
            url = send(content, target, job_name, max(remaining, 0.1))
            say(f"results delivered to {where}: {url}")
            return SubmitOutcome(True, "delivered", f"delivered to {url}", url=url, attempts=attempts)
        except SubmitError as exc:
            error = exc
        except Exception as exc:  # a bug or an unexpected library error: never lose the bundle
            error = SubmitError(f"unexpected error: {type(exc).__name__}: {exc}", status="error")
        text = mask.mask(error.message)
        if error.status == "duplicate" and ambiguous:
            msg = f"{where} already has this bundle (an earlier attempt was stored): {text}"
            say(msg)
            return SubmitOutcome(True, "delivered", msg, attempts=attempts)
        remaining = deadline - time.monotonic()
        if error.retryable and attempts <= retries and remaining > delay:
            ambiguous = ambiguous or error.maybe_stored
            say(f"submit attempt {attempts} to {where} failed ({text}); retrying in {delay:.1f}s")
            time.sleep(delay)
            delay *= 2
            continue
        if error.retryable and attempts <= retries:
            text += f" (no time left for another attempt within {timeout:.0f}s)"
        return SubmitOutcome(False, error.status, f"submit to {where} failed: {text}", attempts=attempts)


def submit_bundle(
    bundle_path: Path,
    target: SubmitTarget,
    *,
    job_name: str,
    timeout: float,
    spool_dir: Path,
    retries: int = 3,
    log: Callable[[str], None] = print,
    masker: Masker | None = None,
    backoff: float = 1.0,
) -> SubmitOutcome:
    """Deliver the bundle at ``bundle_path``; on failure copy it into ``spool_dir``. Never raises
    for a server or network problem; ``outcome.ok`` says whether the bundle is on the server.
    ``log`` gets the retries and the outcome, each once (callers do not log the outcome again)."""
    from . import spool

    mask = Masker([target.token])
    say = _sayer(log, mask, masker)
    try:
        content = Path(bundle_path).read_bytes()
        json.loads(content)
    except (OSError, ValueError) as exc:
        outcome = SubmitOutcome(False, "error", f"cannot read the bundle {bundle_path}: {exc}")
        say(outcome.message)
        return outcome
    outcome = deliver(
        content, target, job_name=job_name, timeout=timeout, retries=retries, log=log,
        masker=masker, backoff=backoff,
    )
    if outcome.ok:
        return outcome
    if outcome.status == "duplicate":
        outcome.message += " — the server already holds identical content; nothing was spooled"
        say(outcome.message)
        return outcome
    try:
        outcome.spooled = spool.save(spool_dir, content, target, job_name=job_name, reason=outcome.message)
        outcome.message += f"; the bundle is kept in {outcome.spooled} — send it later with " \
            f"'python -m pytest_lava resubmit {spool_dir}'"
    except OSError as exc:
        outcome.message += f"; could not spool it ({exc}); it is still at {bundle_path}"
    say(outcome.message)
    return outcome
