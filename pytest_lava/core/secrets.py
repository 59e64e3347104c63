"""Masking of secrets (submit tokens) in everything the harness writes or prints.

A token may come from the job file, a command-line option or the environment. Whoever learns
it first registers it with the session's :class:`Masker`; from then on every log line, bundle,
summary, plan description and spool metadata goes through :meth:`Masker.mask` before it is
written. :class:`MaskingFilter` does the same for the ``logging`` module.

A password written into a URL (``http://user:password@host/...``) is masked too, registered or
not: :meth:`Masker.mask` rewrites the user info of every such URL it finds in a text
(:func:`redact_url`), and :meth:`Masker.add_url_passwords` registers the passwords of the URLs in
a job's data, so they are masked wherever else they appear (quoted, in board output, ...). So is
the value of a query parameter that carries a credential (``?token=…``, ``&access_token=…``,
``X-Amz-Signature=…`` and ``X-Amz-Credential=…`` of a presigned S3 URL, an Azure SAS ``sig=…``,
``private_token``, ``api_key``, ``password``, ``secret``, ``auth``): a parameter whose name ends
with one of those words.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

HIDDEN = "<HIDDEN>"  # what the old dispatcher printed in place of a token
_MIN_LEN = 4  # shorter strings would mask ordinary words; such a "token" is not a secret anyway

# ``scheme://user:password@``: the user info up to its last ``@`` (a password may hold one). Every
# quantifier is bounded and the scheme starts a word, so a scan is linear in the text whatever it
# holds (board output is not trusted to be kind to a regex).
_URL_USERINFO = r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s/?#@:\"'<>\\`]{0,256}:[^\s/?#\"'<>\\`]{1,256}@"
_URL_PASSWORD = re.compile(_URL_USERINFO)
_URL_PASSWORD_BYTES = re.compile(_URL_USERINFO.encode())
# ``?name=value`` / ``&name=value`` whose name ends with a credential's word: group 1 up to the
# ``=``, group 2 the value. Bounded, so linear in the text like the rule above.
_QUERY_SECRET_RULE = (r"(?i)([?&][A-Za-z0-9_.-]{0,48}(?:token|passwd|password|secret|signature|sig|credential"
                      r"|api[_-]?key|apikey|access[_-]?key|auth)=)([^&#\s\"'<>\\`]{1,2048})")
_QUERY_SECRET = re.compile(_QUERY_SECRET_RULE)
_QUERY_SECRET_BYTES = re.compile(_QUERY_SECRET_RULE.encode())


class Masker:
    """Replaces every registered secret (and its URL-quoted spelling) with ``<HIDDEN>``, and the
    user info of every URL that carries a password (``scheme://<HIDDEN>@host``).

    It is true when secrets are registered; the URL rule applies either way."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Register a secret; ``None``, empty and very short strings are ignored."""
        if not secret or len(secret) < _MIN_LEN:
            return
        variants = {secret, quote(secret, safe=""), quote(secret, safe="/")}
        with self._lock:
            for variant in variants:
                if variant not in self._secrets:
                    self._secrets.append(variant)
            # longest first, so a secret that contains another is replaced whole
            self._secrets.sort(key=len, reverse=True)

    def add_url_passwords(self, value: object) -> None:
        """Register the password of every URL in ``value`` (a string, or JSON-like data such
        as a job's), as written and URL-decoded."""
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                if "://" not in item:
                    continue
                for m in _URL_PASSWORD.finditer(item):
                    try:
                        password = urlsplit(m.group()).password
                    except ValueError:
                        continue
                    if password:
                        self.add(password)
                        self.add(unquote(password))
                for m in _QUERY_SECRET.finditer(item):
                    self.add(m.group(2))
                    self.add(unquote(m.group(2)))
            elif isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            elif isinstance(item, list | tuple):
                stack.extend(item)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, HIDDEN)
        if "://" in text:
            text = _URL_PASSWORD.sub(lambda m: redact_url(m.group()), text)
        return _redact_query(text)

    def mask_bytes(self, data: bytes) -> bytes:
        for secret in self._secrets:
            raw = secret.encode("utf-8", "replace")
            if raw in data:
                data = data.replace(raw, HIDDEN.encode())
        if b"://" in data:
            data = _URL_PASSWORD_BYTES.sub(lambda m: redact_url(m.group().decode("latin-1")).encode("latin-1"), data)
        if b"=" in data:
            data = _QUERY_SECRET_BYTES.sub(rb"\1" + HIDDEN.encode(), data)
        return data

    def mask_obj(self, obj: object) -> object:
        """A deep copy of a JSON-like value with every string masked (keys included)."""
        if isinstance(obj, str):
            return self.mask(obj)
        if isinstance(obj, dict):
            return {self.mask(str(k)): self.mask_obj(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.mask_obj(v) for v in obj]
        return obj

    def filter(self) -> MaskingFilter:
        return MaskingFilter(self)


class MaskingFilter(logging.Filter):
    """A logging filter that masks the formatted message and the exception text of a record.

    Attach it to handlers (``handler.addFilter(masker.filter())``): a handler filter sees
    records from every logger that propagates to it.
    """

    def __init__(self, masker: Masker) -> None:
        super().__init__()
        self.masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.masker.mask(message)
        if masked != message:
            record.msg = masked
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.masker.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.masker.mask(record.stack_info)
        return True


def redact_url(url: str) -> str:
    """``url`` with its userinfo (``user:password@``) replaced by ``<HIDDEN>@``, for messages.

    Plain string work, no parsing that could fail or rewrite the rest: the network location is
    what follows ``://`` up to the first ``/``, ``?`` or ``#``, and its userinfo runs to its last
    ``@``. Anything without one is returned unchanged. The value of a query parameter that
    carries a credential (``?token=…``, see the module's docstring) is replaced as well."""
    url = _redact_query(url)
    start = url.find("://")
    if start < 0:
        return url
    start += 3
    end = min((i for i in (url.find(c, start) for c in "/?#") if i >= 0), default=len(url))
    at = url.rfind("@", start, end)
    return url if at < 0 else f"{url[:start]}{HIDDEN}{url[at:]}"


def _redact_query(text: str) -> str:
    """``text`` with the value of every query parameter that carries a credential hidden."""
    return _QUERY_SECRET.sub(rf"\1{HIDDEN}", text) if "=" in text else text
