"""Masking of secrets (submit tokens) in everything the harness writes or prints.

A token may come from the job file, a command-line option or the environment. Whoever learns
it first registers it with the session's :class:`Masker`; from then on every log line, bundle,
summary, plan description and spool metadata goes through :meth:`Masker.mask` before it is
written. :class:`MaskingFilter` does the same for the ``logging`` module.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from urllib.parse import quote

HIDDEN = "<HIDDEN>"  # what the old dispatcher printed in place of a token
_MIN_LEN = 4  # shorter strings would mask ordinary words; such a "token" is not a secret anyway


class Masker:
    """Replaces every registered secret (and its URL-quoted spelling) with ``<HIDDEN>``."""

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

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, HIDDEN)
        return text

    def mask_bytes(self, data: bytes) -> bytes:
        for secret in self._secrets:
            raw = secret.encode("utf-8", "replace")
            if raw in data:
                data = data.replace(raw, HIDDEN.encode())
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
        if not self.masker:
            return True
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
