"""Random job structures thrown at the loader: a valid Job, or a clean JobError — nothing else.

Three sources: random JSON-like trees (biased towards the job vocabulary, so they get deep into
validation), mutations of a valid job (keys deleted, values replaced by random ones, keys added),
and random text through the YAML/JSON parsers. Whatever validates must also survive what the
plugin does next: variants, effective timeouts, labels and the printed plan.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_lava.actions import registry
from pytest_lava.core.errors import JobError
from pytest_lava.devices.device import Device
from pytest_lava.devices.directory import DeviceSet
from pytest_lava.jobs.job import Job, job_from_document, load_job
from pytest_lava.jobs.loader import Document, parse_text
from pytest_lava.jobs.plan import Plan

SETTINGS = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEWER = settings(SETTINGS, max_examples=100)  # for the slower-to-generate, less central properties
FILE = "fuzz.json"

ACTIONS = sorted(registry())
KEYS = sorted({"timeout", "actions", "command", "parameters", "metadata", "target", "device_type", "job_name",
               "tags", "priority", "logging_level", "health_check", "kernel_matrix", "hwpack", "rootfs", "image",
               "test_name", "tests", "testdefs", "testdef_urls", "testdef_repos", "git-repo", "commands",
               "command_file", "server", "token", "options", "arg", "boot", "system", "data", "kernel"})
STRINGS = st.sampled_from(ACTIONS + KEYS + ["http://example.org/x.deb", "ftp://x/y", "panda01", "DEBUG",
                                            "high", "", "linux-image", "file:///tmp/r.tgz", "-1"]) | st.text(max_size=8)
SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
           | STRINGS)


def trees(leaves: st.SearchStrategy[Any] = SCALARS) -> st.SearchStrategy[Any]:
    return st.recursive(leaves, lambda children: st.lists(children, max_size=5)
                        | st.dictionaries(STRINGS | st.integers(-3, 3), children, max_size=6), max_leaves=20)


TREES = trees()  # built once: constructing a recursive strategy per draw is what costs time


def check(data: Any) -> Job | None:
    """The property: a valid, usable Job, or a JobError whose problems all have a file and a reason."""
    try:
        job = job_from_document(Document(FILE, data), Path(FILE))
    except JobError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == FILE
            assert problem.reason.strip()
            assert problem.line is None or problem.line >= 1
            str(problem)
        return None
    exercise(job)
    return job


def exercise(job: Job) -> None:
    assert job.actions
    assert math.isfinite(job.timeout) and job.timeout > 0
    board = Device(name="b1", device_type="t")
    devices = DeviceSet(Path("lab"), {"b1": board})
    for variant in job.variants():
        for action in variant.actions:
            timeout = variant.action_timeout(action)
            assert 0 < timeout <= variant.timeout
            assert isinstance(action.test_case_id, str) and isinstance(action.label, str)
            action.masked_parameters()
        try:
            plan = Plan.build(variant, devices, device_override="b1")
        except JobError as exc:  # the board type refuses an action or its parameters: a clean problem
            assert exc.problems and all(p.file == FILE and p.reason.strip() for p in exc.problems)
            continue
        assert "b1" in plan.describe()


# --- a valid job to mutate ----------------------------------------------------------------------

def valid_job() -> dict[str, Any]:
    return {
        "job_name": "fuzz", "target": "panda01", "timeout": 18000, "tags": ["a"], "priority": "low",
        "logging_level": "DEBUG", "health_check": False,
        "actions": [
            {"command": "deploy_linaro_image",
             "parameters": {"hwpack": "http://x/h.tgz", "rootfs": "http://x/r.tgz",
                            "kernel_matrix": [["http://x/linux-image-1_1.deb", "linux-image"],
                                              ["http://x/linux-image-2_2.deb", "linux-image"]]},
             "metadata": {"rootfs.type": "ubuntu"}},
            {"command": "lava_test_install", "parameters": {"tests": ["stream"], "timeout": 100}},
            {"command": "boot_linaro_image", "parameters": {"options": ["a=b"]}},
            {"command": "lava_test_shell", "parameters": {
                "testdef_repos": [{"git-repo": "http://x/t.git", "testdef": "smoke.yaml"}],
                "testdefs": ["smoke", {"metadata": {"format": "Lava-Test Test Definition 1.0", "name": "inline"},
                                        "run": {"steps": ["true"]}}]}},
            {"command": "lava_android_test_run_custom", "parameters": {"commands": ["ls"]}},
            {"command": "lava_test_run", "parameters": {"test_name": "stream", "timeout": -1}},
            {"command": "submit_results", "parameters": {"server": "http://x/RPC2/", "token": "secret"}},
        ],
    }


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys/indices) into a JSON-like value."""
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += paths(child, (*prefix, i))
    return out


