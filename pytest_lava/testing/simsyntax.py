"""Words and command lists of the SIMULATED board's shell (:mod:`.simshell`) — a FAKE.

Just enough of POSIX shell syntax for a harness's session: single and double quotes, backslashes,
``$VAR``/``${VAR}``/``$?``/``$$``/``$#`` expansion from the shell's environment, ``>``/``>>``
redirections as their own tokens, and command lists cut at unquoted ``;`` ``&&`` ``||`` ``|``
``&`` (a ``#`` comment ends the line).
"""

from __future__ import annotations

import re


class ShellSyntaxError(Exception):
    pass


OPERATORS = (";", "&&", "||", "|", "&")
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+)|([?$#]))")


def split_words(line: str, env: dict[str, str]) -> list[tuple[str, str]]:
    """Tokens of ``line`` as (kind, text), kind 'word' or 'op', with variables expanded."""
    tokens: list[tuple[str, str]] = []
    word: list[str] = []
    in_word = False
    i, n = 0, len(line)

    def expand(at: int) -> tuple[str, int]:
        m = _VAR.match(line, at)
        if not m:
            return "$", at + 1
        name = m.group(1) or m.group(2) or m.group(3)
        return env.get(name, ""), m.end()

    while i < n:
        c = line[i]
        if c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("Syntax error: Unterminated quoted string")
            word.append(line[i + 1 : end])
            in_word, i = True, end + 1
        elif c == '"':
            i += 1
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n and line[i + 1] in '"\\$`':
                    word.append(line[i + 1])
                    i += 2
                elif line[i] == "$":
                    text, i = expand(i)
                    word.append(text)
                else:
                    word.append(line[i])
                    i += 1
            if i >= n:
                raise ShellSyntaxError("Syntax error: Unterminated quoted string")
            in_word, i = True, i + 1
        elif c == "\\" and i + 1 < n:
            word.append(line[i + 1])
            in_word, i = True, i + 2
        elif c == "$":
            text, i = expand(i)
            word.append(text)
            in_word = True
        elif c in " \t" or c in ";&|":
            if in_word:
                tokens.append(("word", "".join(word)))
                word, in_word = [], False
            if c in " \t":
                i += 1
            else:
                op = line[i : i + 2] if line[i : i + 2] in ("&&", "||") else c
                tokens.append(("op", op))
                i += len(op)
        elif c == "#" and not in_word:
            break
        else:
            word.append(c)
            in_word, i = True, i + 1
    if in_word:
        tokens.append(("word", "".join(word)))
    return tokens


def split_commands(line: str) -> list[tuple[str, str]]:
    """``line`` cut at unquoted operators: (command text, operator after it)."""
    out: list[tuple[str, str]] = []
    start, i, n, quote = 0, 0, len(line), ""
    while i < n:
        c = line[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "\\":
            i += 1
        elif c == "#" and (i == 0 or line[i - 1] in " \t;&|"):
            break
        elif c in ";&|":
            op = line[i : i + 2] if line[i : i + 2] in ("&&", "||") else c
            out.append((line[start:i], op))
            i += len(op)
            start = i
            continue
        i += 1
    if quote:
        raise ShellSyntaxError("Syntax error: Unterminated quoted string")
    out.append((line[start:i], ";"))
    return out
