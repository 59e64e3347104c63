"""The command line of ``pytest --lava-validate``: valid jobs print their plan and exit 0.

The plan names every action in order with its effective timeout, and the board(s) chosen.
Runs that print a plan use a subprocess where it matters (the acceptance case, --help, tokens):
the plugin keeps process-wide state (a dup'd stderr fd) that an in-process run would share.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "data"
TOKEN = "s3cr3t-t0ken"  # the token inside tests/data/jobs/old-panda.json


@pytest.fixture
def lab(pytester: pytest.Pytester) -> Path:
    """tests/data copied into the pytester directory (jobs/, lab/ in YAML, old-lab/ in INI)."""
    for name in ("jobs", "lab", "old-lab"):
        shutil.copytree(DATA / name, pytester.path / name)
    return pytester.path


def validate(pytester: pytest.Pytester, *args: str, subprocess: bool = False) -> pytest.RunResult:
    run = pytester.runpytest_subprocess if subprocess else pytester.runpytest
    return run("-p", "no:cacheprovider", "--lava-validate", *args)


def _no_traceback(result: pytest.RunResult) -> None:
    assert "Traceback" not in "\n".join(result.outlines + result.errlines)


def test_old_dispatcher_json_job_with_ini_lab(pytester: pytest.Pytester, lab: Path) -> None:
    """Acceptance: the §2.2 job, unchanged, against a device directory in the old INI layout."""
    result = validate(pytester, "--lava-job", "jobs/old-panda.json", "--lava-devices", "old-lab", subprocess=True)
    _no_traceback(result)
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([
        "job 'foo' (*old-panda.json) timeout 18000 s",
        "  board: panda01 (by target; type panda, board type master)",
        "   1. setup  deploy_linaro_image * timeout   18000 s*",
        "        rootfs='http://snapshots.example.org/linaro-n-developer-tar-20110208-0.tar.gz', hwpack=*",
        "   2. setup  lava_test_install * timeout    2400 s*",
        "        tests=['stream']",
        "   3. setup  boot_linaro_image * timeout     900 s*",
        "   4. test   lava_test_run * timeout    1200 s*",
        "        test_name='stream'",
        "   5. submit submit_results * timeout     600 s  (at session end, always)",
        "pytest-lava: 1 job(s) valid",
    ])
    assert not result.errlines


def test_yaml_job_with_yaml_lab(pytester: pytest.Pytester, lab: Path) -> None:
    """The same model in YAML, by device_type: every panda board, timeouts capped by the job's."""
    result = validate(pytester, "--lava-job", "jobs/panda-smoke.yaml", "--lava-devices", "lab")
    _no_traceback(result)
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([
        "job 'panda-smoke' (*panda-smoke.yaml) timeout 3600 s",
        "  board: panda01, panda02 (by device_type 'panda'; type panda, board type master)",
        "  tags: smoke, nightly",
        "   1. setup  deploy_linaro_image * timeout    1800 s*",
        "   2. setup  boot_linaro_image * timeout     900 s*",
        "        options=['boot_cmds=boot_cmds']",
        "   3. test   lava_test_shell * timeout     600 s*",
        "   4. test   lava_test_run * timeout    3600 s*",  # asked for 7200: the job timeout wins
        "   5. submit submit_results_on_host * timeout     600 s*",
        "  warning: *panda-smoke.yaml: actions[[]3[]].parameters.timeout (7200 s) exceeds the job timeout (3600 s)*",
        "pytest-lava: 1 job(s) valid",
    ])


def test_json_job_with_yaml_lab(pytester: pytest.Pytester, lab: Path) -> None:
    """The old JSON job is not tied to the INI layout: the YAML lab has a panda01 too."""
    result = validate(pytester, "--lava-job", "jobs/old-panda.json", "--lava-devices", "lab")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["  board: panda01 (by target; type panda, board type master)"])


def test_lava_device_overrides_target(pytester: pytest.Pytester, lab: Path) -> None:
    result = validate(pytester, "--lava-job", "jobs/old-panda.json", "--lava-devices", "lab",
                      "--lava-device", "qemu01")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["  board: qemu01 (by target; type qemu-arm, board type qemu)"])
    assert "panda01" not in result.stdout.str()


def test_lava_device_overrides_device_type(pytester: pytest.Pytester, lab: Path) -> None:
    result = validate(pytester, "--lava-job", "jobs/panda-smoke.yaml", "--lava-devices", "lab",
                      "--lava-device", "panda02")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["  board: panda02 (by target; type panda, board type master)"])


