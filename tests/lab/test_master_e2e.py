"""Master-image flow on the lab's arm64 board, end to end through `pytest --lava-job`:
boot the master, deploy (hwpack+rootfs, kernel_matrix, image), add an apt source, boot the test
image through U-Boot; then look at the booted board directly over its console."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.lab.labdevices import devices_left_on

REPO = Path(__file__).resolve().parents[2]
WWW = "http://127.0.0.1:7080"
BOARD = "arm64-01"
pytestmark = pytest.mark.lab


def artifacts() -> dict[str, Any]:
    return json.loads((REPO / "lab/build/www/artifacts.json").read_text())


def run_job(tmp_path: Path, actions: list[dict[str, Any]], name: str = "e2e") -> subprocess.CompletedProcess[str]:
    """The job on arm64-01, left on afterwards (the tests look at what it booted)."""
    job = tmp_path / f"{name}.json"
    job.write_text(json.dumps({"job_name": name, "device_type": "lab-arm64-master", "timeout": 1800,
                               "actions": actions}))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--lava-job", str(job),
                           "--lava-device", BOARD, "--lava-devices", str(devices_left_on(tmp_path)),
                           "--lava-results", str(tmp_path / "results"), "--lava-console", "-rA"],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)


def lava_run(tmp_path: Path, name: str = "e2e") -> list[tuple[str, str]]:
    bundle = json.loads((tmp_path / "results" / name / "bundle.json").read_text())
    run = next(r for r in bundle["test_runs"] if r["test_id"] == "lava")
    return [(t["test_case_id"], t["result"]) for t in run["test_results"]]


def board_shell(arm64_board: Any, lab_tools: Any, prompt: str) -> Any:
    con = lab_tools.RawConsole(arm64_board.device["connection"])
    con.connect()
    con.sendline("")
    con.expect(prompt, 60)
    return con


def deploy(**extra: Any) -> dict[str, Any]:
    a = artifacts()
    return {"command": "deploy_linaro_image",
            "parameters": {"hwpack": f"{WWW}/{a['hwpack']}", "rootfs": f"{WWW}/{a['rootfs_busybox']}", **extra}}


def test_hwpack_rootfs_deploy_boots_the_test_image_with_the_apt_source(tmp_path: Path, arm64_board: Any,
                                                                       lab_tools: Any) -> None:
    p = run_job(tmp_path, [{"command": "boot_master_image"}, deploy(rootfstype="ext4"),
                           {"command": "add_apt_repository", "parameters": {"arg": ["ppa:linaro-maintainers/tools"]}},
                           {"command": "boot_linaro_image"}])
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert lava_run(tmp_path)[:5] == [("boot_master_image", "pass"), ("deploy_linaro_image", "pass"),
                                      ("add_apt_repository", "pass"), ("boot_image", "pass"),
                                      ("boot_linaro_image", "pass")]
    prompt = arm64_board.device["tester_str"]
    con = board_shell(arm64_board, lab_tools, prompt)
    try:
        assert con.run("hostname", prompt) == (0, "linaro\n")
        status, marker = con.run("cat /etc/lava-test-image", prompt)
        assert status == 0 and "lab linaro test image" in marker
        assert con.run("uname -r", prompt)[1].strip() == artifacts()["hwpack_kernel_version"]
        status, source = con.run("cat /etc/apt/sources.list.d/linaro-maintainers-tools-stable.list", prompt)
        assert status == 0
        assert "deb http://ppa.launchpad.net/linaro-maintainers/tools/ubuntu stable main" in source
        assert con.run("cat /etc/lab-system", prompt)[1].startswith("Linaro test image")  # not the master
    finally:
        con.close()


def test_kernel_matrix_boots_the_replacement_kernel(tmp_path: Path, arm64_board: Any, lab_tools: Any) -> None:
    a = artifacts()
    if not a.get("kernel_matrix_distinct"):
        pytest.skip("the lab has only one arm64 kernel ABI")
    p = run_job(tmp_path, [{"command": "boot_master_image"},
                           deploy(kernel_matrix=[f"{WWW}/{a['kernel_matrix_deb']}", a["kernel_matrix_prefix"]]),
                           {"command": "boot_linaro_image"}])
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    prompt = arm64_board.device["tester_str"]
    con = board_shell(arm64_board, lab_tools, prompt)
    try:
        assert con.run("uname -r", prompt)[1].strip() == a["kernel_matrix_version"]
    finally:
        con.close()


def test_image_deploy_takes_the_partitions_out_of_the_image(tmp_path: Path, arm64_board: Any,
                                                            lab_tools: Any) -> None:
    a = artifacts()
    p = run_job(tmp_path, [{"command": "boot_master_image"},
                           {"command": "deploy_linaro_image", "parameters": {"image": f"{WWW}/{a['image_gz']}"}},
                           {"command": "boot_linaro_image"}])
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    prompt = arm64_board.device["tester_str"]
    con = board_shell(arm64_board, lab_tools, prompt)
    try:
        assert con.run("hostname", prompt) == (0, "linaro\n")
        assert con.run("test -f /etc/lava-test-image", prompt)[0] == 0
    finally:
        con.close()


@pytest.mark.parametrize("case", ["404", "checksum"])
def test_bad_artifact_fails_naming_the_url_and_leaves_the_board_off(tmp_path: Path, arm64_board: Any,
                                                                    lab_tools: Any, case: str) -> None:
    a = artifacts()
    if case == "404":
        url, extra = f"{WWW}/no-such-rootfs.tar.gz", {}
    else:
        url, extra = f"{WWW}/{a['rootfs']}", {"rootfs_sha256": "0" * 64}
    action = deploy(**extra)
    action["parameters"]["rootfs"] = url
    try:
        p = run_job(tmp_path, [{"command": "boot_master_image"}, action, {"command": "boot_linaro_image"}])
        out = p.stdout + p.stderr
        assert p.returncode != 0
        assert url in out and ("404" in out if case == "404" else "checksum mismatch" in out)
        assert ("deploy_linaro_image", "fail") in lava_run(tmp_path)
        status = json.loads(lab_tools.labctl("status", "--json", timeout=60).stdout)
        assert status["processes"][BOARD]["running"] is False  # powered off after the failed deploy
    finally:
        lab_tools.labctl("power", "on", BOARD, timeout=120)  # the next test gets its board back
