"""Malformed job and device files: each exits 4 with a named error and no traceback.

Every case writes a small lab (YAML layout, or the old INI layout) and a job into the pytester
directory, runs ``pytest --lava-job ... --lava-validate`` and checks that each expected problem is
reported on one line together with the file it is in and the field path (or the line, for syntax
errors). Validation runs in ``pytest_cmdline_main`` before any session state exists, so the runs
are in-process (fast); one case per kind also runs in a subprocess to see the real stderr.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

# --- a valid lab and job to break ---------------------------------------------------------------

LAB = {
    "lab/device-types/panda.yaml": "board_type: master\nboot_cmds: [mmc init, boot]\n",
    "lab/panda01.yaml": "device_type: panda\nconnection: socket://127.0.0.1:7001\n",
}
OLD_LAB = {
    "old/device-defaults.conf": "connection_command = telnet localhost 7001\n",
    "old/device-types/panda.conf": "client_type = master\nboot_cmds = mmc init,\n    boot\n",
    "old/devices/panda01.conf": "device_type = panda\n",
}
HWPACK = "http://example.org/hwpack_linaro-panda_armel.tar.gz"
ROOTFS = "http://example.org/linaro-developer.tar.gz"
IMAGE = "http://example.org/panda.img.gz"
DEB = "http://example.org/linux-image-3.8.0-1-linaro-omap_3.8.0-1.1_armhf.deb"


def job(**changes: object) -> dict:
    """The old-dispatcher panda job (§2.2) with top-level keys replaced (None deletes)."""
    data: dict = {
        "job_name": "panda", "target": "panda01", "timeout": 18000,
        "actions": [
            {"command": "deploy_linaro_image", "parameters": {"hwpack": HWPACK, "rootfs": ROOTFS}},
            {"command": "lava_test_install", "parameters": {"tests": ["stream"]}},
            {"command": "boot_linaro_image"},
            {"command": "lava_test_run", "parameters": {"test_name": "stream"}},
            {"command": "submit_results", "parameters": {"server": "http://localhost/RPC2/",
                                                         "stream": "/anonymous/test/"}},
        ],
    }
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def action(index: int, **changes: object) -> dict:
    """The base job with action ``index`` replaced by ``changes`` merged into it."""
    data = job()
    data["actions"][index] = {**data["actions"][index], **changes}
    return data


def params(index: int, **parameters: object) -> dict:
    """The base job with the parameters of action ``index`` replaced."""
    return action(index, parameters=parameters)


def as_json(data: object) -> str:
    return json.dumps(data, indent=2)


# --- cases --------------------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    job: str | bytes | None  # job.json content (None: no job file written)
    want: list[tuple[str, ...]]  # each tuple: substrings that must appear together on one line
    files: dict[str, str | bytes] = field(default_factory=dict)  # extra/overriding files
    job_name: str = "job.json"
    devices: str = "lab"
    args: tuple[str, ...] = ()


VALID = as_json(job())

CASES = [
    # top-level job keys
    Case("missing-timeout", as_json(job(timeout=None)), [("job.json", ": timeout:", "is required")]),
    Case("string-timeout", as_json(job(timeout="18000")),
         [("job.json:", ": timeout:", "must be a number", "'18000'")]),
    Case("negative-timeout", as_json(job(timeout=-5)), [("job.json", ": timeout:", "must be a positive number")]),
    Case("bool-timeout", as_json(job(timeout=True)), [("job.json", ": timeout:", "must be a number")]),
    Case("infinite-timeout", "timeout: .inf\ntarget: panda01\nactions: [{command: boot_master_image}]\n",
         [("job.yaml:1:", ": timeout:", "inf")], job_name="job.yaml"),
    Case("huge-json-timeout", '{"timeout": 1e400, "target": "panda01", "actions": [{"command": "boot_master_image"}]}',
         [("job.json:1:", ": timeout:", "inf")]),
    Case("bad-logging-level", as_json(job(logging_level="VERBOSE")),
         [("job.json", ": logging_level:", "'VERBOSE'", "DEBUG")]),
    Case("bad-priority", as_json(job(priority="urgent")), [("job.json", ": priority:", "'urgent'", "high")]),
    Case("tags-not-list", as_json(job(tags="smoke")), [("job.json", ": tags:", "list of strings")]),
    Case("duplicate-tags", as_json(job(tags=["a", "b", "a"])), [("job.json", ": tags:", "repeat")]),
    Case("health-check-not-bool", as_json(job(health_check="yes")), [("job.json", ": health_check:", "true or")]),
    Case("target-not-string", as_json(job(target=7)), [("job.json", ": target:", "must be a string")]),
    Case("unknown-target", as_json(job(target="panda1")),
         [("job.json", ": target:", "unknown board 'panda1'", "did you mean 'panda01'")]),
    Case("unknown-device-type", as_json(job(target=None, device_type="beagle")),
         [("job.json", ": device_type:", "'beagle'", "panda")]),
    Case("no-target-no-type", as_json(job(target=None)), [("job.json", ": target:", "--lava-device")]),
    Case("unknown-lava-device", VALID, [("job.json", ": target:", "unknown board 'nosuch'")],
         args=("--lava-device", "nosuch")),
    # file level
    Case("json-syntax-error", '{"timeout": 10,\n "actions": [\n  {"command": "boot_master_image"},,\n]}\n',
         [("job.json:3:", "JSON syntax error")]),
    Case("yaml-syntax-error", "timeout: 10\nactions:\n  - command: boot_master_image\n   parameters: {]\n",
         [("job.yaml:4:", "YAML syntax error")], job_name="job.yaml"),
    Case("yaml-tab-indent", "timeout: 10\nactions:\n\t- command: boot_master_image\n",
         [("job.yaml:3:", "YAML syntax error")], job_name="job.yaml"),
    Case("empty-file", "", [("job.json", "empty")]),
    Case("whitespace-only-yaml", "\n   \n# only a comment\n", [("job.yaml", "job must be a mapping")],
         job_name="job.yaml"),
    Case("top-level-list", as_json([job()]), [("job.json:1:", "must be a mapping", "a list")]),
    Case("top-level-scalar", "42\n", [("job.yaml:1:", "must be a mapping")], job_name="job.yaml"),
    Case("non-utf8", b'{"job_name": "caf\xe9", "timeout": 10, "actions": []}', [("job.json", "not UTF-8")]),
    Case("missing-job-file", None, [("nosuch.json", "not found")], job_name="nosuch.json"),
    Case("job-is-directory", None, [("jobdir.json", "directory")], job_name="jobdir.json",
         files={"jobdir.json/x": "x"}),
    Case("deeply-nested-json", "[" * 100000 + "]" * 100000, [("job.json", "nested too deeply")]),
    # the actions list
    Case("actions-missing", as_json(job(actions=None)), [("job.json", ": actions:", "is required")]),
    Case("actions-not-list", as_json(job(actions={"command": "boot_master_image"})),
         [("job.json", ": actions:", "must be a list", "a mapping")]),
    Case("empty-actions", as_json(job(actions=[])), [("job.json", ": actions:", "at least one")]),
    Case("action-not-mapping", as_json(job(actions=[{"command": "boot_master_image"}, "boot_linaro_image"])),
         [("job.json", ": actions[1]:", "must be a mapping", "'boot_linaro_image'")]),
    Case("action-without-command", as_json(job(actions=[{"command": "boot_master_image"}, {"parameters": {}}])),
         [("job.json", ": actions[1].command:", "is required")]),
    Case("command-null", as_json(action(2, command=None)), [("job.json", ": actions[2].command:", "not null")]),
    Case("command-not-string", as_json(action(2, command=["boot_linaro_image"])),
         [("job.json", ": actions[2].command:", "must be a string")]),
    Case("misspelt-command", as_json(action(0, command="deploy_linaro_imag")),
         [("job.json", ": actions[0].command:", "unknown action 'deploy_linaro_imag'",
           "did you mean 'deploy_linaro_image'")]),
    Case("extra-key-in-action", as_json(action(3, timeout=60)),
         [("job.json", ": actions[3].timeout:", "not allowed in an action")]),
    Case("parameters-not-mapping", as_json(action(1, parameters=["stream"])),
         [("job.json", ": actions[1].parameters:", "must be a mapping")]),
    Case("metadata-not-mapping", as_json(action(0, metadata="android")),
         [("job.json", ": actions[0].metadata:", "must be a mapping")]),
    Case("metadata-nested", as_json(action(0, metadata={"rootfs": {"type": "android"}})),
         [("job.json", ": actions[0].metadata", "strings or numbers")]),
    # parameters
    Case("unknown-parameter", as_json(params(1, test=["stream"])),
         [("job.json", ": actions[1].parameters.test:", "did you mean 'tests'")]),
    Case("wrong-param-type", as_json(params(1, tests="stream")),
         [("job.json", ": actions[1].parameters.tests:", "must be a list", "'stream'")]),
    Case("list-item-wrong-type", as_json(params(1, tests=["stream", 3])),
         [("job.json", ": actions[1].parameters.tests[1]:", "must be a string")]),
    Case("zero-action-timeout", as_json(params(3, test_name="stream", timeout=0)),
         [("job.json", ": actions[3].parameters.timeout:", "positive", "-1")]),
    Case("non-string-parameter-name",
         "timeout: 60\ntarget: panda01\nactions:\n  - command: lava_test_run\n    parameters: {test_name: x, 7: y}\n",
         [("job.yaml:5:", ": actions[0].parameters.7:", "must be a string")], job_name="job.yaml"),
    Case("bool-for-int-param", as_json(params(3, test_name="stream", timeout=True)),
         [("job.json", ": actions[3].parameters.timeout:", "must be an integer")]),
    Case("missing-required-param", as_json(params(3, test_options="-v")),
         [("job.json", ": actions[3].parameters.test_name:", "is required")]),
    Case("hwpack-without-rootfs", as_json(params(0, hwpack=HWPACK)),
         [("job.json", ": actions[0].parameters.hwpack:", "needs 'rootfs'")]),
    Case("image-with-hwpack", as_json(params(0, image=IMAGE, hwpack=HWPACK)),
         [("job.json", ": actions[0].parameters.hwpack:", "'image'")]),
    Case("neither-image-nor-rootfs", as_json(params(0, use_cache=False)),
         [("job.json", ": actions[0].parameters:", "'image' or 'rootfs'")]),
    Case("kernel-matrix-with-image", as_json(params(0, image=IMAGE, kernel_matrix=[DEB, "linux-image"])),
         [("job.json", ": actions[0].parameters.kernel_matrix:", "'image'")]),
    Case("kernel-matrix-bad-shape", as_json(params(0, hwpack=HWPACK, rootfs=ROOTFS, kernel_matrix=[DEB])),
         [("job.json", ": actions[0].parameters.kernel_matrix:", "[kernel .deb URL, package prefix]")]),
    Case("kernel-matrix-bad-entry",
         as_json(params(0, hwpack=HWPACK, rootfs=ROOTFS, kernel_matrix=[[DEB, "linux-image"], [DEB]])),
         [("job.json", ": actions[0].parameters.kernel_matrix[1]:", "package prefix")]),
    Case("kernel-matrix-not-deb",
         as_json(params(0, hwpack=HWPACK, rootfs=ROOTFS, kernel_matrix=[DEB[:-4] + ".rpm", "linux-image"])),
         [("job.json", ": actions[0].parameters.kernel_matrix:", ".deb")]),
    Case("ftp-url", as_json(params(0, hwpack=HWPACK, rootfs="ftp://example.org/rootfs.tar.gz")),
         [("job.json", ": actions[0].parameters.rootfs:", "'ftp://example.org/rootfs.tar.gz'", "http")]),
    Case("bad-register-url", as_json(params(1, tests=["stream"], register=["stream.py"])),
         [("job.json", ": actions[1].parameters.register", "'stream.py'")]),
    Case("empty-tests", as_json(params(1, tests=[])),
         [("job.json", ": actions[1].parameters.tests:", "must not be empty")]),
    Case("lava-test-shell-no-testdefs", as_json(action(3, command="lava_test_shell", parameters={"timeout": 60})),
         [("job.json", ": actions[3].parameters:", "testdef_urls")]),
    Case("testdef-repo-not-mapping",
         as_json(action(3, command="lava_test_shell", parameters={"testdef_repos": ["git://x/y.git"]})),
         [("job.json", ": actions[3].parameters.testdef_repos[0]:", "must be a mapping")]),
    Case("android-custom-both",
         as_json(action(3, command="lava_android_test_run_custom",
                        parameters={"commands": ["ls"], "command_file": "http://example.org/cmds.txt"})),
         [("job.json", ": actions[3].parameters.command_file:", "'commands'")]),
    Case("android-custom-neither",
         as_json(action(3, command="lava_android_test_run_custom", parameters={"parser": "x"})),
         [("job.json", ": actions[3].parameters:", "'commands' or 'command_file'")]),
    Case("android-deploy-missing",
         as_json(action(0, command="deploy_linaro_android_image", parameters={"boot": IMAGE})),
         [("job.json", ": actions[0].parameters.system:", "is required"),
          ("job.json", ": actions[0].parameters.data:", "is required")]),
    Case("submit-without-server", as_json(params(4, stream="/anonymous/x/")),
         [("job.json", ": actions[4].parameters.server:", "is required")]),
    Case("multiple-errors",
         as_json({"timeout": "soon", "target": "panda01", "tags": "x",
                  "actions": [{"command": "deploy_linaro_image", "parameters": {"hwpack": HWPACK}},
                              {"command": "lava_test_instal", "parameters": {"tests": ["stream"]}},
                              {"command": "lava_test_run", "parameters": {"test_name": 1}, "meta": {}}]}),
         [("job.json", ": timeout:"), ("job.json", ": tags:"),
          ("job.json", ": actions[0].parameters.hwpack:", "needs 'rootfs'"),
          ("job.json", ": actions[1].command:", "did you mean 'lava_test_install'"),
          ("job.json", ": actions[2].meta:", "not allowed"),
          ("job.json", ": actions[2].parameters.test_name:", "must be a string")]),
    Case("unknown-lava-test", as_json(params(1, tests=["stream", "glmark"])),
         [("job.json", ": actions[1].parameters.tests[1]:", "no lava-test test 'glmark'", "posixtestsuite",
           "register")]),
    Case("ltp-not-in-the-library", as_json(params(1, tests=["ltp"])),
         [("job.json", ": actions[1].parameters.tests[0]:", "'ltp' is not in the lab's library", "register")]),
    Case("yaml-field-line",
         "timeout: 60\ntarget: panda01\nactions:\n  - command: lava_test_install\n    parameters:\n"
         "      tests: stream\n",
         [("job.yaml:6:", ": actions[0].parameters.tests:", "must be a list")], job_name="job.yaml"),
    # YAML device files
    Case("device-unknown-key", VALID, [("panda01.yaml", ": boot_cmd:", "did you mean 'boot_cmds'")],
         files={"lab/panda01.yaml": "device_type: panda\nboot_cmd: [boot]\n"}),
    Case("device-wrong-type", VALID, [("panda01.yaml", ": boot_cmds:", "list")],
         files={"lab/panda01.yaml": "device_type: panda\nboot_cmds: mmc init\n"}),
    Case("device-bad-number", VALID, [("panda01.yaml", ": boot_retries:", "number")],
         files={"lab/panda01.yaml": "device_type: panda\nboot_retries: many\n"}),
    Case("device-type-bad-timeouts", VALID, [("panda.yaml", ": timeouts:", "'boot'", "seconds")],
         files={"lab/device-types/panda.yaml": "board_type: master\ntimeouts: {boot: soon}\n"}),
    Case("device-missing-type", VALID, [("panda01.yaml", ": device_type:", "is required")],
         files={"lab/panda01.yaml": "connection: socket://127.0.0.1:7001\n"}),
    Case("device-unknown-type", VALID, [("panda01.yaml", ": device_type:", "'pandaboard'", "did you mean 'panda'")],
         files={"lab/panda01.yaml": "device_type: pandaboard\n"}),
    Case("device-both-connections", VALID, [("panda01.yaml", ": connection_command:", "not both")],
         files={"lab/panda01.yaml": "device_type: panda\nconnection: socket://h:1\nconnection_command: cu -l x\n"}),
    Case("device-yaml-syntax", VALID, [("panda01.yaml:3:", "YAML syntax error", "started on line 2")],
         files={"lab/panda01.yaml": "device_type: panda\nboot_cmds: [mmc init\nboot_retries: 2\n: x\n"}),
    Case("device-not-mapping", VALID, [("panda01.yaml", "mapping")],
         files={"lab/panda01.yaml": "- device_type: panda\n"}),
    Case("device-type-not-mapping", VALID, [("panda.yaml", "mapping")],
         files={"lab/device-types/panda.yaml": "just a string\n"}),
    Case("device-defaults-broken", VALID,
         [("device-defaults.yaml:2:", "YAML syntax error", "flow mapping started on line 1")],
         files={"lab/device-defaults.yaml": "{power_timeout: 30\n"}),
    Case("device-defaults-not-mapping", VALID, [("device-defaults.yaml", "mapping")],
         files={"lab/device-defaults.yaml": "[power_timeout]\n"}),
    Case("device-dir-missing", VALID, [("nolab", "does not exist")], devices="nolab"),
    # old dispatcher INI layout
    Case("ini-syntax-error", VALID, [("panda01.conf:2:", "INI syntax error")], devices="old",
         files={"old/devices/panda01.conf": "device_type = panda\nthis line has no equals sign\n"}),
    Case("ini-unknown-type", VALID, [("panda01.conf", ": device_type:", "'pandas'", "did you mean 'panda'")],
         devices="old", files={"old/devices/panda01.conf": "device_type = pandas\n"}),
    Case("ini-missing-type", VALID, [("panda01.conf", ": device_type:", "is required")], devices="old",
         files={"old/devices/panda01.conf": "hard_reset_command = pdu 1\n"}),
    Case("ini-bad-interpolation", VALID, [("panda.conf", ": lmc_dev_arg:", "%(nosuchkey)s", "not set")], devices="old",
         files={"old/device-types/panda.conf": "client_type = master\nlmc_dev_arg = %(nosuchkey)s\n"}),
    Case("ini-bad-number", VALID, [("panda01.conf", ": boot_retries:", "'three'")], devices="old",
         files={"old/devices/panda01.conf": "device_type = panda\nboot_retries = three\n"}),
    Case("ini-unbalanced-quote", VALID, [("panda.conf", ": boot_cmds:", "No closing quotation")], devices="old",
         files={"old/device-types/panda.conf": "boot_cmds = mmc init,\n  setenv bootargs \"console=ttyO2,\n  boot\n"}),
    Case("ini-not-utf8", VALID, [("panda01.conf", "not UTF-8")], devices="old",
         files={"old/devices/panda01.conf": b"device_type = panda\nhard_reset_command = pdu \xff\n"}),
    Case("job-valid-devices-broken", VALID, [("panda01.yaml", ": device_type:", "is required")],
         files={"lab/panda01.yaml": "boot_retries: 2\n"}),
]


def _write(pytester: pytest.Pytester, case: Case) -> None:
    files: dict[str, str | bytes] = {**LAB, **OLD_LAB, **case.files}
    if case.job is not None:
        files[case.job_name] = case.job
    for name, content in files.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def _check(result: pytest.RunResult, case: Case) -> None:
    out = "\n".join(result.outlines + result.errlines)
    assert "Traceback" not in out, out
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert "problem(s) found" in out, out
    lines = result.outlines
    for want in case.want:
        assert any(all(s in line for s in want) for line in lines), f"no line with {want}:\n{out}"


def test_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed(pytester: pytest.Pytester, case: Case) -> None:
    _write(pytester, case)
    result = pytester.runpytest("-p", "no:cacheprovider", "--lava-job", case.job_name,
                                "--lava-devices", case.devices, "--lava-validate", *case.args)
    _check(result, case)


SUBPROCESS_CASES = ["misspelt-command", "yaml-syntax-error", "non-utf8", "ini-syntax-error", "device-unknown-key",
                    "unknown-lava-test"]


@pytest.mark.parametrize("case", [c for c in CASES if c.id in SUBPROCESS_CASES], ids=SUBPROCESS_CASES)
def test_malformed_subprocess(pytester: pytest.Pytester, case: Case) -> None:
    """The same, in a real process: nothing on stderr, and without --lava-validate too."""
    _write(pytester, case)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--lava-job", case.job_name,
                                           "--lava-devices", case.devices, *case.args)
    _check(result, case)
    assert not "".join(result.errlines).strip()


def test_every_problem_of_several_files(pytester: pytest.Pytester) -> None:
    """Two bad jobs and a good one: both bad files are reported in one run."""
    _write(pytester, Case("x", as_json(job(timeout=None)), []))
    pytester.path.joinpath("good.json").write_text(as_json(job()))
    pytester.path.joinpath("bad.yaml").write_text("timeout: 10\nactions: [{command: boot_linaro_imgae}]\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--lava-job", "job.json", "--lava-job", "good.json",
                                "--lava-job", "bad.yaml", "--lava-devices", "lab", "--lava-validate")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*2 problem(s) found*", "*job.json: timeout: is required*",
                                 "*bad.yaml:2: actions[[]0[]].command: *did you mean 'boot_linaro_image'*"])
    assert "good.json" not in result.stdout.str()


def test_job_and_device_problems_reported_once_together(pytester: pytest.Pytester) -> None:
    _write(pytester, Case("x", as_json(job(timeout=0)), [], files={"lab/panda01.yaml": "boot_retries: 2\n"}))
    pytester.path.joinpath("good.json").write_text(as_json(job()))
    pytester.path.joinpath("good2.json").write_text(as_json(job()))
    result = pytester.runpytest("-p", "no:cacheprovider", "--lava-job", "job.json", "--lava-job", "good.json",
                                "--lava-job", "good2.json", "--lava-devices", "lab", "--lava-validate")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    out = result.stdout.str()
    assert "job.json:4: timeout: must be a positive number of seconds" in out
    assert out.count("panda01.yaml: device_type: is required") == 1, out
