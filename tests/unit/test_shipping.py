"""Results shipped from workers on other hosts: packed per job, unpacked only inside the results."""

from __future__ import annotations

import base64
from pathlib import Path
from types import SimpleNamespace

from pytest_lava.plugin.shipping import SHIP_KEY, mark_node, pack, unpack


def test_a_jobs_results_round_trip(tmp_path: Path) -> None:
    worker = tmp_path / "worker" / "results"
    (worker / "job-1" / "logs").mkdir(parents=True)
    (worker / "job-1" / "bundle.json").write_text("{}")
    (worker / "job-1" / "logs" / "console.log").write_bytes(b"\x00\xffboot\r\n")
    (worker / "job-1" / "link").symlink_to("/etc/passwd")  # links are not followed
    files = pack(worker / "job-1", worker)
    assert sorted(files) == ["job-1/bundle.json", "job-1/logs/console.log"]
    controller = tmp_path / "controller"
    assert unpack(files, controller) == []
    assert (controller / "job-1" / "logs" / "console.log").read_bytes() == b"\x00\xffboot\r\n"


def test_paths_outside_the_results_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "results"
    (tmp_path / "elsewhere").mkdir()
    root.mkdir()
    (root / "sneaky").symlink_to(tmp_path / "elsewhere")
    data = base64.b64encode(b"x").decode()
    problems = unpack({"../escape": data, "/etc/x": data, "a/../../b": data, "sneaky/f": data,
                       "sneaky/sub/f": data, "ok/f": data}, root)
    assert len(problems) == 5 and all("refused" in p for p in problems), problems
    assert (root / "ok" / "f").read_bytes() == b"x"
    assert not (tmp_path / "escape").exists() and not any((tmp_path / "elsewhere").iterdir())


def test_only_workers_on_other_hosts_ship() -> None:
    def node(**spec: object) -> SimpleNamespace:
        return SimpleNamespace(gateway=SimpleNamespace(spec=SimpleNamespace(**spec)), workerinput={})

    local, remote = node(popen=True), node(popen=False, ssh="host1")
    mark_node(local)
    mark_node(remote)
    assert local.workerinput[SHIP_KEY] is False and remote.workerinput[SHIP_KEY] is True
