"""ext2/3/4: every directory entry read raw and checked before e2fsprogs ``debugfs`` writes anything."""

from __future__ import annotations

import os
import re
import stat
import struct
import subprocess
from pathlib import Path

from ..core.deadline import Deadline
from ..core.errors import ArtifactError, InfrastructureError
from . import limits
from .fsnames import _check_entry, _show
from .partitions import Partition

_LS_LINE = re.compile(rb"/(\d+)/([0-7]+)/(-?\d+)/(-?\d+)/(.*)/(\d*)/")
_EXT4_INLINE_DATA = 0x8000


def _debugfs(spec: str, commands: list[str], cwd: Path, deadline: Deadline, where: str) -> bytes:
    """Run debugfs commands (from a file, in ``cwd``) on ``spec``; returns its stdout."""
    (cwd / "cmds").write_text("".join(c + "\n" for c in commands))
    try:
        p = subprocess.run(["debugfs", "-f", "cmds", spec], cwd=cwd, capture_output=True,
                           timeout=max(1.0, deadline.remaining_or(1800)))
    except FileNotFoundError:
        raise InfrastructureError("debugfs not found (apt-get install e2fsprogs)") from None
    except subprocess.TimeoutExpired:
        raise ArtifactError(f"{deadline.path}: debugfs on {where} timed out") from None
    err = p.stderr.decode("utf-8", "replace")
    bad = [line for line in err.splitlines() if line.strip() and not line.startswith("debugfs ")]
    if p.returncode != 0 or bad:
        raise ArtifactError(f"debugfs could not read {where}: {' / '.join(bad)[-500:] or err.strip()[-500:]}")
    return p.stdout


def _dirents(raw: bytes, block_size: int, where: str) -> list[tuple[int, bytes]]:
    """(inode, name) of the used entries of a directory's blocks, exactly as stored."""
    if not raw or len(raw) % block_size:
        raise ArtifactError(f"{where}: malformed directory ({len(raw)} bytes, not whole {block_size}-byte blocks)")
    out = []
    for block in range(0, len(raw), block_size):
        off, end = block, block + block_size
        while off < end:
            if off + 8 > end:
                raise ArtifactError(f"{where}: malformed directory entry at byte {off}")
            ino, rec_len, name_len = struct.unpack_from("<IHB", raw, off)
            if block_size == 65536 and rec_len in (0, 65535):
                rec_len = 65536
            if rec_len < 8 or rec_len % 4 or off + rec_len > end or (ino and 8 + name_len > rec_len):
                raise ArtifactError(f"{where}: malformed directory entry at byte {off} (record length {rec_len})")
            if ino:
                out.append((ino, raw[off + 8:off + 8 + name_len]))
            off += rec_len
    return out


