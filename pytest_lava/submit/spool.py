"""The spool: bundles that could not be delivered, kept until ``resubmit`` sends them.

Layout: ``<spool_dir>/<UTC time>-<sha1 prefix>/bundle.json`` and ``submit.json`` (the target without
its token, the job name, the reason of the failure). A delivered entry is removed and a line is
added to ``<spool_dir>/delivered.log``.

The spool never holds a token, so `resubmit` is given one, and a token belongs to one server: it
goes to ``server`` when the bundles are sent there, else to the one server the selected bundles
were spooled for. When they were spooled for several servers, `resubmit` with a token refuses
(`TokenScopeError`) rather than hand one server's token to the others: select one server's
bundles with ``only_server`` (each server with its own token).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from ..core.secrets import Masker
from . import SubmitOutcome, SubmitTarget, deliver

BUNDLE = "bundle.json"
META = "submit.json"


@dataclass
class Entry:
    path: Path
    target: SubmitTarget
    job_name: str
    reason: str


def save(spool_dir: Path, content: bytes, target: SubmitTarget, *, job_name: str, reason: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    entry = Path(spool_dir) / f"{stamp}-{hashlib.sha1(content).hexdigest()[:12]}"
    tmp = entry.with_name("." + entry.name + ".tmp")
    tmp.mkdir(parents=True)
    (tmp / BUNDLE).write_bytes(content)
    meta = dict(target.public(), job_name=job_name, reason=Masker([target.token]).mask(reason),
                spooled=stamp)
    (tmp / META).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    tmp.rename(entry)  # an entry is complete or absent
    return entry


class TokenScopeError(ValueError):
    """A token would go to more than one server."""


def server_key(server: str) -> str:
    """What makes two server URLs the same server for a token: scheme, host and port."""
    try:
        parts = urlsplit(server)
        port = parts.port
    except ValueError:
        return server
    scheme = parts.scheme.lower()
    if port is None:
        port = 443 if scheme.endswith("https") else 80
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


def find_spool(directory: Path) -> Path:
    """Accept the spool itself or a results directory holding ``spool/``."""
    directory = Path(directory)
    return directory / "spool" if (directory / "spool").is_dir() else directory


def entries(spool_dir: Path) -> list[Entry]:
    found = []
    for meta_path in sorted(Path(spool_dir).glob(f"*/{META}")):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        target = SubmitTarget(meta["server"], meta.get("stream"), None, meta.get("kind"),
                              meta.get("build"), meta.get("environment"))
        found.append(Entry(meta_path.parent, target, meta.get("job_name", ""), meta.get("reason", "")))
    return found


def resubmit(
    directory: Path,
    *,
    server: str | None = None,
    stream: str | None = None,
    token: str | None = None,
    kind: str | None = None,
    only_server: str | None = None,
    timeout: float = 60.0,
    retries: int = 3,
    log: Callable[[str], None] = print,
    backoff: float = 1.0,
) -> list[tuple[Entry, SubmitOutcome]]:
    """Send the spooled bundles (to their own target, or to ``server``/``stream`` if given);
    ``only_server`` selects the bundles spooled for that server (scheme, host and port).
    Delivered entries, and entries the server already holds (duplicate), leave the spool.

    ``token`` goes to one server only: ``server``, else the one server of the selected bundles;
    raises `TokenScopeError` (before sending anything) if they name several."""
    spool_dir = find_spool(directory)
    todo = entries(spool_dir)
    if only_server:
        todo = [e for e in todo if server_key(e.target.server) == server_key(only_server)]
    if token and not server:
        servers = sorted({server_key(e.target.server) for e in todo})
        if len(servers) > 1:
            raise TokenScopeError(
                f"the spool holds bundles for {len(servers)} servers ({', '.join(servers)}) and a token "
                "is sent to one server only: resubmit one server at a time with --only-server URL "
                "(and that server's token), or send them all to one server with --server URL")
    masker = Masker([token])
    results = []
    for entry in todo:
        target = entry.target
        if server:
            target = SubmitTarget(server, stream or target.stream, None, kind)
        elif stream:
            target.stream = stream
        if token:
            target.token = token
        content = (entry.path / BUNDLE).read_bytes()
        outcome = deliver(content, target, job_name=entry.job_name, timeout=timeout, retries=retries,
                          log=log, masker=masker, backoff=backoff)
        if outcome.ok or outcome.status == "duplicate":
            line = f"{datetime.now(UTC).isoformat()} {entry.path.name} {outcome.status} {outcome.url or ''}"
            with open(spool_dir / "delivered.log", "a", encoding="utf-8") as fh:
                fh.write(masker.mask(line) + "\n")
            shutil.rmtree(entry.path)
        results.append((entry, outcome))
    return results