@st.composite
def mutated_jobs(draw: st.DrawFn) -> Any:
    data: Any = valid_job()
    for _ in range(draw(st.integers(1, 4))):
        candidates = paths(data)
        path = draw(st.sampled_from(candidates))
        op = draw(st.sampled_from(["delete", "replace", "add"]))
        if not path:
            if op == "replace":
                data = draw(TREES)
            continue
        parent = data
        try:
            for key in path[:-1]:
                parent = parent[key]
        except (KeyError, IndexError, TypeError):
            continue
        last = path[-1]
        if op == "delete":
            del parent[last]
        elif op == "replace":
            parent[last] = draw(TREES)
        elif isinstance(parent[last], dict):
            parent[last][draw(STRINGS)] = draw(TREES)
        elif isinstance(parent[last], list):
            parent[last].insert(draw(st.integers(0, len(parent[last]))), draw(TREES))
    return data


# --- the properties -----------------------------------------------------------------------------

def test_the_valid_job_is_valid() -> None:
    job = check(valid_job())
    assert job is not None and len(job.variants()) == 2


@SETTINGS
@given(TREES)
def test_random_trees(data: Any) -> None:
    check(data)


@FEWER
@given(st.fixed_dictionaries({"timeout": SCALARS | st.just(60)},
                             optional={"target": SCALARS, "tags": TREES, "priority": SCALARS,
                                       "logging_level": SCALARS, "health_check": SCALARS,
                                       "actions": st.lists(
                                           st.fixed_dictionaries({"command": st.sampled_from(ACTIONS)},
                                                                 optional={"parameters": TREES,
                                                                           "metadata": TREES}),
                                           max_size=4)}))
def test_job_shaped_trees(data: Any) -> None:
    check(data)


@SETTINGS
@given(mutated_jobs())
def test_mutations_of_a_valid_job(data: Any) -> None:
    check(data)


@FEWER
@given(TREES, st.booleans())
def test_through_the_parsers(data: Any, as_json: bool) -> None:
    """Serialised and parsed again: line numbers are collected for whatever the file holds."""
    text = json.dumps(data) if as_json else yaml.safe_dump(data)
    doc = parse_text(text, FILE, json_syntax=as_json)
    if doc.problem is None:
        check(doc.data)
    else:
        assert doc.problem.file == FILE and doc.problem.reason


@SETTINGS
@given(st.text(max_size=200) | st.sampled_from(["{", "[1,", "a: [", "- -\n -", "{a: 1}: 2", "? [1]\n: 2", "*x",
                                                 "!!python/object:os.system {}", "a: !!binary AAA=", "0x_1: .nan"]),
       st.booleans())
def test_random_text(text: str, as_json: bool) -> None:
    doc = parse_text(text, FILE, json_syntax=as_json)
    if doc.problem is not None:
        assert doc.problem.file == FILE and doc.problem.reason
        assert doc.problem.line is None or doc.problem.line >= 1
    else:
        check(doc.data)


def test_load_job_on_awkward_files(tmp_path: Path) -> None:
    cases = {"a.json": b"\xff\xfe{}", "b.yaml": b"timeout: .inf\nactions: [{command: boot_master_image}]\n",
             "c.yaml": b"timeout: .nan\nactions: [{command: boot_master_image}]\n",
             "d.yaml": b"&a [*a]\n", "e.yaml": b"timeout: 1e400\nactions: [{command: boot_master_image}]\n",
             "f.json": b'{"timeout": 1e400, "actions": [{"command": "boot_master_image"}]}',
             "g.yaml": b"--- 1\n--- 2\n", "h.yaml": b"a: &x 1\nb: *y\n"}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        try:
            exercise(load_job(tmp_path / name))
        except JobError as exc:
            assert all(p.reason and p.file.endswith(name) for p in exc.problems)