def _ext_take(image: Path, part: Partition, work: Path, deadline: Deadline, where: str) -> Path:
    """The files of an ext2/3/4 partition in ``work/tree``.

    Each directory is read twice by debugfs, level by level: ``dump`` gives its raw blocks, from
    which the names are taken exactly and checked; ``ls -p`` (read only once the names are known
    to hold no newline, so one line is one entry) gives each entry's inode type. Only when every
    name of the whole filesystem is safe does ``rdump`` write them, into a fresh directory; the
    result is checked again on disk."""
    with open(image, "rb") as f:
        f.seek(part.start + 1024)
        sb = f.read(1024)
    log_block = struct.unpack_from("<I", sb, 24)[0]
    if log_block > 6:
        raise ArtifactError(f"{where}: malformed ext superblock (block size 2^{10 + log_block})")
    if struct.unpack_from("<I", sb, 96)[0] & _EXT4_INLINE_DATA:
        raise ArtifactError(f"{where}: the filesystem uses the ext4 inline_data feature, which pytest-lava "
                            "cannot read safely; make the image without it (mkfs.ext4 -O ^inline_data)")
    block_size = 1024 << log_block
    spec = f"{image}?offset={part.start}"
    dumps = work / "dirs"
    dumps.mkdir()
    level: list[tuple[int, str]] = [(2, "")]  # (directory inode, its path)
    seen_dirs = {2}
    expected: set[str] = set()
    entries = depth = 0
    while level:
        depth += 1
        if depth > limits.MAX_FS_DEPTH:
            raise ArtifactError(f"{where}: directories nested deeper than {limits.MAX_FS_DEPTH} levels")
        commands = []
        for ino, _ in level:
            commands += [f"ls -p <{ino}>", f"dump <{ino}> dirs/{ino}"]
        stdout = _debugfs(spec, commands, work, deadline, where)
        deadline.check()
        raw_entries: dict[int, list[tuple[int, bytes]]] = {}
        for ino, path in level:
            here = f"{where}: directory /{path}"
            try:
                raw = (dumps / str(ino)).read_bytes()
            except FileNotFoundError:
                raise ArtifactError(f"{here}: debugfs could not read it") from None
            (dumps / str(ino)).unlink()
            found = _dirents(raw, block_size, here)
            names: set[bytes] = set()
            for i, (_, name) in enumerate(found):
                _check_entry(name, names, where, path, _show(name), dot=(i, name) in ((0, b"."), (1, b"..")))
            entries += len(found)
            if entries > limits.MAX_FS_ENTRIES:
                raise ArtifactError(f"{where}: more than {limits.MAX_FS_ENTRIES} directory entries")
            raw_entries[ino] = found
        # no name holds a newline: every line of the ls output is one entry or a debugfs prompt
        listings = _split_listings(stdout, commands, where)
        next_level: list[tuple[int, str]] = []
        if any(listings[1::2]):
            raise ArtifactError(f"{where}: unexpected debugfs output while dumping directories")
        for (ino, path), listing in zip(level, listings[0::2], strict=True):
            found = raw_entries[ino]
            if [e[0] for e in listing] != [e[0] for e in found]:
                raise ArtifactError(f"{where}: directory /{path} reads differently raw and through debugfs "
                                    "(corrupt filesystem?); refusing it")
            for i, ((child, mode), (_, name)) in enumerate(zip(listing, found, strict=True)):
                is_dir = stat.S_ISDIR(mode)
                if i < 2 and name in (b".", b".."):
                    if not is_dir:
                        raise ArtifactError(f"{where}: unsafe entry {_show(name)!r} in directory /{path} "
                                            "(not a directory); refusing to unpack the partition")
                    continue
                child_path = f"{path}/{os.fsdecode(name)}" if path else os.fsdecode(name)
                expected.add(child_path)
                if is_dir:
                    if child in seen_dirs:
                        raise ArtifactError(f"{where}: directory /{child_path} is linked twice (inode {child}); "
                                            "refusing to unpack the partition")
                    seen_dirs.add(child)
                    next_level.append((child, child_path))
        level = next_level
    tree = work / "tree"
    tree.mkdir()
    _debugfs(spec, ["rdump / tree"], work, deadline, where)
    _check_tree(tree, expected, where)
    return tree


def _split_listings(stdout: bytes, commands: list[str], where: str) -> list[list[tuple[int, int]]]:
    """The output of each command of a debugfs ``-f`` run, as (inode, mode) per ``ls -p`` line."""
    out: list[list[tuple[int, int]]] = []
    expect = iter(commands)
    current: list[tuple[int, int]] | None = None
    for line in stdout.split(b"\n"):
        if line.startswith(b"debugfs: "):
            if line[9:].decode("utf-8", "replace") != next(expect, None):
                raise ArtifactError(f"{where}: unexpected debugfs output {_show(line[:200])!r}")
            current = []
            out.append(current)
            continue
        if not line.strip():
            continue
        m = _LS_LINE.fullmatch(line)
        if current is None or m is None:
            raise ArtifactError(f"{where}: unexpected debugfs output {_show(line[:200])!r}")
        if int(m.group(1)):
            current.append((int(m.group(1)), int(m.group(2), 8)))
    if len(out) != len(commands):
        raise ArtifactError(f"{where}: debugfs stopped early ({len(out)} of {len(commands)} commands)")
    return out


def _check_tree(tree: Path, expected: set[str], where: str) -> None:
    """What rdump wrote is exactly made of the names checked, with no symlink in between."""
    root = os.path.realpath(tree)
    for dirpath, dirnames, filenames in os.walk(tree, followlinks=False):
        real = os.path.realpath(dirpath)
        if real != root and not real.startswith(root + os.sep):
            raise ArtifactError(f"{where}: {dirpath} resolves outside the unpacked tree")
        for name in dirnames + filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), tree)
            if rel not in expected:
                raise ArtifactError(f"{where}: debugfs wrote {rel!r}, which is not an entry of the filesystem")