def test_several_jobs_and_shell_glob(pytester: pytest.Pytester, lab: Path) -> None:
    """`--lava-job jobs/*`: the shell passes the other files as positional arguments."""
    result = validate(pytester, "--lava-devices", "lab", "--lava-job", "jobs/old-panda.json", "jobs/panda-smoke.yaml")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["job 'foo' *", "job 'panda-smoke' *", "pytest-lava: 2 job(s) valid"])


def test_devices_from_ini_option(pytester: pytest.Pytester, lab: Path) -> None:
    pytester.makeini("[pytest]\nlava_devices = old-lab\n")
    result = validate(pytester, "--lava-job", "jobs/old-panda.json")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["  board: panda01 *"])


def test_default_devices_dir(pytester: pytest.Pytester, lab: Path) -> None:
    (pytester.path / "lab").rename(pytester.path / "devices")
    result = validate(pytester, "--lava-job", "jobs/panda-smoke.yaml")
    assert result.ret == 0, result.stdout.str()


def test_kernel_matrix_variants(pytester: pytest.Pytester, lab: Path) -> None:
    """A list-form kernel_matrix: one plan per kernel, named after the .deb."""
    data = json.loads((lab / "jobs" / "old-panda.json").read_text())
    debs = [f"http://example.org/linux-image-3.{minor}.0-1-linaro-omap_3.{minor}.0-1.1_armhf.deb" for minor in (8, 9)]
    data["actions"][0]["parameters"]["kernel_matrix"] = [[deb, "linux-image"] for deb in debs]
    (lab / "km.json").write_text(json.dumps(data))
    result = validate(pytester, "--lava-job", "km.json", "--lava-devices", "old-lab")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["job 'foo [[]3.8.0-1-linaro-omap[]]' *", "   5. submit submit_results *",
                                 "job 'foo [[]3.9.0-1-linaro-omap[]]' *", "   5. submit submit_results *",
                                 "pytest-lava: 2 job(s) valid"])


def test_help_lists_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["pytest-lava: run LAVA jobs on boards:", "*--lava-job=FILE*"])
    for option in ("--lava-device=NAME", "--lava-devices=DIR", "--lava-results=DIR", "--lava-validate",
                   "--lava-console", "--lava-submit=URL", "--lava-token=TOKEN"):
        assert option in result.stdout.str()
    result.stdout.fnmatch_lines(["*lava_devices (string)*"])


def test_job_token_hidden(pytester: pytest.Pytester, lab: Path) -> None:
    result = validate(pytester, "--lava-job", "jobs/old-panda.json", "--lava-devices", "old-lab", subprocess=True)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*submit_results*", "*token='<HIDDEN>'*"])
    assert TOKEN not in result.stdout.str() + result.stderr.str()


def test_option_and_environment_tokens_never_shown(pytester: pytest.Pytester, lab: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAVA_TOKEN", "env-t0ken-value")
    result = validate(pytester, "--lava-job", "jobs/old-panda.json", "--lava-devices", "old-lab", "-v",
                      "--lava-token", "option-t0ken-value", subprocess=True)
    assert result.ret == 0
    out = result.stdout.str() + result.stderr.str()
    for secret in (TOKEN, "env-t0ken-value", "option-t0ken-value"):
        assert secret not in out


def test_token_not_echoed_in_errors(pytester: pytest.Pytester, lab: Path) -> None:
    """A job that is invalid elsewhere, and a mistyped token: problems never quote the token."""
    data = json.loads((lab / "jobs" / "old-panda.json").read_text())
    data["timeout"] = "soon"
    data["actions"].append({"command": "submit_results_on_host",
                            "parameters": {"server": "http://x/RPC2/", "token": [TOKEN]}})
    (lab / "bad.json").write_text(json.dumps(data))
    result = validate(pytester, "--lava-job", "bad.json", "--lava-devices", "old-lab")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*bad.json*: actions[[]5[]].parameters.token: must be a string, not list"])
    assert TOKEN not in result.stdout.str()


def test_validate_without_jobs(pytester: pytest.Pytester) -> None:
    result = validate(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*--lava-job*no job file given*"])


def test_no_lava_options_leaves_pytest_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_an_android_job_on_a_host_without_adb_is_refused_before_any_board(pytester: pytest.Pytester,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The adb client is the host's: its absence is found at validation, not after the deploy."""
    repo = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # python, but no adb
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--lava-validate", "--lava-job",
                                           str(repo / "jobs/lab-arm64-android.json"), "--lava-devices",
                                           str(repo / "devices"), "--lava-device", "arm64-01")
    assert result.ret == 4, result.stdout.str()
    result.stdout.fnmatch_lines(["*actions[[]3[]]*the adb client is not on this host's PATH*apt-get install adb*"])
