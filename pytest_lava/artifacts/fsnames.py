"""The names a partition's directory entries may have, ext and FAT alike."""

from __future__ import annotations

from ..core.errors import ArtifactError


def _show(name: bytes) -> str:
    return name.decode("utf-8", "backslashreplace")


def _name_problem(name: bytes) -> str | None:
    if not name:
        return "empty name"
    if b"/" in name:
        return "name contains '/'"
    if b"\0" in name:
        return "name contains NUL"
    if b"\n" in name:
        return "name contains a newline"
    if name in (b".", b".."):
        return f"a second {_show(name)!r} entry"
    return None


def _check_entry(name: bytes, names: set[bytes], where: str, path: str, shown: str, *, dot: bool = False) -> None:
    """Refuse entry ``name`` of directory ``/path`` when its name is unsafe (``dot``: the
    directory's own ``.`` or ``..``, which is expected) or already in ``names``; then remember it
    there. ``shown`` is how the message names the entry."""
    why = None if dot else _name_problem(name)
    if why is None and name in names:
        why = "a second entry of the same name"
    if why:
        raise ArtifactError(f"{where}: unsafe entry {shown!r} in directory /{path} ({why}); "
                            "refusing to unpack the partition")
    names.add(name)
