"""The incremental matcher: whatever the chunking, a pattern is found exactly where a search
of the whole stream finds it (literal prefilter, carried prefixes, death strings)."""

from __future__ import annotations

import re

import pytest

from pytest_lava.console.matching import Waiter, as_matchers, literal_prefix

STREAM = (b"boot noise LAVA_END_7 not-a-digit\r\n" + b"x" * 300 + b"LAVA_END_7 " + b"y" * 40
          + b"LAVA_END_7 42\r\nroot@linaro:~# Kernel panic - not syncing\r\n")


def feed(patterns: list[object], deaths: list[bytes], cuts: list[int]) -> tuple[int, int, int] | None:
    waiter = Waiter(as_matchers(patterns), deaths, scanned=0, window=1024)  # type: ignore[arg-type]
    buf = bytearray()
    last = 0
    for cut in [*cuts, len(STREAM)]:
        buf += STREAM[last:cut]
        last = cut
        if waiter.scan(buf, 0, 0):
            hit = waiter.hit
            assert hit is not None
            return hit.index, hit.start, hit.end
    return None


@pytest.mark.parametrize("cut", range(1, len(STREAM), 3))
def test_a_split_anywhere_finds_the_same_match(cut: int) -> None:
    regex = re.compile(rb"LAVA_END_7 (\d+)\r\n")  # terminated: a stream cannot cut it short
    whole = regex.search(STREAM)
    assert whole is not None
    assert feed([regex], [], [cut]) == (0, whole.start(), whole.end())
    # several small chunks too
    assert feed([regex], [], list(range(cut % 7 + 1, len(STREAM), 7))) == (0, whole.start(), whole.end())


@pytest.mark.parametrize("cut", range(1, len(STREAM), 5))
def test_death_strings_and_prompts_whatever_the_chunking(cut: int) -> None:
    deaths = [b"Kernel panic"]
    assert feed([re.compile(rb"root@linaro:[^\r\n]*# ")], deaths, [cut])[0] == 0
    assert feed([re.compile(rb"no such thing \d")], deaths, [cut])[0] == -1


def test_literal_prefixes() -> None:
    assert literal_prefix(re.compile(rb"LAVA_END_ab (\d+)")) == b"LAVA_END_ab "
    assert literal_prefix(re.compile(rb"\[rc=(\d+)\]")) == b"[rc="
    assert literal_prefix(re.compile(rb"abcd*")) == b"abc"
    assert literal_prefix(re.compile(rb"a|bcd")) is None
    assert literal_prefix(re.compile(rb"(?i)abcd")) is None
    assert literal_prefix(re.compile(rb"^abcd")) is None
