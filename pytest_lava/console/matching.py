"""Pattern matching over the console stream, in place and incrementally.

A :class:`Waiter` is one pending ``expect()``: its patterns, its death strings, and how far the
stream has been searched. :meth:`Waiter.scan` searches the bytes that arrived since the last scan
plus an overlap of ``window`` bytes (so a match split across chunks is found), directly in the
console's ``bytearray`` (no copy); only a hit copies its region. Plain strings without regex
metacharacters are searched with ``bytearray.find`` (C speed), others as bytes regexes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PatternLike = str | bytes | re.Pattern[str] | re.Pattern[bytes]
Patterns = PatternLike | Sequence[PatternLike]

_REGEX_META = frozenset("\\.^$*+?{}[]|()")


class TextMatch:
    """A ``re.Match`` over console bytes whose groups read as ``str`` (UTF-8, replacement)."""

    def __init__(self, raw: re.Match[bytes] | None, text: bytes) -> None:
        self.raw = raw
        self._text = text

    def group(self, *args: int | str) -> Any:
        if self.raw is None:
            return self._text.decode("utf-8", "replace") if not args or args == (0,) else None
        value = self.raw.group(*args)
        if isinstance(value, tuple):
            return tuple(v.decode("utf-8", "replace") if v is not None else None for v in value)
        return value.decode("utf-8", "replace") if value is not None else None

    def __getitem__(self, key: int | str) -> str | None:
        return self.group(key)

    def groups(self, default: str | None = None) -> tuple[str | None, ...]:
        if self.raw is None:
            return ()
        return tuple(g.decode("utf-8", "replace") if g is not None else default for g in self.raw.groups())

    def groupdict(self, default: str | None = None) -> dict[str, str | None]:
        if self.raw is None:
            return {}
        return {
            k: v.decode("utf-8", "replace") if v is not None else default for k, v in self.raw.groupdict().items()
        }


@dataclass
class ConsoleMatch:
    """What ``Console.expect`` found: which pattern, the match, and the text before it."""

    index: int
    match: TextMatch
    before: str
    start: int  # absolute stream offsets of the match
    end: int
    pattern: str = ""

    @property
    def text(self) -> str:
        return self.match.group(0)

    def group(self, *args: int | str) -> Any:
        return self.match.group(*args)


@dataclass
class Matcher:
    """One compiled pattern: a literal (searched with ``find``) or a bytes regex."""

    source: str
    literal: bytes | None = None
    regex: re.Pattern[bytes] | None = None
    prefix: bytes | None = None  # literal text every match of ``regex`` starts with (>= 3 bytes)

    def __post_init__(self) -> None:
        if self.regex is not None and self.prefix is None:
            self.prefix = literal_prefix(self.regex)

    @classmethod
    def of(cls, pattern: PatternLike) -> Matcher:
        if isinstance(pattern, re.Pattern):
            src = pattern.pattern
            flags = pattern.flags & ~re.UNICODE
            bsrc = src.encode("utf-8") if isinstance(src, str) else src
            return cls(repr(pattern.pattern), regex=re.compile(bsrc, flags))
        bsrc = pattern.encode("utf-8") if isinstance(pattern, str) else pattern
        shown = pattern if isinstance(pattern, str) else pattern.decode("utf-8", "replace")
        if not any(chr(c) in _REGEX_META for c in bsrc):
            return cls(repr(shown), literal=bsrc)
        return cls(repr(shown), regex=re.compile(bsrc))

    def search(self, buf: bytes | bytearray, lo: int, hi: int) -> tuple[int, int] | None:
        if self.literal is not None:
            i = buf.find(self.literal, lo, hi)
            return None if i < 0 else (i, i + len(self.literal))
        assert self.regex is not None
        m = self.regex.search(buf, lo, hi)
        return None if m is None else (m.start(), m.end())


def as_matchers(patterns: Patterns) -> list[Matcher]:
    items = [patterns] if isinstance(patterns, str | bytes | re.Pattern) else list(patterns)
    return [Matcher.of(p) for p in items]


def literal_prefix(regex: re.Pattern[bytes]) -> bytes | None:
    """The literal start of every match of ``regex`` (e.g. ``LAVA_END_`` of ``LAVA_END_(\\d+)``),
    or None when there is none worth searching for. Conservative: any alternation, a flag that
    changes matching, or a quantifier on the last literal character shortens or drops it."""
    if regex.flags & (re.IGNORECASE | re.VERBOSE) or b"|" in regex.pattern:
        return None
    src = regex.pattern
    out = bytearray()
    i = 0
    while i < len(src):
        c = chr(src[i])
        if c == "\\":
            if i + 1 < len(src) and not chr(src[i + 1]).isalnum():
                out.append(src[i + 1])
                i += 2
                continue
            break
        if c in _REGEX_META:
            break
        out.append(src[i])
        i += 1
    if i < len(src) and chr(src[i]) in "*?{+" and out:
        out = out[:-1]  # the quantifier applies to the last character
    return bytes(out) if len(out) >= 3 else None


@dataclass
class Hit:
    index: int  # pattern index; -1 - j for death string j
    start: int  # absolute offsets
    end: int
    match: TextMatch


@dataclass
class Waiter:
    """A pending expect(): scanned by the console's reader thread as bytes arrive."""

    matchers: list[Matcher]
    deaths: list[bytes]
    scanned: int  # absolute offset up to which the stream has been searched
    window: int
    hit: Hit | None = None

    def __post_init__(self) -> None:
        # the hot path's view of the patterns: (regex, literal, overlap) and (needle, overlap);
        # a literal spanning the old/new boundary starts at most len-1 bytes back, only a regex
        # needs the whole overlap window
        self._pats = [(m.regex, m.literal, len(m.literal) - 1 if m.literal is not None else self.window, m.prefix)
                      for m in self.matchers]
        # per regex with a prefix: the earliest prefix seen near the end that has not matched yet
        self._carry: dict[int, int] = {}
        self._needles = [(d, len(d) - 1) for d in self.deaths]

    def scan(self, buf: bytearray, base: int, pos: int) -> bool:
        """Search the new bytes of ``buf`` (absolute offset of ``buf[0]`` is ``base``; nothing
        before ``pos`` may match). True when a pattern or a death string was found.
        Called by the console's reader thread for every chunk: keep it lean."""
        end = base + len(buf)
        if end <= self.scanned or self.hit is not None:
            return self.hit is not None
        first = (pos if pos > base else base) - base  # relative offsets from here on
        new = self.scanned - base
        hi = end - base
        lo = new - self.window
        if lo < first:
            lo = first
        best: tuple[int, int, int] | None = None  # (index, start, end), relative to buf
        for i, (regex, literal, overlap, prefix) in enumerate(self._pats):
            s0 = new - overlap
            if s0 < first:
                s0 = first
            if literal is not None:
                k = buf.find(literal, s0, hi)
                if k >= 0 and (best is None or k < best[1]):
                    best = (i, k, k + len(literal))
            elif prefix is not None:
                # a match starts with the prefix: run the regex only from a prefix occurrence (new,
                # or carried over from an earlier scan because its match had not arrived yet)
                p0 = new - len(prefix) + 1
                k = buf.find(prefix, p0 if p0 > first else first, hi)
                carried = self._carry.get(i)
                start = k if k >= 0 else -1
                if carried is not None and carried - base >= first and (start < 0 or carried - base < start):
                    start = carried - base
                if start < 0:
                    continue
                m = regex.search(buf, start, hi)  # type: ignore[union-attr]
                if m is not None:
                    if best is None or m.start() < best[1]:
                        best = (i, m.start(), m.end())
                else:
                    w0 = hi - self.window
                    k = buf.find(prefix, start if start > w0 else w0, hi)
                    if k >= 0:
                        self._carry[i] = base + k
                    else:
                        self._carry.pop(i, None)
            else:
                m = regex.search(buf, s0, hi)  # type: ignore[union-attr]
                if m is not None and (best is None or m.start() < best[1]):
                    best = (i, m.start(), m.end())
        for j, (needle, overlap) in enumerate(self._needles):
            s0 = new - overlap
            if s0 < first:
                s0 = first
            limit = hi if best is None else min(hi, best[1] + overlap)
            k = buf.find(needle, s0, limit)
            if k >= 0 and (best is None or k < best[1]):  # a tie goes to the pattern
                best = (-1 - j, k, k + overlap + 1)
        self.scanned = end
        if best is None:
            return False
        index, s, e = best
        raw = None
        if index >= 0 and self.matchers[index].regex is not None:
            region = bytes(buf[lo:hi])  # a stable copy for the match's groups
            raw = self.matchers[index].regex.search(region, s - lo)  # type: ignore[union-attr]
        self.hit = Hit(index, base + s, base + e, TextMatch(raw, bytes(buf[s:e])))
        return True
