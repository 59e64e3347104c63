"""xdist scheduling: every item of one job (one kernel_matrix variant) runs on one worker, in order.

A job holds a board from its first item to its last, so its items must not be spread over workers
(each would lease and boot a board of its own). pytest-xdist's public hook
``pytest_xdist_make_scheduler`` hands the plugin the scheduling whenever ``-n``/``--tx`` is used; the
scheduler here makes each job one *work unit* and gives a worker a new unit only when it is about to
finish the one it has, so long jobs spread over the workers as boards free up. Items that are not
LAVA jobs (plain pytest tests in the same session) are scheduled as the user's ``--dist`` asks:
one test per unit for ``load`` (the default), by file for ``loadfile``, by class/module for
``loadscope``, by ``xdist_group`` for ``loadgroup``.

The controller collects nothing: it learns which job a node id belongs to from the job files
themselves (:func:`pytest_lava.plugin.items.item_paths` is the single source of item names;
the units and the hosts they must run from are :mod:`.units`).

Workers on several hosts (``--tx ssh=host//python=…``): a device may name the host it must be run
from (``dispatcher_host``: a USB console, a local power switch). A job whose every candidate board
names a host goes only to workers on one of those hosts — a worker's host is its ``--tx ssh=``
host (the last word of the ssh arguments, without ``user@``: the host's hostname, or an ssh_config
alias of that name), and this host's name for local (``popen``) workers. A job no worker can run
is reported as an error; the pool, on the worker, refuses boards of other hosts all the same.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from .claims import Claims, claim_name
from .units import Hosts, JobUnits, UnitKey, worker_hosts

# a claimed job that ended on its worker's thread, the worker gone before reporting it
_GONE = "ran to its end on worker {node}, which was gone before reporting it; its results are in the results directory"


class JobScheduling:
    """An xdist scheduler (the ``xdist.scheduler.protocol.Scheduling`` protocol) of whole work units.

    A worker runs an item only once it knows the next one (or is told to shut down), so a worker is
    given its next unit when it has one item left, and shut down when nothing is left.

    Scheduling starts with the first worker that has collected: its board boots while the other
    workers are still starting (eight workers take seconds to start on two cores). A unit is kept
    for each worker still starting, so an early worker does not take two jobs while another
    worker would have none; when the units left are all kept so, the early worker is told to shut
    down after its job — which lets it run its last item now.

    With ``claims`` (workers on this host, see claims.py), a worker that is up claims the jobs of
    workers still starting and runs them side by side: it is sent every job it claimed, a job
    claimed by one worker never goes to another, and a worker with nothing to do waits while ``-n``
    jobs are in flight."""

    def __init__(self, numnodes: int, unit_of: Callable[[str], UnitKey],
                 log: Callable[..., None] | None = None,
                 collection_mismatch: Callable[[str], None] | None = None,
                 hosts_of: Callable[[UnitKey], Hosts] | None = None,
                 node_hosts: Callable[[Any], frozenset[str]] = worker_hosts,
                 unroutable: Callable[[UnitKey, frozenset[str], list[str]], None] | None = None,
                 claims: Claims | None = None,
                 lost_unit: Callable[[UnitKey, list[str], str], None] | None = None) -> None:
        self.numnodes = numnodes
        self.claims = claims
        self._ended: set[str] = set()  # claims of jobs that are over (Claims.end)
        self.lost_unit = lost_unit  # a claimed job that ran where its items cannot be reported
        self.unit_of = unit_of
        self.hosts_of = hosts_of or (lambda key: None)
        self.node_hosts = node_hosts
        self.unroutable = unroutable
        self.log = log or (lambda *args: None)
        self.collection_mismatch = collection_mismatch
        self.collection: list[str] | None = None
        self.workqueue: OrderedDict[UnitKey, dict[str, bool]] = OrderedDict()
        self.assigned: dict[Any, dict[UnitKey, dict[str, bool]]] = {}
        self.collections: dict[Any, list[str]] = {}
        self.lost = 0  # workers that will never take work: a different collection, gone before collecting

    # -- the protocol's state ---------------------------------------------------------------

    @property
    def nodes(self) -> list[Any]:
        return list(self.assigned)

    @property
    def collection_is_completed(self) -> bool:
        return bool(self.collections)  # scheduling starts with the first worker (see the class)

    def _starting(self) -> int:
        """Workers still starting: one unit is kept for each."""
        return max(0, self.numnodes - len(self.collections) - self.lost)

    @property
    def tests_finished(self) -> bool:
        if not self.collection_is_completed or self.workqueue:
            return False
        return all(_pending(work) < 2 for work in self.assigned.values())

    @property
    def has_pending(self) -> bool:
        return bool(self.workqueue) or any(_pending(work) for work in self.assigned.values())

    # -- nodes ------------------------------------------------------------------------------

    def add_node(self, node: Any) -> None:
        self.assigned[node] = {}

    def add_node_collection(self, node: Any, collection: Sequence[str]) -> None:
        if self.collection is not None and list(collection) != self.collection:
            self.log(f"worker {node.gateway.id} collected different tests; it gets none")
            if self.collection_mismatch is not None:
                self.collection_mismatch(node.gateway.id)
            self.lost += 1
            # the jobs it claimed run (and end) on its threads all the same: never a second time elsewhere
            self._drop_claimed(node, "ran on worker {node}, whose collection differed; their results are in the "
                                     "results directory, but their items cannot be reported")
            self._release_claims_of(node)
            return
        self.collections[node] = list(collection)

    def remove_node(self, node: Any) -> str | None:
        """A worker went away; its unfinished items go back to the queue. Returns the item it was on."""
        if node not in self.collections:
            self.lost += 1
        work = self.assigned.pop(node, {})
        crashed = next((nodeid for unit in work.values() for nodeid, done in unit.items() if not done), None)
        for key, unit in work.items():
            rest = {nodeid: False for nodeid, done in unit.items() if not done}
            if rest and self._done(key):  # finished (and submitted) on its thread: never run it again
                self._lose(key, list(rest), _GONE.format(node=node.gateway.id))
                self._end(key)
            elif rest:
                self.workqueue[key] = rest
                self.workqueue.move_to_end(key, last=False)
                self._release(key)
            else:
                self._end(key)
        self._drop_claimed(node, _GONE, only_done=True)  # claimed, never sent, but finished all the same
        self._release_claims_of(node)  # claimed, never sent, not finished: another worker may run them
        for other in self.nodes:
            self._reschedule(other)
        return crashed

    # -- progress ---------------------------------------------------------------------------

    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        nodeid = self.collections[node][item_index]
        key = self.unit_of(nodeid)
        unit = self.assigned[node][key]
        unit[nodeid] = True
        if self.claims is not None and all(unit.values()):
            self._end(key)  # one job fewer in flight: a waiting worker may take one
            for other in self.nodes:
                if other is not node:
                    self._reschedule(other)
        self._reschedule(node)

    def mark_test_pending(self, item: str) -> None:
        raise NotImplementedError("pytest-lava's scheduler does not steal work")

    def remove_pending_tests_from_node(self, node: Any, indices: Sequence[int]) -> None:
        raise NotImplementedError("pytest-lava's scheduler does not steal work")

    def schedule(self) -> None:
        if self.collection is not None:  # a node came up late: give it work
            if not self._starting():  # every worker is up: what no host can run is known now
                self._drop_unroutable()
            for node in self.nodes:
                self._assign_claimed(node)
                self._reschedule(node)
            return
        collections = list(self.collections.values())
        if not collections:
            return
        self.collection = collections[0]
        if any(c != self.collection for c in collections[1:]):
            self.log("workers collected different tests; not scheduling")
            if self.collection_mismatch is not None:
                self.collection_mismatch("workers collected different tests")
            return
        for nodeid in self.collection:
            self.workqueue.setdefault(self.unit_of(nodeid), {})[nodeid] = False
        if not self._starting():  # with workers still starting, their hosts are not known yet
            self._drop_unroutable()
        for node in self.nodes:  # one unit each first, so every worker starts at once
            if node not in self.collections:
                continue
            if self._assign_claimed(node) or self._full():
                continue  # running what it claimed; or (below) plain tests, or waiting for a job to end
            if not self._assign(node):
                node.shutdown()
        for node in self.nodes:
            self._reschedule(node)

    def _drop_unroutable(self) -> None:
        """Units that must run from hosts no worker is on: reported, never sent."""
        everywhere = frozenset().union(*(self.node_hosts(n) for n in self.collections))
        for key in list(self.workqueue):
            hosts = self.hosts_of(key)
            if hosts is not None and not hosts & everywhere:
                unit = self.workqueue.pop(key)
                self.log(f"{key[1]}: no worker on {', '.join(sorted(hosts))}")
                if self.unroutable is not None:
                    self.unroutable(key, hosts, list(unit))

    def _candidates(self, node: Any) -> Iterator[UnitKey]:
        """The queued units this worker's host may run and no other worker has claimed, in order."""
        mine = self.node_hosts(node)
        for key in list(self.workqueue):
            hosts = self.hosts_of(key)
            if (hosts is None or hosts & mine) and self._owner(key) in (None, node.gateway.id):
                yield key

    def _assign(self, node: Any, jobs: bool = True) -> bool:
        """Send the worker its next unit (``jobs=False``: only a plain test's); False if there is
        none it may run."""
        for key in self._candidates(node):
            if key[0] != "job" or self.claims is None:
                self._send(node, key)
                return True
            if not jobs:
                continue
            owner = self.claims.claim(claim_name(key[1]), node.gateway.id)
            if owner == node.gateway.id:
                self._send(node, key)
                return True
        return False

    def _assign_claimed(self, node: Any) -> bool:
        """Send the worker every queued job it claimed itself (it is running them already)."""
        if self.claims is None or node not in self.collections:
            return False
        mine = [key for key in self.workqueue if key[0] == "job" and self._owner(key) == node.gateway.id]
        for key in mine:
            self._send(node, key)
        return bool(mine)

    def _owner(self, key: UnitKey) -> str | None:
        if self.claims is None or key[0] != "job":
            return None
        return self.claims.owner(claim_name(key[1]))

    def _release(self, key: UnitKey) -> None:
        if self.claims is not None and key[0] == "job":
            self.claims.release(claim_name(key[1]))

    def _end(self, key: UnitKey) -> None:
        if self.claims is not None and key[0] == "job":
            name = claim_name(key[1])
            self._ended.add(name)  # over, even if its mark cannot be written (a full disk)
            if not self.claims.end(name):
                self.log(f"{key[1]}: could not mark its claim over in {self.claims.directory}")

    def _release_claims_of(self, node: Any) -> None:
        """Every claim file of a worker that is gone (queued or not: its collection may never have come)."""
        if self.claims is not None:
            for name in self.claims.owned_by(node.gateway.id):
                self.claims.release(name)

    def _done(self, key: UnitKey) -> bool:
        return self.claims is not None and key[0] == "job" and self.claims.is_done(claim_name(key[1]))

    def _drop_claimed(self, node: Any, why: str, *, only_done: bool = False) -> None:
        """The queued jobs ``node`` claimed (``only_done``: those finished on its threads): taken out
        of the queue, reported as ``why`` and over."""
        for key in list(self.workqueue):
            if self._owner(key) == node.gateway.id and (not only_done or self._done(key)):
                self._lose(key, list(self.workqueue.pop(key)), why.format(node=node.gateway.id))
                self._end(key)

    def _lose(self, key: UnitKey, nodeids: list[str], why: str) -> None:
        self.log(f"{key[1]}: {why}")
        if self.lost_unit is not None:
            self.lost_unit(key, nodeids, why)

    def _full(self) -> bool:
        """``-n`` jobs are in flight: a worker with nothing to do waits (claims only)."""
        return self.claims is not None and self.claims.in_flight(over=self._ended) >= self.numnodes

    def _send(self, node: Any, key: UnitKey) -> None:
        unit = self.workqueue.pop(key)
        self.assigned[node][key] = unit
        index = {nodeid: i for i, nodeid in enumerate(self.collections[node])}
        node.send_runtest_some([index[nodeid] for nodeid, done in unit.items() if not done])

    def _reschedule(self, node: Any) -> None:
        if node.shutting_down or node not in self.collections:
            return
        while (pending := _pending(self.assigned[node])) <= 1:
            if not self.workqueue:
                node.shutdown()
                return
            if self._full():  # -n jobs in flight: plain tests still go, jobs wait
                if self._assign(node, jobs=False):
                    continue
                if pending == 0:
                    return  # it gets a job when one in flight is done (mark_test_complete)
                # one item left, which it cannot run before it knows the next: a job, past -n for a moment
            elif pending and len(self.workqueue) <= self._starting():
                node.shutdown()  # what is left is kept for workers still starting: run the last item now
                return
            if not self._assign(node):  # nothing left this worker's host may run
                node.shutdown()
                return
            # a one-item unit: the worker needs the next one (or a shutdown) to run it


