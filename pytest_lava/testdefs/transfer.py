"""Files to and from the board over its console, checksummed — no netcat, no network.

To the board: base64 lines into ``base64 -d`` through a here-document (or, on an image without
``base64``, ``printf`` lines with octal escapes), sent in blocks; the echo of each block's last
line is awaited before the next block (flow control a slow UART understands). The board then
checks the SHA-256 (or MD5) itself and only then moves the file into place.

Many files at once (:meth:`ConsoleTransfer.push_many`): one gzip-compressed tar archive in one
command line with its here-document, checked and unpacked by the same command — one round trip
for a whole test run's files instead of three per file.

From the board: ``base64`` (or ``od``) of the file plus its checksum, between the shell's
markers; the host decodes and verifies. A mismatch (a kernel line in the middle, a dropped byte)
is retried once, then it is an :class:`InfrastructureError`.

Every command line names the path once, in a shell variable, and refers to it from then on: a
line editor keeps only so many characters of a line (busybox ash: 1022, ``FEATURE_EDITING_MAX_LEN``)
and silently drops the rest, so a check line that repeated a long path six times lost its end
marker and the transfer waited for it until its deadline.
"""

from __future__ import annotations

import base64
import hashlib
import io
import posixpath
import re
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..console.engine import ConsoleTimeout
from ..console.shell import ShellSession
from ..core.deadline import Deadline
from ..core.errors import InfrastructureError

EOF_MARK = "LAVA_XFER_EOF"
BLOCK_BYTES = 1536  # sent before waiting for the echo
# the longest command line sent: busybox ash's line editor keeps 1022 characters of a line (1024 with
# the end of line) and drops the rest; markers and the shell's own words need ~80 more
MAX_LINE = 900
# shell variables: the file, and the partial file beside it (short: a printf line must stay on one
# 80-column line of echo, or its echo is not found)
PATH_VAR, TMP_VAR = "lxf", "lxt"
MAX_PULL_BYTES = 8 * 1024 * 1024
_PRINTF_SAFE = frozenset(range(0x20, 0x7F)) - {ord("'"), ord("\\"), ord("%")}


class TransferError(InfrastructureError):
    """A file could not be moved over the console intact."""


@dataclass(frozen=True)
class BoardTools:
    """What the image offers for transfers (probed once per shell, in one round trip)."""

    base64: bool
    tar: bool
    gzip: bool


def archive_base(files: Sequence[tuple[str, bytes, str]]) -> str | None:
    """The directory an archive of ``files`` is unpacked in (their deepest common directory), or
    ``None`` if they cannot travel as one archive (a relative path, or a name too long for tar)."""
    paths = [path for path, _, _ in files]
    if not all(p.startswith("/") for p in paths):
        return None
    for path in paths:
        if ".." in path.split("/"):
            raise TransferError(f"cannot send {path!r}: a transfer names absolute paths without '..'")
    base = posixpath.commonpath([posixpath.dirname(p) for p in paths])
    names = [posixpath.relpath(p, base) for p in paths]
    if any(len(n.encode()) > 100 for n in names):  # a ustar name (without its prefix field): every tar reads it
        return None
    return base


def archive(files: Sequence[tuple[str, bytes, str]], base: str, *, compress: bool) -> bytes:
    """A tar archive of ``(path, data, mode)`` members named relative to ``base`` (unpacked with
    ``tar -x -C base``; tar makes the missing parent directories), gzip-compressed if ``compress``."""
    import tarfile  # here: a board that carries the files in its image never archives (3-4 ms of start-up)

    buf = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buf, mode="w:gz" if compress else "w", format=tarfile.USTAR_FORMAT) as tf:
        for path, data, mode in files:
            info = tarfile.TarInfo(posixpath.relpath(path, base))
            info.size, info.mode, info.mtime = len(data), int(mode, 8), now
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _hash_cmd(var: str) -> str:
    """Checksum of the file named by shell variable ``var`` (SHA-256, or MD5 on an image without it)."""
    return f"( sha256sum \"${var}\" 2>/dev/null || md5sum \"${var}\" ) | cut -d' ' -f1"


