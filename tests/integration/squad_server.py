"""Install and run a real SQUAD server (PyPI ``squad``, SQLite) on 127.0.0.1, offline once installed.

SQUAD is installed into its own virtualenv (``$SQUAD_VENV``, default
``~/.cache/pytest-lava/squad-venv``), never into the project's environment: it pins Django and
friends. Importing SQUAD runs ``squad/frontend/static/download``, which fetches its JavaScript/CSS
libraries with wget from the web and fails offline; that script skips every entry that already
exists and is listed in ``download.status``. The REST submit API needs none of those files, so
`install` creates empty placeholders for them and the status file: no web access is needed after
``pip install`` (the web UI's pages load without scripts and styles).

    python tests/integration/squad_server.py install        # once (CI: before pytest)
    python tests/integration/squad_server.py serve --port 8000 --dir /tmp/squad  # by hand

`SquadServer` (used by ``test_squad.py``) migrates a fresh SQLite database, creates a user with a
token, a group and a project, and runs ``squad-admin runserver --noreload``; ``stop()`` ends it by
PID.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SQUAD_VERSION = "1.98"
VENV = Path(os.environ.get("SQUAD_VENV", Path.home() / ".cache" / "pytest-lava" / "squad-venv"))


def admin() -> Path:
    return VENV / "bin" / "squad-admin"


def installed() -> bool:
    return admin().exists() and static_ready()


def _static_dir() -> Path | None:
    found = list((VENV / "lib").glob("python3*/site-packages/squad/frontend/static"))
    return found[0] if found else None


def static_ready() -> bool:
    static = _static_dir()
    return bool(static and (static / "download.status").exists())


def stub_static_files() -> None:
    """Placeholders for every library in ``download.conf``, listed in ``download.status``."""
    static = _static_dir()
    if static is None:
        raise RuntimeError(f"squad is not installed in {VENV}")
    lines = []
    for raw in (static / "download.conf").read_text().splitlines():
        fields = raw.split()
        if len(fields) < 2 or fields[0].startswith("#"):
            continue
        dest, url = fields[0], fields[1]
        target = static / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        if url.endswith((".js", ".css")):
            target.touch()
        else:
            target.mkdir(exist_ok=True)
        lines.append(" ".join(fields[:3]))
    (static / "download.status").write_text("\n".join(lines) + "\n")


def install() -> None:
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
    if not admin().exists():
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", f"squad=={SQUAD_VERSION}"],
                       check=True, timeout=1200)
    stub_static_files()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SquadServer:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.token = "squad-integration-token-0123456789abcdef"
        self.group, self.project = "lab", "smoke"
        self.proc: subprocess.Popen | None = None
        self.env = dict(
            os.environ,
            DATABASE=f"ENGINE=django.db.backends.sqlite3:NAME={self.workdir / 'db.sqlite3'}",
            SECRET_KEY="pytest-lava-integration",
            XDG_DATA_HOME=str(self.workdir),
            SQUAD_LOG_LEVEL="WARNING",
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _admin(self, *args: str, timeout: float = 300) -> str:
        out = subprocess.run([str(admin()), *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout, cwd=self.workdir)
        if out.returncode != 0:
            raise RuntimeError(f"squad-admin {args[0]} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def setup(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._admin("migrate", "--noinput")
        script = (
            "from django.contrib.auth.models import User\n"
            "from rest_framework.authtoken.models import Token\n"
            "from squad.core.models import Group\n"
            "u = User.objects.create_user('ci', password='ci-password-1')\n"
            f"Token.objects.create(user=u, key={self.token!r})\n"
            f"g = Group.objects.create(slug={self.group!r})\n"
            "g.add_admin(u)\n"
            f"g.projects.create(slug={self.project!r}, is_public=True)\n"
        )
        self._admin("shell", "-c", script)

    def start(self, timeout: float = 120) -> SquadServer:
        self.setup()
        log = open(self.workdir / "server.log", "wb")  # noqa: SIM115 - kept open for the child
        self.proc = subprocess.Popen(
            [str(admin()), "runserver", "--noreload", f"127.0.0.1:{self.port}"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"SQUAD exited: {(self.workdir / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/api/version/", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"SQUAD did not answer within {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def testruns(self) -> list[dict]:
        """Every test run SQUAD stored, with its tests and metrics (read through the ORM)."""
        script = (
            "import json\n"
            "from squad.core.models import TestRun\n"
            "print(json.dumps([{'job_id': r.job_id, 'build': r.build.version,\n"
            "  'environment': r.environment.slug, 'tests': {t.full_name: t.result for t in r.tests.all()},\n"
            "  'metrics': {m.full_name: m.result for m in r.metrics.all()},\n"
            "  'log': r.log_file or '', 'metadata': r.metadata,\n"
            "  'attachments': sorted(a.filename for a in r.attachments.all())} for r in TestRun.objects.all()]))\n"
        )
        return __import__("json").loads(self._admin("shell", "-c", script).strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["install", "serve"])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dir", default="/tmp/pytest-lava-squad")
    args = parser.parse_args(argv)
    if args.command == "install":
        install()
        print(f"SQUAD {SQUAD_VERSION} ready in {VENV}")
        return 0
    workdir = Path(args.dir)
    shutil.rmtree(workdir, ignore_errors=True)
    server = SquadServer(workdir, args.port).start()
    print(f"SQUAD on {server.base_url}  token {server.token}  project {server.group}/{server.project}")
    try:
        server.proc.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