def _pending(work: dict[UnitKey, dict[str, bool]]) -> int:
    return sum(1 for unit in work.values() for done in unit.values() if not done)


def make_scheduler(config: pytest.Config, jobs: dict[Path, list[Any]], log: Any,
                   hosts_of_job: Callable[[Any], Hosts] | None = None,
                   claims: Claims | None = None) -> JobScheduling:
    """The scheduler for a session with LAVA jobs (called from the xdist hook in wiring.py)."""
    units = JobUnits(jobs, config.rootpath, str(config.getoption("dist", "load")), hosts_of_job)

    def mismatch(where: str) -> None:
        config.hook.pytest_collectreport(report=pytest.CollectReport(
            nodeid=where, outcome="failed", longrepr=f"xdist: {where}: collections differ", result=[]))

    def unroutable(key: UnitKey, hosts: frozenset[str], nodeids: list[str]) -> None:
        config.hook.pytest_collectreport(report=pytest.CollectReport(
            nodeid=nodeids[0].split("::")[0], outcome="failed", result=[],
            longrepr=f"{key[1].rsplit('#', 1)[0]}: its boards must be run from {' or '.join(sorted(hosts))} "
                     "(dispatcher_host), and no worker runs there: add one (--tx ssh=HOST//python=...)"))

    def lost(key: UnitKey, nodeids: list[str], why: str) -> None:
        config.hook.pytest_collectreport(report=pytest.CollectReport(
            nodeid=nodeids[0].split("::")[0], outcome="failed", result=[],
            longrepr=f"{key[1].rsplit('#', 1)[0]}: the job {why}"))

    return JobScheduling(worker_count(config), units.key, log=log, collection_mismatch=mismatch,
                         hosts_of=units.hosts, unroutable=unroutable, claims=claims, lost_unit=lost)


def worker_count(config: pytest.Config) -> int:
    """How many workers xdist starts: its ``--tx`` specs (``-n N`` is N times ``popen``), ``K*spec`` K times."""
    count = 0
    for spec in config.getoption("tx", None) or []:
        times, star, _ = str(spec).partition("*")
        count += int(times) if star and times.isdigit() else 1
    return count or int(config.getoption("numprocesses", 0) or 0)
