"""The xdist scheduler: a job's items on one worker, in order; other tests by the user's --dist.

Fake worker nodes record what they are sent and run it the way an xdist worker does: an item runs
only once the worker knows the next one, or has been told to shut down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from pytest_lava.plugin.claims import Claims
from pytest_lava.plugin.scheduling import JobScheduling


@dataclass
class FakeGateway:
    id: str


@dataclass(eq=False)
class FakeNode:
    name: str
    sent: list[int] = field(default_factory=list)
    shutting_down: bool = False

    @property
    def gateway(self) -> FakeGateway:
        return FakeGateway(self.name)

    def send_runtest_some(self, indices: list[int]) -> None:
        assert not self.shutting_down
        self.sent += indices

    def shutdown(self) -> None:
        self.shutting_down = True


COLLECTION = ["a.yaml::x[1]", "a.yaml::x[2]", "b.yaml::x[1]", "b.yaml::x[2]", "b.yaml::x[3]",
              "c.yaml::x[1]", "c.yaml::x[2]", "t.py::test_one", "t.py::test_two"]


def unit_of(nodeid: str) -> tuple[str, str]:
    path = nodeid.split("::")[0]
    return ("job", path) if path.endswith(".yaml") else ("test", nodeid)


def drive(sched: JobScheduling, nodes: list[FakeNode]) -> dict[str, list[str]]:
    """Run everything to the end, one item at a time, round robin over the workers."""
    for node in nodes:
        sched.add_node(node)
        sched.add_node_collection(node, COLLECTION)
    assert sched.collection_is_completed
    sched.schedule()
    done: dict[FakeNode, int] = {n: 0 for n in nodes}
    ran: dict[str, list[str]] = {n.name: [] for n in nodes}
    progress = True
    while progress:
        progress = False
        for node in nodes:
            runnable = len(node.sent) - done[node] - (0 if node.shutting_down else 1)
            if runnable > 0:
                index = node.sent[done[node]]
                done[node] += 1
                ran[node.name].append(COLLECTION[index])
                sched.mark_test_complete(node, index)
                progress = True
    assert sched.tests_finished and not sched.has_pending
    assert all(n.shutting_down for n in nodes)
    return ran


def scheduled(n: int) -> tuple[list[FakeNode], JobScheduling]:
    """``n`` workers that collected COLLECTION, and the scheduler that has just scheduled it."""
    nodes = [FakeNode(f"gw{i}") for i in range(n)]
    sched = JobScheduling(n, unit_of)
    for node in nodes:
        sched.add_node(node)
        sched.add_node_collection(node, COLLECTION)
    sched.schedule()
    return nodes, sched


def test_each_job_runs_whole_on_one_worker_in_order() -> None:
    nodes = [FakeNode("gw0"), FakeNode("gw1")]
    ran = drive(JobScheduling(2, unit_of), nodes)
    everything = [nodeid for items in ran.values() for nodeid in items]
    assert sorted(everything) == sorted(COLLECTION)  # each item exactly once
    for job in ("a.yaml", "b.yaml", "c.yaml"):
        holders = [w for w, items in ran.items() if any(i.startswith(job) for i in items)]
        assert len(holders) == 1, (job, ran)
        items = [i for i in ran[holders[0]] if i.startswith(job)]
        assert items == [i for i in COLLECTION if i.startswith(job)]  # in job order


def test_both_workers_start_at_once_and_a_worker_gets_more_only_near_its_end() -> None:
    nodes, sched = scheduled(2)
    assert nodes[0].sent == [0, 1] and nodes[1].sent == [2, 3, 4]  # one job each, nothing queued
    sched.mark_test_complete(nodes[1], 2)
    assert nodes[1].sent == [2, 3, 4]  # two left: no more yet
    sched.mark_test_complete(nodes[0], 0)
    assert nodes[0].sent == [0, 1, 5, 6]  # one left, which it cannot start alone: the next job


def test_more_workers_than_units_shuts_the_spare_down() -> None:
    nodes = [FakeNode(f"gw{i}") for i in range(12)]
    ran = drive(JobScheduling(12, unit_of), nodes)
    assert sum(1 for items in ran.values() if items) == 5  # three jobs, two plain tests


def test_a_crashed_worker_gives_its_unfinished_items_back_first() -> None:
    nodes, sched = scheduled(2)
    sched.mark_test_complete(nodes[1], 2)
    crashed = sched.remove_node(nodes[1])
    assert crashed == "b.yaml::x[2]"
    assert next(iter(sched.workqueue.values())) == {"b.yaml::x[2]": False, "b.yaml::x[3]": False}


def test_a_worker_with_another_collection_gets_nothing() -> None:
    seen: list[str] = []
    nodes = [FakeNode("gw0"), FakeNode("gw1")]
    sched = JobScheduling(1, unit_of, collection_mismatch=seen.append)
    sched.add_node(nodes[0])
    sched.add_node_collection(nodes[0], COLLECTION)
    sched.schedule()
    sched.add_node(nodes[1])
    sched.add_node_collection(nodes[1], COLLECTION[:-1])
    assert seen == ["gw1"] and nodes[1].sent == []


class FakeConfig:
    def __init__(self, **options: object) -> None:
        self.options = options

    def getoption(self, name: str, default: object = None) -> object:
        return self.options.get(name, default)


def test_worker_count_from_tx_specs() -> None:
    from pytest_lava.plugin.scheduling import worker_count

    assert worker_count(FakeConfig(tx=["popen"] * 3, numprocesses=3)) == 3  # type: ignore[arg-type]
    assert worker_count(FakeConfig(tx=["2*popen", "ssh=lab2//python=python3"])) == 3  # type: ignore[arg-type]
    assert worker_count(FakeConfig(numprocesses=4)) == 4  # type: ignore[arg-type]


def test_units_of_jobs_variants_and_plain_tests(tmp_path: Path) -> None:
    from pytest_lava.jobs.job import load_job
    from pytest_lava.plugin.units import JobUnits

    (tmp_path / "jobs").mkdir()
    job = tmp_path / "jobs" / "km.yaml"
    job.write_text(yaml.safe_dump({"job_name": "km", "device_type": "panda", "timeout": 60, "actions": [
        {"command": "boot_master_image"},
        {"command": "deploy_linaro_image", "parameters": {
            "hwpack": "http://127.0.0.1/h.tgz", "rootfs": "http://127.0.0.1/r.tgz",
            "kernel_matrix": [["http://127.0.0.1/a.deb", "linux-image-"], ["http://127.0.0.1/b.deb", "linux-image-"]]}},
        {"command": "boot_linaro_image"},
        {"command": "lava_test_shell", "parameters": {"testdefs": ["smoke"]}},
        {"command": "lava_test_shell", "parameters": {"testdefs": ["posix"]}}]}))
    variants = load_job(job).variants()
    assert len(variants) == 2
    units = JobUnits({job: variants}, tmp_path, "loadfile")
    keys = {units.key(f"jobs/km.yaml::{v.variant}::lava_test_shell[{t}-{v.variant}]")
            for t in ("smoke", "posix") for v in variants}
    assert len(keys) == 2 and all(k[0] == "job" for k in keys)  # one unit per kernel_matrix variant
    v0 = variants[0].variant
    assert units.key(f"../elsewhere/km.yaml::{v0}::lava_test_shell[smoke-{v0}]")[0] == "job"
    assert units.key("tests/test_x.py::test_a") == ("file", "tests/test_x.py")
    assert JobUnits({}, tmp_path, "load").key("t.py::test_a") == ("test", "t.py::test_a")
    assert JobUnits({}, tmp_path, "loadgroup").key("t.py::test_a@db") == ("group", "db")


def test_scheduling_starts_with_the_first_worker_and_keeps_a_job_for_each_starting_one() -> None:
    """Eight one-item jobs, eight workers coming up one by one: each worker may run its job as
    soon as it has collected (told to shut down after it), none takes a second job."""
    collection = [f"j{i}.yaml::x[1]" for i in range(8)]
    nodes = [FakeNode(f"gw{i}") for i in range(8)]
    sched = JobScheduling(8, unit_of)
    for node in nodes:
        sched.add_node(node)
    for n, node in enumerate(nodes):
        sched.add_node_collection(node, collection)
        assert sched.collection_is_completed
        sched.schedule()
        assert len(node.sent) == 1 and node.shutting_down  # runnable now: its only item is its last
        assert all(len(other.sent) == 1 for other in nodes[:n + 1])
    assert sorted(i for node in nodes for i in node.sent) == list(range(8))


def test_an_early_worker_prefetches_only_jobs_nobody_starting_needs() -> None:
    collection = [f"j{i}.yaml::x[1]" for i in range(5)]
    first, second, third = FakeNode("gw0"), FakeNode("gw1"), FakeNode("gw2")
    sched = JobScheduling(3, unit_of)
    for node in (first, second, third):
        sched.add_node(node)
    sched.add_node_collection(first, collection)
    sched.schedule()
    assert first.sent == [0, 1] and not first.shutting_down  # 5 jobs, 2 kept for the starting workers
    sched.add_node_collection(second, collection)
    sched.schedule()
    assert second.sent == [2, 3] and not second.shutting_down  # 3 left, 1 kept for gw2: gw1 prefetches
    sched.mark_test_complete(first, 0)
    assert first.sent == [0, 1] and first.shutting_down  # the one left is kept for gw2
    sched.remove_node(third)  # gw2 died before collecting: nothing is kept for it any more
    sched.mark_test_complete(second, 2)
    assert second.sent == [2, 3, 4]


# -- workers on several hosts: a board that must be run from one host (dispatcher_host) ----------


def hosts_of(key: tuple[str, str]) -> frozenset[str] | None:
    return {"a.yaml": frozenset({"lab-2"}), "b.yaml": frozenset({"lab-1", "lab-2"})}.get(key[1])


def test_a_job_whose_boards_need_one_host_goes_only_to_workers_there() -> None:
    nodes = [FakeNode("gw0"), FakeNode("gw1"), FakeNode("gw2")]
    host = {"gw0": "lab-1", "gw1": "lab-1", "gw2": "lab-2"}
    for _ in range(3):  # whatever the order the workers come up in
        ran = drive(JobScheduling(3, unit_of, hosts_of=hosts_of,
                                  node_hosts=lambda n: frozenset({host[n.name]})), nodes)
        assert sorted(i for items in ran.values() for i in items) == sorted(COLLECTION)
        assert not any(i.startswith("a.yaml") for i in ran["gw0"] + ran["gw1"]), ran
        assert [i for i in ran["gw2"] if i.startswith("a.yaml")] == ["a.yaml::x[1]", "a.yaml::x[2]"]
        nodes = nodes[1:] + nodes[:1]
        for n in nodes:
            n.sent, n.shutting_down = [], False


def test_a_job_no_worker_can_run_is_reported_and_never_sent() -> None:
    dropped: list[tuple[object, ...]] = []
    nodes = [FakeNode("gw0")]
    sched = JobScheduling(1, unit_of, hosts_of=hosts_of, node_hosts=lambda n: frozenset({"lab-1"}),
                          unroutable=lambda key, hosts, ids: dropped.append((key, hosts, ids)))
    ran = drive(sched, nodes)
    assert dropped == [(("job", "a.yaml"), frozenset({"lab-2"}), ["a.yaml::x[1]", "a.yaml::x[2]"])]
    assert not any(i.startswith("a.yaml") for i in ran["gw0"]) and "b.yaml::x[1]" in ran["gw0"]


def test_a_workers_host_is_its_ssh_host() -> None:
    from types import SimpleNamespace

    from pytest_lava.plugin.units import job_hosts, worker_hosts

    def node(ssh: str | None) -> object:
        return SimpleNamespace(gateway=SimpleNamespace(spec=SimpleNamespace(ssh=ssh)))

    assert worker_hosts(node("root@Lab-2")) == {"lab-2"}
    assert worker_hosts(node("-F /tmp/cfg -i key lab-3")) == {"lab-3"}
    assert len(worker_hosts(node(None))) == 1  # a local worker: this host's name
    usb = SimpleNamespace(dispatcher_host="Lab-2")
    assert job_hosts([usb]) == {"lab-2"} and job_hosts([usb, SimpleNamespace(dispatcher_host=None)]) is None


def test_the_pool_refuses_a_board_of_another_host(tmp_path: Path) -> None:
    from pytest_lava.core.deadline import Deadline
    from pytest_lava.devices.device import Device
    from pytest_lava.devices.leasing import NoMatchingBoard, this_host
    from pytest_lava.devices.pool import BoardPool

    devices = {"usb-01": Device(name="usb-01", device_type="t", dispatcher_host="elsewhere"),
               "net-01": Device(name="net-01", device_type="t"),
               "mine": Device(name="mine", device_type="u", dispatcher_host=this_host().upper())}
    pool = BoardPool(devices, tmp_path)
    refused = f"must be run from elsewhere \\(dispatcher_host\\); this is {this_host()}"
    with pytest.raises(NoMatchingBoard, match=refused):
        pool.acquire(target="usb-01", device_type=None, deadline=Deadline(1, "j"))
    with pool.acquire(target=None, device_type="t", deadline=Deadline(1, "j")) as lease:
        assert lease.device.name == "net-01"
    with pool.acquire(target="mine", device_type=None, deadline=Deadline(1, "j")) as lease:
        assert lease.device.name == "mine"


# -- claims: a worker that is up runs the jobs of workers still starting (plugin/claims.py) ------


def claimed(tmp_path: Path, n: int) -> tuple[list[FakeNode], JobScheduling, Claims]:
    claims = Claims(tmp_path)
    nodes = [FakeNode(f"gw{i}") for i in range(n)]
    sched = JobScheduling(n, unit_of, claims=claims)
    for node in nodes:
        sched.add_node(node)
    return nodes, sched, claims


def claim(claims: Claims, job: str, worker: str) -> str | None:
    from pytest_lava.plugin.claims import claim_name

    return claims.claim(claim_name(job), worker)


def test_a_worker_is_sent_every_job_it_claimed_and_nobody_else_gets_them(tmp_path: Path) -> None:
    nodes, sched, claims = claimed(tmp_path, 3)
    assert claim(claims, "a.yaml", "gw0") == "gw0" and claim(claims, "b.yaml", "gw0") == "gw0"
    assert claim(claims, "b.yaml", "gw1") == "gw0"  # the first to claim owns it
    sched.add_node_collection(nodes[0], COLLECTION)
    sched.schedule()
    assert nodes[0].sent == [0, 1, 2, 3, 4]  # both its jobs, at once: it is running them already
    sched.add_node_collection(nodes[1], COLLECTION)
    sched.schedule()
    assert nodes[1].sent == [5, 6]  # c.yaml: the controller claims it for gw1
    assert claim(claims, "c.yaml", "gw2") == "gw1"


def test_a_worker_with_nothing_to_do_waits_while_n_jobs_are_in_flight(tmp_path: Path) -> None:
    collection = [f"j{i}.yaml::x[{k}]" for i in range(3) for k in (1, 2)]
    nodes, sched, claims = claimed(tmp_path, 2)
    claim(claims, "j0.yaml", "gw0")
    claim(claims, "j1.yaml", "gw0")
    for node in nodes:
        sched.add_node_collection(node, collection)
    sched.schedule()
    assert nodes[0].sent == [0, 1, 2, 3]
    assert nodes[1].sent == [] and not nodes[1].shutting_down  # two jobs in flight with -n 2: it waits
    sched.mark_test_complete(nodes[0], 0)
    sched.mark_test_complete(nodes[0], 1)  # j0 is done: one job in flight
    assert nodes[1].sent == [4, 5]
    assert claims.in_flight() == 2


def test_a_crashed_workers_claims_go_back_to_the_others(tmp_path: Path) -> None:
    nodes, sched, claims = claimed(tmp_path, 2)
    claim(claims, "a.yaml", "gw1")  # gw1 claimed, then died before its collection arrived
    sched.add_node_collection(nodes[0], COLLECTION)
    sched.schedule()
    assert nodes[0].sent == [2, 3, 4]  # not a.yaml: gw1 holds it
    sched.remove_node(nodes[1])
    sched.mark_test_complete(nodes[0], 2)
    sched.mark_test_complete(nodes[0], 3)
    assert nodes[0].sent[3:5] == [0, 1]  # a.yaml, now free
    assert claim(claims, "a.yaml", "gw9") == "gw0"


def test_claims_run_everything_exactly_once(tmp_path: Path) -> None:
    nodes, sched, claims = claimed(tmp_path, 2)
    claim(claims, "b.yaml", "gw1")
    ran = drive(sched, nodes)
    everything = sorted(nodeid for items in ran.values() for nodeid in items)
    assert everything == sorted(COLLECTION)
    assert all(i.startswith("b.yaml") is False for i in ran["gw0"])
    assert claims.in_flight() == 0  # every claim released as its job ended


def test_a_job_that_is_over_is_never_claimed_again_by_a_worker_that_comes_up_late(tmp_path: Path) -> None:
    """The first worker's jobs can end before the others are up (they are held back while it
    starts): a late worker must find them taken, not free."""
    nodes, sched, claims = claimed(tmp_path, 2)
    claim(claims, "a.yaml", "gw0")
    sched.add_node_collection(nodes[0], COLLECTION)
    sched.schedule()
    sched.mark_test_complete(nodes[0], 0)
    sched.mark_test_complete(nodes[0], 1)  # a.yaml is over
    assert claim(claims, "a.yaml", "gw1") == "gw0"  # gw1, up only now: a.yaml is not its to run
    sched.remove_node(nodes[0])  # nor after its worker has gone
    assert claim(claims, "a.yaml", "gw1") == "gw0"


def test_a_finished_job_its_crashed_worker_never_reported_is_lost_not_run_again(tmp_path: Path) -> None:
    from pytest_lava.plugin.claims import claim_name

    lost: list[str] = []
    claims = Claims(tmp_path)
    nodes = [FakeNode("gw0"), FakeNode("gw1")]
    sched = JobScheduling(2, unit_of, claims=claims, lost_unit=lambda key, ids, why: lost.append(key[1]))
    for node in nodes:
        sched.add_node(node)
    claim(claims, "c.yaml", "gw0")  # gw0 claimed c, ran it to its end, and crashed before its collection came
    claims.mark_done(claim_name("c.yaml"))
    sched.add_node_collection(nodes[1], COLLECTION)
    sched.schedule()
    assert 5 not in nodes[1].sent
    sched.remove_node(nodes[0])
    assert lost == ["c.yaml"]
    assert "c.yaml" not in {key[1] for key in sched.workqueue}
    assert claim(claims, "c.yaml", "gw1") == "gw0"


def test_a_worker_gone_before_any_collection_leaves_no_claim_behind(tmp_path: Path) -> None:
    nodes, sched, claims = claimed(tmp_path, 2)
    claim(claims, "a.yaml", "gw1")
    claim(claims, "b.yaml", "gw1")
    sched.remove_node(nodes[1])  # before anything was collected
    assert claims.in_flight() == 0
    sched.add_node_collection(nodes[0], COLLECTION)
    sched.schedule()
    assert nodes[0].sent[:2] == [0, 1]  # a.yaml is free again


def test_plain_tests_do_not_wait_for_jobs_in_flight(tmp_path: Path) -> None:
    nodes, sched, claims = claimed(tmp_path, 2)
    for job in ("a.yaml", "b.yaml"):
        claim(claims, job, "gw0")
    for node in nodes:
        sched.add_node_collection(node, COLLECTION)
    sched.schedule()
    assert nodes[0].sent == [0, 1, 2, 3, 4]
    assert nodes[1].sent and all(COLLECTION[i].startswith("t.py") for i in nodes[1].sent)  # -n 2 jobs in flight


def test_a_job_finished_on_a_crashed_workers_thread_is_reported_not_run_again(tmp_path: Path) -> None:
    from pytest_lava.plugin.claims import claim_name

    lost: list[tuple[str, list[str]]] = []
    claims = Claims(tmp_path)
    nodes = [FakeNode("gw0"), FakeNode("gw1")]
    sched = JobScheduling(2, unit_of, claims=claims, lost_unit=lambda key, ids, why: lost.append((key[1], ids)))
    for node in nodes:
        sched.add_node(node)
    claim(claims, "a.yaml", "gw0")
    claim(claims, "b.yaml", "gw0")
    sched.add_node_collection(nodes[0], COLLECTION)
    sched.schedule()
    claims.mark_done(claim_name("b.yaml"))  # b's thread finished (and submitted); a's had not
    sched.remove_node(nodes[0])
    assert lost == [("b.yaml", ["b.yaml::x[1]", "b.yaml::x[2]", "b.yaml::x[3]"])]
    assert "a.yaml" in {key[1] for key in sched.workqueue} and "b.yaml" not in {key[1] for key in sched.workqueue}
    assert claims.in_flight() == 0


def test_jobs_claimed_by_a_worker_with_another_collection_are_reported_not_run_again(tmp_path: Path) -> None:
    lost: list[str] = []
    claims = Claims(tmp_path)
    nodes = [FakeNode("gw0"), FakeNode("gw1")]
    sched = JobScheduling(2, unit_of, claims=claims, collection_mismatch=lambda where: None,
                          lost_unit=lambda key, ids, why: lost.append(key[1]))
    for node in nodes:
        sched.add_node(node)
    sched.add_node_collection(nodes[0], COLLECTION)
    sched.schedule()
    claim(claims, "c.yaml", "gw1")  # gw1 claimed c and started it, but collected something else
    sched.add_node_collection(nodes[1], COLLECTION[:-1])
    assert lost == ["c.yaml"] and all(key[1] != "c.yaml" for key in sched.workqueue)


class FakeChannel:
    def isclosed(self) -> bool:
        return False  # a worker killed outright never closes its channel: xdist sees shutting_down


@dataclass
class StartingNode:
    channel: FakeChannel = field(default_factory=FakeChannel)
    shutting_down: bool = False


def test_the_other_workers_are_held_back_until_the_first_has_claimed(tmp_path: Path) -> None:
    import threading

    from pytest_lava.plugin.claims import Gate

    claims = Claims(tmp_path)
    first = StartingNode()
    gate = Gate.for_first(first, claims, 600.0)
    gate.hold(first)  # the first itself is never held
    held = threading.Thread(target=gate.hold, args=(StartingNode(),), daemon=True)
    held.start()
    held.join(0.2)
    assert held.is_alive()  # the first worker has not claimed yet
    claims.mark_ready()
    held.join(60)
    assert not held.is_alive()
    gate.hold(StartingNode())  # returns at once from now on


def test_a_first_worker_that_is_gone_or_silent_holds_nobody_back_for_long(tmp_path: Path) -> None:
    from pytest_lava.plugin.claims import Gate

    crashed = StartingNode(shutting_down=True)
    gate = Gate.for_first(crashed, Claims(tmp_path / "a"), 600.0)
    (tmp_path / "a").mkdir()
    gate.hold(StartingNode())  # its process is gone: at once, and open for good
    assert gate.claims.ready()
    (tmp_path / "b").mkdir()
    silent = Gate.for_first(StartingNode(), Claims(tmp_path / "b"), 0.0)  # the session's deadline has passed
    silent.hold(StartingNode())
    assert silent.claims.ready()  # one deadline for the session, not one per worker