def _set_path(path: str) -> str:
    """The line that names ``path`` (once) in the shell variables the other lines use."""
    line = f"{PATH_VAR}={shlex.quote(path)}; {TMP_VAR}=${PATH_VAR}.xfer"
    if len(line) > MAX_LINE:
        raise TransferError(f"path {path[:60]}... ({len(path)} characters) is too long for a console command"
                            f" line (a line editor may keep only ~1000 characters of it)")
    return line


def _digest_ok(data: bytes, digest: str) -> bool:
    digest = digest.strip().lower()
    if len(digest) == 64:
        return hashlib.sha256(data).hexdigest() == digest
    if len(digest) == 32:
        return hashlib.md5(data).hexdigest() == digest  # noqa: S324 - integrity, not security
    return False


def _verdict(out: str) -> str:
    """``ok``, or what the board said instead, of a checked transfer's output."""
    if "LAVA_XFER_OK" in out:
        return "ok"
    return out.strip().splitlines()[-1] if out.strip() else "no answer to the checksum check"


class ConsoleTransfer:
    """Moves files over one shell session; finds out once which tools the image has."""

    def __init__(self, shell: ShellSession) -> None:
        self.shell = shell
        self._has_base64: bool | None = None
        self._tools: BoardTools | None = None

    def tools(self, deadline: Deadline | float) -> BoardTools:
        if self._tools is None:
            probe = "; ".join(f"command -v {t} >/dev/null 2>&1 && echo have-{t}" for t in ("base64", "tar", "gzip"))
            out = self.shell.run(probe, deadline).output
            found = BoardTools(*(f"have-{t}" in out for t in ("base64", "tar", "gzip")))
            if self._has_base64 is not None:  # decided already (a test, or an earlier probe)
                found = BoardTools(self._has_base64, found.tar, found.gzip)
            self._tools = found
        return self._tools

    def has_base64(self, deadline: Deadline | float) -> bool:
        if self._has_base64 is None:
            self._has_base64 = self.tools(deadline).base64
        return self._has_base64

    # -- many files at once -----------------------------------------------------------------------
    def push_many(self, files: Sequence[tuple[str, bytes, str]], deadline: Deadline | float) -> None:
        """Send ``(path, data, mode)`` files as one compressed archive in one round trip (checked
        on the board before it is unpacked); file by file where the image lacks tar or base64."""
        if not files:
            return
        node = Deadline.coerce(deadline, f"push {len(files)} file(s)")
        tools = self.tools(node)
        base = archive_base(files)
        if base is None or not (self.has_base64(node) and tools.tar) or len(base) > MAX_LINE // 3:
            for path, data, mode in files:
                self.push(path, data, node, mode=mode)
            return
        data = archive(files, base, compress=tools.gzip)
        last = ""
        for _attempt in range(2):
            last = self._push_archive(data, base, node, tools.gzip)
            if last == "ok":
                return
        raise TransferError(f"sending {len(files)} file(s) ({len(data)} bytes archived) to the board failed twice: "
                            f"{last}")

    def _push_archive(self, data: bytes, base: str, node: Deadline, gzipped: bool) -> str:
        sha, md5 = hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()  # noqa: S324
        unpack = ('mkdir -p "$lxd" && ' + ('gzip -dc < "$lxa" | tar -x -f - -C "$lxd"' if gzipped
                                           else 'tar -x -f "$lxa" -C "$lxd"'))
        cmd = (f"lxd={shlex.quote(base)}; lxa=/tmp/.lava-xfer.$$; base64 -d > \"$lxa\" <<'{EOF_MARK}'; "
               f"h=$( {_hash_cmd('lxa')} ); "
               f'case "$h" in {sha}|{md5}) {unpack} && echo LAVA_XFER_OK ;; *) echo "LAVA_XFER_BAD $h" ;; esac; '
               'rm -f "$lxa"')
        lines = base64.encodebytes(data).decode("ascii").splitlines()

        def body(n: Deadline) -> None:
            self._send_lines(lines, n)
            self.shell.console.sendline(EOF_MARK, n)

        out = self.shell.run(cmd, node, body=body).output
        return _verdict(out)

    # -- to the board -----------------------------------------------------------------------
    def push(self, path: str, data: bytes, deadline: Deadline | float, *, mode: str = "0644") -> None:
        node = Deadline.coerce(deadline, f"push {path}")
        last = ""
        for _attempt in range(2):
            last = self._push_once(path, data, node, mode)
            if last == "ok":
                return
        raise TransferError(f"sending {path} ({len(data)} bytes) to the board failed twice: {last}")

    def _push_once(self, path: str, data: bytes, node: Deadline, mode: str) -> str:
        p, t = f'"${PATH_VAR}"', f'"${TMP_VAR}"'
        # the parent directory: "${p%/*}/" is "/" for "/x"; a bare name lives in the current directory
        parent = f'"${{{PATH_VAR}%/*}}/"' if "/" in path else "."
        self.shell.run(f"{_set_path(path)}; mkdir -p {parent} && rm -f {t}", node, check=True)
        if self.has_base64(node):
            text = base64.encodebytes(data).decode("ascii")
            lines = text.splitlines()
            self.shell.console.sendline(f"base64 -d > {t} <<'{EOF_MARK}'", node)
            self._send_lines(lines, node)
            self.shell.console.sendline(EOF_MARK, node)
            self.shell.console.expect(self.shell.prompt, node)
        else:
            self.shell.run(f": > {t}", node, check=True)
            # short lines: a line editor wraps its echo at the terminal width (80 columns)
            self._send_lines([f"printf '{chunk}'>>{t}" for chunk in self._printf_chunks(data)], node)
            self.shell.run("true", node)  # every printf line has run once its prompt came back
        sha, md5 = hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()  # noqa: S324
        check = (f'h=$( {_hash_cmd(TMP_VAR)} ); case "$h" in {sha}|{md5}) mv {t} {p} && chmod {mode} {p} '
                 f'&& echo LAVA_XFER_OK ;; *) echo "LAVA_XFER_BAD $h"; rm -f {t} ;; esac')
        out = self.shell.run(check, node).output
        return _verdict(out)

    def _send_lines(self, lines: list[str], node: Deadline) -> None:
        console = self.shell.console
        block: list[str] = []
        size = 0
        for i, line in enumerate(lines):
            block.append(line)
            size += len(line) + 1
            if size >= BLOCK_BYTES or i == len(lines) - 1:
                console.send("\n".join(block) + "\n", node)
                try:  # the echo of the block's last line: the board has read the block
                    console.expect(re.compile(re.escape(block[-1])), node.child(min(60.0, node.remaining()), "echo"))
                except ConsoleTimeout as exc:
                    raise TransferError(f"the board did not echo a transfer block: {exc.message}",
                                        details=exc.details) from exc
                block, size = [], 0

    @staticmethod
    def _printf_chunks(data: bytes, width: int = 48) -> list[str]:
        chunks, current = [], ""
        for b in data:
            piece = chr(b) if b in _PRINTF_SAFE else f"\\{b:03o}"
            if len(current) + len(piece) > width:
                chunks.append(current)
                current = ""
            current += piece
        return [*chunks, current] if current else chunks

    # -- from the board ---------------------------------------------------------------------
    def pull(self, path: str, deadline: Deadline | float, *, max_bytes: int = MAX_PULL_BYTES) -> bytes:
        node = Deadline.coerce(deadline, f"pull {path}")
        p = f'"${PATH_VAR}"'
        size_out = self.shell.run(f"{_set_path(path)}; wc -c < {p}", node).output.strip().splitlines()
        if not size_out or not size_out[-1].strip().isdigit():
            raise TransferError(f"cannot read {path} on the board: {' '.join(size_out) or 'no output'}")
        size = int(size_out[-1].strip())
        if size > max_bytes:
            raise TransferError(f"{path} on the board is {size} bytes; the console limit is {max_bytes}")
        problem = ""
        for _attempt in range(2):
            dump = f"base64 {p}" if self.has_base64(node) else f"od -An -v -tx1 {p}"
            out = self.shell.run(f"{_set_path(path)}; {dump} && {_hash_cmd(PATH_VAR)}", node).output
            lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
            if not lines:
                problem = "no output"
                continue
            digest, body = lines[-1], lines[:-1]
            try:
                if self.has_base64(node):
                    data = base64.b64decode("".join(body), validate=True)
                else:
                    data = bytes.fromhex("".join(re.sub(r"\s+", "", ln) for ln in body))
            except ValueError as exc:
                problem = f"undecodable ({exc})"
                continue
            if len(data) == size and _digest_ok(data, digest):
                return data
            problem = f"checksum or size mismatch ({len(data)} of {size} bytes)"
        raise TransferError(f"reading {path} from the board failed twice: {problem}")
