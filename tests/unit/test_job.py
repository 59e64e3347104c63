"""The job model: loading, validation results, kernel_matrix variants, effective timeouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_lava.actions import registry
from pytest_lava.actions.spec import SETUP, SUBMIT, TEST
from pytest_lava.core.errors import JobError
from pytest_lava.jobs.job import HIDDEN, Job, job_from_document, load_job
from pytest_lava.jobs.loader import parse_text

DATA = Path(__file__).resolve().parent.parent / "data"
HWPACK = "http://example.org/hwpack_linaro-panda_armel.tar.gz"
ROOTFS = "http://example.org/linaro-developer.tar.gz"


def deb(version: str, flavour: str = "linaro-omap") -> str:
    return f"http://pkg.example.org/pool/linux-image-{version}-{flavour}_{version}.1_armhf.deb"


def make(data: dict, name: str = "job.json") -> Job:
    text = json.dumps(data, indent=1)
    return job_from_document(parse_text(text, name, json_syntax=True), Path(name))


def problems(data: dict) -> list[str]:
    with pytest.raises(JobError) as info:
        make(data)
    return [f"{p.path}: {p.reason}" for p in info.value.problems]


def deploy_job(timeout: float = 18000, **deploy: object) -> dict:
    return {"timeout": timeout, "target": "panda01", "actions": [
        {"command": "deploy_linaro_image", "parameters": {"hwpack": HWPACK, "rootfs": ROOTFS, **deploy}},
        {"command": "boot_linaro_image"},
        {"command": "lava_test_run", "parameters": {"test_name": "stream"}},
        {"command": "submit_results", "parameters": {"server": "http://localhost/RPC2/", "token": "abcdef"}},
    ]}


# --- loading ------------------------------------------------------------------------------------

def test_old_panda_json() -> None:
    job = load_job(DATA / "jobs" / "old-panda.json")
    assert (job.name, job.target, job.device_type, job.timeout) == ("foo", "panda01", None, 18000.0)
    assert [a.command for a in job.actions] == ["deploy_linaro_image", "lava_test_install", "boot_linaro_image",
                                                "lava_test_run", "submit_results"]
    assert [a.kind for a in job.actions] == [SETUP, SETUP, SETUP, TEST, SUBMIT]
    assert [a.path for a in job.actions] == [f"actions[{i}]" for i in range(5)]
    assert [a.command for a in job.test_actions()] == ["lava_test_run"]
    assert [a.command for a in job.submit_actions()] == ["submit_results"]
    assert job.actions[3].test_case_id == "lava_test_run (stream)"
    assert job.actions[3].label == "stream"
    assert job.actions[2].parameters == {}
    assert job.id == "old-panda" and job.variant == ""
    assert job.warnings == []


def test_yaml_job() -> None:
    job = load_job(DATA / "jobs" / "panda-smoke.yaml")
    assert (job.name, job.target, job.device_type) == ("panda-smoke", None, "panda")
    assert (job.logging_level, job.priority, job.tags) == ("DEBUG", "high", ["smoke", "nightly"])
    assert job.actions[2].label == "smoke"
    assert job.actions[4].kind == SUBMIT


def test_json_and_yaml_give_the_same_job(tmp_path: Path) -> None:
    import yaml

    data = json.loads((DATA / "jobs" / "old-panda.json").read_text())
    (tmp_path / "same.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "same.json").write_text(json.dumps(data))
    a, b = load_job(tmp_path / "same.yaml"), load_job(tmp_path / "same.json")
    assert [(x.command, x.parameters) for x in a.actions] == [(x.command, x.parameters) for x in b.actions]
    assert (a.timeout, a.target, a.name) == (b.timeout, b.target, b.name)


def test_defaults_and_unknown_top_level_keys() -> None:
    job = make({"timeout": 60, "device_type": "panda", "notify": ["a@example.org"], "device_tags": ["usb"],
                "actions": [{"command": "boot_master_image", "metadata": {"rootfs.build": 61}}]})
    assert job.name == "job"  # the file stem
    assert (job.logging_level, job.priority, job.health_check, job.tags) == ("INFO", None, False, [])
    assert job.data["notify"] == ["a@example.org"]
    assert job.actions[0].metadata == {"rootfs.build": "61"}


def test_masked_parameters() -> None:
    job = make(deploy_job())
    submit = job.submit_actions()[0]
    assert submit.parameters["token"] == "abcdef"
    assert submit.masked_parameters() == {"server": "http://localhost/RPC2/", "token": HIDDEN}


def test_every_builtin_action_is_known() -> None:
    names = {"add_apt_repository", "android_install_binaries", "boot_linaro_android_image", "boot_linaro_image",
             "boot_master_image", "deploy_linaro_android_image", "deploy_linaro_image", "lava_android_test_install",
             "lava_android_test_run", "lava_android_test_run_custom", "lava_test_install", "lava_test_run",
             "submit_results", "submit_results_on_host", "lava_test_shell", "deploy_linaro_kernel"}
    assert names <= set(registry())


def test_all_problems_at_once_with_lines() -> None:
    text = ("timeout: -1\n"  # 1
            "tags: [a, a]\n"  # 2
            "actions:\n"  # 3
            "  - command: lava_test_run\n"  # 4
            "    parameters:\n"  # 5
            "      test_name: 3\n"  # 6
            "  - command: boot_linaro_imag\n"  # 7
            "  - command: deploy_linaro_image\n"  # 8
            "    parameters: {image: ftp://x/y.img, hwpack: http://x/h.tgz}\n")  # 9
    with pytest.raises(JobError) as info:
        job_from_document(parse_text(text, "j.yaml", json_syntax=False), Path("j.yaml"))
    got = [(p.line, p.path) for p in info.value.problems]
    assert (1, "timeout") in got
    assert (2, "tags") in got
    assert (6, "actions[0].parameters.test_name") in got
    assert (7, "actions[1].command") in got
    assert (9, "actions[2].parameters.hwpack") in got
    assert all(p.file == "j.yaml" for p in info.value.problems)
    assert "did you mean 'boot_linaro_image'" in str(info.value)


def test_rules_run_only_on_well_typed_parameters() -> None:
    # a wrong type is reported once, not again by the rules that read the value
    assert problems(deploy_job(kernel_matrix="linux.deb")) == [
        "actions[0].parameters.kernel_matrix: must be a list, not str 'linux.deb'"]


# --- kernel_matrix variants ---------------------------------------------------------------------

def test_variants_one_job_per_kernel() -> None:
    kernels = [[deb("3.8.0-1"), "linux-image"], [deb("3.9.0-2"), "linux-image"], [deb("3.10.0-1"), "linux-image"]]
    job = make(deploy_job(kernel_matrix=kernels))
    variants = job.variants()
    assert [v.variant for v in variants] == ["3.8.0-1-linaro-omap", "3.9.0-2-linaro-omap", "3.10.0-1-linaro-omap"]
    assert [v.id for v in variants] == [f"job-{v.variant}" for v in variants]
    assert len({v.id for v in variants}) == 3
    for variant, kernel in zip(variants, kernels, strict=True):
        assert variant.actions[0].parameters["kernel_matrix"] == kernel
        assert variant.actions[0].parameters["hwpack"] == HWPACK
        assert [a.command for a in variant.actions] == [a.command for a in job.actions]
    assert job.actions[0].parameters["kernel_matrix"] == kernels  # the original is untouched
    assert job.variant == ""


def test_variants_single_kernel_form_is_one_job() -> None:
    job = make(deploy_job(kernel_matrix=[deb("3.8.0-1"), "linux-image-3.8"]))
    assert job.variants() == [job]
    assert make(deploy_job()).variants()[0] is not None


def test_variant_ids_without_matching_prefix_or_clashing() -> None:
    job = make(deploy_job(kernel_matrix=[[deb("3.8.0-1"), "kernel"], [deb("3.9.0-1"), "kernel"]]))
    assert [v.variant for v in job.variants()] == ["linux-image-3.8.0-1-linaro-omap", "linux-image-3.9.0-1-linaro-omap"]
    same = make(deploy_job(kernel_matrix=[[deb("3.8.0-1"), "linux-image"], [deb("3.8.0-1"), "linux-image"]]))
    assert [v.variant for v in same.variants()] == ["kernel-1", "kernel-2"]


def test_kernel_matrix_validation() -> None:
    assert problems(deploy_job(kernel_matrix=[[deb("1"), "linux-image"], "x"])) == [
        "actions[0].parameters.kernel_matrix: must be [kernel .deb URL, package prefix] or a list of such pairs"]
    assert problems(deploy_job(kernel_matrix=[deb("1")[:-3] + "ipk", "linux-image"]))[0].endswith(
        "only .deb kernel packages are supported")


# --- timeouts -----------------------------------------------------------------------------------

def test_action_timeouts_capped_by_the_job_timeout() -> None:
    job = make(deploy_job(timeout=1000))
    assert [job.action_timeout(a) for a in job.actions] == [1000.0, 900.0, 1000.0, 600.0]
    assert job.warnings == []  # defaults above the job timeout are simply capped


def test_explicit_action_timeouts() -> None:
    data = deploy_job(timeout=3000, timeout_=1)
    data["actions"][0]["parameters"].pop("timeout_")
    data["actions"][0]["parameters"]["timeout"] = 600
    data["actions"][2]["parameters"]["timeout"] = 5000
    job = make(data)
    assert [job.action_timeout(a) for a in job.actions] == [600.0, 900.0, 3000.0, 600.0]
    (warning,) = job.warnings
    assert warning == ("job.json: actions[2].parameters.timeout (5000 s) exceeds the job timeout (3000 s); "
                       "the job timeout wins")


@pytest.mark.parametrize(("timeout", "reason"), [
    (None, "is required"), ("60", "must be a number"), (0, "must be a positive"), (-1, "must be a positive"),
    (True, "must be a number"), ([60], "must be a number"),
])
def test_job_timeout_problems(timeout: object, reason: str) -> None:
    data = deploy_job()
    if timeout is None:
        del data["timeout"]
    else:
        data["timeout"] = timeout
    (problem,) = problems(data)
    assert problem.startswith("timeout: " + reason)


def test_float_job_timeout() -> None:
    assert make(deploy_job(timeout=90.5)).timeout == 90.5


@pytest.mark.parametrize("timeout", [0, -5, "60", True])
def test_bad_action_timeout_is_reported_not_ignored(timeout: object) -> None:
    data = deploy_job()
    data["actions"][2]["parameters"]["timeout"] = timeout
    (problem,) = problems(data)
    assert problem.startswith("actions[2].parameters.timeout: ")


def test_minus_one_action_timeout_means_the_default() -> None:
    """The old dispatcher's default for lava_test_run was -1: pexpect's own (1200 s) timeout."""
    data = deploy_job()
    data["actions"][2]["parameters"]["timeout"] = -1
    job = make(data)
    assert job.action_timeout(job.actions[2]) == 1200.0
    assert job.warnings == []


def test_yaml_alias_bomb_is_refused_and_a_few_aliases_are_fine() -> None:
    """A 10-line 'billion laughs' file is refused where its aliases pass the budget (it used to
    hang validation); ordinary aliases still load, and an alias has its anchor's line."""
    lines = ["timeout: 10", "actions: [{command: boot_master_image}]", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    doc = parse_text("\n".join(lines), "laughs.yaml", json_syntax=False)
    assert doc.data is None and doc.problem is not None
    assert doc.problem.line == 7 and doc.problem.path.startswith("a4[") and "alias" in doc.problem.reason
    lines = ["timeout: 10", "actions: [{command: boot_master_image}]", "a0: &a0 [x, x, x]", "a1: [*a0, *a0]"]
    doc = parse_text("\n".join(lines), "few.yaml", json_syntax=False)
    assert doc.problem is None and doc.data["a1"] == [["x"] * 3] * 2
    assert (doc.line("a1[1]"), doc.line("a0[2]"), job_from_document(doc, Path("few.yaml")).timeout) == (3, 3, 10)


def test_json_lines_only_when_needed() -> None:
    doc = parse_text('{"timeout": 10,\n "actions": [\n  {"command": "x"}]}', "j.json", json_syntax=True)
    assert doc.lines == {}  # not built for a valid file
    assert doc.line("actions[0].command") == 3 and doc.line("timeout") == 1


def test_device_tags_must_be_a_list_of_strings(tmp_path: Path) -> None:
    from pytest_lava.core.errors import JobError
    from pytest_lava.jobs.job import load_job

    path = tmp_path / "job.yaml"
    path.write_text("timeout: 10\ndevice_tags: x86\nactions:\n  - command: boot_master_image\n")
    with pytest.raises(JobError, match=r"job.yaml:2: device_tags: must be a list of strings"):
        load_job(path)
