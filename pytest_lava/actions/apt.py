"""add_apt_repository: apt sources written into the test root filesystem from the master.

Entries are written the way ``add-apt-repository`` would: ``ppa:owner/name`` becomes
``/etc/apt/sources.list.d/owner-name-<codename>.list`` with
``deb http://ppa.launchpad.net/owner/name/ubuntu <codename> main`` (and the commented deb-src
line); a ``deb URI DIST COMPONENTS`` line goes to ``archive_uri-<uri>-<dist>.list``. The codename
comes from the test image (``/etc/os-release``, ``/etc/lsb-release``), else
``extra.apt_codename`` of the device, else ``stable``. ``apt-get update`` is not run (the test
image is not running; the lab image has no apt at all): the action's log says so.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from ..errors import InfrastructureError, JobError
from .implementations import implements

SOURCES_DIR = "etc/apt/sources.list.d"


def apt_entry(entry: str, codename: str) -> tuple[str, list[str]]:
    """(file name in sources.list.d, lines) for one ``arg`` entry."""
    entry = entry.strip()
    if entry.startswith("ppa:"):
        ref = entry[4:]
        owner, _, name = ref.partition("/")
        name = name or "ppa"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+-]*", owner) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+-]*",
                                                                                        name):
            raise JobError.single("job", "add_apt_repository.arg", f"{entry!r} is not ppa:OWNER/NAME")
        base = f"http://ppa.launchpad.net/{owner}/{name}/ubuntu {codename} main"
        return f"{owner}-{name}-{codename}.list", [f"deb {base}", f"# deb-src {base}"]
    words = entry.split()
    if len(words) >= 3 and words[0] in ("deb", "deb-src") and re.match(r"[a-z+]+://", words[1]):
        uri = re.sub(r"[^A-Za-z0-9]+", "_", words[1].split("://", 1)[1]).strip("_")
        dist = re.sub(r"[^A-Za-z0-9.+-]+", "_", words[2])
        return f"archive_uri-{uri}-{dist}.list", [" ".join(words)]
    raise JobError.single("job", "add_apt_repository.arg",
                          f"{entry!r} is neither 'ppa:OWNER/NAME' nor 'deb URI DIST [COMPONENT...]'")


@implements("add_apt_repository")
def add_apt_repository(ctx, params: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    board_type = ctx.board_type
    if not hasattr(board_type, "mount_testrootfs"):
        raise InfrastructureError(f"board type {board_type.name!r} cannot edit the test root filesystem")
    sh = board_type.master_shell(ctx)
    root = board_type.mount_testrootfs(ctx, sh)
    q = shlex.quote
    written: list[str] = []
    try:
        found = board_type.step(ctx, sh, "read the test image's codename",
                                f"( . {root}/etc/os-release 2>/dev/null; echo \"$VERSION_CODENAME\" ); "
                                f"sed -n 's/^DISTRIB_CODENAME=//p' {root}/etc/lsb-release 2>/dev/null; true", 60)
        codename = next((w for w in found.split() if re.fullmatch(r"[a-z0-9.-]+", w)), "")
        codename = codename or str(ctx.device.extra.get("apt_codename", "stable"))
        for entry in params["arg"]:
            name, lines = apt_entry(entry, codename)
            path = f"{root}/{SOURCES_DIR}/{name}"
            board_type.step(ctx, sh, f"write {SOURCES_DIR}/{name}",
                            f"mkdir -p {root}/{SOURCES_DIR} && printf '%s\\n' {' '.join(q(x) for x in lines)} "
                            f"> {q(path)}", 60)
            written.append(f"/{SOURCES_DIR}/{name}")
        has_apt = sh.run(f"[ -x {root}/usr/bin/apt-get ]", ctx.deadline.child(60, "look for apt")).status == 0
    finally:
        board_type.unmount(ctx, sh, root)
    ctx.state.setdefault("apt_sources", []).extend(written)
    why = ("apt-get update was not run: the test image is not running (it runs at the next apt use)" if has_apt
           else "the test image has no apt: the entries were written as add-apt-repository would, nothing installed")
    ctx.message = f"wrote {', '.join(written)} (codename {codename}); {why}"
    ctx.log(f"add_apt_repository: {ctx.message}")
