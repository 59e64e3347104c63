"""Results of jobs run on other hosts come back to the controller's results directory.

An xdist worker started over ssh (``--tx ssh=…``) writes a job's results (bundle, console logs)
into ``--lava-results`` on *its* host. The controller tells such workers to ship them
(``pytest_configure_node``: ``workerinput["lava_ship_results"]``); the worker attaches the files of
the job's results directory to the report of the job's last teardown, the report crosses to the
controller like any report (``pytest_report_to_serializable``), and the controller writes them
under its own results directory. Local (``popen``) workers share the controller's directory and
ship nothing.

The controller trusts its workers no more than it must: each path must be a plain relative path
inside one job directory (no ``..``, no absolute path, no link followed), or it is refused.
"""

from __future__ import annotations

import base64
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

SHIP_KEY = "lava_ship_results"
RESULTS_ATTR = "lava_results_files"
MAX_BYTES = 512 * 1024 * 1024  # one job's results; more is not shipped (and says so)


def ships(config: pytest.Config) -> bool:
    """Whether this process is an xdist worker that must ship its jobs' results."""
    return bool(getattr(config, "workerinput", {}).get(SHIP_KEY))


def mark_node(node: Any) -> None:
    """On the controller: a worker not started with ``popen`` (ssh, socket) is on another host."""
    node.workerinput[SHIP_KEY] = not getattr(node.gateway.spec, "popen", False)


def pack(job_dir: Path, root: Path) -> dict[str, str]:
    """The regular files under ``job_dir`` as ``{path relative to root: base64}``."""
    files: dict[str, str] = {}
    total = 0
    for path in sorted(job_dir.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        total += len(data)
        if total > MAX_BYTES:
            files[str(PurePosixPath(job_dir.name) / "NOT-SHIPPED")] = base64.b64encode(
                f"more than {MAX_BYTES} bytes of results: the rest stays on the worker's host\n".encode()).decode()
            break
        files[path.relative_to(root).as_posix()] = base64.b64encode(data).decode()
    return files


def unpack(files: dict[str, str], root: Path) -> list[str]:
    """Write shipped files under ``root``; the problems (refused paths), if any."""
    problems = []
    for name, content in files.items():
        rel = PurePosixPath(name)
        if rel.is_absolute() or not rel.parts or ".." in rel.parts or "\\" in name:
            problems.append(f"refused shipped result {name!r}: not a plain relative path")
            continue
        directory = root
        for part in rel.parts[:-1]:  # made one level at a time, never through a link
            directory = directory / part
            if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
                break
            directory.mkdir(parents=True, exist_ok=True)
        else:
            target = directory / rel.parts[-1]
            if target.is_symlink():
                target.unlink()
            target.write_bytes(base64.b64decode(content))
            continue
        problems.append(f"refused shipped result {name!r}: {directory} is not a plain directory")
    return problems
