"""add_apt_repository: apt sources written into the test root filesystem from the master.

Entries are written the way ``add-apt-repository`` would: ``ppa:owner/name`` becomes
``/etc/apt/sources.list.d/owner-name-<codename>.list`` with
``deb http://ppa.launchpad.net/owner/name/ubuntu <codename> main`` (and the commented deb-src
line); a ``deb [OPTIONS] URI DIST COMPONENTS`` line (e.g. ``[trusted=yes]``) goes to
``archive_uri-<uri>-<dist>.list``. The codename
comes from the test image (``/etc/os-release``, ``/etc/lsb-release``, read as data: their
``*_CODENAME=`` lines are printed by the master and unquoted here, never sourced by its root
shell, since the image is the job's and so untrusted), else
``extra.apt_codename`` of the device, else ``stable``. ``apt-get update`` is not run (the test
image is not running; the lab image has no apt at all): the action's log says so.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from ..core.errors import JobError
from .implementations import implements

SOURCES_DIR = "etc/apt/sources.list.d"
RELEASE_FILES = ("etc/os-release", "etc/lsb-release")
CODENAME_KEYS = ("VERSION_CODENAME", "DISTRIB_CODENAME")  # in order of preference
READ_LIMIT = 65536  # bytes of each release file read (a link to /dev/zero must not fill the master's memory)


def read_codename_command(root: str) -> str:
    """The master-side command printing the ``*_CODENAME=`` lines of the test image's release
    files: only regular files (not a FIFO that would block), at most ``READ_LIMIT`` bytes each,
    and only those lines (a link to a master file shows nothing else of it). Nothing is executed."""
    files = " ".join(shlex.quote(f"{root}/{name}") for name in RELEASE_FILES)
    keys = "|".join(CODENAME_KEYS)
    return (f"for f in {files}; do [ -f \"$f\" ] && head -c {READ_LIMIT} \"$f\" | grep -E '^({keys})='; "
            "done; true")


def parse_codename(text: str) -> str:
    """The codename in the ``KEY=VALUE`` lines of os-release/lsb-release ``text``, shell-unquoted
    in Python (os-release's own rules: a value may be quoted, ``$``, backquotes and ``\\`` escaped);
    ``""`` when none is a plain codename (lower-case letters, digits, ``.`` and ``-``)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, raw = line.strip().partition("=")
        if not sep or key not in CODENAME_KEYS or key in found:
            continue
        try:
            words = shlex.split(raw, comments=True)
        except ValueError:  # unbalanced quotes: not a value
            continue
        if len(words) == 1:
            found[key] = words[0]
    for key in CODENAME_KEYS:
        value = found.get(key, "")
        if re.fullmatch(r"[a-z0-9][a-z0-9.-]*", value):
            return value
    return ""


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
    at = 2 if len(words) > 1 and re.fullmatch(r"\[[A-Za-z0-9.=,_-]+( [A-Za-z0-9.=,_-]+)*\]", words[1]) else 1
    if len(words) >= at + 2 and words[0] in ("deb", "deb-src") and re.match(r"[a-z+]+://", words[at]):
        uri = re.sub(r"[^A-Za-z0-9]+", "_", words[at].split("://", 1)[1]).strip("_")
        dist = re.sub(r"[^A-Za-z0-9.+-]+", "_", words[at + 1])
        return f"archive_uri-{uri}-{dist}.list", [" ".join(words)]
    raise JobError.single("job", "add_apt_repository.arg",
                          f"{entry!r} is neither 'ppa:OWNER/NAME' nor 'deb [OPTIONS] URI DIST [COMPONENT...]'")


@implements("add_apt_repository")
def add_apt_repository(ctx, params: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    driver = ctx.driver
    sh = driver.master_shell(ctx)
    root = driver.mount_testrootfs(ctx, sh)
    q = shlex.quote
    written: list[str] = []
    try:
        found = driver.step(ctx, sh, "read the test image's codename", read_codename_command(root), 60)
        codename = parse_codename(found) or str(ctx.device.extra.get("apt_codename", "stable"))
        for entry in params["arg"]:
            name, lines = apt_entry(entry, codename)
            path = f"{root}/{SOURCES_DIR}/{name}"
            driver.step(ctx, sh, f"write {SOURCES_DIR}/{name}",
                            f"mkdir -p {root}/{SOURCES_DIR} && printf '%s\\n' {' '.join(q(x) for x in lines)} "
                            f"> {q(path)}", 60)
            written.append(f"/{SOURCES_DIR}/{name}")
        has_apt = sh.run(f"[ -x {root}/usr/bin/apt-get ]", ctx.deadline.child(60, "look for apt")).status == 0
    finally:
        driver.unmount(ctx, sh, root)
    ctx.run.apt_sources.extend(written)
    why = ("apt-get update was not run: the test image is not running (it runs at the next apt use)" if has_apt
           else "the test image has no apt: the entries were written as add-apt-repository would, nothing installed")
    ctx.message = f"wrote {', '.join(written)} (codename {codename}); {why}"
    ctx.log(f"add_apt_repository: {ctx.message}")
